import { ErrorCodes, KeyhopError } from '../../errors.js';

/** The one protocol-version byte each side sends when a TCP connection opens. */
export const TCP_PROTOCOL_VERSION = 0x01;

/**
 * Splits a TCP byte stream into frames: first the peer's protocol-version byte, then
 * u32 big-endian length + body. The length is checked against `maxFrame` before a single byte of
 * the body is buffered, so an oversized frame costs nothing but the 4 header bytes.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private versionChecked = false;
  private need = -1;

  constructor(private readonly maxFrame: number) {}

  /**
   * Feeds bytes; returns the complete frames. Throws KeyhopError on a protocol violation; frames
   * completed before the violation are already in `frames` (pass your own array to keep them).
   */
  push(chunk: Buffer, frames: Buffer[] = []): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (!this.versionChecked) {
      if (this.buffered < 1) return frames;
      const v = this.take(1)[0]!;
      if (v !== TCP_PROTOCOL_VERSION) {
        throw new KeyhopError(
          ErrorCodes.PROTOCOL_VERSION,
          `peer sent protocol version 0x${v.toString(16)}, expected 0x01`,
        );
      }
      this.versionChecked = true;
    }
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 4) break;
        const len = this.take(4).readUInt32BE(0);
        if (len > this.maxFrame) {
          throw new KeyhopError(
            ErrorCodes.DECODE_LIMIT,
            `frame of ${len} bytes exceeds the ${this.maxFrame}-byte limit`,
          );
        }
        this.need = len;
      }
      if (this.buffered < this.need) break;
      frames.push(this.take(this.need));
      this.need = -1;
    }
    return frames;
  }

  get versionReceived(): boolean {
    return this.versionChecked;
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length === n) {
      this.chunks.shift();
      this.buffered -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}
