/**
 * The emulator's own copy of the chip constants it needs. It deliberately does not import the host
 * protocol files (vaults/atecc608/protocol/{opcodes,status,timing}.ts): the emulator is the
 * independent side of the tests, so a typo on one side shows up as a failing test instead of being
 * shared. Every value cites /work/shared/research/atecc608.md.
 */

/** Opcodes (§2.1). */
export const Op = {
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
  SELFTEST: 0x77,
  // Known but not emulated (they answer 0x03, see chip.ts).
  KDF: 0x56,
  AES: 0x51,
  SECURE_BOOT: 0x80,
  CHECKMAC: 0x28,
  DERIVE_KEY: 0x1c,
  GENDIG: 0x15,
  MAC: 0x08,
  PRIV_WRITE: 0x46,
} as const;

/** Status bytes (§1.6). */
export const Status = {
  SUCCESS: 0x00,
  MISCOMPARE: 0x01,
  PARSE_ERROR: 0x03,
  ECC_FAULT: 0x05,
  SELFTEST_ERROR: 0x07,
  HEALTH_TEST_ERROR: 0x08,
  EXECUTION_ERROR: 0x0f,
  WAKE: 0x11,
  WATCHDOG_ABOUT_TO_EXPIRE: 0xee,
  CRC_ERROR: 0xff,
} as const;

/** Command packet bounds (§1.4): count = 7 + data; the datasheet allows up to 155 data bytes. */
export const PACKET_MIN = 7;
export const PACKET_MAX = 7 + 155;

/** Clock divider selected by ChipMode bits 3-7 (§3.1): 0x00 = M0, 0x05 = M1, 0x0D = M2. */
export type ClockDivider = 'M0' | 'M1' | 'M2';

/**
 * cryptoauthlib's per-opcode execution budgets for the 608, ms, at M0/M1/M2
 * (`calib_execution.c`, same numbers in at-cryptoauth `clock_divider.rs`; §1.7 table).
 */
export const EXEC_BUDGET_MS: Readonly<Record<number, readonly [number, number, number]>> = {
  [Op.AES]: [27, 27, 27],
  [Op.CHECKMAC]: [40, 40, 40],
  [Op.COUNTER]: [25, 25, 25],
  [Op.DERIVE_KEY]: [50, 50, 50],
  [Op.ECDH]: [75, 172, 531],
  [Op.GENDIG]: [25, 35, 35],
  [Op.GENKEY]: [115, 215, 653],
  [Op.INFO]: [5, 5, 5],
  [Op.KDF]: [165, 165, 165],
  [Op.LOCK]: [35, 35, 35],
  [Op.MAC]: [55, 55, 55],
  [Op.NONCE]: [20, 20, 20],
  [Op.PRIV_WRITE]: [50, 50, 50],
  [Op.RANDOM]: [23, 23, 23],
  [Op.READ]: [5, 5, 5],
  [Op.SECURE_BOOT]: [80, 160, 480],
  [Op.SELFTEST]: [250, 625, 2324],
  [Op.SHA]: [36, 42, 75],
  [Op.SIGN]: [115, 220, 665],
  [Op.UPDATE_EXTRA]: [10, 10, 10],
  [Op.VERIFY]: [105, 295, 1085],
  [Op.WRITE]: [45, 45, 45],
};

/** tWHI: SDA high after a wake before the first transaction (§1.2). */
export const T_WHI_MS = 1.5;
/** tWHIST: the same when the power-on self-test is enabled (ChipOptions bit 0; §1.2). */
export const T_WHIST_MS = 20;
/** tWLO: the shortest low pulse that wakes every part (§1.2). */
export const T_WLO_US = 60;
/** tWATCHDOG typical: 1.3 s, or about 13 s with ChipMode bit 2 (§1.2). */
export const WATCHDOG_MS = 1300;
export const WATCHDOG_LONG_MS = 13_000;

/** Zone sizes (§3.1, §2.3). */
export const CONFIG_SIZE = 128;
export const OTP_SIZE = 64;
export const SLOT_COUNT = 16;
export function slotSize(slot: number): number {
  if (slot < 8) return 36;
  if (slot === 8) return 416;
  return 72;
}

/** Config byte offsets (§3.1). */
export const Cfg = {
  REVNUM: 4,
  AES_ENABLE: 13,
  I2C_ENABLE: 14,
  I2C_ADDRESS: 16,
  CHIP_MODE: 19,
  SLOT_CONFIG: 20,
  COUNTER0: 52,
  USER_EXTRA: 84,
  USER_EXTRA_ADD: 85,
  LOCK_VALUE: 86,
  LOCK_CONFIG: 87,
  SLOT_LOCKED: 88,
  CHIP_OPTIONS: 90,
  KEY_CONFIG: 96,
} as const;

/** Lock byte values (§3.1). */
export const UNLOCKED = 0x55;
export const LOCKED = 0x00;

/** Monotonic counter limit (§2.1 Counter). */
export const COUNTER_MAX = 2_097_151;

/** Random while the config zone is unlocked: FF FF 00 00 repeated (§2.1 Random, issues #51/#85/#121). */
export const RANDOM_TEST_PATTERN: Uint8Array = Uint8Array.from({ length: 32 }, (_, i) =>
  i % 4 < 2 ? 0xff : 0x00,
);

/** KeyConfig.KeyType value for a P-256 key (§3.2). */
export const KEY_TYPE_P256 = 4;
