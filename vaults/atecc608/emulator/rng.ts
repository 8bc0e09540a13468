import { randomBytes } from 'node:crypto';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';

/**
 * The chip's random number generator, made deterministic for tests: HMAC_DRBG with SHA-256
 * (NIST SP 800-90A §10.1.2, without reseed counter or personalisation string). The same seed gives
 * the same keys, nonces and signatures, so failures reproduce. Without a seed it is seeded from the
 * operating system. Its whole state (K, V) is two 32-byte values, so a chip image can carry it.
 */
export class ChipRng {
  private k: Uint8Array;
  private v: Uint8Array;

  private constructor(k: Uint8Array, v: Uint8Array) {
    this.k = k;
    this.v = v;
  }

  static fromSeed(seed?: string | Uint8Array): ChipRng {
    const material =
      seed === undefined
        ? new Uint8Array(randomBytes(32))
        : typeof seed === 'string'
          ? utf8ToBytes(seed)
          : seed;
    const rng = new ChipRng(new Uint8Array(32), new Uint8Array(32).fill(0x01));
    rng.update(material);
    return rng;
  }

  static fromState(state: { k: string; v: string }): ChipRng {
    const k = hexToBytes(state.k);
    const v = hexToBytes(state.v);
    if (k.length !== 32 || v.length !== 32) throw new RangeError('RNG state must be two 32-byte values');
    return new ChipRng(k, v);
  }

  state(): { k: string; v: string } {
    return { k: bytesToHex(this.k), v: bytesToHex(this.v) };
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      this.v = hmac(sha256, this.k, this.v);
      const take = Math.min(32, n - filled);
      out.set(this.v.subarray(0, take), filled);
      filled += take;
    }
    this.update(new Uint8Array(0));
    return out;
  }

  private update(data: Uint8Array): void {
    this.k = hmac(sha256, this.k, concatBytes(this.v, Uint8Array.of(0x00), data));
    this.v = hmac(sha256, this.k, this.v);
    if (data.length === 0) return;
    this.k = hmac(sha256, this.k, concatBytes(this.v, Uint8Array.of(0x01), data));
    this.v = hmac(sha256, this.k, this.v);
  }
}
