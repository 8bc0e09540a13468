import { Cfg, KEY_TYPE_P256 } from './constants.js';

/**
 * SlotConfig and KeyConfig decoding (atecc608.md §3.2). Both are 16-bit little-endian words per
 * slot in the config zone; the meaning of the low SlotConfig bits depends on the key type.
 */
export interface SlotConfig {
  readonly raw: number;
  /** Bits 0-3. For ECC private keys: bit 0 external sign, 1 internal sign, 2 ECDH, 3 ECDH → slot N+1. */
  readonly readKey: number;
  readonly externalSign: boolean;
  readonly internalSign: boolean;
  readonly ecdh: boolean;
  readonly ecdhToNextSlot: boolean;
  readonly noMac: boolean;
  readonly limitedUse: boolean;
  readonly encryptRead: boolean;
  readonly isSecret: boolean;
  readonly writeKey: number;
  /** Bits 12-15. */
  readonly writeConfig: number;
  /** WriteConfig bit 13 on a private-key slot: GenKey may replace the key. */
  readonly genKeyAllowed: boolean;
  /** WriteConfig bit 14 on a private-key slot: PrivWrite allowed. */
  readonly privWriteAllowed: boolean;
}

export interface KeyConfig {
  readonly raw: number;
  readonly private: boolean;
  readonly pubInfo: boolean;
  readonly keyType: number;
  readonly lockable: boolean;
  readonly reqRandom: boolean;
  readonly reqAuth: boolean;
  readonly authKey: number;
  readonly persistentDisable: boolean;
}

export function slotConfigOf(config: Uint8Array, slot: number): SlotConfig {
  const raw = u16(config, Cfg.SLOT_CONFIG + 2 * slot);
  return {
    raw,
    readKey: raw & 0x0f,
    externalSign: (raw & 0x0001) !== 0,
    internalSign: (raw & 0x0002) !== 0,
    ecdh: (raw & 0x0004) !== 0,
    ecdhToNextSlot: (raw & 0x0008) !== 0,
    noMac: (raw & 0x0010) !== 0,
    limitedUse: (raw & 0x0020) !== 0,
    encryptRead: (raw & 0x0040) !== 0,
    isSecret: (raw & 0x0080) !== 0,
    writeKey: (raw >> 8) & 0x0f,
    writeConfig: (raw >> 12) & 0x0f,
    genKeyAllowed: (raw & 0x2000) !== 0,
    privWriteAllowed: (raw & 0x4000) !== 0,
  };
}

export function keyConfigOf(config: Uint8Array, slot: number): KeyConfig {
  const raw = u16(config, Cfg.KEY_CONFIG + 2 * slot);
  return {
    raw,
    private: (raw & 0x0001) !== 0,
    pubInfo: (raw & 0x0002) !== 0,
    keyType: (raw >> 2) & 0x07,
    lockable: (raw & 0x0020) !== 0,
    reqRandom: (raw & 0x0040) !== 0,
    reqAuth: (raw & 0x0080) !== 0,
    authKey: (raw >> 8) & 0x0f,
    persistentDisable: (raw & 0x1000) !== 0,
  };
}

/** A slot that holds a P-256 private key (KeyConfig.Private = 1, KeyType = 4). */
export function isP256PrivateSlot(key: KeyConfig): boolean {
  return key.private && key.keyType === KEY_TYPE_P256;
}

export function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8);
}
