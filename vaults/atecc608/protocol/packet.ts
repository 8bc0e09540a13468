import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { crcMatches, withCrc } from './crc.js';

/**
 * ATECC command and response packets (atecc608.md §1.4). A command is
 * `count ‖ opcode ‖ param1 ‖ param2 (u16 LE) ‖ data ‖ CRC (LE)` with count = 7 + data length; on
 * I2C it is preceded by the word address 0x03, which is not part of the packet or its CRC. A
 * response is `count ‖ data ‖ CRC`; a 4-byte response carries a status byte.
 */

/** First byte of every I2C write (datasheet "Word Address Values"). */
export const WordAddress = { RESET: 0x00, SLEEP: 0x01, IDLE: 0x02, COMMAND: 0x03 } as const;

export const COMMAND_MIN = 7;
/** The datasheet allows 0-155 data bytes; cryptoauthlib caps commands at 151 bytes (ATCA_CMD_SIZE_MAX). */
export const COMMAND_MAX = 7 + 155;
export const RESPONSE_MIN = 4;
/** Largest response the 608 sends for the commands keyhop uses (64 data bytes + 32-byte nonce + 3). */
export const RESPONSE_MAX = 99;

/** The four bytes a chip returns after a wake: count 4, status 0x11, CRC. */
export const WAKE_TOKEN = Uint8Array.of(0x04, 0x11, 0x33, 0x43);
/**
 * What cryptoauthlib and the kit firmware accept as "woke, but self-test failed". Its CRC is not the
 * CRC of `04 07` (that would be `40 C2`): the constant is kept as the library has it (§9.1).
 */
export const WAKE_SELFTEST_FAILED = Uint8Array.of(0x04, 0x07, 0xc4, 0x40);

export interface Command {
  readonly opcode: number;
  readonly param1: number;
  readonly param2: number;
  readonly data?: Uint8Array;
}

export function encodeCommand(cmd: Command): Uint8Array {
  const data = cmd.data ?? new Uint8Array(0);
  const count = COMMAND_MIN + data.length;
  if (count > COMMAND_MAX) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC command of ${count} bytes exceeds ${COMMAND_MAX}`);
  }
  checkByte('opcode', cmd.opcode);
  checkByte('param1', cmd.param1);
  if (!Number.isInteger(cmd.param2) || cmd.param2 < 0 || cmd.param2 > 0xffff) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC param2 ${cmd.param2} is not a 16-bit value`);
  }
  const body = new Uint8Array(count - 2);
  body[0] = count;
  body[1] = cmd.opcode;
  body[2] = cmd.param1;
  body[3] = cmd.param2 & 0xff;
  body[4] = cmd.param2 >> 8;
  body.set(data, 5);
  return withCrc(body);
}

function checkByte(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${what} ${v} is not a byte`);
  }
}

export type CommandDecodeFailure = 'length' | 'crc';

/**
 * Parses a command packet as the chip sees it. Length problems are reported before CRC ones only
 * when the count byte itself is impossible; the chip checks the CRC over `count` bytes first.
 */
export function decodeCommand(
  packet: Uint8Array,
): { ok: true; command: Required<Command> } | { ok: false; reason: CommandDecodeFailure } {
  const count = packet[0];
  if (count === undefined || count < COMMAND_MIN || count > COMMAND_MAX || packet.length < count) {
    return { ok: false, reason: 'length' };
  }
  const frame = packet.subarray(0, count);
  if (!crcMatches(frame)) return { ok: false, reason: 'crc' };
  return {
    ok: true,
    command: {
      opcode: frame[1]!,
      param1: frame[2]!,
      param2: frame[3]! | (frame[4]! << 8),
      data: frame.slice(5, count - 2),
    },
  };
}

export function encodeResponse(data: Uint8Array): Uint8Array {
  const count = data.length + 3;
  if (count > 0xff) throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC response of ${count} bytes`);
  const body = new Uint8Array(count - 2);
  body[0] = count;
  body.set(data, 1);
  return withCrc(body);
}

export function encodeStatus(status: number): Uint8Array {
  return encodeResponse(Uint8Array.of(status));
}

export type DecodedResponse =
  | { readonly kind: 'status'; readonly status: number }
  | { readonly kind: 'data'; readonly data: Uint8Array };

/**
 * Checks count and CRC of a response as read from the chip (over-read bytes past `count` are
 * ignored). A bad count or CRC is a communication fault (the caller retries); a 4-byte response is
 * a status even where data was expected (atecc608.md §7.11).
 */
export function decodeResponse(bytes: Uint8Array): DecodedResponse {
  const count = bytes[0];
  if (count === undefined || count < RESPONSE_MIN || count > RESPONSE_MAX || bytes.length < count) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_IO,
      `ATECC response has an impossible length (count ${count ?? 'missing'}, ${bytes.length} bytes read)`,
    );
  }
  const frame = bytes.subarray(0, count);
  if (!crcMatches(frame)) throw new KeyhopError(ErrorCodes.HARDWARE_IO, 'ATECC response failed its CRC');
  if (count === RESPONSE_MIN) return { kind: 'status', status: frame[1]! };
  return { kind: 'data', data: frame.slice(1, count - 2) };
}
