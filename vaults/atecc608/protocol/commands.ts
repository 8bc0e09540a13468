import { concatBytes } from '@noble/hashes/utils.js';
import { type ErrorCode, ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import {
  CounterMode,
  EcdhMode,
  GenKeyMode,
  InfoMode,
  LockMode,
  NONCE_NUMIN_SIZE,
  NonceMode,
  NonceParam2,
  Opcode,
  SelfTestBit,
  SHA_BLOCK_SIZE,
  ShaMode,
  SignMode,
  TEMPKEY_KEY_ID,
  UpdateExtraMode,
  VerifyKeyType,
  VerifyMode,
  ZoneMode,
} from './opcodes.js';
import type { Command } from './packet.js';
import { Status } from './status.js';
import {
  type AccessSize,
  CONFIG_ZONE_SIZE,
  checkSlot,
  describeAddress,
  encodeAddress,
  WORD_SIZE,
  ZONE_CODES,
  type ZoneAddress,
} from './zones.js';

/**
 * One builder per ATECC608 command (atecc608.md §2.1, §2.2) and a parser for each response's data.
 * Builders validate their arguments (KEY_INVALID for slots, keys, digests and signatures;
 * ENCODE_LIMIT for lengths, modes and addresses) so nothing malformed reaches the chip. Public keys
 * are raw X‖Y (64 bytes, no 0x04 prefix) and signatures raw R‖S (64 bytes).
 */

export const DIGEST_SIZE = 32;
export const PUBLIC_KEY_SIZE = 64;
export const SIGNATURE_SIZE = 64;
export const RANDOM_SIZE = 32;
export const SECRET_SIZE = 32;

/** Where Sign, Verify and Nonce pass-through keep the message. The 608 prefers MsgDigBuf. */
export type MessageSource = 'tempkey' | 'msgdigbuf';
export type NonceTarget = 'tempkey' | 'msgdigbuf' | 'altkeybuf';

// ---- argument checks ----

function checkLength(
  what: string,
  bytes: Uint8Array,
  sizes: readonly number[],
  code: ErrorCode = ErrorCodes.KEY_INVALID,
): void {
  if (!(bytes instanceof Uint8Array) || !sizes.includes(bytes.length)) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new KeyhopError(code, `ATECC ${what} must be ${sizes.join(' or ')} bytes, got ${got}`);
  }
}

function checkInt(what: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${what} ${v} is not ${min}..${max}`);
  }
}

function sourceBit(source: MessageSource, msgDigBufBit: number): number {
  if (source === 'msgdigbuf') return msgDigBufBit;
  if (source === 'tempkey') return 0;
  throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC message source ${String(source)} is unknown`);
}

const cmd = (opcode: number, param1: number, param2: number, data?: Uint8Array): Command =>
  data === undefined ? { opcode, param1, param2 } : { opcode, param1, param2, data: data.slice() };

// ---- response checks ----

function expectData(what: string, data: Uint8Array, size: number): Uint8Array {
  if (!(data instanceof Uint8Array) || data.length !== size) {
    const got = data instanceof Uint8Array ? data.length : 'no';
    throw new KeyhopError(
      ErrorCodes.DECODE_INVALID,
      `ATECC ${what} response has ${got} bytes, expected ${size}`,
    );
  }
  return data.slice();
}

// ---- Info ----

export type InfoKind = 'revision' | 'keyValid' | 'state';

/** Info: revision (param2 0), key-valid flag of `slot`, or the chip state word. */
export function infoCommand(kind: InfoKind = 'revision', slot = 0): Command {
  if (kind === 'revision') return cmd(Opcode.INFO, InfoMode.REVISION, 0);
  if (kind === 'state') return cmd(Opcode.INFO, InfoMode.STATE, 0);
  if (kind === 'keyValid') {
    checkSlot(slot);
    return cmd(Opcode.INFO, InfoMode.KEY_VALID, slot);
  }
  throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC Info mode ${String(kind)} is unknown`);
}

/** The 4 bytes every Info mode returns (revision: `00 00 60 02` on a 608A). */
export function parseInfo(data: Uint8Array): Uint8Array {
  return expectData('Info', data, 4);
}

/** Info KeyValid: byte 0 is 1 when the slot holds a valid key. */
export function parseKeyValid(data: Uint8Array): boolean {
  return parseInfo(data)[0] === 1;
}

// ---- Random ----

export function randomCommand(): Command {
  return cmd(Opcode.RANDOM, 0, 0);
}

export function parseRandom(data: Uint8Array): Uint8Array {
  return expectData('Random', data, RANDOM_SIZE);
}

/**
 * True for the `FF FF 00 00` × 8 pattern Random (and Nonce random mode) return while the config zone
 * is unlocked (§2.1). Whether that is acceptable is the caller's decision.
 */
export function isTestPattern(bytes: Uint8Array): boolean {
  if (bytes.length !== RANDOM_SIZE) return false;
  return bytes.every((b, i) => b === ((i & 3) < 2 ? 0xff : 0x00));
}

// ---- Nonce ----

const NONCE_TARGETS: Readonly<Record<NonceTarget, number>> = {
  tempkey: NonceMode.TARGET_TEMPKEY,
  msgdigbuf: NonceMode.TARGET_MSGDIGBUF,
  altkeybuf: NonceMode.TARGET_ALTKEYBUF,
};

function targetBits(target: NonceTarget): number {
  const bits = NONCE_TARGETS[target];
  if (bits === undefined)
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC Nonce target ${target} is unknown`);
  return bits;
}

/**
 * Nonce random mode: TempKey = SHA-256(RandOut ‖ NumIn ‖ …). `numIn` is the 20-byte host input;
 * `updateSeed` (default true) refreshes the RNG seed first; `useTempKey` makes the chip use TempKey
 * instead of the RNG for RandOut.
 */
export function nonceRandomCommand(
  numIn: Uint8Array,
  options: { updateSeed?: boolean; useTempKey?: boolean } = {},
): Command {
  checkLength('Nonce NumIn', numIn, [NONCE_NUMIN_SIZE], ErrorCodes.ENCODE_LIMIT);
  const mode = options.updateSeed === false ? NonceMode.NO_SEED_UPDATE : NonceMode.SEED_UPDATE;
  const param2 = options.useTempKey ? NonceParam2.USE_TEMPKEY : NonceParam2.USE_RNG;
  return cmd(Opcode.NONCE, mode, param2, numIn);
}

/** Nonce random mode returns RandOut (32 bytes). */
export function parseNonceRandom(data: Uint8Array): Uint8Array {
  return expectData('Nonce', data, RANDOM_SIZE);
}

/** Nonce pass-through: copies 32 (or 64) bytes into TempKey, MsgDigBuf or AltKeyBuf. Status response. */
export function noncePassThroughCommand(input: Uint8Array, target: NonceTarget = 'msgdigbuf'): Command {
  checkLength('Nonce input', input, [32, 64], ErrorCodes.ENCODE_LIMIT);
  const size = input.length === 64 ? NonceMode.INPUT_64 : 0;
  return cmd(Opcode.NONCE, NonceMode.PASS_THROUGH | size | targetBits(target), 0, input);
}

// ---- GenKey ----

/** GenKey 0x04: a new P-256 private key in `slot` (or TempKey, 608 only). Returns its public key. */
export function genKeyPrivateCommand(slot: number | 'tempkey'): Command {
  if (slot === 'tempkey') return cmd(Opcode.GENKEY, GenKeyMode.PRIVATE, TEMPKEY_KEY_ID);
  checkSlot(slot);
  return cmd(Opcode.GENKEY, GenKeyMode.PRIVATE, slot);
}

/** GenKey 0x00: the public key of the private key in `slot` (needs KeyConfig.PubInfo). */
export function genKeyPublicCommand(slot: number): Command {
  checkSlot(slot);
  return cmd(Opcode.GENKEY, GenKeyMode.PUBLIC, slot);
}

/** X‖Y, 64 bytes. */
export function parsePublicKey(data: Uint8Array): Uint8Array {
  return expectData('GenKey', data, PUBLIC_KEY_SIZE);
}

// ---- Sign ----

/** Sign an external message already loaded in TempKey (0x80) or MsgDigBuf (0xA0). */
export function signExternalCommand(slot: number, source: MessageSource = 'msgdigbuf'): Command {
  checkSlot(slot);
  return cmd(Opcode.SIGN, SignMode.EXTERNAL | sourceBit(source, SignMode.SOURCE_MSGDIGBUF), slot);
}

/** R‖S, 64 bytes. */
export function parseSignature(data: Uint8Array): Uint8Array {
  return expectData('Sign', data, SIGNATURE_SIZE);
}

// ---- Verify ----

/** Verify external (0x02, +0x20 MsgDigBuf): P-256 key type 0x0004, data signature ‖ public key. */
export function verifyExternalCommand(
  signature: Uint8Array,
  publicKey: Uint8Array,
  source: MessageSource = 'msgdigbuf',
): Command {
  checkLength('signature', signature, [SIGNATURE_SIZE]);
  checkLength('public key', publicKey, [PUBLIC_KEY_SIZE]);
  const mode = VerifyMode.EXTERNAL | sourceBit(source, VerifyMode.SOURCE_MSGDIGBUF);
  return cmd(Opcode.VERIFY, mode, VerifyKeyType.P256, concatBytes(signature, publicKey));
}

/** Verify stored (0x00, +0x20 MsgDigBuf): against the public key stored in `slot`. */
export function verifyStoredCommand(
  slot: number,
  signature: Uint8Array,
  source: MessageSource = 'msgdigbuf',
): Command {
  checkSlot(slot);
  checkLength('signature', signature, [SIGNATURE_SIZE]);
  const mode = VerifyMode.STORED | sourceBit(source, VerifyMode.SOURCE_MSGDIGBUF);
  return cmd(Opcode.VERIFY, mode, slot, signature);
}

/** Verify answers with a status: 0x00 valid, 0x01 miscompare; anything else is not a verdict. */
export function verifyVerdict(status: number): boolean | undefined {
  if (status === Status.SUCCESS) return true;
  if (status === Status.MISCOMPARE) return false;
  return undefined;
}

// ---- ECDH ----

/** Where ECDH puts its result (mode bits 2–3). `compat` lets SlotConfig bit 3 decide. */
export type EcdhResult = 'compat' | 'slot' | 'tempkey' | 'output';

const ECDH_RESULTS: Readonly<Record<EcdhResult, number>> = {
  compat: EcdhMode.RESULT_COMPAT,
  slot: EcdhMode.RESULT_SLOT,
  tempkey: EcdhMode.RESULT_TEMPKEY,
  output: EcdhMode.RESULT_OUTPUT,
};

/**
 * ECDH between the private key in `slot` (or TempKey) and `peer` (X‖Y). Defaults give mode 0x0C:
 * slot source, result in clear in the output buffer. `encrypt` sets bit 1 (IO-protection key).
 */
export function ecdhCommand(
  slot: number | 'tempkey',
  peer: Uint8Array,
  options: { result?: EcdhResult; encrypt?: boolean } = {},
): Command {
  checkLength('peer public key', peer, [PUBLIC_KEY_SIZE]);
  const result = ECDH_RESULTS[options.result ?? 'output'];
  if (result === undefined) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ECDH result ${String(options.result)} is unknown`);
  }
  const encrypt = options.encrypt ? EcdhMode.ENCRYPT_OUTPUT : 0;
  if (slot === 'tempkey') return cmd(Opcode.ECDH, EcdhMode.SOURCE_TEMPKEY | encrypt | result, 0, peer);
  checkSlot(slot);
  return cmd(Opcode.ECDH, EcdhMode.SOURCE_SLOT | encrypt | result, slot, peer);
}

/** Clear ECDH output: the shared x-coordinate, 32 bytes. */
export function parseEcdhSecret(data: Uint8Array): Uint8Array {
  return expectData('ECDH', data, SECRET_SIZE);
}

/** Encrypted ECDH output: 32 encrypted bytes then the 32-byte OutNonce. */
export function parseEcdhEncrypted(data: Uint8Array): { encrypted: Uint8Array; outNonce: Uint8Array } {
  const all = expectData('ECDH', data, 2 * SECRET_SIZE);
  return { encrypted: all.slice(0, SECRET_SIZE), outNonce: all.slice(SECRET_SIZE) };
}

// ---- Read / Write ----

/** Read 4 or 32 bytes (§2.3 addressing; clear reads only). */
export function readCommand(address: ZoneAddress, size: AccessSize): Command {
  const param2 = encodeAddress(address, size);
  const param1 = ZONE_CODES[address.zone] | (size === 32 ? ZoneMode.SIZE_32 : 0);
  return cmd(Opcode.READ, param1, param2);
}

export function parseRead(data: Uint8Array, size: AccessSize): Uint8Array {
  return expectData('Read', data, size);
}

// Config bytes that Write can never change: 0–15 (serial, revision, …) and 84–87 (UserExtra,
// UserExtraAdd, lock bytes; UpdateExtra/Lock only). §3.4, pitfall 15.
const CONFIG_READ_ONLY: readonly (readonly [number, number])[] = [
  [0, 16],
  [84, 88],
];

/** Plain Write of 4 or 32 bytes. Config writes over bytes 0–15 or 84–87 are refused here. */
export function writeCommand(address: ZoneAddress, data: Uint8Array): Command {
  checkLength(`Write to ${describeAddress(address)}`, data, [WORD_SIZE, 32], ErrorCodes.ENCODE_LIMIT);
  const size = data.length as AccessSize;
  const param2 = encodeAddress(address, size);
  if (address.zone === 'config') {
    const start = address.block * 32 + (address.offset ?? 0) * WORD_SIZE;
    const end = Math.min(start + size, CONFIG_ZONE_SIZE);
    for (const [lo, hi] of CONFIG_READ_ONLY) {
      if (start < hi && end > lo) {
        throw new KeyhopError(
          ErrorCodes.ENCODE_LIMIT,
          `ATECC Write to config bytes ${start}..${end - 1} would touch bytes ${lo}..${hi - 1}, which Write cannot change`,
        );
      }
    }
  }
  const param1 = ZONE_CODES[address.zone] | (size === 32 ? ZoneMode.SIZE_32 : 0);
  return cmd(Opcode.WRITE, param1, param2, data);
}

// ---- Lock ----

function checkCrc(crc: number): void {
  checkInt('lock summary CRC', crc, 0, 0xffff);
}

/** Lock the config zone; with `summaryCrc` the chip checks it (mode 0x00), else mode 0x80. */
export function lockConfigCommand(summaryCrc?: number): Command {
  if (summaryCrc === undefined) return cmd(Opcode.LOCK, LockMode.CONFIG | LockMode.IGNORE_CRC, 0);
  checkCrc(summaryCrc);
  return cmd(Opcode.LOCK, LockMode.CONFIG, summaryCrc);
}

/** Lock the data and OTP zones; with `summaryCrc` mode 0x01, else 0x81. */
export function lockDataCommand(summaryCrc?: number): Command {
  if (summaryCrc === undefined) return cmd(Opcode.LOCK, LockMode.DATA | LockMode.IGNORE_CRC, 0);
  checkCrc(summaryCrc);
  return cmd(Opcode.LOCK, LockMode.DATA, summaryCrc);
}

/** Lock one slot: mode 0x02 | slot << 2, param2 0, as cryptoauthlib sends it (§9 q7). */
export function lockSlotCommand(slot: number): Command {
  checkSlot(slot);
  return cmd(Opcode.LOCK, LockMode.SLOT | (slot << 2), 0);
}

// ---- SHA ----

export type ShaTarget = 'tempkey' | 'msgdigbuf' | 'output';

const SHA_TARGETS: Readonly<Record<ShaTarget, number>> = {
  tempkey: ShaMode.TARGET_TEMPKEY,
  msgdigbuf: ShaMode.TARGET_MSGDIGBUF,
  output: ShaMode.TARGET_OUTPUT,
};

export function shaStartCommand(): Command {
  return cmd(Opcode.SHA, ShaMode.START, 0);
}

/** One full 64-byte block. */
export function shaUpdateCommand(block: Uint8Array): Command {
  checkLength('SHA Update block', block, [SHA_BLOCK_SIZE], ErrorCodes.ENCODE_LIMIT);
  return cmd(Opcode.SHA, ShaMode.UPDATE, SHA_BLOCK_SIZE, block);
}

/**
 * The last 0..63 bytes; returns the digest. The default target (TempKey, mode 0x02) is what
 * cryptoauthlib's atcab_sha_end sends; the digest is also in the output.
 */
export function shaEndCommand(tail: Uint8Array, target: ShaTarget = 'tempkey'): Command {
  if (!(tail instanceof Uint8Array) || tail.length >= SHA_BLOCK_SIZE) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, 'ATECC SHA End takes 0..63 bytes');
  }
  const bits = SHA_TARGETS[target];
  if (bits === undefined)
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC SHA target ${target} is unknown`);
  return cmd(Opcode.SHA, ShaMode.END | bits, tail.length, tail);
}

/** SHA Public: hash the public key stored in `slot`. */
export function shaPublicCommand(slot: number): Command {
  checkSlot(slot);
  return cmd(Opcode.SHA, ShaMode.PUBLIC, slot);
}

export function parseShaDigest(data: Uint8Array): Uint8Array {
  return expectData('SHA', data, DIGEST_SIZE);
}

// ---- SelfTest ----

export function selfTestCommand(bitmap: number = SelfTestBit.ALL): Command {
  checkInt('SelfTest bitmap', bitmap, 1, SelfTestBit.ALL);
  if ((bitmap & ~SelfTestBit.ALL) !== 0) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `ATECC SelfTest bitmap 0x${bitmap.toString(16)} has unknown bits`,
    );
  }
  return cmd(Opcode.SELF_TEST, bitmap, 0);
}

/**
 * SelfTest answers with one byte in a status-sized packet: 0 = passed, else the bitmap of failed
 * tests, which can look like an error code (calib_selftest.c). A byte that is a subset of the
 * requested tests is read as failures, except the wake, watchdog and CRC statuses; anything else
 * returns undefined (a real status error).
 */
export function selfTestFailures(status: number, requested: number): number | undefined {
  if (status === Status.WAKE || status === Status.WATCHDOG || status === Status.COMM_ERROR) return undefined;
  return (status & ~requested) === 0 ? status : undefined;
}

// ---- Counter ----

export function counterCommand(counter: number, increment: boolean): Command {
  if (counter !== 0 && counter !== 1) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC counter ${counter} is not 0 or 1`);
  }
  return cmd(Opcode.COUNTER, increment ? CounterMode.INCREMENT : CounterMode.READ, counter);
}

/** The counter value, 4 bytes little-endian. */
export function parseCounter(data: Uint8Array): number {
  const b = expectData('Counter', data, 4);
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
}

// ---- UpdateExtra ----

export type UpdateExtraKind = 'userExtra' | 'userExtraAdd' | 'decrementLimited';

const UPDATE_EXTRA_MODES: Readonly<Record<UpdateExtraKind, number>> = {
  userExtra: UpdateExtraMode.USER_EXTRA,
  userExtraAdd: UpdateExtraMode.USER_EXTRA_ADD,
  decrementLimited: UpdateExtraMode.DECREMENT_LIMITED,
};

/**
 * UpdateExtra: mode 0 writes config byte 84, mode 1 byte 85 (alternate I2C address), each once;
 * mode 2 decrements the limited-use counter of slot `value`.
 */
export function updateExtraCommand(mode: UpdateExtraKind | number, value: number): Command {
  const code = typeof mode === 'number' ? mode : UPDATE_EXTRA_MODES[mode];
  if (code === undefined || !Object.values(UPDATE_EXTRA_MODES).includes(code)) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC UpdateExtra mode ${String(mode)} is unknown`);
  }
  if (code === UpdateExtraMode.DECREMENT_LIMITED) checkSlot(value);
  else checkInt('UpdateExtra value', value, 0, 0xff);
  return cmd(Opcode.UPDATE_EXTRA, code, value);
}
