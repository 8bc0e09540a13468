import { pooledBytes } from '../../runtime/codec/pool.js';
import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import { loadNativeAddon } from '../native-addon.js';
import type { AeadKey, Bytes, CipherName } from '../provider.js';
import {
  AEAD_KEY_LENGTH,
  AEAD_NONCE_LENGTH,
  AEAD_TAG_LENGTH,
  checkCipherName,
  checkLength,
} from './common.js';

interface NativeAeadKey {
  seal(
    nonce: Uint8Array,
    ad: Uint8Array,
    plaintext: Uint8Array | Uint8Array[],
    prefix?: Uint8Array,
    out?: Uint8Array,
  ): Uint8Array;
  open(nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array, out?: Uint8Array): Uint8Array | null;
  destroy(): void;
}

interface NativeAeadModule {
  AeadKey: new (name: CipherName, key: Uint8Array) => NativeAeadKey;
}

export const NATIVE_AEAD_SPEC = {
  file: 'keyhop_aead.node',
  env: 'KEYHOP_AEAD_ADDON',
  what: 'the AEAD addon',
  howToBuild: 'npm run build:native (needs g++, make and python3); without it keyhop uses node:crypto',
  entry: 'AeadKey',
} as const;

let loaded: NativeAeadModule | null | undefined;
let why: string | undefined;

/**
 * keyhop_aead.node (native/aead/addon.cc: OpenSSL contexts kept per key), or undefined when it is
 * not built or KEYHOP_NATIVE_AEAD=0: then node:crypto does every message (same results, slower for
 * small messages).
 */
export function nativeAead(): NativeAeadModule | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  if (process.env.KEYHOP_NATIVE_AEAD === '0') {
    loaded = null;
    why = 'KEYHOP_NATIVE_AEAD=0';
    return undefined;
  }
  try {
    loaded = loadNativeAddon<NativeAeadModule>(NATIVE_AEAD_SPEC);
  } catch (e) {
    loaded = null;
    why = e instanceof Error ? e.message : String(e);
  }
  return loaded ?? undefined;
}

/** Why the native AEAD is not in use (undefined when it is). */
export function nativeAeadUnavailable(): string | undefined {
  nativeAead();
  return why;
}

/** An AeadKey on the native addon; undefined when the addon is not there. */
export function nativeAeadKey(name: CipherName, key: Uint8Array): AeadKey | undefined {
  const m = nativeAead();
  if (!m) return undefined;
  checkCipherName(name);
  checkLength(key, AEAD_KEY_LENGTH, `${name} key`);
  return new NativeKey(new m.AeadKey(name, key), name);
}

/** A class, not closures: one small object per channel key (channels are many). */
class NativeKey implements AeadKey {
  constructor(
    private readonly k: NativeAeadKey,
    private readonly name: CipherName,
  ) {}

  // Outputs come from a shared slab (pooledBytes, filled by the addon), not a new ArrayBuffer made by
  // the addon per message: for small messages the allocation cost more than the cipher.
  seal(nonce: Uint8Array, ad: Uint8Array, plaintext: Bytes, prefix?: Uint8Array): Uint8Array {
    checkLength(nonce, AEAD_NONCE_LENGTH, `${this.name} nonce`);
    let length = (prefix?.length ?? 0) + AEAD_TAG_LENGTH;
    if (Array.isArray(plaintext)) for (const p of plaintext) length += p.length;
    else length += (plaintext as Uint8Array).length;
    return this.k.seal(nonce, ad, plaintext as Uint8Array | Uint8Array[], prefix, pooledBytes(length));
  }

  open(nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    checkLength(nonce, AEAD_NONCE_LENGTH, `${this.name} nonce`);
    if (ciphertext.length < 16) {
      throw new KeyhopError(ErrorCodes.AEAD_FAILED, `${this.name}: ciphertext shorter than the tag`);
    }
    const plain = this.k.open(nonce, ad, ciphertext, pooledBytes(ciphertext.length - AEAD_TAG_LENGTH));
    if (plain === null) throw new KeyhopError(ErrorCodes.AEAD_FAILED, `${this.name}: authentication failed`);
    return plain;
  }

  destroy(): void {
    this.k.destroy();
  }
}
