import type { sha256 } from '@noble/hashes/sha2.js';

/**
 * What the chip keeps in SRAM (§1.3): TempKey, the message-digest buffer, the alternate key buffer
 * and the SHA context. Sleep clears all of it; idle keeps it.
 */
export type TempKeySource = 'random' | 'input' | 'other';

export interface TempKey {
  value: Uint8Array;
  valid: boolean;
  /** SourceFlag of `atca_temp_key_t` (§2.1): Random after a random Nonce, Input after pass-through. */
  source: TempKeySource;
  is64: boolean;
  /** GenKey with param2 0xFFFF put an ephemeral P-256 private key here (608 only). */
  holdsPrivateKey: boolean;
}

export interface Buffer64 {
  value: Uint8Array;
  valid: boolean;
}

export type ShaContext = ReturnType<typeof sha256.create>;

export class VolatileState {
  tempKey: TempKey = blankTempKey();
  msgDigBuf: Buffer64 = blankBuffer();
  altKeyBuf: Buffer64 = blankBuffer();
  sha: ShaContext | undefined;

  clear(): void {
    this.tempKey.value.fill(0);
    this.msgDigBuf.value.fill(0);
    this.altKeyBuf.value.fill(0);
    this.tempKey = blankTempKey();
    this.msgDigBuf = blankBuffer();
    this.altKeyBuf = blankBuffer();
    this.sha = undefined;
  }

  invalidateTempKey(): void {
    this.tempKey.value.fill(0);
    this.tempKey = blankTempKey();
  }

  setTempKey(value: Uint8Array, source: TempKeySource, holdsPrivateKey = false): void {
    const v = new Uint8Array(64);
    v.set(value.subarray(0, 64));
    this.tempKey = { value: v, valid: true, source, is64: value.length > 32, holdsPrivateKey };
  }
}

function blankTempKey(): TempKey {
  return { value: new Uint8Array(64), valid: false, source: 'other', is64: false, holdsPrivateKey: false };
}

function blankBuffer(): Buffer64 {
  return { value: new Uint8Array(64), valid: false };
}

export function setBuffer(buffer: Buffer64, value: Uint8Array): void {
  buffer.value.fill(0);
  buffer.value.set(value.subarray(0, 64));
  buffer.valid = true;
}
