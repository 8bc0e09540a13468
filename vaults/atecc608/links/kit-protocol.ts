import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { COMMAND_MAX } from '../protocol/packet.js';

/**
 * Microchip's ASCII "kit protocol v1" (atecc608.md §4.4), both sides. One line per request and per
 * reply, ended by `\n` (the channels add and strip it). A request is
 * `<target>:<command>[:<sub>](<HEX>)`, e.g. `E:t(0730000000035D)`; a reply is
 * `<2 hex status>(<HEX data>)`, e.g. `00(04113343)`. `board:device(NN)` is answered with a device
 * line, `ECC608 TWI 00(C0)`.
 */

/**
 * Longest line either side accepts, in characters without the `\n`. The largest talk request is
 * `E:t(` + 2 × COMMAND_MAX hex digits + `)` = 329; a reply carries at most a 99-byte response. Lines
 * are checked against it before anything is allocated for them.
 */
export const KIT_MAX_LINE = 512;

/** The `ATCA_STATUS` values a kit puts in replies (cryptoauthlib `atca_status.h`). */
export const KitStatus = {
  SUCCESS: 0x00,
  CHECKMAC_VERIFY_FAILED: 0xd1,
  PARSE_ERROR: 0xd2,
  STATUS_CRC: 0xd4,
  STATUS_ECC: 0xd6,
  STATUS_SELFTEST_ERROR: 0xd7,
  FUNC_FAIL: 0xe0,
  GEN_FAIL: 0xe1,
  BAD_PARAM: 0xe2,
  INVALID_SIZE: 0xe4,
  WATCHDOG_ABOUT_TO_EXPIRE: 0xee,
  COMM_FAIL: 0xf0,
  TIMEOUT: 0xf1,
  WAKE_SUCCESS: 0xf3,
  EXECUTION_ERROR: 0xf4,
  NO_DEVICES: 0xf9,
  HEALTH_TEST_ERROR: 0xfa,
} as const;

const STATUS_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(KitStatus).map(([name, value]) => [value, name]),
);

/** `0xF0` → `F0 (COMM_FAIL)`, for error messages. */
export function kitStatusText(status: number): string {
  const name = STATUS_NAMES.get(status) ?? (status === 0xc5 ? 'old kit firmware error' : undefined);
  return name === undefined ? hex2(status) : `${hex2(status)} (${name})`;
}

/**
 * Chip status bytes and the ATCA_STATUS a kit running Microchip's `ascii_kit_host` reports instead
 * of the response when talk fails (`calib_execute_command` → `isATCAError`). Older kit firmware
 * returns the chip's status packet as data with status 00; both reach the protocol core the same.
 */
export const CHIP_STATUS_BY_KIT_STATUS: ReadonlyMap<number, number> = new Map([
  [KitStatus.CHECKMAC_VERIFY_FAILED, 0x01],
  [KitStatus.PARSE_ERROR, 0x03],
  [KitStatus.STATUS_ECC, 0x05],
  [KitStatus.STATUS_SELFTEST_ERROR, 0x07],
  [KitStatus.HEALTH_TEST_ERROR, 0x08],
  [KitStatus.EXECUTION_ERROR, 0x0f],
  [KitStatus.WAKE_SUCCESS, 0x11],
  [KitStatus.WATCHDOG_ABOUT_TO_EXPIRE, 0xee],
  [KitStatus.STATUS_CRC, 0xff],
]);

/** The reverse of CHIP_STATUS_BY_KIT_STATUS (for the emulated kit's `atca-status` mode). */
export const KIT_STATUS_BY_CHIP_STATUS: ReadonlyMap<number, number> = new Map(
  [...CHIP_STATUS_BY_KIT_STATUS].map(([kit, chip]) => [chip, kit]),
);

// ---------------------------------------------------------------- requests (host side)

/** Target letter for ECC devices: the first letter of the device name (`E` for `ECC608`). */
export const ECC_TARGET = 'E';

export function deviceRequest(index: number): string {
  checkByte('kit device index', index);
  return `board:device(${hex2(index)})`;
}

/** `E:physical:select(C0)`: the 8-bit I2C address, as cryptoauthlib keeps it (§7.1). */
export function selectRequest(address8: number, target = ECC_TARGET): string {
  checkByte('kit device address', address8);
  return `${target}:physical:select(${hex2(address8)})`;
}

export const wakeRequest = (target = ECC_TARGET): string => `${target}:w()`;
export const idleRequest = (target = ECC_TARGET): string => `${target}:i()`;
export const sleepRequest = (target = ECC_TARGET): string => `${target}:s()`;

/** `E:t(<count…CRC hex>)`: the kit wakes, writes, polls and reads on its own bus (§4.4). */
export function talkRequest(packet: Uint8Array, target = ECC_TARGET): string {
  if (packet.length === 0 || packet.length > COMMAND_MAX) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `kit talk packet of ${packet.length} bytes (must be 1-${COMMAND_MAX})`,
    );
  }
  return `${target}:t(${toHex(packet)})`;
}

// ---------------------------------------------------------------- replies

export interface KitReply {
  readonly status: number;
  readonly data: Uint8Array;
}

export function formatKitReply(status: number, data: Uint8Array = new Uint8Array(0)): string {
  checkByte('kit status', status);
  return `${hex2(status)}(${toHex(data)})`;
}

const REPLY = /^([0-9A-Fa-f]{2})\(([0-9A-Fa-f]*)\)$/;

/** Parses `<status>(<hex>)`; a trailing `\r`/`\n` is ignored. Never allocates beyond maxLine. */
export function parseKitReply(line: string, maxLine = KIT_MAX_LINE): KitReply {
  const text = trimEol(checkLength(line, maxLine, 'kit reply'));
  const m = REPLY.exec(text);
  if (m === null) {
    // Not quoted: a damaged talk reply may carry slot data.
    throw new KeyhopError(
      ErrorCodes.DECODE_INVALID,
      `kit reply of ${text.length} characters is not <status>(<hex>)`,
    );
  }
  return { status: Number.parseInt(m[1]!, 16), data: fromHex(m[2]!, 'kit reply') };
}

/** The reply's data when its status is 00; otherwise HARDWARE_IO naming the status. */
export function expectKitOk(reply: KitReply, what: string): Uint8Array {
  if (reply.status !== KitStatus.SUCCESS) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_IO,
      `kit answered ${what} with status ${kitStatusText(reply.status)}`,
    );
  }
  return reply.data;
}

// ---------------------------------------------------------------- device lines

export interface KitDeviceLine {
  /** Device name as the kit reports it: `ECC608`, `ECC508`, … (old firmware: `ECC108` for a 608). */
  readonly name: string;
  /** Bus between kit and device: `TWI` (I2C), `SWI`, `SPI`; empty when the kit omits it. */
  readonly iface: string;
  readonly status: number;
  /** The 8-bit I2C address (0xC0 for 7-bit 0x60); undefined when the kit gives none. */
  readonly address8: number | undefined;
}

const DEVICE_LINE = /^([!-~]+)(?: +([!-~]+))? +([0-9A-Fa-f]{2})\(([0-9A-Fa-f]*)\)$/;

/**
 * Parses a `board:device(NN)` answer, `ECC608 TWI 00(C0)`. A bare reply (`E0()`, `F9()`, `00()`)
 * means "no device at this index" and returns undefined.
 */
export function parseDeviceLine(line: string, maxLine = KIT_MAX_LINE): KitDeviceLine | undefined {
  const text = trimEol(checkLength(line, maxLine, 'kit device line'));
  if (REPLY.test(text)) return undefined;
  const m = DEVICE_LINE.exec(text);
  if (m === null) {
    throw new KeyhopError(
      ErrorCodes.DECODE_INVALID,
      `kit device line is not "<name> <bus> 00(<addr>)": ${quote(text)}`,
    );
  }
  const data = fromHex(m[4]!, 'kit device line');
  if (data.length > 1) {
    throw new KeyhopError(
      ErrorCodes.DECODE_INVALID,
      `kit device line has a ${data.length}-byte address: ${quote(text)}`,
    );
  }
  return { name: m[1]!, iface: m[2] ?? '', status: Number.parseInt(m[3]!, 16), address8: data[0] };
}

/** cryptoauthlib's `kit_init` compares only the first 4 characters of the name (§4.4). */
export function isEcc608Name(name: string): boolean {
  return name.slice(0, 4).toUpperCase() === 'ECC6';
}

/** Old AT88CK firmware reports a 608 as `ECC108` (cryptoauthlib #139, #167; atecc608.md §7.12). */
export function isOldEcc108Name(name: string): boolean {
  return name.toUpperCase().startsWith('ECC108');
}

// ---------------------------------------------------------------- requests (kit side)

export interface KitRequest {
  /** Lowercased words before the parenthesis: `['e', 't']`, `['board', 'device']`. */
  readonly words: readonly string[];
  /** Lowercased text between the parentheses (may be empty). */
  readonly arg: string;
}

const REQUEST = /^([a-z0-9]+(?::[a-z0-9]+)*)(?:\(([0-9a-z]*)\))?$/;

/**
 * Splits a request as Microchip's parser does: lowercase everything, `:` separates words, the
 * argument sits in parentheses (optional: cryptoauthlib sends `E:physical:interface:i2c` bare).
 * Returns undefined for anything else.
 */
export function parseKitRequest(line: string, maxLine = KIT_MAX_LINE): KitRequest | undefined {
  if (line.length > maxLine + 2) return undefined;
  const m = REQUEST.exec(trimEol(line).toLowerCase());
  if (m === null) return undefined;
  return { words: m[1]!.split(':'), arg: m[2] ?? '' };
}

/**
 * Microchip's parser takes a word as an abbreviation of the first keyword it is a prefix of
 * (`e` = `ecc`, `t` = `talk`, `s` = `sha` as a target, `sleep` as a command).
 */
export function matchKeyword(word: string | undefined, keywords: readonly string[]): string | undefined {
  if (word === undefined || word.length === 0) return undefined;
  return keywords.find((k) => k.startsWith(word));
}

// ---------------------------------------------------------------- hex

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += hex2(b);
  return s;
}

/** Strict hex (even length, 0-9A-Fa-f) → bytes; DECODE_INVALID otherwise. */
export function fromHex(hex: string, what: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9A-Fa-f]*$/.test(hex)) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `${what}: odd-length or non-hex data`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function hex2(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, '0');
}

// ---------------------------------------------------------------- helpers

function checkLength(line: string, maxLine: number, what: string): string {
  // A trailing "\r\n" does not count.
  if (line.length > maxLine + 2 || trimEol(line).length > maxLine) {
    throw new KeyhopError(ErrorCodes.DECODE_LIMIT, `${what} longer than ${maxLine} characters`);
  }
  return line;
}

function trimEol(line: string): string {
  let end = line.length;
  while (end > 0 && (line[end - 1] === '\n' || line[end - 1] === '\r')) end--;
  return end === line.length ? line : line.slice(0, end);
}

function checkByte(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `${what} ${v} is not a byte`);
  }
}

/** A short printable rendering of a line for error messages (kit lines carry no key material). */
function quote(text: string): string {
  const shown = text.length > 80 ? `${text.slice(0, 80)}…` : text;
  return JSON.stringify(shown);
}
