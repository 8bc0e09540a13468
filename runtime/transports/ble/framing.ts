import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * keyhop's BLE link framing (docs/protocols/ble.md). Every GATT value is one fragment whose first
 * byte says what it is, so nothing is guessed from lengths (Ockam's BLE transport takes any 8-byte
 * value as a length header). Data fragments cost one credit each; the receiver grants credits as
 * it consumes them, so a sender never has more values queued in the stacks than the receiver
 * allowed, and notifications are never dropped for a full queue.
 *
 *   HELLO  01 | version u8 | max_message u32 BE | credits u16 BE
 *   SINGLE 02 | data                              a whole message in one value
 *   FIRST  03 | total u32 BE | data               total > data length
 *   MORE   04 | data                              at least one byte
 *   CREDIT 05 | n u16 BE                          n ≥ 1 more data fragments allowed
 */

export const BLE_FRAMING_VERSION = 1;

export const FragmentKind = {
  HELLO: 0x01,
  SINGLE: 0x02,
  FIRST: 0x03,
  MORE: 0x04,
  CREDIT: 0x05,
} as const;

export const HELLO_LENGTH = 8;
const FIRST_HEADER = 5;
/** The smallest value a link must carry: ATT MTU 23 → 20 bytes. */
export const MIN_VALUE_SIZE = 20;
export const MAX_CREDITS = 0xffff;

export interface Hello {
  version: number;
  maxMessage: number;
  credits: number;
}

export type Fragment =
  | { kind: 'hello'; hello: Hello }
  | { kind: 'single'; data: Uint8Array }
  | { kind: 'first'; total: number; data: Uint8Array }
  | { kind: 'more'; data: Uint8Array }
  | { kind: 'credit'; n: number };

function invalid(message: string): KeyhopError {
  return new KeyhopError(ErrorCodes.DECODE_INVALID, `BLE fragment: ${message}`);
}

export function encodeHello(h: Hello): Uint8Array {
  const b = new Uint8Array(HELLO_LENGTH);
  const v = new DataView(b.buffer);
  b[0] = FragmentKind.HELLO;
  b[1] = h.version;
  v.setUint32(2, h.maxMessage);
  v.setUint16(6, h.credits);
  return b;
}

export function encodeCredit(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 1 || n > MAX_CREDITS) throw new RangeError(`credit grant ${n}`);
  return Uint8Array.of(FragmentKind.CREDIT, n >> 8, n & 0xff);
}

/** Parses one GATT value. Data fields are views into `value`. Throws DECODE_INVALID. */
export function parseFragment(value: Uint8Array): Fragment {
  if (value.length === 0) throw invalid('empty value');
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  switch (value[0]) {
    case FragmentKind.HELLO:
      // Longer HELLOs are allowed: later versions may append fields.
      if (value.length < HELLO_LENGTH) throw invalid(`HELLO of ${value.length} bytes`);
      return {
        kind: 'hello',
        hello: { version: value[1]!, maxMessage: v.getUint32(2), credits: v.getUint16(6) },
      };
    case FragmentKind.SINGLE:
      return { kind: 'single', data: value.subarray(1) };
    case FragmentKind.FIRST: {
      if (value.length < FIRST_HEADER + 1) throw invalid(`FIRST of ${value.length} bytes`);
      const total = v.getUint32(1);
      const data = value.subarray(FIRST_HEADER);
      if (total <= data.length) throw invalid(`FIRST announces ${total} bytes but carries ${data.length}`);
      return { kind: 'first', total, data };
    }
    case FragmentKind.MORE:
      if (value.length < 2) throw invalid('empty MORE');
      return { kind: 'more', data: value.subarray(1) };
    case FragmentKind.CREDIT: {
      if (value.length !== 3) throw invalid(`CREDIT of ${value.length} bytes`);
      const n = v.getUint16(1);
      if (n === 0) throw invalid('CREDIT of 0');
      return { kind: 'credit', n };
    }
    default:
      throw invalid(`unknown kind 0x${value[0]!.toString(16).padStart(2, '0')}`);
  }
}

/** Number of data fragments a message of `length` bytes takes with values of `valueSize` bytes. */
export function fragmentCount(length: number, valueSize: number): number {
  if (length <= valueSize - 1) return 1;
  return 1 + Math.ceil((length - (valueSize - FIRST_HEADER)) / (valueSize - 1));
}

/**
 * Cuts one message into fragments, one at a time, so the value size can follow the MTU as it
 * changes (an exchange may complete while a message is being sent).
 */
export class MessageFragmenter {
  private offset = 0;

  constructor(readonly message: Uint8Array) {}

  get done(): boolean {
    return this.offset > 0 && this.offset >= this.message.length;
  }

  get started(): boolean {
    return this.offset > 0;
  }

  /** The next fragment, at most `valueSize` (≥ MIN_VALUE_SIZE) bytes. */
  next(valueSize: number): Uint8Array {
    if (valueSize < MIN_VALUE_SIZE) throw new RangeError(`BLE value size ${valueSize} < ${MIN_VALUE_SIZE}`);
    const m = this.message;
    if (this.offset === 0) {
      if (m.length <= valueSize - 1) {
        const out = new Uint8Array(1 + m.length);
        out[0] = FragmentKind.SINGLE;
        out.set(m, 1);
        this.offset = Math.max(1, m.length);
        return out;
      }
      const n = valueSize - FIRST_HEADER;
      const out = new Uint8Array(valueSize);
      out[0] = FragmentKind.FIRST;
      new DataView(out.buffer).setUint32(1, m.length);
      out.set(m.subarray(0, n), FIRST_HEADER);
      this.offset = n;
      return out;
    }
    const n = Math.min(valueSize - 1, m.length - this.offset);
    const out = new Uint8Array(1 + n);
    out[0] = FragmentKind.MORE;
    out.set(m.subarray(this.offset, this.offset + n), 1);
    this.offset += n;
    return out;
  }
}

/**
 * Puts messages back together. `push` returns a finished message or undefined; protocol
 * violations (a MORE with no message started, a FIRST while one is in progress, more bytes than
 * announced, a message over the limit) throw: the link is reliable, so they mean a broken or
 * hostile peer and the link is dropped. The limit is checked before anything is allocated.
 */
export class Reassembler {
  private buffer: Uint8Array | undefined;
  private filled = 0;

  constructor(private readonly maxMessage: number) {}

  get inProgress(): boolean {
    return this.buffer !== undefined;
  }

  /** Bytes of the message in progress, and how many it announced (for diagnostics). */
  get progress(): { received: number; total: number } | undefined {
    return this.buffer === undefined ? undefined : { received: this.filled, total: this.buffer.length };
  }

  reset(): void {
    this.buffer = undefined;
    this.filled = 0;
  }

  push(f: Fragment): Uint8Array | undefined {
    switch (f.kind) {
      case 'single':
        if (this.buffer !== undefined) throw invalid('SINGLE while a message is in progress');
        if (f.data.length > this.maxMessage) throw this.tooLong(f.data.length);
        return f.data.slice();
      case 'first':
        if (this.buffer !== undefined) throw invalid('FIRST while a message is in progress');
        if (f.total > this.maxMessage) throw this.tooLong(f.total);
        this.buffer = new Uint8Array(f.total);
        this.buffer.set(f.data);
        this.filled = f.data.length;
        return undefined;
      case 'more': {
        const b = this.buffer;
        if (b === undefined) throw invalid('MORE with no message in progress');
        if (this.filled + f.data.length > b.length) {
          throw invalid(`message overruns its announced ${b.length} bytes`);
        }
        b.set(f.data, this.filled);
        this.filled += f.data.length;
        if (this.filled < b.length) return undefined;
        this.reset();
        return b;
      }
      default:
        throw invalid(`${f.kind} is not a data fragment`);
    }
  }

  private tooLong(n: number): KeyhopError {
    return new KeyhopError(
      ErrorCodes.DECODE_LIMIT,
      `BLE message of ${n} bytes exceeds the ${this.maxMessage}-byte limit`,
    );
  }
}

/**
 * Ockam's BLE framing for the same message (ockam_transport_ble packet.rs, as of 2024): one
 * 8-byte value holding the length, then values of 18 bytes (its fixed MTU 23 − 5). Returns the
 * values' sizes, for the efficiency comparison in the benchmark.
 */
export function ockamBleValueSizes(length: number): number[] {
  const sizes = [8];
  for (let off = 0; off < length; off += 18) sizes.push(Math.min(18, length - off));
  return sizes;
}
