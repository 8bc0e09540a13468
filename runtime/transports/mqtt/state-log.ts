import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import { crc32 } from '../serial/crc32.js';
import { STREAM_ID_BYTES, streamKey } from './frame.js';

/**
 * The durable state of one MQTT connection (docs/protocols/mqtt.md, "State file"): an
 * append-only log of records
 *
 *   u32 BE length of (type ‖ body) | u8 type | body | u32 BE CRC-32 of (type ‖ body)
 *
 * after an 8-byte header `KHMQ` 00 00 00 01. A record cut short or failing its CRC ends the log
 * (a crash mid-write); the file is truncated there on open.
 */
const MAGIC = Uint8Array.from([0x4b, 0x48, 0x4d, 0x51, 0, 0, 0, 1]);
const RecordType = { STREAM: 1, MESSAGE: 2, ACKED: 3, CURSOR: 4 } as const;
/** Largest record body: a routing message of the largest size plus its fields. */
const MAX_RECORD_BYTES = MAX_MESSAGE_BYTES + 1024;
const READ_CHUNK = 1024 * 1024;

export interface LoggedMessage {
  seq: number;
  at: number;
  /** Where the message's bytes are in the file (-1 until written), and how many. */
  offset: number;
  size: number;
}

interface PendingRecord {
  record: Uint8Array;
  /** A message whose offset is known once the record is written. */
  message?: LoggedMessage;
  bodyAt?: number;
}

export interface LoggedStream {
  id: Uint8Array;
  remote: string;
  nextSeq: number;
  messages: LoggedMessage[];
}

export interface LoggedCursor {
  from: string;
  stream: Uint8Array;
  next: number;
}

export interface Replayed {
  streams: LoggedStream[];
  cursors: LoggedCursor[];
  /** Bytes cut from the end (a record a crash left incomplete or corrupt). */
  truncatedBytes: number;
}

export interface StateLogOptions {
  /** fsync after every written batch (default: only every `fsyncIntervalMs`). */
  fsyncEveryBatch?: boolean;
  /** fsync at most this often when not after every batch; 0 = never. Default 200 ms. */
  fsyncIntervalMs?: number;
  log: Logger;
}

export class StateLog {
  private pending: PendingRecord[] = [];
  private compacting = false;
  private pendingBytes = 0;
  private writtenSize: number;
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  private waiters: (() => void)[] = [];
  private lastSync = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private failure: unknown;

  private constructor(
    private readonly path: string,
    private fd: FileHandle,
    private size: number,
    private readonly options: StateLogOptions,
  ) {
    this.writtenSize = size;
  }

  /** Opens (creating) the log at `path` and reads back what it holds. */
  static async open(path: string, options: StateLogOptions): Promise<{ log: StateLog; replayed: Replayed }> {
    let fd: FileHandle;
    try {
      fd = await open(path, 'a+', 0o600);
    } catch (e) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_IO,
        `cannot open MQTT state file ${path}: ${describeError(e)}`,
        {
          cause: e,
        },
      );
    }
    try {
      const { size } = await fd.stat();
      let replayed: Replayed;
      let end: number;
      if (size === 0) {
        await fd.write(MAGIC, 0, MAGIC.length, 0);
        replayed = { streams: [], cursors: [], truncatedBytes: 0 };
        end = MAGIC.length;
      } else {
        ({ replayed, end } = await replay(fd, size, path));
        if (end < size) {
          await fd.truncate(end);
          options.log.warn({ path, bytes: size - end }, 'MQTT state file ended in an incomplete record: cut');
        }
      }
      // 'a+' appends whatever position is asked; reopen for positioned writes.
      await fd.close();
      fd = await open(path, 'r+');
      return { log: new StateLog(path, fd, end, options), replayed };
    } catch (e) {
      await fd.close().catch(() => undefined);
      throw e;
    }
  }

  get bytes(): number {
    return this.size;
  }

  stream(id: Uint8Array, remote: string, nextSeq: number): void {
    this.append(RecordType.STREAM, [namedBody(id, nextSeq, remote)]);
  }

  /** Appends a message; `m.offset` is set when its record is written. */
  message(id: Uint8Array, m: LoggedMessage, bytes: Uint8Array): void {
    const head = new Uint8Array(STREAM_ID_BYTES + 4 + 8);
    head.set(id, 0);
    const v = new DataView(head.buffer);
    v.setUint32(STREAM_ID_BYTES, m.seq, false);
    v.setFloat64(STREAM_ID_BYTES + 4, m.at, false);
    m.offset = -1;
    this.append(RecordType.MESSAGE, [head, bytes], m, 5 + head.length);
  }

  acked(id: Uint8Array, acked: number): void {
    const body = new Uint8Array(STREAM_ID_BYTES + 4);
    body.set(id, 0);
    new DataView(body.buffer).setUint32(STREAM_ID_BYTES, acked, false);
    this.append(RecordType.ACKED, [body]);
  }

  cursor(from: string, stream: Uint8Array, next: number): void {
    this.append(RecordType.CURSOR, [namedBody(stream, next, from)]);
  }

  /** Appends a record, written with the next batch. */
  private append(type: number, parts: Uint8Array[], message?: LoggedMessage, bodyAt?: number): void {
    if (this.closed) throw new KeyhopError(ErrorCodes.KEY_STORE_IO, 'MQTT state file is closed');
    if (this.failure !== undefined) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_IO,
        `MQTT state file ${this.path}: ${describeError(this.failure)}`,
      );
    }
    const record = encodeRecord(type, parts);
    this.pending.push(message ? { record, message, bodyAt: bodyAt! } : { record });
    this.pendingBytes += record.length;
    this.size += record.length;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.compacting) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  /** Resolves when every record appended so far is in the file. */
  flush(): Promise<void> {
    if (this.pending.length === 0 && this.flushing === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      this.startWriting();
    });
  }

  private startWriting(): void {
    if (this.flushing === undefined && !this.compacting) this.flushing = this.writeLoop();
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const records = this.pending;
        const batch = Buffer.concat(
          records.map((r) => r.record),
          this.pendingBytes,
        );
        const waiters = this.waiters;
        this.pending = [];
        this.pendingBytes = 0;
        this.waiters = [];
        try {
          await this.fd.write(batch, 0, batch.length, this.writtenSize);
          let at = this.writtenSize;
          for (const r of records) {
            if (r.message) r.message.offset = at + r.bodyAt!;
            at += r.record.length;
          }
          this.writtenSize += batch.length;
          await this.maybeSync();
        } catch (e) {
          this.failure = e;
          this.options.log.error({ path: this.path, err: describeError(e) }, 'MQTT state file write failed');
        }
        for (const w of waiters) w();
      }
    } finally {
      this.flushing = undefined;
      if (this.waiters.length > 0) {
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
      }
    }
  }

  private async maybeSync(): Promise<void> {
    if (this.options.fsyncEveryBatch) {
      await this.fd.sync();
      return;
    }
    const interval = this.options.fsyncIntervalMs ?? 200;
    if (interval <= 0 || this.syncTimer) return;
    const wait = Math.max(0, this.lastSync + interval - Date.now());
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.lastSync = Date.now();
      if (!this.closed) this.fd.sync().catch(() => undefined);
    }, wait);
    this.syncTimer.unref();
  }

  /** Reads `size` bytes at `offset` (only of records already flushed). */
  async read(offset: number, size: number): Promise<Uint8Array> {
    const buf = Buffer.allocUnsafe(size);
    const { bytesRead } = await this.fd.read(buf, 0, size, offset);
    if (bytesRead !== size) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_CORRUPT,
        `MQTT state file ${this.path}: short read at ${offset}`,
      );
    }
    return buf;
  }

  /**
   * Rewrites the file with only `live` state (streams, the messages still kept, cursors), reading
   * the messages' bytes from the current file; their `offset`s are updated. Records appended
   * meanwhile wait and are written after it.
   */
  async compact(live: { streams: LoggedStream[]; cursors: LoggedCursor[] }): Promise<void> {
    await this.flush();
    this.compacting = true;
    const tmpPath = `${this.path}.compact`;
    const moved: [LoggedMessage, number][] = [];
    let out: FileHandle | undefined;
    try {
      out = await open(tmpPath, 'w', 0o600);
      const file = out;
      let pos = 0;
      const write = async (b: Uint8Array) => {
        await file.write(b, 0, b.length, pos);
        pos += b.length;
      };
      await write(MAGIC);
      for (const s of live.streams) {
        await write(encodeRecord(RecordType.STREAM, [namedBody(s.id, s.nextSeq, s.remote)]));
        for (const m of s.messages) {
          if (m.offset < 0) continue; // appended during compaction: written after it
          const head = new Uint8Array(STREAM_ID_BYTES + 12);
          head.set(s.id, 0);
          const v = new DataView(head.buffer);
          v.setUint32(STREAM_ID_BYTES, m.seq, false);
          v.setFloat64(STREAM_ID_BYTES + 4, m.at, false);
          const bytes = await this.read(m.offset, m.size);
          moved.push([m, pos + 5 + head.length]);
          await write(encodeRecord(RecordType.MESSAGE, [head, bytes]));
        }
      }
      for (const c of live.cursors) {
        await write(encodeRecord(RecordType.CURSOR, [namedBody(c.stream, c.next, c.from)]));
      }
      await file.sync();
      await file.close();
      out = undefined;
      await rename(tmpPath, this.path);
      await this.fd.close();
      this.fd = await open(this.path, 'r+');
      for (const [m, offset] of moved) m.offset = offset;
      this.writtenSize = pos;
      this.size = pos + this.pendingBytes;
    } catch (e) {
      await out?.close().catch(() => undefined);
      await unlink(tmpPath).catch(() => undefined);
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `compacting ${this.path}: ${describeError(e)}`, {
        cause: e,
      });
    } finally {
      this.compacting = false;
      if (this.pending.length > 0) this.scheduleFlush();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    await this.fd.sync().catch(() => undefined);
    await this.fd.close();
  }
}

function namedBody(id: Uint8Array, n: number, name: string): Uint8Array {
  const text = Buffer.from(name, 'utf8');
  const body = new Uint8Array(STREAM_ID_BYTES + 5 + text.length);
  body.set(id, 0);
  new DataView(body.buffer).setUint32(STREAM_ID_BYTES, n, false);
  body[STREAM_ID_BYTES + 4] = text.length;
  body.set(text, STREAM_ID_BYTES + 5);
  return body;
}

function encodeRecord(
  type: number,
  parts: Uint8Array[],
  bodyLength = parts.reduce((n, p) => n + p.length, 0),
): Uint8Array {
  const record = new Uint8Array(4 + 1 + bodyLength + 4);
  const v = new DataView(record.buffer);
  v.setUint32(0, 1 + bodyLength, false);
  record[4] = type;
  let at = 5;
  for (const p of parts) {
    record.set(p, at);
    at += p.length;
  }
  v.setUint32(at, crc32(record, 4, at), false);
  return record;
}

/** Reads every record; returns the state and where the last good record ends. */
async function replay(
  fd: FileHandle,
  size: number,
  path: string,
): Promise<{ replayed: Replayed; end: number }> {
  const head = Buffer.alloc(MAGIC.length);
  await fd.read(head, 0, MAGIC.length, 0);
  if (size < MAGIC.length || !head.equals(MAGIC)) {
    throw new KeyhopError(
      ErrorCodes.KEY_STORE_CORRUPT,
      `${path} is not a keyhop MQTT state file (or of another version)`,
    );
  }
  const streams = new Map<string, LoggedStream>();
  const cursors = new Map<string, LoggedCursor>();
  let buf = Buffer.alloc(0);
  let bufStart = MAGIC.length;
  let pos = MAGIC.length;
  const ensure = async (n: number): Promise<boolean> => {
    if (pos + n > size) return false;
    const have = bufStart + buf.length - pos;
    if (have >= n) return true;
    const keep = buf.subarray(pos - bufStart);
    const want = Math.max(n - keep.length, Math.min(READ_CHUNK, size - (bufStart + buf.length)));
    const more = Buffer.allocUnsafe(want);
    const { bytesRead } = await fd.read(more, 0, want, bufStart + buf.length);
    buf = Buffer.concat([keep, more.subarray(0, bytesRead)]);
    bufStart = pos;
    return bufStart + buf.length - pos >= n;
  };
  for (;;) {
    if (!(await ensure(4))) break;
    const length = buf.readUInt32BE(pos - bufStart);
    if (length < 1 || length > MAX_RECORD_BYTES) break;
    if (!(await ensure(4 + length + 4))) break;
    const at = pos - bufStart;
    const crc = buf.readUInt32BE(at + 4 + length);
    if (crc32(buf, at + 4, at + 4 + length) !== crc) break;
    const type = buf[at + 4]!;
    const body = buf.subarray(at + 5, at + 4 + length);
    if (!applyRecord(type, body, pos + 5, streams, cursors)) break;
    pos += 4 + length + 4;
  }
  return {
    replayed: { streams: [...streams.values()], cursors: [...cursors.values()], truncatedBytes: size - pos },
    end: pos,
  };
}

function applyRecord(
  type: number,
  body: Buffer,
  bodyOffset: number,
  streams: Map<string, LoggedStream>,
  cursors: Map<string, LoggedCursor>,
): boolean {
  if (body.length < STREAM_ID_BYTES + 4) return false;
  const id = new Uint8Array(body.subarray(0, STREAM_ID_BYTES));
  const key = streamKey(id);
  const n = body.readUInt32BE(STREAM_ID_BYTES);
  switch (type) {
    case RecordType.STREAM:
    case RecordType.CURSOR: {
      const nameLength = body[STREAM_ID_BYTES + 4];
      if (nameLength === undefined || body.length !== STREAM_ID_BYTES + 5 + nameLength) return false;
      const name = body.toString('utf8', STREAM_ID_BYTES + 5);
      if (type === RecordType.CURSOR) {
        cursors.set(`${name}/${key}`, { from: name, stream: id, next: n });
        return true;
      }
      const s = streams.get(key);
      if (s) s.nextSeq = Math.max(s.nextSeq, n);
      else streams.set(key, { id, remote: name, nextSeq: n, messages: [] });
      return true;
    }
    case RecordType.MESSAGE: {
      const s = streams.get(key);
      if (!s || body.length < STREAM_ID_BYTES + 12) return false;
      const headBytes = STREAM_ID_BYTES + 12;
      s.messages.push({
        seq: n,
        at: body.readDoubleBE(STREAM_ID_BYTES + 4),
        offset: bodyOffset + headBytes,
        size: body.length - headBytes,
      });
      s.nextSeq = Math.max(s.nextSeq, n + 1);
      return true;
    }
    case RecordType.ACKED: {
      const s = streams.get(key);
      if (!s) return false;
      let drop = 0;
      while (drop < s.messages.length && s.messages[drop]!.seq <= n) drop++;
      if (drop > 0) s.messages.splice(0, drop);
      s.nextSeq = Math.max(s.nextSeq, n + 1);
      return true;
    }
    default:
      return false;
  }
}
