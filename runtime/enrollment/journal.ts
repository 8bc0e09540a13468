import { type FileHandle, open, rename, stat, truncate } from 'node:fs/promises';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';

/**
 * An append-only journal of JSON records, one per line, durable before `append` resolves. Appends
 * made while a write is in flight are written together and made durable by one fdatasync (group
 * commit), so a thousand records a second cost a few dozen syncs, not a thousand. A torn last line
 * (a crash mid-write) is cut off when the journal is opened; any other bad line is
 * KEY_STORE_CORRUPT, naming the line.
 */
export class Journal<R> {
  private pending: { line: string; done: (e?: unknown) => void }[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    private handle: FileHandle,
    private readonly maxLine: number,
  ) {}

  /**
   * Opens (creating, mode 0600) the journal and returns it with the records it holds, in order.
   * `check` validates each parsed record (throw to reject it).
   */
  static async open<R>(
    path: string,
    check: (value: unknown, line: number) => R,
    options: { maxLine?: number; maxBytes?: number } = {},
  ): Promise<{ journal: Journal<R>; records: R[] }> {
    const maxLine = options.maxLine ?? 64 * 1024;
    const maxBytes = options.maxBytes ?? 1024 * 1024 * 1024;
    let handle: FileHandle;
    try {
      handle = await open(path, 'a+', 0o600);
    } catch (e) {
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `journal ${path}: ${describeError(e)}`, { cause: e });
    }
    try {
      const size = (await handle.stat()).size;
      if (size > maxBytes) {
        throw new KeyhopError(
          ErrorCodes.KEY_STORE_CORRUPT,
          `journal ${path} is ${size} bytes, more than ${maxBytes}`,
        );
      }
      const text = (await handle.readFile()).toString('utf8');
      const records: R[] = [];
      let start = 0;
      let line = 0;
      while (start < text.length) {
        const nl = text.indexOf('\n', start);
        if (nl < 0) {
          // A line without its newline was being written when the process stopped: never durable.
          await truncate(path, Buffer.byteLength(text.slice(0, start)));
          break;
        }
        line++;
        const raw = text.slice(start, nl);
        start = nl + 1;
        if (raw.length > maxLine) {
          throw new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `journal ${path} line ${line} is too long`);
        }
        let value: unknown;
        try {
          value = JSON.parse(raw);
        } catch {
          throw new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `journal ${path} line ${line} is not JSON`);
        }
        try {
          records.push(check(value, line));
        } catch (e) {
          throw new KeyhopError(
            ErrorCodes.KEY_STORE_CORRUPT,
            `journal ${path} line ${line}: ${describeError(e)}`,
            { cause: e },
          );
        }
      }
      return { journal: new Journal<R>(path, handle, maxLine), records };
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e;
    }
  }

  /** Resolves once the record is on disk (fdatasync). */
  append(record: R): Promise<void> {
    if (this.closed)
      return Promise.reject(new KeyhopError(ErrorCodes.KEY_STORE_IO, `journal ${this.path} is closed`));
    const line = JSON.stringify(record);
    if (line.length > this.maxLine) {
      return Promise.reject(
        new KeyhopError(ErrorCodes.ENCODE_LIMIT, `journal record of ${line.length} bytes`),
      );
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ line, done: (e) => (e === undefined ? resolve() : reject(e)) });
      this.flushing ??= this.flush();
    });
  }

  private async flush(): Promise<void> {
    // Let every append of this tick join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        await this.handle.write(`${batch.map((b) => b.line).join('\n')}\n`);
        await this.handle.datasync();
        for (const b of batch) b.done();
      } catch (e) {
        const err = new KeyhopError(ErrorCodes.KEY_STORE_IO, `journal ${this.path}: ${describeError(e)}`, {
          cause: e,
        });
        for (const b of batch) b.done(err);
      }
    }
    this.flushing = undefined;
  }

  /**
   * Replaces the journal by `records` (a snapshot of the state): written to a new file, synced and
   * renamed over the old one, so a crash leaves one or the other.
   */
  async compact(records: readonly R[]): Promise<void> {
    await this.flushing;
    const tmp = `${this.path}.compact`;
    const h = await open(tmp, 'w', 0o600);
    try {
      if (records.length > 0) await h.write(`${records.map((r) => JSON.stringify(r)).join('\n')}\n`);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, this.path);
    await this.handle.close();
    this.handle = await open(this.path, 'a', 0o600);
  }

  async size(): Promise<number> {
    return (await stat(this.path)).size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    await this.handle.close();
  }
}
