import { type DecodeOptions, encode, type Token, Tokenizer, Type } from 'cborg';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';

/**
 * cborg in its strictest mode: shortest-form integers only, no indefinite lengths, no undefined,
 * no NaN/Infinity, no bigints. Ockam's minicbor emits exactly this subset.
 */
export const STRICT_DECODE: DecodeOptions = {
  strict: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowInfinity: false,
  allowNaN: false,
  allowBigInt: false,
  rejectDuplicateMapKeys: true,
  // Keep the raw bytes of text strings so CborReader can reject invalid UTF-8 (cborg would
  // silently substitute U+FFFD).
  retainStringBytes: true,
};

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(start: number, end: number): string })
  .latin1Slice;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function cborEncode(value: unknown): Uint8Array {
  return encode(value);
}

/**
 * Pull reader over cborg's tokenizer: decoders walk a known shape token by token and check every
 * count and length against their limit before building anything from it. Every failure is a
 * KeyhopError naming `what` was being decoded.
 */
export class CborReader {
  private readonly tokens: InstanceType<typeof Tokenizer>;
  private peeked: Token | undefined;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {
    this.tokens = new Tokenizer(bytes, STRICT_DECODE);
  }

  private fail(
    detail: string,
    code: 'DECODE_INVALID' | 'DECODE_LIMIT' | 'DECODE_TRUNCATED' = 'DECODE_INVALID',
  ): never {
    throw new KeyhopError(ErrorCodes[code], `${this.what}: ${detail}`);
  }

  next(): Token {
    if (this.peeked) {
      const t = this.peeked;
      this.peeked = undefined;
      return t;
    }
    if (this.tokens.done()) this.fail('truncated', 'DECODE_TRUNCATED');
    try {
      return this.tokens.next();
    } catch (e) {
      const msg = describeError(e);
      this.fail(msg, /not enough data/.test(msg) ? 'DECODE_TRUNCATED' : 'DECODE_INVALID');
    }
  }

  private expect(type: Type, label: string): Token {
    const t = this.next();
    if (t.type !== type) this.fail(`expected ${label}, found ${t.type.name}`);
    return t;
  }

  /** An array header; returns its length, at most `max`. */
  array(max: number, min = 0): number {
    const n = this.expect(Type.array, 'array').value as number;
    if (n > max) this.fail(`array of ${n} items, more than ${max}`, 'DECODE_LIMIT');
    if (n < min) this.fail(`array of ${n} items, fewer than ${min}`);
    return n;
  }

  uint(max = Number.MAX_SAFE_INTEGER): number {
    const v = this.expect(Type.uint, 'unsigned integer').value as number;
    if (v > max) this.fail(`integer ${v} exceeds ${max}`, 'DECODE_LIMIT');
    return v;
  }

  /**
   * A definite-length byte string, returned as a view into the input, not a copy (cborg's
   * tokenizer copies every byte string; for 16 KiB payloads that copy was measurable, see
   * docs/performance.md). The header is read here with the same strictness: shortest form only,
   * length checked against `maxLength` and against the input before anything else.
   */
  bytesValue(maxLength: number): Uint8Array {
    if (this.peeked) return this.copiedBytes(maxLength);
    const data = this.bytes;
    const pos = this.tokens.pos();
    if (pos >= data.length) this.fail('truncated', 'DECODE_TRUNCATED');
    const initial = data[pos]!;
    if (initial >> 5 !== 2 || (initial & 31) > 27) return this.copiedBytes(maxLength);
    const minor = initial & 31;
    const width = minor < 24 ? 0 : 1 << (minor - 24);
    if (pos + 1 + width > data.length) this.fail('truncated', 'DECODE_TRUNCATED');
    let length = minor < 24 ? minor : 0;
    for (let i = 0; i < width; i++) length = length * 256 + data[pos + 1 + i]!;
    const minimum = width === 0 ? 0 : width === 1 ? 24 : 2 ** (8 * (width / 2));
    if (width > 0 && length < minimum) this.fail('byte string length is not in shortest form');
    if (length > maxLength)
      this.fail(`byte string of ${length} bytes, more than ${maxLength}`, 'DECODE_LIMIT');
    const start = pos + 1 + width;
    if (start + length > data.length) this.fail('truncated', 'DECODE_TRUNCATED');
    (this.tokens as unknown as { _pos: number })._pos = start + length;
    return data.subarray(start, start + length);
  }

  /** A byte string as a latin1 string (one character per byte): for short values kept long. */
  bytesLatin1(maxLength: number): string {
    const v = this.bytesValue(maxLength);
    return latin1Slice.call(v, 0, v.length);
  }

  private copiedBytes(maxLength: number): Uint8Array {
    const v = this.expect(Type.bytes, 'byte string').value as Uint8Array;
    if (v.length > maxLength)
      this.fail(`byte string of ${v.length} bytes, more than ${maxLength}`, 'DECODE_LIMIT');
    return v;
  }

  text(maxLength: number): string {
    const t = this.expect(Type.string, 'text string');
    const raw = t.byteValue as Uint8Array | undefined;
    if (raw && raw.length > maxLength)
      this.fail(`text of ${raw.length} bytes, more than ${maxLength}`, 'DECODE_LIMIT');
    try {
      return raw ? utf8.decode(raw) : (t.value as string);
    } catch {
      return this.fail('text string is not valid UTF-8');
    }
  }

  /** Consumes the next item if it is CBOR null (an absent optional field) and says so. */
  nullValue(): boolean {
    const t = this.next();
    if (t.type === Type.null) return true;
    this.peeked = t;
    return false;
  }

  bool(): boolean {
    const t = this.next();
    if (t.type === Type.true) return true;
    if (t.type === Type.false) return false;
    return this.fail(`expected bool, found ${t.type.name}`);
  }

  /** Byte offset of the next unread item. */
  get position(): number {
    if (this.peeked) throw new KeyhopError(ErrorCodes.DECODE_INVALID, `${this.what}: position after a peek`);
    return this.tokens.pos();
  }

  /**
   * Skips one complete item (nested arrays and maps included, at most `maxDepth` deep) and returns
   * its encoded bytes, for structures that embed CBOR defined elsewhere.
   */
  rawItem(maxDepth = 16): Uint8Array {
    const start = this.position;
    this.skip(maxDepth);
    return this.bytes.subarray(start, this.tokens.pos());
  }

  private skip(depth: number): void {
    if (depth < 0) this.fail('nested too deeply', 'DECODE_LIMIT');
    const t = this.next();
    if (t.type === Type.array) for (let i = 0; i < (t.value as number); i++) this.skip(depth - 1);
    else if (t.type === Type.map) for (let i = 0; i < 2 * (t.value as number); i++) this.skip(depth - 1);
    else if (t.type === Type.tag) this.skip(depth - 1);
  }

  get done(): boolean {
    return this.peeked === undefined && this.tokens.done();
  }

  /** Trailing bytes after a complete item are an error: two encodings of one value are not allowed. */
  end(): void {
    if (!this.done) this.fail(`${this.bytes.length - this.tokens.pos()} trailing bytes`);
  }
}
