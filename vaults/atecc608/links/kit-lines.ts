import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { KIT_MAX_LINE } from './kit-protocol.js';

/**
 * Cuts a byte stream (serial bytes, or HID reports) into kit protocol lines. NULs are dropped (HID
 * reports are zero-padded, §4.4), `\r` before `\n` is stripped. A line longer than `maxLine` is
 * never accumulated: its bytes are dropped up to the next `\n` and the line is replaced by one
 * DECODE_LIMIT error in the queue, so a babbling device cannot make the host allocate.
 */
export class KitLineBuffer {
  private partial = '';
  private discarding = false;
  private readonly queue: (string | KeyhopError)[] = [];

  constructor(
    private readonly maxLine = KIT_MAX_LINE,
    /** Complete lines kept for the reader; older ones are dropped (a kit answers one line per request). */
    private readonly maxQueued = 16,
  ) {}

  push(chunk: Uint8Array): void {
    const text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
      .toString('latin1')
      .replaceAll('\0', '');
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      const piece = text.slice(start, nl === -1 ? text.length : nl);
      this.append(piece);
      if (nl === -1) return;
      this.endLine();
      start = nl + 1;
    }
  }

  /** The oldest complete line (without `\r\n`), a DECODE_LIMIT error in its place, or undefined. */
  next(): string | KeyhopError | undefined {
    return this.queue.shift();
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Forgets queued lines and any partial line (before a new request, after a timeout). */
  clear(): void {
    this.queue.length = 0;
    this.partial = '';
    this.discarding = false;
  }

  private append(piece: string): void {
    if (this.discarding || piece.length === 0) return;
    // +1: a "\r" before the "\n" is allowed beyond the limit.
    if (this.partial.length + piece.length > this.maxLine + 1) {
      this.partial = '';
      this.discarding = true;
      this.enqueue(
        new KeyhopError(ErrorCodes.DECODE_LIMIT, `kit line longer than ${this.maxLine} characters`),
      );
      return;
    }
    this.partial += piece;
  }

  private endLine(): void {
    if (this.discarding) {
      this.discarding = false;
      return;
    }
    let line = this.partial;
    this.partial = '';
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.length > this.maxLine) {
      this.enqueue(
        new KeyhopError(ErrorCodes.DECODE_LIMIT, `kit line longer than ${this.maxLine} characters`),
      );
      return;
    }
    if (line.length > 0) this.enqueue(line);
  }

  private enqueue(entry: string | KeyhopError): void {
    if (this.queue.length >= this.maxQueued) this.queue.shift();
    this.queue.push(entry);
  }
}
