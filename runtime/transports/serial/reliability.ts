import { ErrorCodes, KeyhopError } from '../../errors.js';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  encodeFrame,
  FrameType,
  MAX_PAYLOAD_BYTES_LIMIT,
  type SerialFrame,
} from './frame.js';

/**
 * The serial link layer above the framing (docs/protocols/serial.md, "Reliability"). Two
 * implementations of one interface, chosen per link by configuration and the same on both ends:
 *
 * - PlainLink: every payload is one DATA frame; a frame lost to line noise is lost.
 * - ReliableLink: RDATA frames numbered mod 2^16, a sending window, cumulative ACKs,
 *   retransmission of the oldest unacknowledged frame after a timeout with exponential backoff
 *   and a bounded number of retries, duplicate suppression and in-order delivery, and RESET to
 *   (re)synchronise sequence numbers when either end starts or restarts.
 *
 * Both are pure state machines: bytes go out through `send`, payloads come out through
 * `deliver`, and time is read from an injectable clock and advanced by `tick`. They start no
 * timer: after every call the owner (re)arms one timer for `nextDeadline`.
 */

export interface LinkClock {
  /** Milliseconds, monotonic. */
  now(): number;
}

export type LinkFailureReason = 'no_ack' | 'no_reset_ack';

export interface LinkFailure {
  /** `no_reset_ack`: the peer never answered RESET. `no_ack`: a frame stayed unacknowledged. */
  reason: LinkFailureReason;
  message: string;
  /** Payloads written and not acknowledged, in write order. The link has dropped them. */
  lost: Uint8Array[];
}

export interface SerialLinkOptions {
  /** Writes one frame's wire bytes (delimiters included) to the line. */
  send(wire: Uint8Array): void;
  /** Hands one received payload up, in order. */
  deliver(payload: Uint8Array): void;
  /** Reliable links only: the peer stopped answering. */
  onFailure?(failure: LinkFailure): void;
  /** Largest payload written or accepted. Default 64 KiB. Must match the frame reader's. */
  maxPayloadBytes?: number;
  /** Default: performance.now(). */
  clock?: LinkClock;
}

export interface ReliableLinkOptions extends SerialLinkOptions {
  /** Most RDATA frames sent and not yet acknowledged; also the receive window. 1..1024, default 8. */
  window?: number;
  /** Base retransmission timeout in ms: one round trip with margin. Default 1000. */
  retransmitMs?: number;
  /**
   * Milliseconds one byte takes on the line (10 000 / baud for 8N1), added to the timeout for
   * every byte in flight, so that a large frame on a slow line is not retransmitted while it is
   * still being sent. Default 0.
   */
  byteTimeMs?: number;
  /** Retransmissions of one frame (or of RESET) before the link fails. Default 8. */
  maxRetries?: number;
  /** Payloads waiting for a window slot before write() refuses more. Default 256. */
  maxQueued?: number;
  /** Source of random u32s for RESET nonces and initial sequence numbers. Default: crypto. */
  random32?: () => number;
}

export interface SerialLink {
  /** Begins: a reliable link announces its sending epoch (RESET). Call once, after wiring. */
  start(): void;
  /**
   * Queues one payload. Do not modify it afterwards: a reliable link keeps it until acknowledged.
   * Throws KeyhopError ENCODE_LIMIT (too large), SEND_FAILED (queue full), CONNECTION_CLOSED.
   */
  write(payload: Uint8Array): void;
  /** Handles one frame from the SerialFrameReader. Never throws on what the peer sends. */
  onFrame(frame: SerialFrame): void;
  /** Runs timeouts due at `now`. */
  tick(now?: number): void;
  /** When tick() next has work to do; undefined when nothing is pending. */
  readonly nextDeadline: number | undefined;
  /** Drops everything; later writes throw CONNECTION_CLOSED. */
  close(): void;
}

/** Why a link ignored a frame. */
export type LinkDropReason =
  /** RDATA already delivered or already buffered. */
  | 'duplicate'
  /** RDATA too far ahead of the next expected number. */
  | 'out_of_window'
  /** RDATA before the peer's RESET: its numbering is not known yet. */
  | 'unsynced'
  /** ACK for nothing in flight, or arriving while the link is resetting. */
  | 'stale_ack'
  /** RESET repeating an older epoch's nonce; RESET_ACK for another nonce or seq, or when not resetting. */
  | 'stale_reset'
  /** A payload of the wrong size for its type. */
  | 'malformed'
  /** DATA on a reliable link or RDATA/ACK/RESET on a plain one: the two ends disagree. */
  | 'mode_mismatch'
  | 'unknown_type';

export type LinkDrops = Record<LinkDropReason, number>;

export interface LinkCounters {
  /** Payload frames sent for the first time. */
  sent: number;
  retransmitted: number;
  delivered: number;
  acks_sent: number;
  acks_received: number;
  resets_sent: number;
  resets_received: number;
}

/** RESET flag: the sender has not synchronised to our epoch (it has just started), announce it. */
export const RESET_FLAG_RESTART = 0x01;

const SEQ_MASK = 0xffff;
const HALF_SEQ = 0x8000;
const NONCE_HISTORY = 8;
const MAX_WINDOW = 1024;
const MAX_BACKOFF_SHIFT = 3;

const defaultClock: LinkClock = { now: () => performance.now() };

function defaultRandom32(): number {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0]!;
}

function newDrops(): LinkDrops {
  return {
    duplicate: 0,
    out_of_window: 0,
    unsynced: 0,
    stale_ack: 0,
    stale_reset: 0,
    malformed: 0,
    mode_mismatch: 0,
    unknown_type: 0,
  };
}

function newCounters(): LinkCounters {
  return {
    sent: 0,
    retransmitted: 0,
    delivered: 0,
    acks_sent: 0,
    acks_received: 0,
    resets_sent: 0,
    resets_received: 0,
  };
}

function intOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < min || v > max) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `serial link ${name} must be in ${min}..${max}, got ${v}`,
    );
  }
  return v;
}

function checkPayload(payload: Uint8Array, max: number): void {
  if (payload.length > max) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `serial payload of ${payload.length} bytes exceeds the ${max}-byte limit`,
    );
  }
}

function closedError(): KeyhopError {
  return new KeyhopError(ErrorCodes.CONNECTION_CLOSED, 'serial link is closed');
}

/** Reliability off: DATA frames, no acknowledgements, nothing retransmitted. */
export class PlainLink implements SerialLink {
  readonly drops: LinkDrops = newDrops();
  readonly counters: LinkCounters = newCounters();
  private readonly maxPayloadBytes: number;
  private seq = 0;
  private closed = false;

  constructor(private readonly options: SerialLinkOptions) {
    this.maxPayloadBytes = intOption(
      'maxPayloadBytes',
      options.maxPayloadBytes,
      DEFAULT_MAX_PAYLOAD_BYTES,
      0,
      MAX_PAYLOAD_BYTES_LIMIT,
    );
  }

  start(): void {}

  write(payload: Uint8Array): void {
    if (this.closed) throw closedError();
    checkPayload(payload, this.maxPayloadBytes);
    const wire = encodeFrame({ type: FrameType.DATA, seq: this.seq, payload }, this.maxPayloadBytes);
    this.seq = (this.seq + 1) & SEQ_MASK;
    this.counters.sent++;
    this.options.send(wire);
  }

  onFrame(frame: SerialFrame): void {
    if (this.closed) return;
    if (frame.type === FrameType.DATA) {
      this.counters.delivered++;
      this.options.deliver(frame.payload);
    } else if (frame.type <= FrameType.RDATA) {
      this.drops.mode_mismatch++;
    } else {
      this.drops.unknown_type++;
    }
  }

  tick(): void {}

  get nextDeadline(): number | undefined {
    return undefined;
  }

  close(): void {
    this.closed = true;
  }
}

/** Sending side: idle until start(); resetting until the peer acknowledges RESET; open; failed; closed. */
export type ReliableLinkState = 'idle' | 'resetting' | 'open' | 'failed' | 'closed';

interface InFlight {
  payload: Uint8Array;
  wire: Uint8Array;
}

/**
 * Reliability on. Sender: RDATA frames numbered from a random start, at most `window` of them
 * unacknowledged. One timer covers the oldest; when it expires that frame alone is sent again,
 * with the timeout doubling (up to 8×) per retry, and after `maxRetries` retransmissions without
 * progress the link fails. An ACK that advances but stops short of what was in flight at the
 * timeout (a partial ACK) resends the new oldest frame at once: it was lost too. Receiver:
 * delivers in order, buffers up to `window − 1` frames that arrive ahead of a gap, drops
 * duplicates, and answers every RDATA with a cumulative ACK.
 *
 * Each sending epoch has a random nonce. RESET announces it with the oldest sequence number the
 * sender may still send; the receiver adopts that number and answers RESET_ACK. A RESET of the
 * current epoch is only answered and one of an older epoch ignored, so repeated or re-announced
 * RESETs never rewind the receiver. A RESET flagged RESTART (its sender has just started and has
 * not heard our RESET) makes an open sender announce its current epoch again, same nonce, same
 * numbers: nothing is renumbered, so nothing is delivered twice.
 */
export class ReliableLink implements SerialLink {
  readonly drops: LinkDrops = newDrops();
  readonly counters: LinkCounters = newCounters();
  readonly window: number;
  private readonly maxPayloadBytes: number;
  private readonly retransmitMs: number;
  private readonly byteTimeMs: number;
  private readonly maxRetries: number;
  private readonly maxQueued: number;
  private readonly clock: LinkClock;
  private readonly random32: () => number;

  // Sending side.
  private sendState: ReliableLinkState = 'idle';
  private nonce = 0;
  private hasNonce = false;
  /** Sequence number of inFlight[0], or of the next frame when nothing is in flight. */
  private base = 0;
  private nextSeq = 0;
  private inFlight: InFlight[] = [];
  private inFlightBytes = 0;
  private queue: Uint8Array[] = [];
  private deadline: number | undefined;
  private retries = 0;
  /** nextSeq when the oldest frame last timed out: ACKs short of it are partial. */
  private recoverTo: number | undefined;
  /** seq of the RESET being retransmitted while resetting. */
  private resetSeq = 0;

  // Receiving side.
  private synced = false;
  private expected = 0;
  /** Nonces of the peer's epochs, newest last. */
  private readonly peerNonces: number[] = [];
  private readonly reorder = new Map<number, Uint8Array>();

  constructor(private readonly options: ReliableLinkOptions) {
    this.maxPayloadBytes = intOption(
      'maxPayloadBytes',
      options.maxPayloadBytes,
      DEFAULT_MAX_PAYLOAD_BYTES,
      0,
      MAX_PAYLOAD_BYTES_LIMIT,
    );
    this.window = Math.floor(intOption('window', options.window, 8, 1, MAX_WINDOW));
    this.retransmitMs = intOption('retransmitMs', options.retransmitMs, 1000, 1, 3_600_000);
    this.byteTimeMs = intOption('byteTimeMs', options.byteTimeMs, 0, 0, 1000);
    this.maxRetries = Math.floor(intOption('maxRetries', options.maxRetries, 8, 0, 1000));
    this.maxQueued = Math.floor(intOption('maxQueued', options.maxQueued, 256, 0, 1_000_000));
    this.clock = options.clock ?? defaultClock;
    this.random32 = options.random32 ?? defaultRandom32;
  }

  get state(): ReliableLinkState {
    return this.sendState;
  }

  /** RDATA frames sent and not yet acknowledged. */
  get inFlightCount(): number {
    return this.inFlight.length;
  }

  /** Payloads waiting for a window slot (or for the link to open). */
  get queued(): number {
    return this.queue.length;
  }

  /** Whether the peer's RESET has been received, so its RDATA can be accepted. */
  get receiving(): boolean {
    return this.synced;
  }

  get nextDeadline(): number | undefined {
    return this.deadline;
  }

  start(): void {
    if (this.sendState === 'idle') this.newEpoch();
  }

  write(payload: Uint8Array): void {
    if (this.sendState === 'closed') throw closedError();
    checkPayload(payload, this.maxPayloadBytes);
    if (this.queue.length >= this.maxQueued) {
      throw new KeyhopError(
        ErrorCodes.SEND_FAILED,
        `serial link send queue is full (${this.maxQueued} payloads waiting)`,
      );
    }
    this.queue.push(payload);
    // After a failure the next write tries again, in a new epoch.
    if (this.sendState === 'failed') this.newEpoch();
    else this.pump();
  }

  onFrame(frame: SerialFrame): void {
    if (this.sendState === 'closed') return;
    switch (frame.type) {
      case FrameType.RDATA:
        this.onData(frame.seq, frame.payload);
        return;
      case FrameType.ACK:
        if (frame.payload.length !== 0) this.drops.malformed++;
        else this.onAck(frame.seq);
        return;
      case FrameType.RESET:
        this.onReset(frame.seq, frame.payload);
        return;
      case FrameType.RESET_ACK:
        this.onResetAck(frame.seq, frame.payload);
        return;
      case FrameType.DATA:
        this.drops.mode_mismatch++;
        return;
      default:
        this.drops.unknown_type++;
    }
  }

  tick(now: number = this.clock.now()): void {
    if (this.deadline === undefined || now < this.deadline) return;
    if (this.sendState === 'resetting') {
      if (this.retries >= this.maxRetries) {
        this.fail('no_reset_ack', `no RESET_ACK after ${this.retries + 1} RESETs`);
        return;
      }
      this.retries++;
      this.sendReset();
      this.deadline = now + this.timeout();
    } else if (this.sendState === 'open' && this.inFlight.length > 0) {
      if (this.retries >= this.maxRetries) {
        this.fail('no_ack', `frame ${this.base} unacknowledged after ${this.retries} retransmissions`);
        return;
      }
      this.retries++;
      this.resend(this.inFlight[0]!);
      this.recoverTo = this.nextSeq;
      this.deadline = now + this.timeout();
    } else {
      this.deadline = undefined;
    }
  }

  close(): void {
    this.sendState = 'closed';
    this.inFlight = [];
    this.inFlightBytes = 0;
    this.queue = [];
    this.deadline = undefined;
    this.reorder.clear();
  }

  // --- sending ---

  /** A new epoch: fresh nonce and numbering. Only ever with nothing in flight. */
  private newEpoch(): void {
    let nonce = this.random32() >>> 0;
    if (this.hasNonce && nonce === this.nonce) nonce = (nonce + 1) >>> 0;
    this.nonce = nonce;
    this.hasNonce = true;
    this.base = this.nextSeq = this.random32() & SEQ_MASK;
    this.recoverTo = undefined;
    this.announce();
  }

  /** Sends RESET for the current epoch and waits for RESET_ACK; in-flight frames are kept. */
  private announce(): void {
    this.sendState = 'resetting';
    this.resetSeq = this.base;
    this.retries = 0;
    this.sendReset();
    this.deadline = this.clock.now() + this.timeout();
  }

  private sendReset(): void {
    const payload = new Uint8Array(5);
    new DataView(payload.buffer).setUint32(0, this.nonce);
    // Computed per transmission: once the peer's RESET has arrived there is no need to ask for it.
    payload[4] = this.synced ? 0 : RESET_FLAG_RESTART;
    this.counters.resets_sent++;
    this.options.send(encodeFrame({ type: FrameType.RESET, seq: this.resetSeq, payload }));
  }

  private pump(): void {
    if (this.sendState !== 'open') return;
    while (this.inFlight.length < this.window && this.queue.length > 0) {
      const payload = this.queue.shift()!;
      const wire = encodeFrame({ type: FrameType.RDATA, seq: this.nextSeq, payload }, this.maxPayloadBytes);
      this.nextSeq = (this.nextSeq + 1) & SEQ_MASK;
      this.inFlight.push({ payload, wire });
      this.inFlightBytes += wire.length;
      this.counters.sent++;
      if (this.deadline === undefined) {
        this.retries = 0;
        this.deadline = this.clock.now() + this.timeout();
      }
      this.options.send(wire);
    }
  }

  private resend(f: InFlight): void {
    this.counters.retransmitted++;
    this.options.send(f.wire);
  }

  private timeout(): number {
    const base = this.retransmitMs + this.byteTimeMs * this.inFlightBytes;
    return base * 2 ** Math.min(this.retries, MAX_BACKOFF_SHIFT);
  }

  private onAck(ack: number): void {
    this.counters.acks_received++;
    if (this.sendState !== 'open') {
      this.drops.stale_ack++;
      return;
    }
    const k = (ack - this.base) & SEQ_MASK;
    if (k === 0) return; // Nothing new: a duplicate ACK, or one for a frame still missing.
    if (k > this.inFlight.length) {
      this.drops.stale_ack++;
      return;
    }
    for (const f of this.inFlight.splice(0, k)) this.inFlightBytes -= f.wire.length;
    this.base = ack;
    this.retries = 0;
    this.deadline = this.inFlight.length > 0 ? this.clock.now() + this.timeout() : undefined;
    if (this.recoverTo !== undefined) {
      const left = (this.recoverTo - this.base) & SEQ_MASK;
      if (left === 0 || left >= HALF_SEQ || this.inFlight.length === 0) this.recoverTo = undefined;
      else this.resend(this.inFlight[0]!);
    }
    this.pump();
  }

  private onResetAck(seq: number, payload: Uint8Array): void {
    if (payload.length !== 4) {
      this.drops.malformed++;
      return;
    }
    const nonce = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
    if (this.sendState !== 'resetting' || nonce !== this.nonce || seq !== this.resetSeq) {
      this.drops.stale_reset++;
      return;
    }
    this.sendState = 'open';
    this.retries = 0;
    this.recoverTo = undefined;
    this.deadline = undefined;
    // After a re-announcement the peer may have dropped these as unsynced: send them again.
    for (const f of this.inFlight) this.resend(f);
    if (this.inFlight.length > 0) this.deadline = this.clock.now() + this.timeout();
    this.pump();
  }

  private fail(reason: LinkFailureReason, message: string): void {
    const lost = [...this.inFlight.map((f) => f.payload), ...this.queue];
    this.sendState = 'failed';
    this.inFlight = [];
    this.inFlightBytes = 0;
    this.queue = [];
    this.deadline = undefined;
    this.recoverTo = undefined;
    this.options.onFailure?.({ reason, message: `serial link failed: ${message}`, lost });
  }

  // --- receiving ---

  private onData(seq: number, payload: Uint8Array): void {
    if (!this.synced) {
      this.drops.unsynced++;
      return;
    }
    const d = (seq - this.expected) & SEQ_MASK;
    if (d === 0) {
      this.expected = (this.expected + 1) & SEQ_MASK;
      this.counters.delivered++;
      this.options.deliver(payload);
      for (let next = this.reorder.get(this.expected); next; next = this.reorder.get(this.expected)) {
        this.reorder.delete(this.expected);
        this.expected = (this.expected + 1) & SEQ_MASK;
        this.counters.delivered++;
        this.options.deliver(next);
      }
    } else if (d < this.window) {
      if (this.reorder.has(seq)) this.drops.duplicate++;
      else this.reorder.set(seq, payload);
    } else if (d >= HALF_SEQ) {
      this.drops.duplicate++;
    } else {
      this.drops.out_of_window++;
    }
    this.counters.acks_sent++;
    this.options.send(encodeFrame({ type: FrameType.ACK, seq: this.expected, payload: new Uint8Array(0) }));
  }

  private onReset(seq: number, payload: Uint8Array): void {
    if (payload.length !== 5) {
      this.drops.malformed++;
      return;
    }
    const nonce = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
    const restart = (payload[4]! & RESET_FLAG_RESTART) !== 0;
    const known = this.peerNonces.indexOf(nonce);
    if (known >= 0 && known !== this.peerNonces.length - 1) {
      // A delayed copy from an epoch the peer has since replaced.
      this.drops.stale_reset++;
      return;
    }
    this.counters.resets_received++;
    if (known < 0) {
      this.peerNonces.push(nonce);
      if (this.peerNonces.length > NONCE_HISTORY) this.peerNonces.shift();
      this.synced = true;
      this.expected = seq;
      this.reorder.clear();
    }
    const ack = new Uint8Array(4);
    ack.set(payload.subarray(0, 4));
    this.options.send(encodeFrame({ type: FrameType.RESET_ACK, seq, payload: ack }));
    // The peer has not heard our RESET (it has just started, or ours was lost): announce again.
    // A copy of its current epoch's RESET was already answered above and asks nothing new.
    // While resetting, our RESET is already on its way or will be retransmitted.
    if (restart && known < 0 && this.sendState === 'open') this.announce();
  }
}

/** A plain or reliable link, as configured. */
export function createSerialLink(
  options: ReliableLinkOptions & { reliable: boolean },
): PlainLink | ReliableLink {
  return options.reliable ? new ReliableLink(options) : new PlainLink(options);
}
