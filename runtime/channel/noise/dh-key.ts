import type { CryptoProvider, DhName } from '../../../vaults/provider.js';
import type { DhKey } from '../../../vaults/vault.js';
import { asKeyhopError, ErrorCodes, KeyhopError } from '../../errors.js';
import { DH_LENGTHS } from './algorithms.js';

/**
 * A DhKey held in memory: an ephemeral key, or a static key loaded from software storage. The
 * private key lives in an ES private field, so nothing outside this class (the Noise engine
 * included) can read it; `wipe()` zeroes it.
 */
export class SoftwareDhKey implements DhKey {
  readonly dhName: DhName;
  readonly publicKey: Uint8Array;
  readonly #provider: CryptoProvider;
  #privateKey: Uint8Array | undefined;

  private constructor(
    provider: CryptoProvider,
    dhName: DhName,
    privateKey: Uint8Array,
    publicKey: Uint8Array,
  ) {
    this.#provider = provider;
    this.dhName = dhName;
    this.#privateKey = privateKey;
    this.publicKey = publicKey;
  }

  /** @internal use `dhKeyFromPrivate` / `generateDhKey`. */
  static create(
    provider: CryptoProvider,
    dhName: DhName,
    privateKey: Uint8Array,
    publicKey?: Uint8Array,
  ): SoftwareDhKey {
    const len = DH_LENGTHS[dhName];
    if (len === undefined) throw new KeyhopError(ErrorCodes.UNSUPPORTED, `DH function "${String(dhName)}"`);
    if (privateKey.length !== len) {
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `an X${dhName} private key has ${len} bytes, not ${privateKey.length}`,
      );
    }
    const priv = Uint8Array.from(privateKey);
    let pub: Uint8Array;
    try {
      pub = Uint8Array.from(publicKey ?? provider.dhPublicKey(dhName, priv));
    } catch (e) {
      priv.fill(0);
      throw asKeyhopError(e, ErrorCodes.KEY_INVALID, `X${dhName} public key derivation failed`);
    }
    if (pub.length !== len) {
      priv.fill(0);
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `an X${dhName} public key has ${len} bytes, not ${pub.length}`,
      );
    }
    return new SoftwareDhKey(provider, dhName, priv, pub);
  }

  dh(peerPublicKey: Uint8Array): Uint8Array {
    const priv = this.#privateKey;
    if (priv === undefined) throw new KeyhopError(ErrorCodes.KEY_INVALID, 'DH key used after wipe()');
    const len = DH_LENGTHS[this.dhName];
    if (peerPublicKey.length !== len) {
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `an X${this.dhName} public key has ${len} bytes, not ${peerPublicKey.length}`,
      );
    }
    try {
      return this.#provider.dh(this.dhName, priv, peerPublicKey);
    } catch (e) {
      throw asKeyhopError(e, ErrorCodes.KEY_INVALID, `X${this.dhName} failed`);
    }
  }

  /** Zeroes the private key; `dh` then throws KEY_INVALID. */
  wipe(): void {
    this.#privateKey?.fill(0);
    this.#privateKey = undefined;
  }

  get wiped(): boolean {
    return this.#privateKey === undefined;
  }
}

/** A DhKey from a raw private key (32 bytes for 25519, 56 for 448); the bytes are copied. */
export function dhKeyFromPrivate(
  provider: CryptoProvider,
  dhName: DhName,
  privateKey: Uint8Array,
): SoftwareDhKey {
  return SoftwareDhKey.create(provider, dhName, privateKey);
}

/** A fresh random DhKey, from the provider's key generation. */
export function generateDhKey(provider: CryptoProvider, dhName: DhName): SoftwareDhKey {
  let pair: { privateKey: Uint8Array; publicKey: Uint8Array };
  try {
    pair = provider.dhGenerate(dhName);
  } catch (e) {
    throw asKeyhopError(e, ErrorCodes.KEY_INVALID, `X${dhName} key generation failed`);
  }
  const key = SoftwareDhKey.create(provider, dhName, pair.privateKey, pair.publicKey);
  pair.privateKey.fill(0);
  return key;
}
