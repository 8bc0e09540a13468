import { loadNativeAddon, type NativeAddonSpec, nativeAddonPath } from '../../native-addon.js';

/**
 * The native ATECC608 I2C addon (`native/atecc608/`, built by `binding.gyp` into
 * `build/Release/keyhop_atecc608.node` or by cmake-js into `build-cmake/Release/`). These types
 * describe its JS API; native/README.md has the details.
 */
export interface AddonStep {
  /** Command packet, count through CRC, 7..162 bytes (no word address). */
  readonly packet: Uint8Array;
  /** Execution budget; the addon polls until this plus a 50 ms margin, then fails with TIMEOUT. */
  readonly maxExecMs: number;
}

export interface AddonTransactOptions {
  /** i2c-dev node, e.g. `/dev/i2c-1`. */
  readonly device: string;
  /** 7-bit address, 0x08..0x77. */
  readonly address: number;
  /** Wake the chip first (general call 0x01, wait, read the 4-byte wake token). */
  readonly wake: boolean;
  readonly wakeDelayUs: number;
  /** Further wake attempts after a NACKed wake read. */
  readonly wakeRetries: number;
  /** At most 16. */
  readonly steps: readonly AddonStep[];
  /** Word address written after the last step: idle 0x02, sleep 0x01, or nothing. */
  readonly end: 'idle' | 'sleep' | 'none';
  readonly pollIntervalUs: number;
  /** How long to wait for another process's flock on the device. */
  readonly lockTimeoutMs: number;
}

export interface AddonTimings {
  readonly wakeUs: number;
  readonly stepsUs: readonly number[];
  readonly totalUs: number;
}

export interface AddonTransactResult {
  /** One raw response per step, count through CRC (count checked to be 4..99, CRC unchecked). */
  readonly responses: Uint8Array[];
  /** The wake response read (04 11 33 43), or null when `wake` was false. */
  readonly wakeToken: Uint8Array | null;
  readonly timings: AddonTimings;
}

/** The stable `code` of an addon rejection. */
export type AddonErrorCode =
  | 'ENOENT'
  | 'EACCES'
  | 'EBUSY'
  | 'NACK'
  | 'TIMEOUT'
  | 'BAD_RESPONSE'
  | 'SELFTEST_FAILED'
  | 'LOCK_TIMEOUT'
  | 'IO_ERROR'
  | 'EINVAL'
  | 'UNSUPPORTED';

export interface AteccI2cAddon {
  transact(options: AddonTransactOptions): Promise<AddonTransactResult>;
  /** False on non-Linux builds, where every transact rejects with UNSUPPORTED. */
  readonly supported?: boolean;
}

/** Environment variable naming the addon file explicitly (a cmake-js build, a cross-built copy). */
export const ADDON_ENV = 'KEYHOP_ATECC608_ADDON';

const SPEC: NativeAddonSpec = {
  file: 'keyhop_atecc608.node',
  env: ADDON_ENV,
  what: 'the ATECC608 I2C addon',
  howToBuild:
    'build it with `npm run build:native` (node-gyp; needs a C++ toolchain: sudo apt-get install build-essential python3) or ' +
    '`npm run build:native:cmake` (cmake-js) and set KEYHOP_ATECC608_ADDON=build-cmake/Release/keyhop_atecc608.node',
  entry: 'transact',
};

/** Where the addon is loaded from: `$KEYHOP_ATECC608_ADDON`, `build/Release/…` or `prebuilds/<platform>-<arch>/…`. */
export function addonPath(): string {
  return nativeAddonPath(SPEC);
}

/** Loads (once per path) and returns the addon; HARDWARE_UNAVAILABLE saying how to build it if it cannot. */
export function loadAteccAddon(): AteccI2cAddon {
  return loadNativeAddon<AteccI2cAddon>(SPEC);
}
