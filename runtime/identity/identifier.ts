import { ErrorCodes, KeyhopError } from '../errors.js';

/** Length of an Identifier and of a ChangeHash: a full SHA-256 (Ockam since 2023-11-09). */
export const IDENTIFIER_LENGTH = 32;
export const CHANGE_HASH_LENGTH = 32;
export const IDENTIFIER_PREFIX = 'I';

const HEX = /^[0-9a-fA-F]{64}$/;

/**
 * An identity's permanent name: the SHA-256 of the CBOR VersionedData of its first Change (= the
 * first change's ChangeHash). Text form `I` + 64 lowercase hex digits; on the wire a 32-byte bstr.
 */
export class Identifier {
  readonly bytes: Uint8Array;
  private readonly text: string;

  private constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.text = IDENTIFIER_PREFIX + toHex(bytes);
  }

  static fromBytes(bytes: Uint8Array): Identifier {
    if (bytes.length !== IDENTIFIER_LENGTH) {
      throw new KeyhopError(
        ErrorCodes.IDENTITY_INVALID,
        `identifier: ${bytes.length} bytes, expected ${IDENTIFIER_LENGTH}`,
      );
    }
    return new Identifier(bytes.slice());
  }

  /**
   * Parses `I` + 64 hex digits (either case; the text form is always lowercase). Older Ockam forms
   * (`P…`, 40-digit `I…`) are rejected.
   */
  static parse(text: string): Identifier {
    if (typeof text !== 'string' || text[0] !== IDENTIFIER_PREFIX || !HEX.test(text.slice(1))) {
      const shown = typeof text === 'string' ? JSON.stringify(text.slice(0, 80)) : typeof text;
      throw new KeyhopError(
        ErrorCodes.IDENTITY_INVALID,
        `identifier ${shown}: expected "I" followed by 64 hex digits`,
      );
    }
    return new Identifier(fromHex(text.slice(1)));
  }

  /** Parses a string, passes an Identifier through. */
  static from(value: Identifier | string): Identifier {
    return value instanceof Identifier ? value : Identifier.parse(value);
  }

  equals(other: Identifier): boolean {
    return bytesEqual(this.bytes, other.bytes);
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }
}

/** Constant-time equality for equal-length inputs (lengths are public). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function toHex(b: Uint8Array): string {
  // One flat string (building it by += per byte leaves a rope of 64 pieces in every holder).
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}

function fromHex(h: string): Uint8Array {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
