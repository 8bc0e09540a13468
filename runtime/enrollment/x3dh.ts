import type { CryptoProvider } from '../../vaults/provider.js';
import type { DhKey } from '../../vaults/vault.js';
import { ErrorCodes, KeyhopError } from '../errors.js';

/**
 * X3DH (Signal's Extended Triple Diffie-Hellman, rev. 1, 2016) over X25519 and SHA-256, as the
 * specification defines it: DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
 * DH4 = DH(EK_A, OPK_B) when Bob's bundle had a one-time prekey; SK = HKDF(salt = 32 zero bytes,
 * IKM = 32 × 0xFF ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4], info); AD = Encode(IK_A) ‖ Encode(IK_B) with
 * Encode(PK) = 0x05 ‖ u (libsignal's encoding, the one the spec recommends). The prekey signature
 * is not here: keyhop's bundles are signed by the authority's Ockam identity (enrollment/bundle.ts).
 * Agreement with an independent implementation: test/vectors/x3dh/x3dh.json.
 */

export const X25519_KEY = 32;
/** Encode(PK): the curve-type byte of X25519 in libsignal, then the u-coordinate. */
export const ENCODED_KEY = 33;
const CURVE_25519 = 0x05;
/** X3DH's F for X25519: domain separation from XEdDSA. */
const F = new Uint8Array(32).fill(0xff);
const SALT = new Uint8Array(32);

export function encodeKey(publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== X25519_KEY) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      `an X25519 public key has 32 bytes, not ${publicKey.length}`,
    );
  }
  const out = new Uint8Array(ENCODED_KEY);
  out[0] = CURVE_25519;
  out.set(publicKey, 1);
  return out;
}

export function decodeKey(encoded: Uint8Array, what: string): Uint8Array {
  if (encoded.length !== ENCODED_KEY || encoded[0] !== CURVE_25519) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `${what}: not an encoded X25519 key (0x05 ‖ 32 bytes)`);
  }
  return encoded.slice(1);
}

export interface X3dhResult {
  /** SK: 32 bytes. The caller derives its keys from it and forgets it. */
  readonly sk: Uint8Array;
  /** AD = Encode(IK_A) ‖ Encode(IK_B). */
  readonly ad: Uint8Array;
}

function kdf(provider: CryptoProvider, dhs: Uint8Array[], info: string): Uint8Array {
  const ikm = new Uint8Array(32 * (1 + dhs.length));
  ikm.set(F);
  dhs.forEach((d, i) => {
    ikm.set(d, 32 * (i + 1));
    d.fill(0);
  });
  try {
    return provider.hkdfSha256(SALT, ikm, new TextEncoder().encode(info), 32);
  } finally {
    ikm.fill(0);
  }
}

function associatedData(ikA: Uint8Array, ikB: Uint8Array): Uint8Array {
  const ad = new Uint8Array(2 * ENCODED_KEY);
  ad.set(encodeKey(ikA));
  ad.set(encodeKey(ikB), ENCODED_KEY);
  return ad;
}

/**
 * Alice (the device): her identity key IK_A and a fresh ephemeral key EK_A (both kept by the caller,
 * which deletes EK_A's private half afterwards), against Bob's published keys.
 */
export function x3dhInitiator(o: {
  provider: CryptoProvider;
  ikA: DhKey;
  ekA: DhKey;
  ikB: Uint8Array;
  spkB: Uint8Array;
  opkB?: Uint8Array;
  info: string;
}): X3dhResult {
  const dhs = [o.ikA.dh(o.spkB), o.ekA.dh(o.ikB), o.ekA.dh(o.spkB)];
  if (o.opkB !== undefined) dhs.push(o.ekA.dh(o.opkB));
  return { sk: kdf(o.provider, dhs, o.info), ad: associatedData(o.ikA.publicKey, o.ikB) };
}

/** Bob (the authority): his identity, signed and (when one was used) one-time prekeys. */
export function x3dhResponder(o: {
  provider: CryptoProvider;
  ikB: DhKey;
  spkB: DhKey;
  opkB?: DhKey;
  ikA: Uint8Array;
  ekA: Uint8Array;
  info: string;
}): X3dhResult {
  const dhs = [o.spkB.dh(o.ikA), o.ikB.dh(o.ekA), o.spkB.dh(o.ekA)];
  if (o.opkB !== undefined) dhs.push(o.opkB.dh(o.ekA));
  return { sk: kdf(o.provider, dhs, o.info), ad: associatedData(o.ikA, o.ikB.publicKey) };
}
