import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { atcaCrc } from './crc.js';
import {
  decodeKeyConfig,
  decodeSlotConfig,
  describeSlotPolicy,
  encodeKeyConfig,
  encodeSlotConfig,
  type KeyConfig,
  type KeyConfigFields,
  type SlotConfig,
  type SlotConfigFields,
} from './slot-config.js';
import { CLOCK_DIVIDER_CODES, type ClockDivider, dividerFromChipMode } from './timing.js';
import {
  BLOCK_SIZE,
  CONFIG_ZONE_SIZE,
  checkSlot,
  SLOT_COUNT,
  slotSize,
  WORD_SIZE,
  type ZoneAddress,
} from './zones.js';

export * from './slot-config.js';

/** Byte offsets in the 128-byte config zone (atecc608.md §3.1; atecc608_config_t). */
export const ConfigOffset = {
  SN_0_3: 0,
  REVISION: 4,
  SN_4_8: 8,
  AES_ENABLE: 13,
  I2C_ENABLE: 14,
  I2C_ADDRESS: 16,
  COUNT_MATCH: 18,
  CHIP_MODE: 19,
  SLOT_CONFIG: 20,
  COUNTER_0: 52,
  COUNTER_1: 60,
  USE_LOCK: 68,
  VOLATILE_KEY_PERMISSION: 69,
  SECURE_BOOT: 70,
  KDF_IV_LOC: 72,
  KDF_IV_STR: 73,
  USER_EXTRA: 84,
  USER_EXTRA_ADD: 85,
  LOCK_VALUE: 86,
  LOCK_CONFIG: 87,
  SLOT_LOCKED: 88,
  CHIP_OPTIONS: 90,
  X509_FORMAT: 92,
  KEY_CONFIG: 96,
} as const;

/** Lock bytes: 0x55 unlocked; anything else counts as locked (0x00 after Lock), as cryptoauthlib reads them. */
export const LOCK_BYTE_UNLOCKED = 0x55;
export const LOCK_BYTE_LOCKED = 0x00;
/** UseLock bits 0–3 must be 0xA to enable it. */
const USE_LOCK_ENABLE = 0x0a;
const COUNTER_SIZE = 8;

export interface SlotInfo {
  readonly slot: number;
  readonly size: number;
  readonly slotConfig: SlotConfig;
  readonly keyConfig: KeyConfig;
  /** SlotLocked bit clear (the bit is 1 while the slot is unlocked). */
  readonly locked: boolean;
}

export interface CountMatch {
  readonly enabled: boolean;
  readonly slot: number;
  readonly raw: number;
}

export interface ChipMode {
  /** Bit 0: the I2C address is UserExtraAdd (byte 85) instead of byte 16. */
  readonly useUserExtraAdd: boolean;
  readonly ttlEnable: boolean;
  /** Bit 2: ~13 s watchdog instead of ~1.3 s. */
  readonly watchdogLong: boolean;
  /** Undefined for a divider code the datasheet does not list. */
  readonly clockDivider: ClockDivider | undefined;
  readonly clockDividerCode: number;
  readonly raw: number;
}

export interface UseLock {
  readonly enabled: boolean;
  readonly slot: number;
  readonly raw: number;
}

export interface VolatileKeyPermission {
  readonly enabled: boolean;
  readonly slot: number;
  readonly raw: number;
}

export interface SecureBoot {
  readonly mode: number;
  readonly persist: boolean;
  readonly randomNonce: boolean;
  readonly digestSlot: number;
  readonly publicKeySlot: number;
  readonly raw: number;
}

export interface ChipOptions {
  readonly powerOnSelfTest: boolean;
  readonly ioProtection: boolean;
  readonly kdfAesEnabled: boolean;
  /** Bits 8–9: 0 clear ECDH output allowed; otherwise encrypted or slot-only (pitfall 14). */
  readonly ecdhProtection: number;
  readonly kdfProtection: number;
  readonly ioProtectionKey: number;
  readonly raw: number;
}

export interface X509Format {
  readonly publicPosition: number;
  readonly templateLength: number;
}

export interface ParsedConfig {
  /** A copy of the 128 bytes parsed. */
  readonly bytes: Uint8Array;
  /** 9 bytes: config bytes 0–3 then 8–12. */
  readonly serialNumber: Uint8Array;
  readonly revision: Uint8Array;
  readonly aesEnabled: boolean;
  readonly i2cEnabled: boolean;
  /** 7-bit address (byte 16 bits 7..1). */
  readonly i2cAddress: number;
  readonly countMatch: CountMatch;
  readonly chipMode: ChipMode;
  readonly slots: readonly SlotInfo[];
  /** Counter0 and Counter1 as stored (8 bytes each, the chip's own encoding). */
  readonly counters: readonly [Uint8Array, Uint8Array];
  readonly useLock: UseLock;
  readonly volatileKeyPermission: VolatileKeyPermission;
  readonly secureBoot: SecureBoot;
  readonly kdfIvLoc: number;
  readonly kdfIvStr: Uint8Array;
  readonly userExtra: number;
  readonly userExtraAdd: number;
  readonly configLocked: boolean;
  readonly dataLocked: boolean;
  readonly chipOptions: ChipOptions;
  readonly x509format: readonly X509Format[];
}

const u16 = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);
const bit = (v: number, n: number): boolean => ((v >> n) & 1) === 1;

export function parseConfigZone(bytes: Uint8Array): ParsedConfig {
  if (!(bytes instanceof Uint8Array) || bytes.length !== CONFIG_ZONE_SIZE) {
    const n = bytes instanceof Uint8Array ? bytes.length : 0;
    throw new KeyhopError(
      n < CONFIG_ZONE_SIZE ? ErrorCodes.DECODE_TRUNCATED : ErrorCodes.DECODE_INVALID,
      `ATECC config zone must be ${CONFIG_ZONE_SIZE} bytes, got ${n}`,
    );
  }
  const b = bytes.slice();
  const O = ConfigOffset;
  const serialNumber = new Uint8Array(9);
  serialNumber.set(b.subarray(O.SN_0_3, O.SN_0_3 + 4));
  serialNumber.set(b.subarray(O.SN_4_8, O.SN_4_8 + 5), 4);
  const chipMode = b[O.CHIP_MODE]!;
  const countMatch = b[O.COUNT_MATCH]!;
  const useLock = b[O.USE_LOCK]!;
  const vkp = b[O.VOLATILE_KEY_PERMISSION]!;
  const secureBoot = u16(b, O.SECURE_BOOT);
  const chipOptions = u16(b, O.CHIP_OPTIONS);
  const slotLocked = u16(b, O.SLOT_LOCKED);
  const slots: SlotInfo[] = [];
  for (let slot = 0; slot < SLOT_COUNT; slot++) {
    slots.push({
      slot,
      size: slotSize(slot),
      slotConfig: decodeSlotConfig(u16(b, O.SLOT_CONFIG + 2 * slot)),
      keyConfig: decodeKeyConfig(u16(b, O.KEY_CONFIG + 2 * slot)),
      locked: !bit(slotLocked, slot),
    });
  }
  const x509format: X509Format[] = [];
  for (let i = 0; i < 4; i++) {
    const v = b[O.X509_FORMAT + i]!;
    x509format.push({ publicPosition: v & 0x0f, templateLength: v >> 4 });
  }
  return {
    bytes: b,
    serialNumber,
    revision: b.slice(O.REVISION, O.REVISION + 4),
    aesEnabled: bit(b[O.AES_ENABLE]!, 0),
    i2cEnabled: bit(b[O.I2C_ENABLE]!, 0),
    i2cAddress: b[O.I2C_ADDRESS]! >> 1,
    countMatch: { enabled: bit(countMatch, 0), slot: countMatch >> 4, raw: countMatch },
    chipMode: {
      useUserExtraAdd: bit(chipMode, 0),
      ttlEnable: bit(chipMode, 1),
      watchdogLong: bit(chipMode, 2),
      clockDivider: dividerFromChipMode(chipMode),
      clockDividerCode: chipMode >> 3,
      raw: chipMode,
    },
    slots,
    counters: [
      b.slice(O.COUNTER_0, O.COUNTER_0 + COUNTER_SIZE),
      b.slice(O.COUNTER_1, O.COUNTER_1 + COUNTER_SIZE),
    ],
    useLock: { enabled: (useLock & 0x0f) === USE_LOCK_ENABLE, slot: useLock >> 4, raw: useLock },
    volatileKeyPermission: { enabled: bit(vkp, 7), slot: vkp & 0x0f, raw: vkp },
    secureBoot: {
      mode: secureBoot & 0x03,
      persist: bit(secureBoot, 3),
      randomNonce: bit(secureBoot, 4),
      digestSlot: (secureBoot >> 8) & 0x0f,
      publicKeySlot: secureBoot >> 12,
      raw: secureBoot,
    },
    kdfIvLoc: b[O.KDF_IV_LOC]!,
    kdfIvStr: b.slice(O.KDF_IV_STR, O.KDF_IV_STR + 2),
    userExtra: b[O.USER_EXTRA]!,
    userExtraAdd: b[O.USER_EXTRA_ADD]!,
    dataLocked: b[O.LOCK_VALUE] !== LOCK_BYTE_UNLOCKED,
    configLocked: b[O.LOCK_CONFIG] !== LOCK_BYTE_UNLOCKED,
    chipOptions: {
      powerOnSelfTest: bit(chipOptions, 0),
      ioProtection: bit(chipOptions, 1),
      kdfAesEnabled: bit(chipOptions, 2),
      ecdhProtection: (chipOptions >> 8) & 0x03,
      kdfProtection: (chipOptions >> 10) & 0x03,
      ioProtectionKey: chipOptions >> 12,
      raw: chipOptions,
    },
    x509format,
  };
}

/** One line for humans about `slot`, e.g. `P256 private key: external sign, ECDH (clear), GenKey allowed`. */
export function describeSlot(cfg: ParsedConfig, slot: number): string {
  checkSlot(slot);
  const s = cfg.slots[slot]!;
  return describeSlotPolicy(s.slotConfig, s.keyConfig, slot, s.locked);
}

// ---- building ----

/** A slot's part of a config: each given policy word replaces the old one whole. */
export interface SlotFields {
  readonly slotConfig?: SlotConfigFields;
  readonly keyConfig?: KeyConfigFields;
  readonly locked?: boolean;
}

type Fields<T> = { readonly [K in keyof T]?: T[K] };

/**
 * Named fields of a config zone. Anything omitted keeps the byte of `bytes` (the base image; default
 * all zero with both zones and all slots unlocked). Sub-objects start from their `raw` value (else
 * the base byte) and then apply each named field, so reserved bits survive a parse/build round trip.
 */
export interface ConfigZoneFields {
  readonly bytes?: Uint8Array;
  readonly serialNumber?: Uint8Array;
  readonly revision?: Uint8Array;
  readonly aesEnabled?: boolean;
  readonly i2cEnabled?: boolean;
  readonly i2cAddress?: number;
  readonly countMatch?: Fields<CountMatch>;
  readonly chipMode?: Fields<ChipMode>;
  readonly slots?: readonly (SlotFields | undefined)[];
  readonly counters?: readonly [Uint8Array, Uint8Array];
  readonly useLock?: Fields<UseLock>;
  readonly volatileKeyPermission?: Fields<VolatileKeyPermission>;
  readonly secureBoot?: Fields<SecureBoot>;
  readonly kdfIvLoc?: number;
  readonly kdfIvStr?: Uint8Array;
  readonly userExtra?: number;
  readonly userExtraAdd?: number;
  readonly configLocked?: boolean;
  readonly dataLocked?: boolean;
  readonly chipOptions?: Fields<ChipOptions>;
  readonly x509format?: readonly X509Format[];
}

const limit = (what: string): KeyhopError =>
  new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC config field ${what} is out of range`);

function intIn(what: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw limit(`${what} (${v})`);
  return v;
}

function setBit(v: number, n: number, on: boolean | undefined): number {
  if (on === undefined) return v;
  return on ? v | (1 << n) : v & ~(1 << n);
}

function setField(v: number, shift: number, width: number, value: number | undefined, what: string): number {
  if (value === undefined) return v;
  const mask = (1 << width) - 1;
  intIn(what, value, mask);
  return (v & ~(mask << shift)) | (value << shift);
}

function putBytes(
  b: Uint8Array,
  at: number,
  value: Uint8Array | undefined,
  size: number,
  what: string,
): void {
  if (value === undefined) return;
  if (!(value instanceof Uint8Array) || value.length !== size) throw limit(`${what} (must be ${size} bytes)`);
  b.set(value, at);
}

function putU16(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = v >> 8;
}

function blankZone(): Uint8Array {
  const b = new Uint8Array(CONFIG_ZONE_SIZE);
  b[ConfigOffset.LOCK_VALUE] = LOCK_BYTE_UNLOCKED;
  b[ConfigOffset.LOCK_CONFIG] = LOCK_BYTE_UNLOCKED;
  putU16(b, ConfigOffset.SLOT_LOCKED, 0xffff);
  return b;
}

function lockByte(locked: boolean | undefined, current: number): number {
  if (locked === undefined) return current;
  if (!locked) return LOCK_BYTE_UNLOCKED;
  return current === LOCK_BYTE_UNLOCKED ? LOCK_BYTE_LOCKED : current;
}

function putSlot(b: Uint8Array, slot: number, fields: SlotFields): void {
  const O = ConfigOffset;
  if (fields.slotConfig !== undefined)
    putU16(b, O.SLOT_CONFIG + 2 * slot, encodeSlotConfig(fields.slotConfig));
  if (fields.keyConfig !== undefined) putU16(b, O.KEY_CONFIG + 2 * slot, encodeKeyConfig(fields.keyConfig));
  if (fields.locked !== undefined) {
    putU16(b, O.SLOT_LOCKED, setBit(u16(b, O.SLOT_LOCKED), slot, !fields.locked));
  }
}

/** The 128-byte config zone for `fields` (see ConfigZoneFields); a ParsedConfig builds back its bytes. */
export function buildConfigZone(fields: ConfigZoneFields): Uint8Array {
  const O = ConfigOffset;
  let b: Uint8Array;
  if (fields.bytes !== undefined) {
    if (!(fields.bytes instanceof Uint8Array) || fields.bytes.length !== CONFIG_ZONE_SIZE)
      throw limit('bytes');
    b = fields.bytes.slice();
  } else {
    b = blankZone();
  }
  if (fields.serialNumber !== undefined) {
    const sn = fields.serialNumber;
    if (!(sn instanceof Uint8Array) || sn.length !== 9) throw limit('serialNumber (must be 9 bytes)');
    b.set(sn.subarray(0, 4), O.SN_0_3);
    b.set(sn.subarray(4), O.SN_4_8);
  }
  putBytes(b, O.REVISION, fields.revision, 4, 'revision');
  b[O.AES_ENABLE] = setBit(b[O.AES_ENABLE]!, 0, fields.aesEnabled);
  b[O.I2C_ENABLE] = setBit(b[O.I2C_ENABLE]!, 0, fields.i2cEnabled);
  if (fields.i2cAddress !== undefined) {
    b[O.I2C_ADDRESS] = (intIn('i2cAddress', fields.i2cAddress, 0x7f) << 1) | (b[O.I2C_ADDRESS]! & 1);
  }
  if (fields.countMatch !== undefined) {
    const f = fields.countMatch;
    let v = intIn('countMatch.raw', f.raw ?? b[O.COUNT_MATCH]!, 0xff);
    v = setBit(v, 0, f.enabled);
    b[O.COUNT_MATCH] = setField(v, 4, 4, f.slot, 'countMatch.slot');
  }
  if (fields.chipMode !== undefined) {
    const f = fields.chipMode;
    let v = intIn('chipMode.raw', f.raw ?? b[O.CHIP_MODE]!, 0xff);
    v = setBit(v, 0, f.useUserExtraAdd);
    v = setBit(v, 1, f.ttlEnable);
    v = setBit(v, 2, f.watchdogLong);
    const code = f.clockDivider !== undefined ? CLOCK_DIVIDER_CODES[f.clockDivider] : f.clockDividerCode;
    b[O.CHIP_MODE] = setField(v, 3, 5, code, 'chipMode.clockDivider');
  }
  if (fields.slots !== undefined) {
    if (fields.slots.length > SLOT_COUNT) throw limit('slots (more than 16)');
    fields.slots.forEach((s, slot) => {
      if (s !== undefined) putSlot(b, slot, s);
    });
  }
  putBytes(b, O.COUNTER_0, fields.counters?.[0], COUNTER_SIZE, 'counters[0]');
  putBytes(b, O.COUNTER_1, fields.counters?.[1], COUNTER_SIZE, 'counters[1]');
  if (fields.useLock !== undefined) {
    const f = fields.useLock;
    let v = intIn('useLock.raw', f.raw ?? b[O.USE_LOCK]!, 0xff);
    if (f.enabled === true) v = (v & 0xf0) | USE_LOCK_ENABLE;
    else if (f.enabled === false && (v & 0x0f) === USE_LOCK_ENABLE) v &= 0xf0;
    b[O.USE_LOCK] = setField(v, 4, 4, f.slot, 'useLock.slot');
  }
  if (fields.volatileKeyPermission !== undefined) {
    const f = fields.volatileKeyPermission;
    let v = intIn('volatileKeyPermission.raw', f.raw ?? b[O.VOLATILE_KEY_PERMISSION]!, 0xff);
    v = setBit(v, 7, f.enabled);
    b[O.VOLATILE_KEY_PERMISSION] = setField(v, 0, 4, f.slot, 'volatileKeyPermission.slot');
  }
  if (fields.secureBoot !== undefined) {
    const f = fields.secureBoot;
    let v = intIn('secureBoot.raw', f.raw ?? u16(b, O.SECURE_BOOT), 0xffff);
    v = setField(v, 0, 2, f.mode, 'secureBoot.mode');
    v = setBit(v, 3, f.persist);
    v = setBit(v, 4, f.randomNonce);
    v = setField(v, 8, 4, f.digestSlot, 'secureBoot.digestSlot');
    putU16(b, O.SECURE_BOOT, setField(v, 12, 4, f.publicKeySlot, 'secureBoot.publicKeySlot'));
  }
  if (fields.kdfIvLoc !== undefined) b[O.KDF_IV_LOC] = intIn('kdfIvLoc', fields.kdfIvLoc, 0xff);
  putBytes(b, O.KDF_IV_STR, fields.kdfIvStr, 2, 'kdfIvStr');
  if (fields.userExtra !== undefined) b[O.USER_EXTRA] = intIn('userExtra', fields.userExtra, 0xff);
  if (fields.userExtraAdd !== undefined)
    b[O.USER_EXTRA_ADD] = intIn('userExtraAdd', fields.userExtraAdd, 0xff);
  b[O.LOCK_VALUE] = lockByte(fields.dataLocked, b[O.LOCK_VALUE]!);
  b[O.LOCK_CONFIG] = lockByte(fields.configLocked, b[O.LOCK_CONFIG]!);
  if (fields.chipOptions !== undefined) {
    const f = fields.chipOptions;
    let v = intIn('chipOptions.raw', f.raw ?? u16(b, O.CHIP_OPTIONS), 0xffff);
    v = setBit(v, 0, f.powerOnSelfTest);
    v = setBit(v, 1, f.ioProtection);
    v = setBit(v, 2, f.kdfAesEnabled);
    v = setField(v, 8, 2, f.ecdhProtection, 'chipOptions.ecdhProtection');
    v = setField(v, 10, 2, f.kdfProtection, 'chipOptions.kdfProtection');
    putU16(b, O.CHIP_OPTIONS, setField(v, 12, 4, f.ioProtectionKey, 'chipOptions.ioProtectionKey'));
  }
  if (fields.x509format !== undefined) {
    if (fields.x509format.length !== 4) throw limit('x509format (must have 4 entries)');
    fields.x509format.forEach((x, i) => {
      const pos = intIn('x509format.publicPosition', x.publicPosition, 15);
      b[O.X509_FORMAT + i] = pos | (intIn('x509format.templateLength', x.templateLength, 15) << 4);
    });
  }
  return b;
}

/** `zone` (128 bytes) with the policy of `slot` replaced by `fields`. */
export function withSlot(zone: Uint8Array, slot: number, fields: SlotFields): Uint8Array {
  checkSlot(slot);
  const slots: (SlotFields | undefined)[] = [];
  slots[slot] = fields;
  return buildConfigZone({ bytes: zone, slots });
}

function checkZone(zone: Uint8Array): void {
  if (!(zone instanceof Uint8Array) || zone.length !== CONFIG_ZONE_SIZE) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC config zone must be ${CONFIG_ZONE_SIZE} bytes`);
  }
}

/** The summary CRC Lock (config, mode 0x00) expects: the packet CRC over all 128 bytes (§2.1). */
export function lockSummaryCrc(zone: Uint8Array): number {
  checkZone(zone);
  return atcaCrc(zone);
}

export interface ConfigWrite {
  readonly address: ZoneAddress & { readonly zone: 'config' };
  readonly data: Uint8Array;
}

/**
 * The Writes that put `zone` on a chip the way cryptoauthlib's calib_write_config_zone does (§3.4,
 * pitfall 15): block 0 word by word from byte 16, block 1 whole, block 2 word by word skipping word 5
 * (bytes 84–87: UserExtra, UserExtraAdd and the lock bytes), block 3 whole. Bytes 0–15 and 84–87
 * are never written; 84/85 need UpdateExtra.
 */
export function configWritePlan(zone: Uint8Array): ConfigWrite[] {
  checkZone(zone);
  const plan: ConfigWrite[] = [];
  const word = (block: number, offset: number) => {
    const at = block * BLOCK_SIZE + offset * WORD_SIZE;
    plan.push({ address: { zone: 'config', block, offset }, data: zone.slice(at, at + WORD_SIZE) });
  };
  const whole = (block: number) => {
    const at = block * BLOCK_SIZE;
    plan.push({ address: { zone: 'config', block, offset: 0 }, data: zone.slice(at, at + BLOCK_SIZE) });
  };
  for (let w = 4; w < 8; w++) word(0, w);
  whole(1);
  for (let w = 0; w < 8; w++) if (w !== 5) word(2, w);
  whole(3);
  return plan;
}
