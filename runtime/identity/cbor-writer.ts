import { writeHeader } from '../codec/cbor-write.js';
import { ErrorCodes, KeyhopError } from '../errors.js';

/**
 * Minimal canonical CBOR writer for the identity structures: shortest-form heads, definite
 * lengths, and maps written in the order the caller gives (minicbor writes a BTreeMap in the
 * keys' byte order, which is not RFC 8949's length-first order, so cborg's sorted maps would not
 * be byte-exact). Integers are unsigned and at most Number.MAX_SAFE_INTEGER. Heads are written by
 * the same shortest-form writer as the hot-path codecs (codec/cbor-write.ts).
 */
export class CborWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private head(major: number, n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `CBOR: ${n} is not an unsigned integer keyhop can encode`,
      );
    }
    this.reserve(9);
    this.len = writeHeader(this.buf, this.len, major, n);
    return this;
  }

  uint(n: number): this {
    return this.head(0, n);
  }

  bytes(b: Uint8Array): this {
    this.head(2, b.length);
    return this.raw(b);
  }

  /** A UTF-8 text string. */
  text(s: string): this {
    const b = new TextEncoder().encode(s);
    this.head(3, b.length);
    return this.raw(b);
  }

  array(n: number): this {
    return this.head(4, n);
  }

  map(n: number): this {
    return this.head(5, n);
  }

  bool(v: boolean): this {
    this.reserve(1);
    this.buf[this.len++] = v ? 0xf5 : 0xf4;
    return this;
  }

  null(): this {
    this.reserve(1);
    this.buf[this.len++] = 0xf6;
    return this;
  }

  /** Already encoded CBOR, appended as is. */
  raw(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}
