import type { AeadKey, Bytes, CipherName, CryptoProvider } from '../provider.js';

/** The provider's prepared key, or one that calls aeadEncrypt/aeadDecrypt with a copy of `key`. */
export function aeadKeyFor(provider: CryptoProvider, name: CipherName, key: Uint8Array): AeadKey {
  return provider.aeadKey?.(name, key) ?? perMessageAeadKey(provider, name, key);
}

/** An AeadKey over a provider's one-shot AEAD (each message sets the key up again). */
export function perMessageAeadKey(provider: CryptoProvider, name: CipherName, key: Uint8Array): AeadKey {
  return new PerMessageKey(provider, name, key.slice());
}

class PerMessageKey implements AeadKey {
  constructor(
    private readonly provider: CryptoProvider,
    private readonly name: CipherName,
    private readonly key: Uint8Array,
  ) {}

  seal(nonce: Uint8Array, ad: Uint8Array, plaintext: Bytes, prefix?: Uint8Array): Uint8Array {
    return this.provider.aeadEncrypt(this.name, this.key, nonce, ad, plaintext, prefix);
  }

  open(nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    return this.provider.aeadDecrypt(this.name, this.key, nonce, ad, ciphertext);
  }

  destroy(): void {
    this.key.fill(0);
  }
}
