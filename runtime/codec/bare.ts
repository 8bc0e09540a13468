import { ErrorCodes, KeyhopError } from '../errors.js';

/**
 * BARE primitives as Ockam uses them (ockam_core/src/bare.rs): ULEB128 lengths capped at 64 bits,
 * strings and byte arrays as length + bytes.
 */

const MAX_ULEB_BYTES = 10;

export class BareReader {
  pos = 0;
  constructor(
    readonly bytes: Uint8Array,
    private readonly what: string,
  ) {}

  fail(
    detail: string,
    code: 'DECODE_INVALID' | 'DECODE_LIMIT' | 'DECODE_TRUNCATED' = 'DECODE_INVALID',
  ): never {
    throw new KeyhopError(ErrorCodes[code], `${this.what}: ${detail}`);
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  u8(): number {
    if (this.pos >= this.bytes.length) this.fail('truncated', 'DECODE_TRUNCATED');
    return this.bytes[this.pos++]!;
  }

  u16le(): number {
    return this.u8() | (this.u8() << 8);
  }

  /** ULEB128 as a bigint, rejecting anything above 2^64-1 or longer than 10 bytes. */
  ulebBig(): bigint {
    let result = 0n;
    for (let i = 0; i < MAX_ULEB_BYTES; i++) {
      const b = this.u8();
      // Like Ockam's bare.rs: the 10th byte can only be 0x01 (bit 63), anything else overflows or is padding.
      if (i === MAX_ULEB_BYTES - 1 && b !== 0x01) this.fail('ULEB128 value exceeds 64 bits', 'DECODE_LIMIT');
      result |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return result;
    }
    return this.fail('ULEB128 value exceeds 64 bits', 'DECODE_LIMIT');
  }

  /** ULEB128 that must fit in `max` (a length or a count). Checked before anything is allocated. */
  uleb(max: number): number {
    const v = this.ulebBig();
    if (v > BigInt(max)) this.fail(`length ${v} exceeds limit ${max}`, 'DECODE_LIMIT');
    return Number(v);
  }

  /** Length-prefixed bytes (a view, not a copy). */
  bytesValue(maxLength: number): Uint8Array {
    const n = this.uleb(maxLength);
    if (n > this.remaining) this.fail(`needs ${n} bytes, ${this.remaining} left`, 'DECODE_TRUNCATED');
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(maxLength: number): string {
    const b = this.bytesValue(maxLength);
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b);
    } catch {
      return this.fail('string is not valid UTF-8');
    }
  }

  end(): void {
    if (this.pos !== this.bytes.length) this.fail(`${this.remaining} trailing bytes`);
  }
}

export class BareWriter {
  private chunks: Uint8Array[] = [];
  private current: number[] = [];

  u8(v: number): this {
    this.current.push(v & 0xff);
    return this;
  }

  u16le(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }

  uleb(v: number | bigint): this {
    let x = BigInt(v);
    if (x < 0n || x > 0xffff_ffff_ffff_ffffn) {
      throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ULEB128 value ${x} out of range`);
    }
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) b |= 0x80;
      this.current.push(b);
    } while (x !== 0n);
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.flush();
    this.chunks.push(bytes);
    return this;
  }

  bytesValue(bytes: Uint8Array): this {
    return this.uleb(bytes.length).raw(bytes);
  }

  string(s: string): this {
    return this.bytesValue(new TextEncoder().encode(s));
  }

  private flush(): void {
    if (this.current.length > 0) {
      this.chunks.push(Uint8Array.from(this.current));
      this.current = [];
    }
  }

  finish(): Uint8Array {
    this.flush();
    const total = this.chunks.reduce((n, c) => n + c.length, 0);
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

/** A BARE `String` payload, as Ockam's relay messages carry: ULEB128 length + UTF-8. */
export function encodeBareString(s: string): Uint8Array {
  return new BareWriter().string(s).finish();
}

export function decodeBareString(bytes: Uint8Array, maxLength = 4096): string {
  const r = new BareReader(bytes, 'BARE string');
  const s = r.string(maxLength);
  r.end();
  return s;
}
