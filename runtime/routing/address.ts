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
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Largest address value keyhop accepts from text or from the wire. */
export const MAX_ADDRESS_VALUE_BYTES = 1024;

/**
 * An address is a transport type byte plus opaque bytes. Text form `tt#value`; without `#` the
 * type is 0 (local). Values are almost always UTF-8 text (worker names, `host:port`).
 */
export class Address {
  readonly type: number;
  // One of the two forms is set at construction, the other made on first use: local addresses
  // are created from text and rarely need bytes; decoded ones the other way round.
  private bytes: Uint8Array | undefined;
  private string: string | undefined;
  private cachedKey: string | undefined;

  constructor(type: number, value: Uint8Array | string) {
    if (!Number.isInteger(type) || type < 0 || type > 255) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `address type must be 0..255, got ${type}`);
    }
    const length = typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
    if (length > MAX_ADDRESS_VALUE_BYTES) {
      throw new KeyhopError(
        ErrorCodes.ADDRESS_INVALID,
        `address value is ${length} bytes, more than ${MAX_ADDRESS_VALUE_BYTES}`,
      );
    }
    this.type = type;
    if (typeof value === 'string') this.string = value;
    else this.bytes = value;
  }

  /** The value bytes (UTF-8 of the text for addresses made from text). */
  get value(): Uint8Array {
    this.bytes ??= encoder.encode(this.string!);
    return this.bytes;
  }

  /** Map key: the type and the exact value bytes (computed on first use: most decoded addresses never need one). */
  get key(): string {
    if (this.cachedKey === undefined) {
      // latin1 maps bytes to characters one to one, so two different values never share a key;
      // for ASCII text that is the text itself.
      const s = this.string;
      const v =
        s !== undefined && isAscii(s)
          ? s
          : Buffer.from(this.value.buffer, this.value.byteOffset, this.value.length).toString('latin1');
      this.cachedKey = `${this.type}#${v}`;
    }
    return this.cachedKey;
  }

  static local(name: string): Address {
    return new Address(TransportType.LOCAL, name);
  }

  /** 16 random bytes as 32 lowercase hex characters, like Ockam's random addresses. */
  static random(prefix = ''): Address {
    return Address.local(prefix + randomBytes(16).toString('hex'));
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
    this.string ??= decoder.decode(this.bytes!);
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

export type AddressLike = Address | string | readonly [number, Uint8Array | string];
