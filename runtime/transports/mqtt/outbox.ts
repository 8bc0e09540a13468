import { randomBytes } from 'node:crypto';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { MAX_SEQ, STREAM_ID_BYTES, streamKey } from './frame.js';
import type { LoggedMessage, LoggedStream, StateLog } from './state-log.js';

export interface OutboxLimits {
  /** Messages kept for all remote mailboxes together (default 100,000). */
  maxMessages: number;
  /** Their bytes (default 256 MiB). */
  maxBytes: number;
  /** A message not acknowledged after this long is given up and counted; 0 = never (default). */
  maxAgeMs: number;
  /** Messages published and not yet acknowledged, per remote mailbox (default 1,000). */
  window: number;
  /** Their bytes (default 4 MiB). */
  windowBytes: number;
}

export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = {
  maxMessages: 100_000,
  maxBytes: 256 * 1024 * 1024,
  maxAgeMs: 0,
  window: 1000,
  windowBytes: 4 * 1024 * 1024,
};

/** One kept message. `bytes` is dropped (the file has them) while it waits outside the window. */
export interface OutboxEntry extends LoggedMessage {
  bytes: Uint8Array | undefined;
}

/** The sending half of one stream: this mailbox's messages to one remote mailbox, in order. */
export class SendStream {
  readonly key: string;
  /** Kept messages, oldest first; the first `published` were published and wait for their ack. */
  readonly entries: OutboxEntry[] = [];
  published = 0;
  publishedBytes = 0;
  /** When the oldest published message was last (re)published, or progress was last made. */
  lastProgress = 0;
  retransmitMs: number;

  constructor(
    readonly remote: string,
    readonly id: Uint8Array,
    public nextSeq: number,
    retransmitMs: number,
  ) {
    this.key = streamKey(id);
    this.retransmitMs = retransmitMs;
  }

  /** The oldest seq still kept (or the next one when none is). */
  get base(): number {
    return this.entries[0]?.seq ?? this.nextSeq;
  }
}

export interface OutboxStats {
  messages: number;
  bytes: number;
  streams: number;
}

/**
 * The outbox of one MQTT connection: every message sent to a remote mailbox is kept, in order,
 * until that mailbox acknowledges it (end to end, not the broker's PUBACK, which some brokers
 * give and then drop), within size and age limits. With a state log it survives restarts.
 */
export class Outbox {
  private readonly byRemote = new Map<string, SendStream>();
  private readonly byId = new Map<string, SendStream>();
  private count = 0;
  private bytes = 0;

  constructor(
    readonly limits: OutboxLimits,
    private readonly retransmitMs: number,
    private readonly log: StateLog | undefined,
  ) {}

  /** Puts back the streams a state log kept. */
  restore(streams: LoggedStream[]): void {
    for (const ls of streams) {
      if (ls.messages.length === 0 && this.byRemote.has(ls.remote)) continue;
      const s = new SendStream(ls.remote, ls.id, ls.nextSeq, this.retransmitMs);
      for (const m of ls.messages) {
        s.entries.push({ ...m, bytes: undefined });
        this.count++;
        this.bytes += m.size;
      }
      const previous = this.byRemote.get(ls.remote);
      if (previous) this.byId.delete(previous.key);
      this.byRemote.set(ls.remote, s);
      this.byId.set(s.key, s);
    }
  }

  streamTo(remote: string): SendStream {
    let s = this.byRemote.get(remote);
    if (s && s.nextSeq > MAX_SEQ && s.entries.length === 0) {
      // 4 billion messages later: a new stream (never reuse a seq under one id).
      this.byId.delete(s.key);
      s = undefined;
    }
    if (s === undefined) {
      s = new SendStream(remote, randomBytes(STREAM_ID_BYTES), 1, this.retransmitMs);
      this.byRemote.set(remote, s);
      this.byId.set(s.key, s);
      this.log?.stream(s.id, remote, s.nextSeq);
    }
    return s;
  }

  /** Keeps `bytes` for `remote`; OUTBOX_FULL when a limit would be passed. */
  push(remote: string, bytes: Uint8Array, now: number): { stream: SendStream; entry: OutboxEntry } {
    const { maxMessages, maxBytes } = this.limits;
    if (this.count + 1 > maxMessages || this.bytes + bytes.length > maxBytes) {
      throw new KeyhopError(
        ErrorCodes.OUTBOX_FULL,
        `MQTT outbox full (${this.count} messages, ${this.bytes} bytes; limits ${maxMessages} and ${maxBytes}): ` +
          `the message to ${remote} was not taken`,
      );
    }
    const stream = this.streamTo(remote);
    if (stream.nextSeq > MAX_SEQ) {
      throw new KeyhopError(
        ErrorCodes.OUTBOX_FULL,
        `stream to ${remote} used every sequence number; it starts anew once all are acknowledged`,
      );
    }
    const entry: OutboxEntry = { seq: stream.nextSeq++, at: now, offset: -1, size: bytes.length, bytes };
    stream.entries.push(entry);
    this.count++;
    this.bytes += bytes.length;
    this.log?.message(stream.id, entry, bytes);
    return { stream, entry };
  }

  /** An acknowledgement for the stream with `id`: drops what it covers; how many. */
  ack(id: Uint8Array, acked: number, now: number): { stream: SendStream; removed: number } | undefined {
    const stream = this.byId.get(streamKey(id));
    if (stream === undefined || acked < stream.base) return stream && { stream, removed: 0 };
    // An ack beyond what was sent is a confused or hostile peer: cover only what was published.
    const removed = this.removeUpTo(stream, Math.min(acked, stream.nextSeq - 1));
    if (removed > 0) {
      stream.lastProgress = now;
      stream.retransmitMs = this.retransmitMs;
      this.log?.acked(stream.id, stream.base - 1);
    }
    return { stream, removed };
  }

  /** Gives up messages older than maxAgeMs; per stream, how many. */
  expire(now: number): { stream: SendStream; expired: number }[] {
    const maxAge = this.limits.maxAgeMs;
    if (maxAge <= 0) return [];
    const out: { stream: SendStream; expired: number }[] = [];
    for (const stream of this.byRemote.values()) {
      let last = 0;
      for (const e of stream.entries) {
        if (now - e.at < maxAge) break;
        last = e.seq;
      }
      if (last === 0) continue;
      const expired = this.removeUpTo(stream, last);
      this.log?.acked(stream.id, last);
      out.push({ stream, expired });
    }
    return out;
  }

  private removeUpTo(stream: SendStream, seq: number): number {
    let n = 0;
    while (n < stream.entries.length && stream.entries[n]!.seq <= seq) n++;
    if (n === 0) return 0;
    const gone = stream.entries.splice(0, n);
    for (const e of gone) this.bytes -= e.size;
    this.count -= n;
    const publishedGone = Math.min(n, stream.published);
    for (let i = 0; i < publishedGone; i++) stream.publishedBytes -= gone[i]!.size;
    stream.published -= publishedGone;
    return n;
  }

  /** The entries of `stream` that the window lets be published now (not published yet). */
  publishable(stream: SendStream): OutboxEntry[] {
    const { window, windowBytes } = this.limits;
    const out: OutboxEntry[] = [];
    let bytes = stream.publishedBytes;
    for (let i = stream.published; i < stream.entries.length && stream.published + out.length < window; i++) {
      const e = stream.entries[i]!;
      // Always at least one, however big: a message larger than the window still goes.
      if (out.length + stream.published > 0 && bytes + e.size > windowBytes) break;
      bytes += e.size;
      out.push(e);
    }
    return out;
  }

  markPublished(stream: SendStream, entries: OutboxEntry[], now: number): void {
    if (stream.published === 0) stream.lastProgress = now;
    stream.published += entries.length;
    for (const e of entries) stream.publishedBytes += e.size;
  }

  streams(): SendStream[] {
    return [...this.byRemote.values()];
  }

  /** What a compacted state log keeps. */
  live(): LoggedStream[] {
    return this.streams().map((s) => ({
      id: s.id,
      remote: s.remote,
      nextSeq: s.nextSeq,
      messages: s.entries,
    }));
  }

  stats(): OutboxStats {
    return { messages: this.count, bytes: this.bytes, streams: this.byRemote.size };
  }
}
