import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import { type Datagram, decodeDatagram, isNewerRoutingNumber, MAX_PAYLOAD_SIZE } from './segmentation.js';

export interface ReassemblyLimits {
  /** Largest reassembled routing message, in bytes. Default 16 MiB (Ockam's MAX_MESSAGE_SIZE). */
  maxMessageBytes?: number;
  /** Most proven sources whose state is kept; the least recently heard one is forgotten. Default 1024. */
  maxPeers?: number;
  /** Most bytes buffered in partial messages of proven sources. Default 64 MiB. */
  maxBufferedBytes?: number;
  /** A partial message older than this is discarded, and idle peer state forgotten. Default 30 s. */
  timeoutMs?: number;
  /**
   * Most unproven sources whose state is kept, in a budget of their own (they never evict a proven
   * source). Default maxPeers / 4.
   */
  maxUnprovenPeers?: number;
  /** Most bytes buffered for unproven sources, apart from maxBufferedBytes. Default maxBufferedBytes / 4. */
  maxUnprovenBufferedBytes?: number;
}

export const DEFAULT_REASSEMBLY_LIMITS: Required<ReassemblyLimits> = {
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxPeers: 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  timeoutMs: 30_000,
  maxUnprovenPeers: 256,
  maxUnprovenBufferedBytes: 16 * 1024 * 1024,
};

/** Fills in the defaults (the unproven ones are a quarter of the proven ones) and validates. */
export function reassemblyLimits(options: ReassemblyLimits): Required<ReassemblyLimits> {
  const d = DEFAULT_REASSEMBLY_LIMITS;
  const maxPeers = options.maxPeers ?? d.maxPeers;
  const maxBufferedBytes = options.maxBufferedBytes ?? d.maxBufferedBytes;
  const limits = {
    maxMessageBytes: options.maxMessageBytes ?? d.maxMessageBytes,
    maxPeers,
    maxBufferedBytes,
    timeoutMs: options.timeoutMs ?? d.timeoutMs,
    maxUnprovenPeers: options.maxUnprovenPeers ?? Math.max(1, Math.floor(maxPeers / 4)),
    maxUnprovenBufferedBytes:
      options.maxUnprovenBufferedBytes ?? Math.max(1, Math.floor(maxBufferedBytes / 4)),
  };
  for (const [k, v] of Object.entries(limits)) {
    const whole = k.startsWith('maxUnproven');
    if (!(whole ? Number.isInteger(v) : Number.isFinite(v)) || v < 1) {
      const what = whole ? 'a whole number >= 1' : '>= 1';
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `UDP reassembly: ${k} must be ${what}, got ${v}`);
    }
  }
  return limits;
}

/**
 * Why a datagram or a partial message was dropped.
 *
 * Per datagram: `duplicate` (its routing message was already delivered, or that offset was
 * already received), `out_of_order` (a gap before it: the partial message is lost), `stale` (an
 * older routing number, or a piece of a message already given up), `too_large` (the message would
 * exceed maxMessageBytes), `malformed` (undecodable, unknown version, an empty piece that is not
 * the last). Per partial message: `abandoned` (a newer routing number arrived), `expired` (older
 * than timeoutMs), `evicted` (to stay within maxPeers or maxBufferedBytes), `unproven_budget` (of
 * an unproven source, to stay within maxUnprovenPeers or maxUnprovenBufferedBytes, or a piece
 * that cannot fit in maxUnprovenBufferedBytes at all).
 */
export type ReassemblyDropReason =
  | 'duplicate'
  | 'out_of_order'
  | 'stale'
  | 'too_large'
  | 'malformed'
  | 'evicted'
  | 'abandoned'
  | 'expired'
  | 'unproven_budget';

export type ReassemblyDrops = Record<ReassemblyDropReason, number>;

export interface ReassemblerOptions extends ReassemblyLimits {
  /** Clock in milliseconds; injectable for tests. Default Date.now. */
  now?: () => number;
  /** Called on every drop (for debug logging). Must not throw. */
  onDrop?: (reason: ReassemblyDropReason, peer: string, detail: string) => void;
}

type Status = 'receiving' | 'complete' | 'broken';

/** The state and limits of one class of sources: proven or unproven. */
interface Pool {
  /** In least-recently-heard-first order (re-inserted on every datagram). */
  readonly states: Map<string, PeerState>;
  buffered: number;
  readonly maxPeers: number;
  readonly maxBytes: number;
  /** Counted for a partial message discarded to stay within this pool's limits. */
  readonly evicted: ReassemblyDropReason;
  /** Counted for a piece that cannot fit in this pool's bytes even when it is empty. */
  readonly refused: ReassemblyDropReason;
  /** For drop details. */
  readonly label: string;
}

interface PeerState {
  /** The pool whose limits this state (and its bytes) counts against. */
  pool: Pool;
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
 *
 * Sources whose address may be forged (the caller says so per datagram) have peers and bytes of
 * their own (maxUnprovenPeers, maxUnprovenBufferedBytes): they never evict a proven source's state.
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
    unproven_budget: 0,
  };
  readonly limits: Readonly<Required<ReassemblyLimits>>;
  private readonly now: () => number;
  private readonly onDrop: ReassemblerOptions['onDrop'];
  private readonly proven: Pool;
  private readonly unproven: Pool;

  constructor(options: ReassemblerOptions = {}) {
    this.limits = reassemblyLimits(options);
    this.now = options.now ?? Date.now;
    this.onDrop = options.onDrop;
    this.proven = {
      states: new Map(),
      buffered: 0,
      maxPeers: this.limits.maxPeers,
      maxBytes: this.limits.maxBufferedBytes,
      evicted: 'evicted',
      refused: 'too_large',
      label: '',
    };
    this.unproven = {
      states: new Map(),
      buffered: 0,
      maxPeers: this.limits.maxUnprovenPeers,
      maxBytes: this.limits.maxUnprovenBufferedBytes,
      evicted: 'unproven_budget',
      refused: 'unproven_budget',
      label: 'unproven ',
    };
  }

  /** Peers with state, proven or not. */
  get peers(): number {
    return this.proven.states.size + this.unproven.states.size;
  }

  /** Unproven peers with state. */
  get unprovenPeers(): number {
    return this.unproven.states.size;
  }

  /** Bytes held in partial messages. */
  get bufferedBytes(): number {
    return this.proven.buffered + this.unproven.buffered;
  }

  /** Bytes held in partial messages of unproven peers. */
  get unprovenBufferedBytes(): number {
    return this.unproven.buffered;
  }

  /** Partial messages being assembled. */
  get pending(): number {
    let n = 0;
    for (const pool of [this.proven, this.unproven]) {
      for (const s of pool.states.values()) if (s.status === 'receiving') n++;
    }
    return n;
  }

  /** Decodes a datagram and pushes it; undecodable datagrams are counted as `malformed`. */
  pushBytes(peer: string, bytes: Uint8Array, proven = true): Uint8Array | undefined {
    let d: Datagram;
    try {
      d = decodeDatagram(bytes);
    } catch (e) {
      this.drop('malformed', peer, describeError(e));
      return undefined;
    }
    return this.push(peer, d, proven);
  }

  /**
   * Adds one datagram from `peer` ("host:port"). Returns the complete routing message bytes when
   * this was its last piece, else undefined. Takes ownership of `d.payload` (no copy is made).
   *
   * `proven` says which budget the peer's state counts against. When it differs from the
   * previous datagram's (the peer was promoted, or demoted), the state moves to the other budget.
   */
  push(peer: string, d: Datagram, proven = true): Uint8Array | undefined {
    const len = d.payload.length;
    if (len > MAX_PAYLOAD_SIZE || (len === 0 && !d.isLast)) {
      this.drop('malformed', peer, `piece of ${len} bytes (last: ${d.isLast})`);
      return undefined;
    }
    const now = this.now();
    const pool = proven ? this.proven : this.unproven;
    let st = pool.states.get(peer) ?? (proven ? this.unproven : this.proven).states.get(peer);
    if (st !== undefined) {
      st.pool.states.delete(peer); // re-inserted below: most recently heard
      if (now - st.lastSeen > this.limits.timeoutMs || now - st.startedAt > this.limits.timeoutMs) {
        if (st.status === 'receiving') this.discard(peer, st, 'expired', `message ${st.rn} timed out`);
        if (now - st.lastSeen > this.limits.timeoutMs) st = undefined; // idle: start afresh
      }
    }
    if (st === undefined) {
      while (pool.states.size >= pool.maxPeers) this.evictLeastRecentPeer(pool);
      st = { pool, rn: d.routingNumber, status: 'broken', parts: [], size: 0, startedAt: now, lastSeen: now };
      pool.states.set(peer, st);
      return this.begin(peer, st, d, now);
    }
    if (st.pool !== pool) {
      st.pool.buffered -= st.size;
      st.pool = pool;
      pool.buffered += st.size;
      while (pool.states.size >= pool.maxPeers) this.evictLeastRecentPeer(pool);
      pool.states.set(peer, st);
      this.makeRoom(pool, 0, st);
    } else {
      pool.states.set(peer, st);
    }
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
    const pool = st.pool;
    if (!this.makeRoom(pool, len, st)) {
      // Still receiving only when the piece alone exceeds the budget.
      if (st.status === 'receiving') {
        this.drop(pool.refused, peer, `piece does not fit the ${pool.label}buffer budget`);
        this.free(st);
      }
      return undefined;
    }
    st.parts.push(d.payload);
    st.size += len;
    pool.buffered += len;
    return undefined;
  }

  /**
   * Discards the oldest partial messages of `pool` until `len` more bytes fit. False when they
   * cannot, or when `own` was the one discarded.
   */
  private makeRoom(pool: Pool, len: number, own: PeerState): boolean {
    while (pool.buffered + len > pool.maxBytes) {
      const victim = this.oldestPartial(pool);
      if (victim === undefined) return false;
      this.discard(
        victim[0],
        victim[1],
        pool.evicted,
        `${pool.label}buffer budget of ${pool.maxBytes} bytes`,
      );
      if (victim[1] === own) return false;
    }
    return true;
  }

  /** Discards partial messages older than the timeout and forgets idle peers. Returns partials discarded. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const pool of [this.proven, this.unproven]) {
      for (const [peer, st] of pool.states) {
        if (st.status === 'receiving' && now - st.startedAt > this.limits.timeoutMs) {
          this.discard(peer, st, 'expired', `message ${st.rn} timed out`);
          n++;
        }
        if (now - st.lastSeen > this.limits.timeoutMs) pool.states.delete(peer);
      }
    }
    return n;
  }

  /** Forgets everything about `peer`. */
  forget(peer: string): void {
    const st = this.proven.states.get(peer) ?? this.unproven.states.get(peer);
    if (st === undefined) return;
    this.free(st);
    st.pool.states.delete(peer);
  }

  clear(): void {
    for (const pool of [this.proven, this.unproven]) {
      for (const peer of [...pool.states.keys()]) this.forget(peer);
    }
  }

  private oldestPartial(pool: Pool): [string, PeerState] | undefined {
    let best: [string, PeerState] | undefined;
    for (const e of pool.states) {
      if (e[1].status !== 'receiving' || e[1].size === 0) continue;
      if (best === undefined || e[1].startedAt < best[1].startedAt) best = e;
    }
    return best;
  }

  private evictLeastRecentPeer(pool: Pool): void {
    const first = pool.states.entries().next();
    if (first.done) return;
    const [peer, st] = first.value;
    if (st.status === 'receiving')
      this.discard(peer, st, pool.evicted, `more than ${pool.maxPeers} ${pool.label}peers`);
    pool.states.delete(peer);
  }

  /** Drops a partial message, counting it. */
  private discard(peer: string, st: PeerState, reason: ReassemblyDropReason, detail: string): void {
    this.free(st);
    this.drop(reason, peer, detail);
  }

  private free(st: PeerState): void {
    st.pool.buffered -= st.size;
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
