import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';

/**
 * SlotConfig and KeyConfig, the two 16-bit little-endian policy words of each slot (atecc608.md
 * §3.2; calib_device.h and the ATECC508A complete datasheet).
 */

/**
 * SlotConfig decoded. `readKey`, `writeConfig` and the four flags cover all 16 bits; the P-256
 * private-key names are views of ReadKey bits 0–3 and WriteConfig bits 1–2 (0x2000 GenKey, 0x4000
 * PrivWrite).
 */
export interface SlotConfig {
  readonly readKey: number;
  readonly noMac: boolean;
  readonly limitedUse: boolean;
  readonly encryptRead: boolean;
  readonly isSecret: boolean;
  readonly writeKey: number;
  readonly writeConfig: number;
  readonly externalSign: boolean;
  readonly internalSign: boolean;
  readonly ecdhAllowed: boolean;
  readonly ecdhToNextSlot: boolean;
  readonly genKeyAllowed: boolean;
  readonly privWriteAllowed: boolean;
}

/**
 * Input to encodeSlotConfig: anything omitted is 0/false. A private-key flag that is given wins over
 * the matching bit of `readKey`/`writeConfig`, so a decoded SlotConfig can be edited by its names.
 */
export type SlotConfigFields = Partial<SlotConfig>;

export type KeyTypeName = 'P256' | 'AES' | 'SHA' | 'RFU';

/** KeyConfig bits 2–4: 4 P256, 6 AES, 7 SHA or other data; the rest reserved (§3.2). */
export const KEY_TYPE_CODES: Readonly<Record<Exclude<KeyTypeName, 'RFU'>, number>> = {
  P256: 4,
  AES: 6,
  SHA: 7,
};

export interface KeyConfig {
  readonly private: boolean;
  readonly pubInfo: boolean;
  readonly keyType: KeyTypeName;
  /** The raw 3-bit key type (keeps reserved codes). */
  readonly keyTypeCode: number;
  readonly lockable: boolean;
  readonly reqRandom: boolean;
  readonly reqAuth: boolean;
  readonly authKey: number;
  readonly persistentDisable: boolean;
  /** Bit 13, reserved. */
  readonly rfu: boolean;
  readonly x509id: number;
}

/**
 * Input to encodeKeyConfig: omitted flags are false, omitted numbers 0, an omitted key type is
 * `SHA` (7, plain data). A named `keyType` wins over `keyTypeCode`; `RFU` uses `keyTypeCode`.
 */
export type KeyConfigFields = Partial<Omit<KeyConfig, 'keyType'>> & {
  readonly keyType?: KeyTypeName | number;
};

const bit = (v: number, n: number): boolean => ((v >> n) & 1) === 1;

function nibble(what: string, v: number | undefined): number {
  const n = v ?? 0;
  if (!Number.isInteger(n) || n < 0 || n > 15) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${what} ${n} is not 0..15`);
  }
  return n;
}

function setBit(v: number, n: number, on: boolean | undefined): number {
  if (on === undefined) return v;
  return on ? v | (1 << n) : v & ~(1 << n);
}

function checkWord(what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `ATECC ${what} 0x${v.toString(16)} is not 16 bits`);
  }
}

export function decodeSlotConfig(word: number): SlotConfig {
  checkWord('SlotConfig', word);
  const readKey = word & 0x0f;
  const writeConfig = (word >> 12) & 0x0f;
  return {
    readKey,
    noMac: bit(word, 4),
    limitedUse: bit(word, 5),
    encryptRead: bit(word, 6),
    isSecret: bit(word, 7),
    writeKey: (word >> 8) & 0x0f,
    writeConfig,
    externalSign: bit(readKey, 0),
    internalSign: bit(readKey, 1),
    ecdhAllowed: bit(readKey, 2),
    ecdhToNextSlot: bit(readKey, 3),
    genKeyAllowed: bit(writeConfig, 1),
    privWriteAllowed: bit(writeConfig, 2),
  };
}

export function encodeSlotConfig(fields: SlotConfigFields): number {
  let readKey = nibble('ReadKey', fields.readKey);
  readKey = setBit(readKey, 0, fields.externalSign);
  readKey = setBit(readKey, 1, fields.internalSign);
  readKey = setBit(readKey, 2, fields.ecdhAllowed);
  readKey = setBit(readKey, 3, fields.ecdhToNextSlot);
  let writeConfig = nibble('WriteConfig', fields.writeConfig);
  writeConfig = setBit(writeConfig, 1, fields.genKeyAllowed);
  writeConfig = setBit(writeConfig, 2, fields.privWriteAllowed);
  let word = readKey | (nibble('WriteKey', fields.writeKey) << 8) | (writeConfig << 12);
  word = setBit(word, 4, fields.noMac ?? false);
  word = setBit(word, 5, fields.limitedUse ?? false);
  word = setBit(word, 6, fields.encryptRead ?? false);
  word = setBit(word, 7, fields.isSecret ?? false);
  return word;
}

function keyTypeName(code: number): KeyTypeName {
  for (const [name, value] of Object.entries(KEY_TYPE_CODES) as [KeyTypeName, number][]) {
    if (value === code) return name;
  }
  return 'RFU';
}

export function decodeKeyConfig(word: number): KeyConfig {
  checkWord('KeyConfig', word);
  const keyTypeCode = (word >> 2) & 0x07;
  return {
    private: bit(word, 0),
    pubInfo: bit(word, 1),
    keyType: keyTypeName(keyTypeCode),
    keyTypeCode,
    lockable: bit(word, 5),
    reqRandom: bit(word, 6),
    reqAuth: bit(word, 7),
    authKey: (word >> 8) & 0x0f,
    persistentDisable: bit(word, 12),
    rfu: bit(word, 13),
    x509id: (word >> 14) & 0x03,
  };
}

function keyTypeCodeOf(fields: KeyConfigFields): number {
  const { keyType, keyTypeCode } = fields;
  let code: number | undefined;
  if (typeof keyType === 'number') code = keyType;
  else if (keyType === undefined) code = keyTypeCode ?? KEY_TYPE_CODES.SHA;
  else if (keyType === 'RFU') code = keyTypeCode;
  else code = KEY_TYPE_CODES[keyType];
  if (code === undefined || !Number.isInteger(code) || code < 0 || code > 7) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `ATECC key type ${String(keyType ?? keyTypeCode)} is not 0..7`,
    );
  }
  return code;
}

export function encodeKeyConfig(fields: KeyConfigFields): number {
  const x509id = fields.x509id ?? 0;
  if (!Number.isInteger(x509id) || x509id < 0 || x509id > 3) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC X509id ${x509id} is not 0..3`);
  }
  let word = (keyTypeCodeOf(fields) << 2) | (nibble('AuthKey', fields.authKey) << 8) | (x509id << 14);
  word = setBit(word, 0, fields.private ?? false);
  word = setBit(word, 1, fields.pubInfo ?? false);
  word = setBit(word, 5, fields.lockable ?? false);
  word = setBit(word, 6, fields.reqRandom ?? false);
  word = setBit(word, 7, fields.reqAuth ?? false);
  word = setBit(word, 12, fields.persistentDisable ?? false);
  word = setBit(word, 13, fields.rfu ?? false);
  return word;
}

/** WriteConfig as the Write command reads it (508A datasheet table: x1xx encrypt, 0000 always, …). */
function writePolicy(sc: SlotConfig): string {
  if (sc.writeConfig & 0x4) return `encrypted write (key ${sc.writeKey})`;
  if (sc.writeConfig === 0) return 'writable';
  if (sc.writeConfig === 1) return 'writable while invalid';
  return 'not writable';
}

function readPolicy(sc: SlotConfig): string {
  if (sc.encryptRead) return `encrypted read (key ${sc.readKey})`;
  return sc.isSecret ? 'not readable' : 'clear read';
}

/**
 * One line for humans, e.g. `P256 private key: external sign, ECDH (clear), GenKey allowed`.
 * `locked` adds the slot-lock state.
 */
export function describeSlotPolicy(sc: SlotConfig, kc: KeyConfig, slot: number, locked = false): string {
  const parts: string[] = [];
  let kind: string;
  if (kc.keyType === 'P256' && kc.private) {
    kind = 'P256 private key';
    if (sc.externalSign) parts.push('external sign');
    if (sc.internalSign) parts.push('internal sign');
    if (sc.ecdhAllowed) parts.push(sc.ecdhToNextSlot ? `ECDH (to slot ${slot + 1})` : 'ECDH (clear)');
    if (sc.genKeyAllowed) parts.push('GenKey allowed');
    if (sc.privWriteAllowed) parts.push(`PrivWrite allowed (key ${sc.writeKey})`);
    if (parts.length === 0) parts.push('no use allowed');
    if (!sc.isSecret) parts.push('IsSecret not set');
  } else {
    if (kc.keyType === 'P256') kind = kc.pubInfo ? 'P256 public key (validated)' : 'P256 public key';
    else if (kc.keyType === 'AES') kind = 'AES key';
    else if (kc.keyType === 'SHA') kind = sc.isSecret ? 'secret data' : 'data';
    else kind = `key type ${kc.keyTypeCode}`;
    parts.push(readPolicy(sc), writePolicy(sc));
  }
  if (sc.limitedUse) parts.push('limited use');
  if (kc.reqRandom) parts.push('random nonce required');
  if (kc.reqAuth) parts.push(`authorization by key ${kc.authKey}`);
  if (kc.persistentDisable) parts.push('persistent-disable');
  if (kc.lockable) parts.push(locked ? 'locked' : 'lockable');
  else if (locked) parts.push('locked');
  return `${kind}: ${parts.join(', ')}`;
}
