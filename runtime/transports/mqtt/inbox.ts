import type { DataFrame } from './frame.js';
import { streamKey } from './frame.js';

export interface InboxLimits {
  /** Streams (sender mailbox + stream id) remembered; the least recently used is forgotten. */
  maxStreams: number;
  /** Messages held per stream while an earlier one is missing. */
  maxHeldPerStream: number;
  /** Bytes held across all streams while earlier messages are missing. */
  maxHeldBytes: number;
}

export const DEFAULT_INBOX_LIMITS: InboxLimits = {
  maxStreams: 4096,
  maxHeldPerStream: 1024,
  maxHeldBytes: 16 * 1024 * 1024,
};

export interface InboxCursor {
  from: string;
  stream: Uint8Array;
  /** The next seq this node will deliver. */
  next: number;
}

export interface InboxResult {
  /** The stream's key (sender mailbox and stream id), for the caller's own bookkeeping. */
  key: string;
  /** Routing message bytes to deliver now, in order. */
  deliver: Uint8Array[];
  /** The cumulative acknowledgement to send (every seq up to it was delivered), if any. */
  ack: number | undefined;
  duplicate: boolean;
  /** Messages the sender gave up on (its base moved past them) that never arrived here. */
  skipped: number;
  /** Held until the messages before it arrive. */
  held: boolean;
  /** Not held: the stream or the node holds as much as allowed. The sender sends it again. */
  refused: boolean;
}

interface InboxStream {
  readonly from: string;
  readonly stream: Uint8Array;
  next: number;
  readonly held: Map<number, Uint8Array>;
}

/**
 * The receiving half of keyhop's store-and-forward streams: each message delivered once and in
 * order whatever the broker does (duplicates after a reconnect or failover, redelivery from a
 * stale store, reordering), with bounded memory. Pure logic: the transport does the I/O.
 */
export class Inbox {
  private readonly limits: InboxLimits;
  /** Least recently used first. */
  private readonly streams = new Map<string, InboxStream>();
  private heldBytes = 0;
  /** Streams whose cursor moved since `takeDirty`. */
  private readonly dirty = new Set<string>();

  constructor(limits: Partial<InboxLimits> = {}) {
    this.limits = { ...DEFAULT_INBOX_LIMITS, ...limits };
  }

  accept(from: string, frame: DataFrame): InboxResult {
    const key = `${from}/${streamKey(frame.stream)}`;
    const result: InboxResult = {
      key,
      deliver: [],
      ack: undefined,
      duplicate: false,
      skipped: 0,
      held: false,
      refused: false,
    };
    let s = this.streams.get(key);
    if (s === undefined) {
      // No state (first contact, or forgotten): everything before `base` was settled with the
      // sender already, so start there.
      s = { from, stream: frame.stream.slice(), next: frame.base, held: new Map() };
      this.add(key, s);
    } else {
      this.streams.delete(key);
      this.streams.set(key, s);
    }
    if (frame.base > s.next) {
      // The sender dropped (expired) or had acknowledged what lies before `base`: deliver what
      // is held below it, count the rest, and go on from `base`.
      // Walks the held messages, never the gap itself: `base` comes from the wire.
      const below = [...s.held.keys()].filter((seq) => seq < frame.base).sort((a, b) => a - b);
      for (const seq of below) result.deliver.push(this.take(s, seq)!);
      result.skipped = frame.base - s.next - below.length;
      s.next = frame.base;
      this.dirty.add(key);
    }
    if (frame.seq < s.next || s.held.has(frame.seq)) {
      result.duplicate = true;
    } else if (frame.seq === s.next) {
      result.deliver.push(frame.body);
      s.next++;
      for (let body = this.take(s, s.next); body; body = this.take(s, s.next)) {
        result.deliver.push(body);
        s.next++;
      }
      this.dirty.add(key);
    } else if (
      s.held.size < this.limits.maxHeldPerStream &&
      this.heldBytes + frame.body.length <= this.limits.maxHeldBytes
    ) {
      // Copied: the payload's buffer belongs to the MQTT client.
      s.held.set(frame.seq, frame.body.slice());
      this.heldBytes += frame.body.length;
      result.held = true;
    } else {
      result.refused = true;
    }
    if (result.deliver.length > 0 || result.duplicate || result.skipped > 0) result.ack = s.next - 1;
    return result;
  }

  private take(s: InboxStream, seq: number): Uint8Array | undefined {
    const body = s.held.get(seq);
    if (body === undefined) return undefined;
    s.held.delete(seq);
    this.heldBytes -= body.length;
    return body;
  }

  private add(key: string, s: InboxStream): void {
    while (this.streams.size >= this.limits.maxStreams) {
      const oldest = this.streams.entries().next();
      if (oldest.done) break;
      this.forget(oldest.value[0], oldest.value[1]);
    }
    this.streams.set(key, s);
  }

  private forget(key: string, s: InboxStream): void {
    for (const b of s.held.values()) this.heldBytes -= b.length;
    this.streams.delete(key);
    this.dirty.delete(key);
  }

  /** Puts back cursors saved by an earlier run (held messages are not saved: senders resend). */
  restore(cursors: Iterable<InboxCursor>): void {
    for (const c of cursors) {
      const key = `${c.from}/${streamKey(c.stream)}`;
      const existing = this.streams.get(key);
      if (existing) this.forget(key, existing);
      this.add(key, { from: c.from, stream: c.stream.slice(), next: c.next, held: new Map() });
    }
  }

  /** The cursors that moved since the last call (what to persist). */
  takeDirty(): InboxCursor[] {
    const out: InboxCursor[] = [];
    for (const key of this.dirty) {
      const s = this.streams.get(key);
      if (s) out.push({ from: s.from, stream: s.stream, next: s.next });
    }
    this.dirty.clear();
    return out;
  }

  /** Every cursor (what a compacted state file keeps). */
  cursors(): InboxCursor[] {
    return [...this.streams.values()].map((s) => ({ from: s.from, stream: s.stream, next: s.next }));
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get held(): { messages: number; bytes: number } {
    let messages = 0;
    for (const s of this.streams.values()) messages += s.held.size;
    return { messages, bytes: this.heldBytes };
  }
}
