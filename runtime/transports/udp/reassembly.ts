import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import { type Datagram, decodeDatagram, isNewerRoutingNumber, MAX_PAYLOAD_SIZE } from './segmentation.js';

export interface ReassemblyLimits {
  /** Largest reassembled routing message, in bytes. Default 16 MiB (Ockam's MAX_MESSAGE_SIZE). */
  maxMessageBytes?: number;
  /** Most peers whose state is kept; the least recently heard one is forgotten. Default 1024. */
  maxPeers?: number;
  /** Most bytes buffered in partial messages across all peers. Default 64 MiB. */
  maxBufferedBytes?: number;
  /** A partial message older than this is discarded, and idle peer state forgotten. Default 30 s. */
  timeoutMs?: number;
}

export const DEFAULT_REASSEMBLY_LIMITS: Required<ReassemblyLimits> = {
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxPeers: 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  timeoutMs: 30_000,
};

/**
 * Why a datagram or a partial message was dropped.
 *
 * Per datagram: `duplicate` (its routing message was already delivered, or that offset was
 * already received), `out_of_order` (a gap before it: the partial message is lost), `stale` (an
 * older routing number, or a piece of a message already given up), `too_large` (the message would
 * exceed maxMessageBytes), `malformed` (undecodable, unknown version, an empty piece that is not
 * the last). Per partial message: `abandoned` (a newer routing number arrived), `expired` (older
 * than timeoutMs), `evicted` (to stay within maxPeers or maxBufferedBytes).
 */
export type ReassemblyDropReason =
  | 'duplicate'
  | 'out_of_order'
  | 'stale'
  | 'too_large'
  | 'malformed'
  | 'evicted'
  | 'abandoned'
  | 'expired';

export type ReassemblyDrops = Record<ReassemblyDropReason, number>;

export interface ReassemblerOptions extends ReassemblyLimits {
  /** Clock in milliseconds; injectable for tests. Default Date.now. */
  now?: () => number;
  /** Called on every drop (for debug logging). Must not throw. */
  onDrop?: (reason: ReassemblyDropReason, peer: string, detail: string) => void;
}

type Status = 'receiving' | 'complete' | 'broken';

interface PeerState {
  /** Routing number of the newest message seen from this peer. */
  rn: number;
  /**
   * receiving: pieces of `rn` are being buffered; complete: `rn` was delivered; broken: `rn` was
   * given up (gap, too large, expired, evicted, or its first piece never arrived).
   */
  status: Status;
  parts: Uint8Array[];
  /** Bytes buffered so far = the offset the next piece must have. */
  size: number;
  startedAt: number;
  lastSeen: number;
}

/**
 * Reassembles routing messages from UDP datagrams the way Ockam does: one pending message per
 * peer, pieces in order with contiguous offsets from 0, no reordering, no retransmission. Memory
 * is bounded: per message (maxMessageBytes), in total (maxBufferedBytes) and in peers (maxPeers);
 * every limit is checked before a byte is buffered.
 */
export class Reassembler {
  readonly drops: ReassemblyDrops = {
    duplicate: 0,
    out_of_order: 0,
    stale: 0,
    too_large: 0,
    malformed: 0,
    evicted: 0,
    abandoned: 0,
    expired: 0,
  };
  private readonly limits: Required<ReassemblyLimits>;
  private readonly now: () => number;
  private readonly onDrop: ReassemblerOptions['onDrop'];
  /** In least-recently-heard-first order (re-inserted on every datagram). */
  private readonly peerStates = new Map<string, PeerState>();
  private buffered = 0;

  constructor(options: ReassemblerOptions = {}) {
    this.limits = {
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_REASSEMBLY_LIMITS.maxMessageBytes,
      maxPeers: options.maxPeers ?? DEFAULT_REASSEMBLY_LIMITS.maxPeers,
      maxBufferedBytes: options.maxBufferedBytes ?? DEFAULT_REASSEMBLY_LIMITS.maxBufferedBytes,
      timeoutMs: options.timeoutMs ?? DEFAULT_REASSEMBLY_LIMITS.timeoutMs,
    };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isFinite(v) || v < 1) {
        throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `UDP reassembly: ${k} must be >= 1, got ${v}`);
      }
    }
    this.now = options.now ?? Date.now;
    this.onDrop = options.onDrop;
  }

  /** Peers with state. */
  get peers(): number {
    return this.peerStates.size;
  }

  /** Bytes held in partial messages. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Partial messages being assembled. */
  get pending(): number {
    let n = 0;
    for (const s of this.peerStates.values()) if (s.status === 'receiving') n++;
    return n;
  }

  /** Decodes a datagram and pushes it; undecodable datagrams are counted as `malformed`. */
  pushBytes(peer: string, bytes: Uint8Array): Uint8Array | undefined {
    let d: Datagram;
    try {
      d = decodeDatagram(bytes);
    } catch (e) {
      this.drop('malformed', peer, describeError(e));
      return undefined;
    }
    return this.push(peer, d);
  }

  /**
   * Adds one datagram from `peer` ("host:port"). Returns the complete routing message bytes when
   * this was its last piece, else undefined. Takes ownership of `d.payload` (no copy is made).
   */
  push(peer: string, d: Datagram): Uint8Array | undefined {
    const len = d.payload.length;
    if (len > MAX_PAYLOAD_SIZE || (len === 0 && !d.isLast)) {
      this.drop('malformed', peer, `piece of ${len} bytes (last: ${d.isLast})`);
      return undefined;
    }
    const now = this.now();
    let st = this.peerStates.get(peer);
    if (st !== undefined) {
      this.peerStates.delete(peer); // re-inserted below: most recently heard
      if (now - st.lastSeen > this.limits.timeoutMs || now - st.startedAt > this.limits.timeoutMs) {
        if (st.status === 'receiving') this.discard(peer, st, 'expired', `message ${st.rn} timed out`);
        if (now - st.lastSeen > this.limits.timeoutMs) st = undefined; // idle: start afresh
      }
    }
    if (st === undefined) {
      while (this.peerStates.size >= this.limits.maxPeers) this.evictLeastRecentPeer();
      st = { rn: d.routingNumber, status: 'broken', parts: [], size: 0, startedAt: now, lastSeen: now };
      this.peerStates.set(peer, st);
      return this.begin(peer, st, d, now);
    }
    this.peerStates.set(peer, st);
    st.lastSeen = now;

    if (d.routingNumber === st.rn) {
      if (st.status === 'complete')
        return this.drop('duplicate', peer, `message ${d.routingNumber} delivered`);
      if (st.status === 'broken') return this.drop('stale', peer, `message ${d.routingNumber} was given up`);
      if (d.offset < st.size) return this.drop('duplicate', peer, `offset ${d.offset} already received`);
      if (d.offset > st.size) {
        this.drop('out_of_order', peer, `offset ${d.offset}, expected ${st.size}`);
        this.free(st);
        return undefined;
      }
      return this.append(peer, st, d);
    }
    if (!isNewerRoutingNumber(d.routingNumber, st.rn)) {
      return this.drop('stale', peer, `message ${d.routingNumber} is older than ${st.rn}`);
    }
    if (st.status === 'receiving') {
      this.discard(peer, st, 'abandoned', `message ${st.rn} replaced by ${d.routingNumber}`);
    }
    st.rn = d.routingNumber;
    st.startedAt = now;
    return this.begin(peer, st, d, now);
  }

  /** First piece seen of message `d.routingNumber`; `st.rn` is already that number. */
  private begin(peer: string, st: PeerState, d: Datagram, now: number): Uint8Array | undefined {
    st.status = 'broken';
    st.startedAt = now;
    if (d.offset !== 0) {
      return this.drop('out_of_order', peer, `message ${d.routingNumber} starts at offset ${d.offset}`);
    }
    if (d.payload.length > this.limits.maxMessageBytes) {
      return this.drop(
        'too_large',
        peer,
        `message ${d.routingNumber} exceeds ${this.limits.maxMessageBytes}`,
      );
    }
    if (d.isLast) {
      st.status = 'complete';
      return d.payload;
    }
    st.status = 'receiving';
    return this.append(peer, st, d);
  }

  /** Appends the next contiguous piece to a receiving message (checks limits first). */
  private append(peer: string, st: PeerState, d: Datagram): Uint8Array | undefined {
    const len = d.payload.length;
    if (st.size + len > this.limits.maxMessageBytes) {
      this.drop('too_large', peer, `message ${st.rn} exceeds ${this.limits.maxMessageBytes} bytes`);
      this.free(st);
      return undefined;
    }
    if (d.isLast) {
      const out = concat(st.parts, st.size, d.payload);
      this.free(st);
      st.status = 'complete';
      return out;
    }
    while (this.buffered + len > this.limits.maxBufferedBytes) {
      const victim = this.oldestPartial();
      if (victim === undefined) break; // only when len alone exceeds the budget; cannot happen for ≤ 493
      this.discard(victim[0], victim[1], 'evicted', `buffer budget of ${this.limits.maxBufferedBytes} bytes`);
      if (victim[1] === st) return undefined;
    }
    if (this.buffered + len > this.limits.maxBufferedBytes) {
      this.drop('too_large', peer, `piece does not fit the buffer budget`);
      this.free(st);
      return undefined;
    }
    st.parts.push(d.payload);
    st.size += len;
    this.buffered += len;
    return undefined;
  }

  /** Discards partial messages older than the timeout and forgets idle peers. Returns partials discarded. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const [peer, st] of this.peerStates) {
      if (st.status === 'receiving' && now - st.startedAt > this.limits.timeoutMs) {
        this.discard(peer, st, 'expired', `message ${st.rn} timed out`);
        n++;
      }
      if (now - st.lastSeen > this.limits.timeoutMs) this.peerStates.delete(peer);
    }
    return n;
  }

  /** Forgets everything about `peer`. */
  forget(peer: string): void {
    const st = this.peerStates.get(peer);
    if (st === undefined) return;
    this.free(st);
    this.peerStates.delete(peer);
  }

  clear(): void {
    for (const peer of [...this.peerStates.keys()]) this.forget(peer);
  }

  private oldestPartial(): [string, PeerState] | undefined {
    let best: [string, PeerState] | undefined;
    for (const e of this.peerStates) {
      if (e[1].status !== 'receiving' || e[1].size === 0) continue;
      if (best === undefined || e[1].startedAt < best[1].startedAt) best = e;
    }
    return best;
  }

  private evictLeastRecentPeer(): void {
    const first = this.peerStates.entries().next();
    if (first.done) return;
    const [peer, st] = first.value;
    if (st.status === 'receiving')
      this.discard(peer, st, 'evicted', `more than ${this.limits.maxPeers} peers`);
    this.peerStates.delete(peer);
  }

  /** Drops a partial message, counting it. */
  private discard(peer: string, st: PeerState, reason: ReassemblyDropReason, detail: string): void {
    this.free(st);
    this.drop(reason, peer, detail);
  }

  private free(st: PeerState): void {
    this.buffered -= st.size;
    st.parts = [];
    st.size = 0;
    st.status = 'broken';
  }

  private drop(reason: ReassemblyDropReason, peer: string, detail: string): undefined {
    this.drops[reason]++;
    this.onDrop?.(reason, peer, detail);
    return undefined;
  }
}

function concat(parts: Uint8Array[], size: number, last: Uint8Array): Uint8Array {
  if (parts.length === 0) return last;
  const out = new Uint8Array(size + last.length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  out.set(last, at);
  return out;
}
