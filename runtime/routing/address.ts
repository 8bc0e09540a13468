import { randomBytes } from 'node:crypto';
import { ErrorCodes, KeyhopError } from '../errors.js';

/** Transport type bytes, as Ockam assigns them (ockam.md §1.2). */
export const TransportType = {
  LOCAL: 0,
  TCP: 1,
  UDP: 2,
  WEBSOCKET: 3,
  BLE: 4,
  UDS: 5,
  /** keyhop's own: Ockam has no serial transport. */
  SERIAL: 6,
  /** keyhop's own: a mailbox on an MQTT broker (docs/protocols/mqtt.md). */
  MQTT: 7,
} as const;

const encoder = new TextEncoder();
/** True when every character is below U+0080 (then latin1 of the UTF-8 bytes is the text itself). */
function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
/** The same ASCII text as one flat string. */
function flat(ascii: string): string {
  return Buffer.from(ascii, 'latin1').toString('latin1');
}
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Largest address value keyhop accepts from text or from the wire. */
export const MAX_ADDRESS_VALUE_BYTES = 1024;

/**
 * An address is a transport type byte plus opaque bytes. Text form `tt#value`; without `#` the
 * type is 0 (local). Values are almost always UTF-8 text (worker names, `host:port`).
 */
export class Address {
  readonly type: number;
  // One of three forms is set at construction, the others made on first use: local addresses are
  // created from text and rarely need bytes; decoded ones carry their bytes as a latin1 string (one
  // character per byte, so it is exact for any bytes): cheaper than a copied Uint8Array, and it is
  // already most of the map key.
  private bytes: Uint8Array | undefined;
  private string: string | undefined;
  private latin1: string | undefined;
  private cachedKey: string | undefined;

  /** `latin1`: `value` is a string of the value's bytes, one character each (see fromLatin1). */
  constructor(type: number, value: Uint8Array | string, latin1 = false) {
    const length =
      typeof value !== 'string' ? value.length : latin1 ? value.length : Buffer.byteLength(value, 'utf8');
    checkAddress(type, length);
    this.type = type;
    if (typeof value !== 'string') this.bytes = value;
    else if (latin1) this.latin1 = value;
    else this.string = value;
  }

  /** An address whose value bytes are the characters of `latin1` (each below U+0100), as decoders make them. */
  static fromLatin1(type: number, latin1: string): Address {
    return new Address(type, latin1, true);
  }

  /** The value bytes (UTF-8 of the text for addresses made from text). */
  get value(): Uint8Array {
    if (this.bytes !== undefined) return this.bytes;
    // Made on each call for text and latin1 addresses (rarely needed): kept, a copy per address
    // would cost every open channel a buffer per address.
    return this.latin1 !== undefined
      ? new Uint8Array(Buffer.from(this.latin1, 'latin1'))
      : encoder.encode(this.string!);
  }

  /** Length of the value in bytes. */
  get valueLength(): number {
    if (this.bytes !== undefined) return this.bytes.length;
    if (this.latin1 !== undefined) return this.latin1.length;
    const s = this.string!;
    return isAscii(s) ? s.length : Buffer.byteLength(s, 'utf8');
  }

  /** Writes the value bytes at `pos` of `out` (room checked by the caller); returns the end. */
  writeValue(out: Uint8Array, pos: number): number {
    const text = this.latin1 ?? (this.string !== undefined && isAscii(this.string) ? this.string : undefined);
    if (text !== undefined && this.bytes === undefined) {
      for (let i = 0; i < text.length; i++) out[pos + i] = text.charCodeAt(i);
      return pos + text.length;
    }
    const v = this.value;
    out.set(v, pos);
    return pos + v.length;
  }

  /**
   * Map key: the exact type and value bytes, as a string (computed on first use: most decoded
   * addresses never need one). latin1 maps bytes to characters one to one, so two values never
   * share a key; for ASCII text that is the text itself. A local address without '#' is keyed by
   * its value alone (no second string per address); every other key has a '#' at its type's end,
   * so the two kinds never meet.
   */
  get key(): string {
    if (this.cachedKey === undefined) {
      const s = this.string;
      const v =
        this.latin1 ??
        (s !== undefined && isAscii(s)
          ? s
          : Buffer.from(this.value.buffer, this.value.byteOffset, this.value.length).toString('latin1'));
      this.cachedKey = this.type === TransportType.LOCAL && !v.includes('#') ? v : `${this.type}#${v}`;
    }
    return this.cachedKey;
  }

  static local(name: string): Address {
    return new Address(TransportType.LOCAL, name);
  }

  /** 16 random bytes as 32 lowercase hex characters, like Ockam's random addresses. */
  static random(prefix = ''): Address {
    const hex = randomBytes(16).toString('hex');
    // Made flat: prefix + hex is a two-part cons string, kept as such for the address's life.
    return Address.local(prefix === '' || !isAscii(prefix) ? prefix + hex : flat(prefix + hex));
  }

  static parse(text: string): Address {
    if (typeof text !== 'string' || text.length === 0) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, 'address is empty');
    }
    const parts = text.split('#');
    if (parts.length === 1) return Address.local(text);
    if (parts.length > 2) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `address "${text}" has more than one '#'`);
    }
    const [tt, value] = parts as [string, string];
    if (!/^\d{1,3}$/.test(tt)) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `address "${text}": transport type must be a number`);
    }
    if (value.length === 0) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `address "${text}" has an empty value`);
    }
    return new Address(Number(tt), value);
  }

  /** Accepts an Address, its text form, or `[type, value]`. */
  static from(a: AddressLike): Address {
    if (a instanceof Address) return a;
    if (typeof a === 'string') return Address.parse(a);
    return new Address(a[0], a[1]);
  }

  get isLocal(): boolean {
    return this.type === TransportType.LOCAL;
  }

  /** The value as text (lossy only for non-UTF-8 values, which keyhop never creates). */
  get text(): string {
    if (this.string === undefined) {
      const l = this.latin1;
      this.string = l !== undefined && isAscii(l) ? l : decoder.decode(this.value);
    }
    return this.string;
  }

  equals(other: Address): boolean {
    return this.key === other.key;
  }

  toString(): string {
    return `${this.type}#${this.text}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

function checkAddress(type: number, length: number): void {
  if (!Number.isInteger(type) || type < 0 || type > 255) {
    throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `address type must be 0..255, got ${type}`);
  }
  if (length > MAX_ADDRESS_VALUE_BYTES) {
    throw new KeyhopError(
      ErrorCodes.ADDRESS_INVALID,
      `address value is ${length} bytes, more than ${MAX_ADDRESS_VALUE_BYTES}`,
    );
  }
}

export type AddressLike = Address | string | readonly [number, Uint8Array | string];
