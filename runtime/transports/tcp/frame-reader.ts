import { ErrorCodes, KeyhopError } from '../../errors.js';

/** The one protocol-version byte each side sends when a TCP connection opens. */
export const TCP_PROTOCOL_VERSION = 0x01;

/** Received chunks shorter than this are "small"… */
const SMALL_CHUNK = 4096;
/** …and this many small ones in a row are merged into one. */
const SMALL_RUN = 32;

/**
 * Splits a TCP byte stream into frames: first the peer's protocol-version byte, then
 * u32 big-endian length + body. The length is checked against `maxFrame` before a single byte of
 * the body is buffered, so an oversized frame costs nothing but the 4 header bytes. A frame's
 * memory is never reserved from its declared length: only the chunks that arrived are held, and
 * joined once it is complete.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private versionChecked = false;
  private need = -1;
  /** Small chunks at the end of `chunks`. */
  private smallRun = 0;

  constructor(private readonly maxFrame: number) {}

  /**
   * Feeds bytes; returns the complete frames. Throws KeyhopError on a protocol violation; frames
   * completed before the violation are already in `frames` (pass your own array to keep them).
   */
  push(chunk: Buffer, frames: Buffer[] = []): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (chunk.length >= SMALL_CHUNK) this.smallRun = 0;
    else this.smallRun++;
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
    // Each chunk is an object of its own (~100 bytes and more): a peer trickling a large frame a
    // byte per segment would make us hold 100 times what it sent, unless small chunks are merged.
    if (this.smallRun > this.chunks.length) this.smallRun = this.chunks.length;
    if (this.smallRun >= SMALL_RUN) this.mergeSmallRun();
    return frames;
  }

  get versionReceived(): boolean {
    return this.versionChecked;
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered;
  }

  /** Bytes received of the frame being read (its length prefix included), or -1 between frames. */
  get partialFrameBytes(): number {
    if (this.need >= 0) return this.buffered + 4;
    return this.versionChecked && this.buffered > 0 ? this.buffered : -1;
  }

  /** Buffers held (for tests: bounded even when the peer sends a byte at a time). */
  get heldChunks(): number {
    return this.chunks.length;
  }

  private mergeSmallRun(): void {
    const run = this.chunks.splice(this.chunks.length - this.smallRun, this.smallRun);
    const merged = Buffer.concat(run);
    this.chunks.push(merged);
    // Still small: it joins the next run, so bytes are copied again only while under 4 KiB.
    this.smallRun = merged.length < SMALL_CHUNK ? 1 : 0;
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
