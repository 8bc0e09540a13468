import { createECDH } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import type { ChipRng } from './rng.js';

/**
 * The chip's P-256 arithmetic on top of @noble/curves. Public keys travel as raw X‖Y (64 bytes,
 * no 0x04 prefix) and signatures as raw R‖S (64 bytes), as on the wire (§2.2).
 */

export function generatePrivateKey(rng: ChipRng): Uint8Array {
  return p256.utils.randomSecretKey(rng.bytes(p256.lengths.seed ?? 48));
}

export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return p256.getPublicKey(privateKey, false).subarray(1);
}

/** Parses X‖Y; undefined when it is not a point on the curve. */
function sec1(xy: Uint8Array): Uint8Array | undefined {
  if (xy.length !== 64) return undefined;
  const encoded = new Uint8Array(65);
  encoded[0] = 0x04;
  encoded.set(xy, 1);
  return p256.utils.isValidPublicKey(encoded, false) ? encoded : undefined;
}

export function isValidPublicKey(xy: Uint8Array): boolean {
  return sec1(xy) !== undefined;
}

/**
 * ECDSA over a 32-byte digest. The chip picks k internally, so its signatures are not deterministic:
 * RFC 6979 with 32 bytes of extra entropy from the chip RNG gives the same effect and stays
 * reproducible for a seeded chip. High-S values are left as they come, like the chip.
 */
export function signDigest(digest: Uint8Array, privateKey: Uint8Array, rng: ChipRng): Uint8Array {
  return p256.sign(digest, privateKey, { prehash: false, lowS: false, extraEntropy: rng.bytes(32) });
}

/** Verifies R‖S over a 32-byte digest; false for malformed signatures (r or s zero or ≥ n). */
export function verifyDigest(signature: Uint8Array, digest: Uint8Array, publicXY: Uint8Array): boolean {
  const key = sec1(publicXY);
  if (key === undefined) return false;
  try {
    return p256.verify(signature, digest, key, { prehash: false, lowS: false });
  } catch {
    return false;
  }
}

/**
 * The ECDH shared secret's x-coordinate, or undefined when the peer key is not on the curve. The
 * scalar multiplication runs in OpenSSL: in JavaScript it took ~3 ms, long enough to stall the
 * emulator's socket server and show up as link time in the benchmarks. (Tests check the result
 * against @noble/curves, so the check stays independent.)
 */
export function ecdhX(privateKey: Uint8Array, peerXY: Uint8Array): Uint8Array | undefined {
  const key = sec1(peerXY);
  if (key === undefined) return undefined;
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(privateKey);
  return new Uint8Array(ecdh.computeSecret(key));
}
