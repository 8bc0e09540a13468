import type { CipherName, CryptoProvider } from '../../../vaults/provider.js';
import { asKeyhopError, ErrorCodes, KeyhopError } from '../../errors.js';
import { aeadNonce, KEY_LENGTH, MAX_NONCE, NOISE_MAX_MESSAGE_LENGTH, TAG_LENGTH } from './algorithms.js';

export interface CipherStateOptions {
  /**
   * Largest ciphertext (tag included) this CipherState produces or accepts. Noise says 65535
   * (§3), the default; a channel protocol that frames larger messages itself may raise it.
   */
  readonly maxMessageLength?: number;
}

const ZEROS = new Uint8Array(KEY_LENGTH);
const EMPTY = new Uint8Array(0);

/**
 * A Noise CipherState (§5.1): a key `k` (or none) and a 64-bit nonce `n`. Used inside the
 * handshake, and returned twice by `HandshakeState.split()` for the transport phase.
 *
 * - Nonce 2^64-1 is reserved (§5.1): once `n` reaches it, encrypt and decrypt throw
 *   NONCE_EXHAUSTED. `setNonce` lets a channel with explicit nonces (Ockam) position `n`.
 * - A decryption that fails (AEAD_FAILED) leaves `n` unchanged, as §5.1 says; the state stays
 *   usable, and what to do about the failure is the channel's decision.
 * - `rekey()` is the default REKEY of §4.2: k = first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zeros).
 *   It does not touch `n`.
 */
export class CipherState {
  readonly cipher: CipherName;
  readonly maxMessageLength: number;
  readonly #provider: CryptoProvider;
  #k: Uint8Array | undefined;
  #n = 0n;
  #destroyed = false;

  constructor(
    provider: CryptoProvider,
    cipher: CipherName,
    key?: Uint8Array,
    options: CipherStateOptions = {},
  ) {
    const max = options.maxMessageLength ?? NOISE_MAX_MESSAGE_LENGTH;
    if (!Number.isSafeInteger(max) || max < TAG_LENGTH) {
      throw new KeyhopError(ErrorCodes.DECODE_LIMIT, `maxMessageLength ${max} is not a usable size`);
    }
    this.#provider = provider;
    this.cipher = cipher;
    this.maxMessageLength = max;
    if (key !== undefined) this.initializeKey(key);
  }

  /** InitializeKey (§5.1): sets k and resets n to 0. */
  initializeKey(key: Uint8Array | undefined): void {
    this.#checkUsable();
    if (key !== undefined && key.length !== KEY_LENGTH) {
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `a Noise cipher key has ${KEY_LENGTH} bytes, not ${key.length}`,
      );
    }
    this.#k?.fill(0);
    this.#k = key === undefined ? undefined : Uint8Array.from(key);
    this.#n = 0n;
  }

  hasKey(): boolean {
    return this.#k !== undefined;
  }

  /** The nonce the next encryption or decryption uses. */
  get nonce(): bigint {
    return this.#n;
  }

  /** SetNonce (§5.1). Any value in 0..2^64-1; 2^64-1 itself makes the state refuse to work. */
  setNonce(n: bigint): void {
    this.#checkUsable();
    if (typeof n !== 'bigint' || n < 0n || n > MAX_NONCE) {
      throw new KeyhopError(ErrorCodes.NONCE_EXHAUSTED, `nonce ${String(n)} is outside 0..2^64-1`);
    }
    this.#n = n;
  }

  /** EncryptWithAd (§5.1): ciphertext ‖ tag, or the plaintext itself (copied) when there is no key. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    this.#checkUsable();
    const k = this.#k;
    if (k === undefined) {
      if (plaintext.length > this.maxMessageLength) throw this.#tooLong('plaintext', plaintext.length);
      return Uint8Array.from(plaintext);
    }
    if (plaintext.length + TAG_LENGTH > this.maxMessageLength) {
      throw this.#tooLong('plaintext', plaintext.length + TAG_LENGTH);
    }
    this.#checkNonce();
    let out: Uint8Array;
    try {
      out = this.#provider.aeadEncrypt(this.cipher, k, aeadNonce(this.cipher, this.#n), ad, plaintext);
    } catch (e) {
      throw asKeyhopError(e, ErrorCodes.AEAD_FAILED, 'Noise encryption failed');
    }
    this.#n++;
    return out;
  }

  /** DecryptWithAd (§5.1): throws AEAD_FAILED on a bad tag, without advancing the nonce. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    this.#checkUsable();
    if (ciphertext.length > this.maxMessageLength) {
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `Noise message of ${ciphertext.length} bytes is longer than ${this.maxMessageLength}`,
      );
    }
    const k = this.#k;
    if (k === undefined) return Uint8Array.from(ciphertext);
    this.#checkNonce();
    if (ciphertext.length < TAG_LENGTH) {
      throw new KeyhopError(
        ErrorCodes.AEAD_FAILED,
        `Noise ciphertext of ${ciphertext.length} bytes has no room for a tag`,
      );
    }
    let out: Uint8Array;
    try {
      out = this.#provider.aeadDecrypt(this.cipher, k, aeadNonce(this.cipher, this.#n), ad, ciphertext);
    } catch (e) {
      throw asKeyhopError(e, ErrorCodes.AEAD_FAILED, 'Noise decryption failed');
    }
    this.#n++;
    return out;
  }

  /** Rekey (§4.2, §11.3): replaces k with REKEY(k); n is unchanged. */
  rekey(): void {
    this.#checkUsable();
    const k = this.#k;
    if (k === undefined)
      throw new KeyhopError(ErrorCodes.KEY_INVALID, 'rekey of a CipherState without a key');
    let block: Uint8Array;
    try {
      block = this.#provider.aeadEncrypt(this.cipher, k, aeadNonce(this.cipher, MAX_NONCE), EMPTY, ZEROS);
    } catch (e) {
      throw asKeyhopError(e, ErrorCodes.AEAD_FAILED, 'Noise rekey failed');
    }
    k.fill(0);
    this.#k = Uint8Array.from(block.subarray(0, KEY_LENGTH));
    block.fill(0);
  }

  /**
   * A copy of k, for handing the key to a vault or comparing it in tests. Whoever calls this
   * takes over the responsibility for the secret.
   */
  exportKey(): Uint8Array | undefined {
    this.#checkUsable();
    return this.#k === undefined ? undefined : Uint8Array.from(this.#k);
  }

  /** An independent copy (same key, same nonce), e.g. to try a decryption without committing. */
  clone(): CipherState {
    this.#checkUsable();
    const c = new CipherState(this.#provider, this.cipher, this.#k, {
      maxMessageLength: this.maxMessageLength,
    });
    c.#n = this.#n;
    return c;
  }

  /** Zeroes the key; every later call throws KEY_INVALID. */
  destroy(): void {
    this.#k?.fill(0);
    this.#k = undefined;
    this.#destroyed = true;
  }

  #checkUsable(): void {
    if (this.#destroyed) throw new KeyhopError(ErrorCodes.KEY_INVALID, 'CipherState used after destroy()');
  }

  #checkNonce(): void {
    if (this.#n >= MAX_NONCE) {
      throw new KeyhopError(
        ErrorCodes.NONCE_EXHAUSTED,
        'Noise nonce exhausted (2^64-1 is reserved); rekey is not enough, start a new session',
      );
    }
  }

  #tooLong(what: string, n: number): KeyhopError {
    return new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `Noise ${what} would make a ${n}-byte message, more than ${this.maxMessageLength}`,
    );
  }
}
