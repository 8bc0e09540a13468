import type { AeadKey, Bytes, CryptoProvider } from '../../vaults/provider.js';
import { aeadKeyFor } from '../../vaults/software/aead-key.js';
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
/** Where a key that was let go stood (see keepKey). */
const FORGOTTEN = new Uint8Array(0);
const ZEROS_32 = new Uint8Array(32);
export const NONCE_BYTES = 8;
/** One AEAD nonce buffer for every cipher: filled and used synchronously, never kept. */
const SCRATCH_NONCE = new Uint8Array(12);
const SCRATCH_VIEW = new DataView(SCRATCH_NONCE.buffer);
export const TAG_BYTES = 16;

export function aeadNonce(n: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n, false);
  return nonce;
}

export function rekey(provider: CryptoProvider, key: Uint8Array): Uint8Array {
  return firstKeyBytes(provider.aeadEncrypt('AESGCM', key, aeadNonce(MAX_NONCE), EMPTY, ZEROS_32));
}

/** The new key (a copy), the rest of the REKEY output overwritten. */
function firstKeyBytes(out: Uint8Array): Uint8Array {
  const key = Uint8Array.prototype.slice.call(out, 0, 32);
  out.fill(0);
  return key;
}

const REKEY_NONCE = aeadNonce(MAX_NONCE);

/** REKEY with a key already set up (the same bytes as rekey(), without setting the key up again). */
function rekeyWith(aead: AeadKey): Uint8Array {
  return firstKeyBytes(aead.seal(REKEY_NONCE, EMPTY, ZEROS_32));
}

export interface EncryptorSnapshot {
  key: Uint8Array;
  /** The next nonce to use. */
  nonce: bigint;
  rekeying: boolean;
}

export interface DecryptorSnapshot {
  rekeying: boolean;
  window: { size: number; highest: bigint; seen: bigint };
  bucket: bigint;
  /** Keys of the buckets still in the window, by bucket (copies: secret material). */
  keys: [bigint, Uint8Array][];
}

export class DataEncryptor {
  private nonce = 0n;
  private key: Uint8Array;
  /** The key set up for many messages (the provider's, e.g. the native addon's), made on first use; changes at REKEY. */
  private aead: AeadKey | undefined;

  /**
   * `keepKey` false: once the provider's prepared key exists the raw key is overwritten and let go
   * (it is then only inside the prepared key); snapshot() needs it kept (persistent channels).
   */
  constructor(
    private readonly provider: CryptoProvider,
    key: Uint8Array,
    private readonly rekeying = true,
    private readonly keepKey = true,
  ) {
    this.key = key;
  }

  private setKey(key: Uint8Array): void {
    this.aead?.destroy();
    this.aead = undefined;
    this.key = key;
  }

  /** `plaintext` may be given in pieces (encrypted as their concatenation, without joining them first). */
  encrypt(plaintext: Bytes): Uint8Array {
    const n = this.nonce;
    // The last nonce is reserved for REKEY.
    if (n >= MAX_NONCE)
      throw new KeyhopError(ErrorCodes.NONCE_EXHAUSTED, 'secure channel used up its nonces');
    if (this.rekeying && n > 0n && n % REKEY_INTERVAL === 0n) {
      this.setKey(this.aead ? rekeyWith(this.aead) : rekey(this.provider, this.key));
    }
    SCRATCH_VIEW.setBigUint64(4, n, false);
    if (this.aead === undefined) {
      this.aead = aeadKeyFor(this.provider, 'AESGCM', this.key);
      if (!this.keepKey) {
        this.key.fill(0);
        this.key = FORGOTTEN;
      }
    }
    // The wire form is the 8-byte nonce followed by ciphertext and tag, in one buffer.
    const out = this.aead.seal(SCRATCH_NONCE, EMPTY, plaintext, SCRATCH_NONCE.subarray(4));
    this.nonce = n + 1n;
    return out;
  }

  get nextNonce(): bigint {
    return this.nonce;
  }

  /**
   * The state a channel that outlives its process keeps (the key is a copy: secret material the
   * caller must seal).
   */
  snapshot(): EncryptorSnapshot {
    if (this.key === FORGOTTEN) {
      throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, 'this encryptor did not keep its key (not persistent)');
    }
    return { key: this.key.slice(), nonce: this.nonce, rekeying: this.rekeying };
  }

  /**
   * An encryptor that goes on from `s`, first skipping to nonce `from` when given (nonces handed
   * out in blocks before a crash are never used twice: the process resumes after the block). The
   * key is rekeyed forward over every bucket skipped.
   */
  static restore(provider: CryptoProvider, s: EncryptorSnapshot, from?: bigint): DataEncryptor {
    const e = new DataEncryptor(provider, s.key.slice(), s.rekeying);
    e.nonce = s.nonce;
    const to = from ?? s.nonce;
    if (to < s.nonce)
      throw new KeyhopError(ErrorCodes.NONCE_REJECTED, `cannot go back from nonce ${s.nonce} to ${to}`);
    if (s.rekeying) {
      // The key held is the one of the bucket of the last nonce used (bucket 0 before any).
      const bucketOf = (n: bigint) => (n === 0n ? 0n : (n - 1n) / REKEY_INTERVAL);
      let key = e.key;
      for (let b = bucketOf(s.nonce); b < bucketOf(to); b++) key = rekey(provider, key);
      if (key !== e.key) e.setKey(key);
    }
    e.nonce = to;
    return e;
  }

  /** Overwrites the key; the encryptor is unusable afterwards. */
  destroy(): void {
    this.key.fill(0);
    this.aead?.destroy();
    this.nonce = MAX_NONCE;
  }
}

export class DataDecryptor {
  private window: ReplayWindow;
  /** Bucket (nonce / 32) of the highest accepted nonce, and the keys of it and the buckets before it still in the window. */
  private bucket = 0n;
  /**
   * The keys of the buckets kept (2 with Ockam's window) and their prepared AEAD keys, as flat
   * triples `bucket, key, aead | undefined` in one exact-size array: Maps (or arrays of pairs)
   * cost some hundreds of bytes for every open channel.
   */
  private slots: (bigint | Uint8Array | AeadKey | undefined)[] = [];
  /** Prepared AEAD keys of those buckets, made on first use. */
  /** Buckets a nonce may be ahead of / behind `bucket`: 1 each for Ockam's window of 32. */
  private readonly bucketsAhead: bigint;
  private readonly bucketsBehind: bigint;

  /**
   * `window`: how far behind and ahead of the highest nonce a message may be (Ockam: 32). A wider
   * one (queue mode) suits channels over queues that delay or reorder more; it is this end's own
   * setting, the wire is unchanged.
   */
  /** `keepKeys`: as DataEncryptor's keepKey, for the key of each bucket. */
  constructor(
    private readonly provider: CryptoProvider,
    key: Uint8Array,
    private readonly rekeying = true,
    window = 32,
    private readonly keepKeys = true,
  ) {
    this.window = new ReplayWindow(window);
    this.slots = [0n, key, undefined];
    const n = Math.ceil(window / Number(REKEY_INTERVAL));
    // The literal for Ockam's window: one shared BigInt rather than two per open channel end.
    const buckets = n === 1 ? 1n : BigInt(n);
    this.bucketsAhead = buckets;
    this.bucketsBehind = buckets;
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
    const keyBucket = this.rekeying ? nonce / REKEY_INTERVAL : 0n;
    let key = this.keyOf(keyBucket);
    let aead = this.aeadOf(keyBucket);
    // Keys of the buckets up to the nonce's, derived only as far as needed, kept once it authenticates.
    let derived: Uint8Array[] | undefined;
    if (key === undefined) {
      const bucket = nonce / REKEY_INTERVAL;
      if (bucket <= this.bucket || bucket - this.bucket > this.bucketsAhead) {
        throw new KeyhopError(ErrorCodes.NONCE_REJECTED, `nonce ${nonce} is outside the current key window`);
      }
      derived = [];
      let k = this.keyOf(this.bucket)!;
      const prepared = this.aeadOf(this.bucket);
      for (let b = this.bucket; b < bucket; b++) {
        k = b === this.bucket && prepared ? rekeyWith(prepared) : rekey(this.provider, k);
        derived.push(k);
      }
      key = k;
    }
    const fresh = aead === undefined;
    aead ??= aeadKeyFor(this.provider, 'AESGCM', key);
    SCRATCH_VIEW.setBigUint64(4, nonce, false);
    let plaintext: Uint8Array;
    try {
      plaintext = aead.open(SCRATCH_NONCE, EMPTY, wire.subarray(NONCE_BYTES));
    } catch (e) {
      for (const k of derived ?? []) k.fill(0);
      // A derived key is kept only once a message authenticates under it; a known one anyway.
      if (fresh && derived) aead.destroy();
      else if (fresh) this.keepAead(keyBucket, aead);
      throw e;
    }
    this.window.accept(nonce);
    if (derived) for (const k of derived) this.setSlot(++this.bucket, k, undefined);
    if (fresh) this.keepAead(keyBucket, aead);
    if (derived) {
      for (const b of this.buckets()) {
        if (b + this.bucketsBehind < this.bucket) {
          this.keyOf(b)?.fill(0);
          this.aeadOf(b)?.destroy();
          this.removeSlot(b);
        }
      }
    }
    return { plaintext, nonce };
  }

  private keepAead(bucket: bigint, aead: AeadKey): void {
    let key = this.keyOf(bucket)!;
    if (!this.keepKeys && key !== FORGOTTEN) {
      key.fill(0);
      key = FORGOTTEN;
    }
    this.setSlot(bucket, key, aead);
  }

  private indexOf(bucket: bigint): number {
    for (let i = 0; i < this.slots.length; i += 3) if (this.slots[i] === bucket) return i;
    return -1;
  }

  private keyOf(bucket: bigint): Uint8Array | undefined {
    const i = this.indexOf(bucket);
    return i < 0 ? undefined : (this.slots[i + 1] as Uint8Array);
  }

  private aeadOf(bucket: bigint): AeadKey | undefined {
    const i = this.indexOf(bucket);
    return i < 0 ? undefined : (this.slots[i + 2] as AeadKey | undefined);
  }

  private setSlot(bucket: bigint, key: Uint8Array, aead: AeadKey | undefined): void {
    const i = this.indexOf(bucket);
    if (i < 0) {
      // concat allocates exactly; push would give the array spare capacity.
      this.slots = this.slots.concat([bucket, key, aead]);
      return;
    }
    this.slots[i + 1] = key;
    this.slots[i + 2] = aead;
  }

  private removeSlot(bucket: bigint): void {
    const i = this.indexOf(bucket);
    if (i >= 0) this.slots = this.slots.slice(0, i).concat(this.slots.slice(i + 3));
  }

  private buckets(): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < this.slots.length; i += 3) out.push(this.slots[i] as bigint);
    return out;
  }

  snapshot(): DecryptorSnapshot {
    if (!this.keepKeys) {
      throw new KeyhopError(
        ErrorCodes.KEY_NOT_FOUND,
        'this decryptor did not keep its keys (not persistent)',
      );
    }
    return {
      rekeying: this.rekeying,
      window: this.window.snapshot(),
      bucket: this.bucket,
      keys: this.buckets().map((b) => [b, this.keyOf(b)!.slice()]),
    };
  }

  /** A decryptor that goes on exactly where `s` was: the same nonces accepted, refused and replayed. */
  static restore(provider: CryptoProvider, s: DecryptorSnapshot): DataDecryptor {
    const first = s.keys.find(([b]) => b === s.bucket);
    if (!first)
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'decryptor state without the key of its bucket');
    const d = new DataDecryptor(provider, first[1].slice(), s.rekeying, s.window.size);
    d.slots = [];
    for (const [b, k] of s.keys) d.setSlot(b, k.slice(), undefined);
    d.bucket = s.bucket;
    d.window = ReplayWindow.restore(s.window);
    return d;
  }

  /** Overwrites the keys; every later message fails to decrypt. */
  destroy(): void {
    for (const b of this.buckets()) {
      this.keyOf(b)?.fill(0);
      this.aeadOf(b)?.destroy();
    }
    this.slots = [];
  }
}
