/**
 * Opcodes and mode/param bits of the ATECC608 commands keyhop uses (atecc608.md §2.1; values as in
 * cryptoauthlib's calib_command.h).
 */
export const Opcode = {
  INFO: 0x30,
  RANDOM: 0x1b,
  NONCE: 0x16,
  GENKEY: 0x40,
  SIGN: 0x41,
  VERIFY: 0x45,
  ECDH: 0x43,
  SHA: 0x47,
  READ: 0x02,
  WRITE: 0x12,
  LOCK: 0x17,
  UPDATE_EXTRA: 0x20,
  COUNTER: 0x24,
  KDF: 0x56,
  AES: 0x51,
  SELF_TEST: 0x77,
  SECURE_BOOT: 0x80,
  CHECK_MAC: 0x28,
  DERIVE_KEY: 0x1c,
  GEN_DIG: 0x15,
  MAC: 0x08,
  PRIV_WRITE: 0x46,
} as const;

export type OpcodeName = keyof typeof Opcode;

const NAMES: ReadonlyMap<number, string> = new Map([
  [Opcode.INFO, 'Info'],
  [Opcode.RANDOM, 'Random'],
  [Opcode.NONCE, 'Nonce'],
  [Opcode.GENKEY, 'GenKey'],
  [Opcode.SIGN, 'Sign'],
  [Opcode.VERIFY, 'Verify'],
  [Opcode.ECDH, 'ECDH'],
  [Opcode.SHA, 'SHA'],
  [Opcode.READ, 'Read'],
  [Opcode.WRITE, 'Write'],
  [Opcode.LOCK, 'Lock'],
  [Opcode.UPDATE_EXTRA, 'UpdateExtra'],
  [Opcode.COUNTER, 'Counter'],
  [Opcode.KDF, 'KDF'],
  [Opcode.AES, 'AES'],
  [Opcode.SELF_TEST, 'SelfTest'],
  [Opcode.SECURE_BOOT, 'SecureBoot'],
  [Opcode.CHECK_MAC, 'CheckMac'],
  [Opcode.DERIVE_KEY, 'DeriveKey'],
  [Opcode.GEN_DIG, 'GenDig'],
  [Opcode.MAC, 'MAC'],
  [Opcode.PRIV_WRITE, 'PrivWrite'],
]);

/** Datasheet name of an opcode (`Sign`), or `opcode 0xNN`. */
export function opcodeName(opcode: number): string {
  return NAMES.get(opcode) ?? `opcode 0x${opcode.toString(16).padStart(2, '0')}`;
}

export const InfoMode = {
  REVISION: 0x00,
  KEY_VALID: 0x01,
  STATE: 0x02,
  GPIO: 0x03,
  VOL_KEY_PERMIT: 0x04,
} as const;

export const NonceMode = {
  /** Random mode, update the RNG seed first. */
  SEED_UPDATE: 0x00,
  /** Random mode, no seed update. */
  NO_SEED_UPDATE: 0x01,
  PASS_THROUGH: 0x03,
  /** Pass-through of 64 bytes instead of 32. */
  INPUT_64: 0x20,
  TARGET_TEMPKEY: 0x00,
  TARGET_MSGDIGBUF: 0x40,
  TARGET_ALTKEYBUF: 0x80,
} as const;

/** Nonce param2 in random mode. */
export const NonceParam2 = { USE_RNG: 0x0000, USE_TEMPKEY: 0x8000 } as const;
export const NONCE_NUMIN_SIZE = 20;

export const GenKeyMode = {
  PUBLIC: 0x00,
  PRIVATE: 0x04,
  DIGEST: 0x08,
  PUBKEY_DIGEST: 0x10,
  MAC: 0x20,
} as const;

/** GenKey param2 that targets TempKey instead of a slot (608 only). */
export const TEMPKEY_KEY_ID = 0xffff;

export const SignMode = {
  INTERNAL: 0x00,
  INVALIDATE: 0x01,
  /** Message comes from the message-digest buffer instead of TempKey. */
  SOURCE_MSGDIGBUF: 0x20,
  INCLUDE_SN: 0x40,
  EXTERNAL: 0x80,
} as const;

export const VerifyMode = {
  STORED: 0x00,
  VALIDATE_EXTERNAL: 0x01,
  EXTERNAL: 0x02,
  VALIDATE: 0x03,
  INVALIDATE: 0x07,
  SOURCE_MSGDIGBUF: 0x20,
  MAC: 0x80,
} as const;

/** Verify param2 in external mode: the key type. */
export const VerifyKeyType = { P256: 0x0004 } as const;

export const EcdhMode = {
  SOURCE_SLOT: 0x00,
  SOURCE_TEMPKEY: 0x01,
  ENCRYPT_OUTPUT: 0x02,
  /** Bits 2–3: 508-compatible (SlotConfig bit 3 decides), slot, TempKey, output buffer. */
  RESULT_COMPAT: 0x00,
  RESULT_SLOT: 0x04,
  RESULT_TEMPKEY: 0x08,
  RESULT_OUTPUT: 0x0c,
} as const;

export const ShaMode = {
  START: 0x00,
  UPDATE: 0x01,
  END: 0x02,
  PUBLIC: 0x03,
  HMAC_START: 0x04,
  READ_CONTEXT: 0x06,
  WRITE_CONTEXT: 0x07,
  TARGET_TEMPKEY: 0x00,
  TARGET_MSGDIGBUF: 0x40,
  TARGET_OUTPUT: 0xc0,
} as const;
export const SHA_BLOCK_SIZE = 64;

export const Zone = { CONFIG: 0x00, OTP: 0x01, DATA: 0x02 } as const;

/** Read/Write param1 bits on top of the zone. */
export const ZoneMode = { SIZE_32: 0x80, ENCRYPTED: 0x40 } as const;

export const LockMode = {
  CONFIG: 0x00,
  DATA: 0x01,
  /** Lock one slot: SLOT | slot << 2. */
  SLOT: 0x02,
  IGNORE_CRC: 0x80,
} as const;

export const UpdateExtraMode = { USER_EXTRA: 0x00, USER_EXTRA_ADD: 0x01, DECREMENT_LIMITED: 0x02 } as const;

export const CounterMode = { READ: 0x00, INCREMENT: 0x01 } as const;
/** Largest value a monotonic counter reaches (§2.1). */
export const COUNTER_MAX = 2_097_151;

/**
 * SelfTest bitmap. ECDSA is 0x02 (cryptoauthlib SELFTEST_MODE_ECDSA_SIGN_VERIFY), which is what makes
 * ALL = 0x3B; atecc608.md §2.1 lists it as 0x04, a slip.
 */
export const SelfTestBit = {
  RNG: 0x01,
  ECDSA: 0x02,
  ECDH: 0x08,
  AES: 0x10,
  SHA: 0x20,
  ALL: 0x3b,
} as const;
