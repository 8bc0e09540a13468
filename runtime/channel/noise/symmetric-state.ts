import type { CryptoProvider, HashName } from '../../../vaults/provider.js';
import { KEY_LENGTH } from './algorithms.js';
import { CipherState, type CipherStateOptions } from './cipher-state.js';
import type { NoiseProtocol } from './protocol.js';

const BYTE_1 = Uint8Array.of(1);
const BYTE_2 = Uint8Array.of(2);
const BYTE_3 = Uint8Array.of(3);

/**
 * HKDF of Noise §4.3 (not RFC 5869's: no info, outputs of HASHLEN bytes), over the provider's
 * HMAC with the protocol hash: temp_key = HMAC(ck, ikm); output_i = HMAC(temp_key, output_{i-1} ‖ i).
 */
export function noiseHkdf(
  provider: CryptoProvider,
  hash: HashName,
  chainingKey: Uint8Array,
  inputKeyMaterial: Uint8Array,
  numOutputs: 2 | 3,
): Uint8Array[] {
  const tempKey = provider.hmac(hash, chainingKey, inputKeyMaterial);
  const out1 = provider.hmac(hash, tempKey, [BYTE_1]);
  const out2 = provider.hmac(hash, tempKey, [out1, BYTE_2]);
  const outs = [out1, out2];
  if (numOutputs === 3) outs.push(provider.hmac(hash, tempKey, [out2, BYTE_3]));
  tempKey.fill(0);
  return outs;
}

/** A HASHLEN output used as a cipher key: its first 32 bytes (§5.2, HASHLEN 64). */
function truncateKey(bytes: Uint8Array): Uint8Array {
  const k = Uint8Array.from(bytes.subarray(0, KEY_LENGTH)); // a copy even if `bytes` is a Buffer
  bytes.fill(0);
  return k;
}

/**
 * The SymmetricState of §5.2: chaining key `ck`, handshake hash `h` and a CipherState. Internal
 * to the handshake; exported for the engine's own tests.
 */
export class SymmetricState {
  readonly #provider: CryptoProvider;
  readonly #hash: HashName;
  readonly #cipherState: CipherState;
  #ck: Uint8Array;
  #h: Uint8Array;

  /** InitializeSymmetric(protocol_name). */
  constructor(provider: CryptoProvider, protocol: NoiseProtocol) {
    this.#provider = provider;
    this.#hash = protocol.suite.hash;
    const name = protocol.nameBytes;
    if (name.length <= protocol.hashLen) {
      this.#h = new Uint8Array(protocol.hashLen);
      this.#h.set(name);
    } else {
      this.#h = provider.hash(this.#hash, name);
    }
    this.#ck = Uint8Array.from(this.#h);
    this.#cipherState = new CipherState(provider, protocol.suite.cipher);
  }

  get cipher() {
    return this.#cipherState.cipher;
  }

  /** A copy of `h`. */
  get handshakeHash(): Uint8Array {
    return Uint8Array.from(this.#h);
  }

  /** A copy of `ck`, for tests against vectors that publish it. */
  get chainingKey(): Uint8Array {
    return Uint8Array.from(this.#ck);
  }

  hasKey(): boolean {
    return this.#cipherState.hasKey();
  }

  mixKey(inputKeyMaterial: Uint8Array): void {
    const [ck, tempK] = noiseHkdf(this.#provider, this.#hash, this.#ck, inputKeyMaterial, 2) as [
      Uint8Array,
      Uint8Array,
    ];
    this.#ck.fill(0);
    this.#ck = ck;
    this.#setKey(tempK);
  }

  mixHash(data: Uint8Array): void {
    this.#h = this.#provider.hash(this.#hash, [this.#h, data]);
  }

  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    const [ck, tempH, tempK] = noiseHkdf(this.#provider, this.#hash, this.#ck, inputKeyMaterial, 3) as [
      Uint8Array,
      Uint8Array,
      Uint8Array,
    ];
    this.#ck.fill(0);
    this.#ck = ck;
    this.mixHash(tempH);
    this.#setKey(tempK);
  }

  #setKey(hashOutput: Uint8Array): void {
    const k = truncateKey(hashOutput);
    this.#cipherState.initializeKey(k);
    k.fill(0);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.#cipherState.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.#cipherState.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** Split (§5.2): two CipherStates keyed from ck, the first for initiator-to-responder traffic. */
  split(options?: CipherStateOptions): [CipherState, CipherState] {
    const [k1, k2] = noiseHkdf(this.#provider, this.#hash, this.#ck, new Uint8Array(0), 2) as [
      Uint8Array,
      Uint8Array,
    ];
    const key1 = truncateKey(k1);
    const key2 = truncateKey(k2);
    const c1 = new CipherState(this.#provider, this.#cipherState.cipher, key1, options);
    const c2 = new CipherState(this.#provider, this.#cipherState.cipher, key2, options);
    key1.fill(0);
    key2.fill(0);
    return [c1, c2];
  }

  /** Zeroes ck and the handshake key; `h` stays (it is public once the handshake is done). */
  wipe(): void {
    this.#ck.fill(0);
    this.#cipherState.destroy();
  }
}
