import { Cfg, CONFIG_SIZE, OTP_SIZE, SLOT_COUNT, slotSize, UNLOCKED } from './constants.js';
import { type KeyConfig, keyConfigOf, type SlotConfig, slotConfigOf, u16 } from './policy.js';

export type Revision = '608A' | '608B';

/**
 * The chip's EEPROM: config zone, OTP zone, data slots, plus what a real chip keeps inside the data
 * zone but never lets out (private keys, kept apart here so no code path can read them by accident)
 * and the two monotonic counters.
 */
export class ChipMemory {
  readonly config: Uint8Array;
  readonly otp: Uint8Array;
  readonly slots: Uint8Array[];
  readonly privateKeys: (Uint8Array | undefined)[];
  readonly counters: [number, number];

  constructor(init: {
    config: Uint8Array;
    otp: Uint8Array;
    slots: Uint8Array[];
    privateKeys: (Uint8Array | undefined)[];
    counters: [number, number];
  }) {
    this.config = init.config;
    this.otp = init.otp;
    this.slots = init.slots;
    this.privateKeys = init.privateKeys;
    this.counters = init.counters;
  }

  /** A blank part as shipped: both zones unlocked, SN 01 23 … EE, address 0xC0 (§3.3). */
  static factory(revision: Revision, serial: Uint8Array): ChipMemory {
    return new ChipMemory({
      config: factoryConfig(revision, serial),
      otp: new Uint8Array(OTP_SIZE),
      slots: Array.from({ length: SLOT_COUNT }, (_, s) => new Uint8Array(slotSize(s))),
      privateKeys: Array.from({ length: SLOT_COUNT }, () => undefined),
      counters: [0, 0],
    });
  }

  /** Any value other than 0x55 counts as locked (§3.1 LockConfig/LockValue). */
  get configLocked(): boolean {
    return this.config[Cfg.LOCK_CONFIG] !== UNLOCKED;
  }

  get dataLocked(): boolean {
    return this.config[Cfg.LOCK_VALUE] !== UNLOCKED;
  }

  get chipMode(): number {
    return this.config[Cfg.CHIP_MODE] ?? 0;
  }

  get chipOptions(): number {
    return u16(this.config, Cfg.CHIP_OPTIONS);
  }

  slotConfig(slot: number): SlotConfig {
    return slotConfigOf(this.config, slot);
  }

  keyConfig(slot: number): KeyConfig {
    return keyConfigOf(this.config, slot);
  }

  /** SlotLocked (bytes 88-89): one bit per slot, 1 = unlocked. */
  slotLocked(slot: number): boolean {
    return ((u16(this.config, Cfg.SLOT_LOCKED) >> slot) & 1) === 0;
  }

  lockSlot(slot: number): void {
    const byte = Cfg.SLOT_LOCKED + (slot >> 3);
    this.config[byte] = (this.config[byte] ?? 0) & ~(1 << (slot & 7));
  }

  /** The 7-bit I2C address the config asks for (§1.1): byte 16, or UserExtraAdd when ChipMode bit 0. */
  configuredI2cAddress(): number {
    const extra = this.config[Cfg.USER_EXTRA_ADD] ?? 0;
    // UserExtraAdd is taken in the same 8-bit form as byte 16; a zero value is ignored (assumption).
    const eight = (this.chipMode & 0x01) !== 0 && extra !== 0 ? extra : (this.config[Cfg.I2C_ADDRESS] ?? 0);
    return eight >> 1;
  }
}

/**
 * Bytes 0-15 follow the public factory dumps (§3.3: `01 23 xx xx 00 00 60 02 xx xx xx xx EE 01 01 00`);
 * the rest approximates them (address C0, SlotConfig `83 20 87 20 8F 20 C4 8F …`). The full factory
 * image is not public; provisioning rewrites bytes 16+ anyway.
 */
function factoryConfig(revision: Revision, serial: Uint8Array): Uint8Array {
  const c = new Uint8Array(CONFIG_SIZE);
  c.set([0x01, 0x23, serial[0] ?? 0, serial[1] ?? 0], 0);
  c.set([0x00, 0x00, 0x60, revision === '608A' ? 0x02 : 0x03], Cfg.REVNUM);
  c.set([serial[2] ?? 0, serial[3] ?? 0, serial[4] ?? 0, serial[5] ?? 0, 0xee], 8);
  c[Cfg.AES_ENABLE] = 0x01;
  c[Cfg.I2C_ENABLE] = 0x01;
  c[Cfg.I2C_ADDRESS] = 0xc0;
  const slotConfig = [
    0x2083, 0x2087, 0x208f, 0x8fc4, 0x8f8f, 0x8f8f, 0x8f9f, 0x8faf, 0, 0, 0, 0, 0, 0, 0, 0x8faf,
  ];
  const keyConfig = [
    0x33, 0x33, 0x33, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x1c,
  ];
  for (let s = 0; s < SLOT_COUNT; s++) {
    put16(c, Cfg.SLOT_CONFIG + 2 * s, slotConfig[s] ?? 0);
    put16(c, Cfg.KEY_CONFIG + 2 * s, keyConfig[s] ?? 0);
  }
  c.set([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], Cfg.COUNTER0);
  c[Cfg.LOCK_VALUE] = UNLOCKED;
  c[Cfg.LOCK_CONFIG] = UNLOCKED;
  c[Cfg.SLOT_LOCKED] = 0xff;
  c[Cfg.SLOT_LOCKED + 1] = 0xff;
  return c;
}

function put16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = value >> 8;
}
