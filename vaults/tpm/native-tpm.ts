import { thrownProperty } from '../../runtime/errors.js';
import { loadNativeAddon, type NativeAddonSpec, nativeAddonPath } from '../native-addon.js';

/**
 * The native TPM 2.0 addon (`native/tpm2/`, tpm2-tss ESAPI), built by `binding.gyp` into
 * `build/Release/keyhop_tpm2.node` (or by cmake-js into `build-cmake/Release/`) when pkg-config
 * finds tpm2-tss. These types describe its JS API; native/README.md has the details.
 *
 * Handles are ESAPI object handles (ESYS_TR numbers local to one context), not TPM handles.
 * Every method runs on a libuv worker thread under the context's mutex; callers should still queue
 * (TpmVault does) so that concurrent calls do not tie up several libuv threads waiting.
 */
export interface Tpm2CreatedKey {
  /** Marshalled TPM2B_PUBLIC. */
  readonly publicBlob: Buffer;
  /** Marshalled TPM2B_PRIVATE, wrapped by the storage primary of the owner hierarchy. */
  readonly privateBlob: Buffer;
  /** 32 bytes each. */
  readonly x: Buffer;
  readonly y: Buffer;
}

export interface Tpm2PublicInfo {
  readonly ecc: boolean;
  /** From the object attributes: SIGN_ENCRYPT set → 'sign', else 'ecdh'. */
  readonly kind: 'sign' | 'ecdh';
  readonly x: Buffer;
  readonly y: Buffer;
}

export interface Tpm2SessionInfo {
  /** A salted HMAC session for parameter encryption is open. */
  readonly active: boolean;
  readonly type: 'hmac-salted' | null;
  readonly symmetric: 'AES-128-CFB' | null;
  /**
   * TPMA_SESSION bits read back with Esys_TRSess_GetAttributes after the last successful use by each
   * command (`Create`, `Load`, `Sign`, `ECDH_ZGen`, `GetRandom`): 0x20 DECRYPT, 0x40 ENCRYPT,
   * 0x01 CONTINUESESSION.
   */
  readonly commands: Readonly<Record<string, number>>;
}

export interface Tpm2Context {
  /** The TCTI configuration string the context was opened with. */
  readonly tcti: string;
  createKey(kind: 'sign' | 'ecdh'): Promise<Tpm2CreatedKey>;
  /** Loads a key under the storage primary; the transient handle must be flushed after use. */
  load(publicBlob: Uint8Array, privateBlob: Uint8Array): Promise<number>;
  /** An ESYS_TR for a persistent object (0x81xxxxxx); release() it when done (never flush it). */
  fromPersistent(tpmHandle: number): Promise<number>;
  readPublic(handle: number): Promise<Tpm2PublicInfo>;
  /** EvictControl: copies a loaded key to `persistentHandle`; resolves with its ESYS_TR. */
  evictControl(handle: number, persistentHandle: number): Promise<number>;
  /** EvictControl on a persistent object: removes it from the TPM's NV. */
  evict(handle: number): Promise<void>;
  /** ECDSA/SHA-256 over a 32-byte digest; raw r ‖ s (32 + 32, left-padded). */
  sign(handle: number, digest: Uint8Array): Promise<Buffer>;
  /** ECDH_ZGen: the x-coordinate (32 bytes) of d·(x, y). */
  ecdhZGen(handle: number, x: Uint8Array, y: Uint8Array): Promise<Buffer>;
  /** 1..limits.maxRandom bytes; the TPM may return fewer. */
  getRandom(length: number): Promise<Buffer>;
  flush(handle: number): Promise<void>;
  release(handle: number): Promise<void>;
  /** Persistent handles in use in [from, from + count). */
  persistentHandles(from: number, count: number): Promise<number[]>;
  sessionInfo(): Promise<Tpm2SessionInfo>;
  /** Flushes the session and primary and finalizes ESAPI and the TCTI; later calls reject CLOSED. */
  close(): Promise<void>;
}

export interface Tpm2Addon {
  open(tcti: string, options?: { paramEncryption?: boolean }): Promise<Tpm2Context>;
  decodeRc(rc: number): string;
  readonly supported: boolean;
  readonly abiVersion: number;
  readonly limits: { readonly maxRandom: number };
}

/** An addon rejection: `code` is 'TPM2' (with rc), 'CLOSED' or 'EINVAL'. */
export interface Tpm2AddonError extends Error {
  readonly code: 'TPM2' | 'CLOSED' | 'EINVAL';
  readonly rc?: number;
  readonly where?: string;
  readonly decoded?: string;
  readonly tcti?: string;
}

export function isTpm2AddonError(e: unknown): e is Tpm2AddonError {
  const code = thrownProperty(e, 'code');
  try {
    return e instanceof Error && (code === 'TPM2' || code === 'CLOSED' || code === 'EINVAL');
  } catch {
    return false;
  }
}

/** Environment variable naming the addon file explicitly (a cmake-js build, a cross-built copy). */
export const TPM2_ADDON_ENV = 'KEYHOP_TPM2_ADDON';

const SPEC: NativeAddonSpec = {
  file: 'keyhop_tpm2.node',
  env: TPM2_ADDON_ENV,
  what: 'the TPM 2.0 addon',
  howToBuild:
    'install tpm2-tss and a C++ toolchain (sudo apt-get install libtss2-dev pkg-config build-essential python3) and build it with `npm run build:native` ' +
    '(node-gyp) or `npm run build:native:cmake` (cmake-js, then set ' +
    `${TPM2_ADDON_ENV}=build-cmake/Release/keyhop_tpm2.node)`,
  entry: 'open',
};

/** Where the addon is loaded from: `$KEYHOP_TPM2_ADDON`, `build/Release/…` or `prebuilds/<platform>-<arch>/…`. */
export function tpm2AddonPath(): string {
  return nativeAddonPath(SPEC);
}

/**
 * Loads (once per path) and returns the addon; HARDWARE_UNAVAILABLE saying how to build it if it
 * cannot. tpm2-tss logs every failed command to stderr by default; unless TSS2_LOG is set, its
 * logging is switched off first (errors reach the caller as KeyhopErrors instead). Set
 * TSS2_LOG=all+debug to see the library's own trace.
 */
export function loadTpm2Addon(): Tpm2Addon {
  if (process.env.TSS2_LOG === undefined) process.env.TSS2_LOG = 'all+NONE';
  return loadNativeAddon<Tpm2Addon>(SPEC);
}
