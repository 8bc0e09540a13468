import type { AeadKey, Bytes, CipherName, CryptoProvider } from '../provider.js';

/** The provider's prepared key, or one that calls aeadEncrypt/aeadDecrypt with a copy of `key`. */
export function aeadKeyFor(provider: CryptoProvider, name: CipherName, key: Uint8Array): AeadKey {
  return provider.aeadKey?.(name, key) ?? perMessageAeadKey(provider, name, key);
}

/** An AeadKey over a provider's one-shot AEAD (each message sets the key up again). */
export function perMessageAeadKey(provider: CryptoProvider, name: CipherName, key: Uint8Array): AeadKey {
  const k = key.slice();
  return {
    seal: (nonce: Uint8Array, ad: Uint8Array, plaintext: Bytes, prefix?: Uint8Array) =>
      provider.aeadEncrypt(name, k, nonce, ad, plaintext, prefix),
    open: (nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array) =>
      provider.aeadDecrypt(name, k, nonce, ad, ciphertext),
    destroy: () => k.fill(0),
  };
}
