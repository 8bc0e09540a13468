import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type { CipherName, DhName, HashName, SigningKeyType } from '../provider.js';

/**
 * Input checks and small byte helpers shared by the two CryptoProviders, so that both reject the
 * same inputs with the same error codes. Nothing here is cryptography: only sizes, ranges and
 * encodings.
 */

export const AEAD_KEY_LENGTH = 32;
export const AEAD_NONCE_LENGTH = 12;
export const AEAD_TAG_LENGTH = 16;
export const HKDF_SHA256_MAX_LENGTH = 255 * 32;
export const ED25519_KEY_LENGTH = 32;
export const P256_SCALAR_LENGTH = 32;
export const SIGNATURE_LENGTH = 64;

/** Order of the P-256 group (FIPS 186-5 / SEC 2), big-endian. */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const P256_ORDER_BYTES = bigintToBytes(P256_ORDER, 32);
const P256_HALF_ORDER = P256_ORDER >> 1n;

export function dhKeyLength(name: DhName): number {
  if (name === '25519') return 32;
  if (name === '448') return 56;
  throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported Diffie-Hellman function: ${String(name)}`);
}

export function checkHashName(name: HashName): void {
  if (name !== 'SHA256' && name !== 'SHA512' && name !== 'BLAKE2s' && name !== 'BLAKE2b') {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported hash: ${String(name)}`);
  }
}

export function checkCipherName(name: CipherName): void {
  if (name !== 'AESGCM' && name !== 'ChaChaPoly') {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported cipher: ${String(name)}`);
  }
}

export function checkSigningType(type: SigningKeyType): void {
  if (type !== 'Ed25519' && type !== 'P256') {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported signing key type: ${String(type)}`);
  }
}

/** Throws KEY_INVALID unless `bytes` is a Uint8Array of exactly `length` bytes. */
export function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `${what} must be ${length} bytes, got ${got}`);
  }
}

export function checkAeadInputs(name: CipherName, key: Uint8Array, nonce: Uint8Array): void {
  checkCipherName(name);
  checkLength(key, AEAD_KEY_LENGTH, `${name} key`);
  checkLength(nonce, AEAD_NONCE_LENGTH, `${name} nonce`);
}

export function checkHkdfLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 0 || length > HKDF_SHA256_MAX_LENGTH) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      `HKDF-SHA256 output length must be an integer in 0..${HKDF_SHA256_MAX_LENGTH}, got ${length}`,
    );
  }
}

/** Constant-time: true when every byte is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i]!;
  return acc === 0;
}

/**
 * Constant-time check that a 32-byte big-endian P-256 private scalar d satisfies 0 < d < n
 * (the range FIPS 186-5 requires). OpenSSL imports out-of-range scalars without complaint, so the
 * node provider must check this itself; the noble provider checks it too, for identical errors.
 */
export function isValidP256Scalar(d: Uint8Array): boolean {
  if (d.length !== P256_SCALAR_LENGTH) return false;
  let borrow = 0;
  let nonzero = 0;
  for (let i = P256_SCALAR_LENGTH - 1; i >= 0; i--) {
    const diff = d[i]! - P256_ORDER_BYTES[i]! - borrow;
    borrow = (diff >>> 31) & 1; // 1 when the subtraction went negative
    nonzero |= d[i]!;
  }
  // d - n borrows out of the top byte exactly when d < n.
  return (borrow & ((nonzero | -nonzero) >>> 31)) === 1;
}

export function checkP256PrivateKey(d: Uint8Array): void {
  checkLength(d, P256_SCALAR_LENGTH, 'P256 private key');
  if (!isValidP256Scalar(d)) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, 'P256 private key is not a scalar in 1..n-1');
  }
}

/**
 * Shape check of a SEC 1 P-256 public key: 65 bytes uncompressed (04 ‖ x ‖ y) or 33 bytes
 * compressed (02/03 ‖ x). Whether the point is on the curve is checked by each provider.
 */
export function checkP256PublicKeyShape(publicKey: Uint8Array): void {
  if (!(publicKey instanceof Uint8Array)) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, 'P256 public key must be bytes');
  }
  const ok =
    (publicKey.length === 65 && publicKey[0] === 0x04) ||
    (publicKey.length === 33 && (publicKey[0] === 0x02 || publicKey[0] === 0x03));
  if (!ok) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      `P256 public key must be 65 bytes uncompressed (04…) or 33 bytes compressed (02…/03…), got ${publicKey.length} bytes`,
    );
  }
}

/**
 * Rewrites a raw r ‖ s P-256 signature in place into its low-S form (s ≤ n/2, replacing s by
 * n − s), as the p256 crates and noble produce. Signatures are public data: no constant time needed.
 */
export function normalizeLowS(signature: Uint8Array): Uint8Array {
  const s = bytesToBigint(signature.subarray(32, 64));
  if (s > P256_HALF_ORDER) signature.set(bigintToBytes(P256_ORDER - s, 32), 32);
  return signature;
}

export function bytesToBigint(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigintToBytes(v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = v;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** A plain Uint8Array over the same memory as a Buffer (no copy; Buffer's `slice` is a view, so don't hand Buffers out). */
export function plain(b: Uint8Array): Uint8Array {
  return b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

export function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
