import type { Bytes, CryptoProvider } from '../../vaults/provider.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { ReplayWindow } from './replay-window.js';

/**
 * Ockam secure-channel data messages (encryptor.rs, decryptor.rs, nonce.rs):
 *
 *   wire = nonce (u64 big-endian, 8 bytes) ‖ AES-256-GCM(k, 00000000 ‖ nonce, ad = empty, plaintext) ‖ tag
 *
 * With rekeying (every normal channel), the key changes every 32 messages: before nonce n with
 * n > 0 and n % 32 == 0 the sender sets k = first 32 bytes of AES-GCM(k, nonce 2^64-1, ad empty,
 * 32 zero bytes) (Noise REKEY). The receiver derives at most one step ahead and keeps the previous
 * key for late messages of the previous bucket.
 */
export const REKEY_INTERVAL = 32n;
const MAX_NONCE = 0xffff_ffff_ffff_ffffn;
const EMPTY = new Uint8Array(0);
const ZEROS_32 = new Uint8Array(32);
export const NONCE_BYTES = 8;
export const TAG_BYTES = 16;

export function aeadNonce(n: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n, false);
  return nonce;
}

export function rekey(provider: CryptoProvider, key: Uint8Array): Uint8Array {
  return provider.aeadEncrypt('AESGCM', key, aeadNonce(MAX_NONCE), EMPTY, ZEROS_32).slice(0, 32);
}

export class DataEncryptor {
  private nonce = 0n;
  private key: Uint8Array;

  constructor(
    private readonly provider: CryptoProvider,
    key: Uint8Array,
    private readonly rekeying = true,
  ) {
    this.key = key;
  }

  /** `plaintext` may be given in pieces (encrypted as their concatenation, without joining them first). */
  encrypt(plaintext: Bytes): Uint8Array {
    const n = this.nonce;
    // The last nonce is reserved for REKEY.
    if (n >= MAX_NONCE)
      throw new KeyhopError(ErrorCodes.NONCE_EXHAUSTED, 'secure channel used up its nonces');
    if (this.rekeying && n > 0n && n % REKEY_INTERVAL === 0n) this.key = rekey(this.provider, this.key);
    const nonce = aeadNonce(n);
    // The wire form is the 8-byte nonce followed by ciphertext and tag, in one buffer.
    const out = this.provider.aeadEncrypt('AESGCM', this.key, nonce, EMPTY, plaintext, nonce.subarray(4));
    this.nonce = n + 1n;
    return out;
  }

  get nextNonce(): bigint {
    return this.nonce;
  }

  /** Overwrites the key; the encryptor is unusable afterwards. */
  destroy(): void {
    this.key.fill(0);
    this.nonce = MAX_NONCE;
  }
}

export class DataDecryptor {
  private readonly window = new ReplayWindow();
  /** Key of bucket `bucket` and of the bucket before it (undefined for bucket 0). */
  private bucket = 0n;
  private current: Uint8Array;
  private previous: Uint8Array | undefined;

  constructor(
    private readonly provider: CryptoProvider,
    key: Uint8Array,
    private readonly rekeying = true,
  ) {
    this.current = key;
  }

  /**
   * Returns the plaintext, or throws: DECODE_TRUNCATED (shorter than nonce + tag), NONCE_REJECTED
   * (replayed, too old, too far ahead), AEAD_FAILED (tampered, wrong key). State changes only when
   * the message authenticated.
   */
  decrypt(wire: Uint8Array): { plaintext: Uint8Array; nonce: bigint } {
    if (wire.length < NONCE_BYTES + TAG_BYTES) {
      throw new KeyhopError(
        ErrorCodes.DECODE_TRUNCATED,
        `secure channel message of ${wire.length} bytes is too short`,
      );
    }
    const nonce = new DataView(wire.buffer, wire.byteOffset, NONCE_BYTES).getBigUint64(0, false);
    const why = this.window.check(nonce);
    if (why !== undefined)
      throw new KeyhopError(ErrorCodes.NONCE_REJECTED, `nonce ${nonce} rejected: ${why}`);
    let key = this.current;
    let advance: Uint8Array | undefined;
    if (this.rekeying) {
      const bucket = nonce / REKEY_INTERVAL;
      if (bucket === this.bucket + 1n) {
        advance = rekey(this.provider, this.current);
        key = advance;
      } else if (bucket + 1n === this.bucket && this.previous) {
        key = this.previous;
      } else if (bucket !== this.bucket) {
        throw new KeyhopError(ErrorCodes.NONCE_REJECTED, `nonce ${nonce} is outside the current key window`);
      }
    }
    const plaintext = this.provider.aeadDecrypt(
      'AESGCM',
      key,
      aeadNonce(nonce),
      EMPTY,
      wire.subarray(NONCE_BYTES),
    );
    this.window.accept(nonce);
    if (advance) {
      this.previous = this.current;
      this.current = advance;
      this.bucket++;
    }
    return { plaintext, nonce };
  }

  /** Overwrites the keys; every later message fails to decrypt. */
  destroy(): void {
    this.current.fill(0);
    this.previous?.fill(0);
  }
}
