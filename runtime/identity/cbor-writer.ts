import { ErrorCodes, KeyhopError } from '../errors.js';

/**
 * Minimal canonical CBOR writer for the identity structures: shortest-form heads, definite
 * lengths, and maps written in the order the caller gives (minicbor writes a BTreeMap in the
 * keys' byte order, which is not RFC 8949's length-first order, so cborg's sorted maps would not
 * be byte-exact). Integers are unsigned and at most Number.MAX_SAFE_INTEGER.
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
    const m = major << 5;
    this.reserve(9);
    const b = this.buf;
    let p = this.len;
    if (n < 24) b[p++] = m | n;
    else if (n < 0x100) {
      b[p++] = m | 24;
      b[p++] = n;
    } else if (n < 0x10000) {
      b[p++] = m | 25;
      b[p++] = n >>> 8;
      b[p++] = n & 0xff;
    } else if (n < 0x1_0000_0000) {
      b[p++] = m | 26;
      b[p++] = n >>> 24;
      b[p++] = (n >>> 16) & 0xff;
      b[p++] = (n >>> 8) & 0xff;
      b[p++] = n & 0xff;
    } else {
      const hi = Math.floor(n / 0x1_0000_0000);
      const lo = n >>> 0;
      b[p++] = m | 27;
      b[p++] = hi >>> 24;
      b[p++] = (hi >>> 16) & 0xff;
      b[p++] = (hi >>> 8) & 0xff;
      b[p++] = hi & 0xff;
      b[p++] = lo >>> 24;
      b[p++] = (lo >>> 16) & 0xff;
      b[p++] = (lo >>> 8) & 0xff;
      b[p++] = lo & 0xff;
    }
    this.len = p;
    return this;
  }

  uint(n: number): this {
    return this.head(0, n);
  }

  bytes(b: Uint8Array): this {
    this.head(2, b.length);
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
