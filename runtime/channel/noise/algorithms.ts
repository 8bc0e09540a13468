import type { CipherName, DhName, HashName } from '../../../vaults/provider.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * The crypto functions of Noise (revision 34, §4) and their constants. The primitives themselves
 * come from a CryptoProvider; this file only knows their sizes and the Noise-specific encodings.
 */

/** Noise §3: every Noise message, handshake or transport, is at most 65535 bytes. */
export const NOISE_MAX_MESSAGE_LENGTH = 65535;

/** AEAD tag length of both Noise ciphers. */
export const TAG_LENGTH = 16;

/** Symmetric key length of both Noise ciphers; also the PSK length (§9). */
export const KEY_LENGTH = 32;

/** 2^64 - 1: reserved by §5.1, used only by REKEY (§4.2). */
export const MAX_NONCE = 0xffff_ffff_ffff_ffffn;

export const DH_LENGTHS: Readonly<Record<DhName, number>> = { '25519': 32, '448': 56 };

export const HASH_LENGTHS: Readonly<Record<HashName, { hashLen: number; blockLen: number }>> = {
  SHA256: { hashLen: 32, blockLen: 64 },
  SHA512: { hashLen: 64, blockLen: 128 },
  BLAKE2s: { hashLen: 32, blockLen: 64 },
  BLAKE2b: { hashLen: 64, blockLen: 128 },
};

const DH_NAMES = Object.keys(DH_LENGTHS) as DhName[];
const HASH_NAMES = Object.keys(HASH_LENGTHS) as HashName[];
const CIPHER_NAMES: readonly CipherName[] = ['AESGCM', 'ChaChaPoly'];

export function isDhName(s: string): s is DhName {
  return (DH_NAMES as string[]).includes(s);
}
export function isHashName(s: string): s is HashName {
  return (HASH_NAMES as string[]).includes(s);
}
export function isCipherName(s: string): s is CipherName {
  return (CIPHER_NAMES as string[]).includes(s);
}

/**
 * The 12-byte AEAD nonce for counter `n` (§12.3, §12.4): 4 zero bytes, then the 64-bit counter,
 * big-endian for AESGCM and little-endian for ChaChaPoly.
 */
export function aeadNonce(cipher: CipherName, n: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n, cipher === 'ChaChaPoly');
  return nonce;
}

/** True when every byte is zero; runs over the whole array whatever its content. */
export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

export function unsupported(what: string): KeyhopError {
  return new KeyhopError(ErrorCodes.UNSUPPORTED, what);
}
