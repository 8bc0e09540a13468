/**
 * The crypto primitives keyhop needs, behind one interface with two implementations:
 * `node:crypto` (fast, the default on Node) and `@noble/*` (portable pure JS). Both must pass the
 * same vectors (Wycheproof, cacophony). Everything here is synchronous: these are in-memory
 * operations on keys the caller holds; keys that live in a vault are used through the vault
 * interfaces in `vault.ts`.
 *
 * Failures are KeyhopErrors: AEAD_FAILED for an authentication failure, KEY_INVALID for a key or
 * public key of the wrong size or form.
 */
export type HashName = 'SHA256' | 'SHA512' | 'BLAKE2s' | 'BLAKE2b';
export type DhName = '25519' | '448';
export type CipherName = 'AESGCM' | 'ChaChaPoly';
export type SigningKeyType = 'Ed25519' | 'P256';

export interface KeyPair {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export type Bytes = Uint8Array | readonly Uint8Array[];

/** An AEAD key set up once for many messages (CryptoProvider.aeadKey). */
export interface AeadKey {
  /** `prefix ‖ ciphertext ‖ tag`; `plaintext` may be given in pieces. */
  seal(nonce: Uint8Array, ad: Uint8Array, plaintext: Bytes, prefix?: Uint8Array): Uint8Array;
  /** The plaintext; AEAD_FAILED when the tag does not verify. */
  open(nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array;
  /** Frees the key's state; the object is unusable afterwards. */
  destroy(): void;
}

export interface CryptoProvider {
  readonly name: 'node' | 'noble';

  randomBytes(length: number): Uint8Array;

  /** Digest of `data` (an array is hashed as its concatenation, without copying it first). */
  hash(name: HashName, data: Bytes): Uint8Array;
  /** HMAC (RFC 2104) with the named hash; BLAKE2 in its plain (unkeyed) form inside HMAC, as Noise does. */
  hmac(name: HashName, key: Uint8Array, data: Bytes): Uint8Array;
  /** HKDF-SHA256 (RFC 5869), `length` ≤ 255 × 32. */
  hkdfSha256(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): Uint8Array;

  /** Diffie-Hellman: X25519 (32-byte keys) or X448 (56-byte keys), RFC 7748. */
  dhGenerate(name: DhName): KeyPair;
  dhPublicKey(name: DhName, privateKey: Uint8Array): Uint8Array;
  /**
   * The shared secret. A low-order peer key, whose result would be all zeros, is refused with
   * KEY_INVALID by both providers (OpenSSL and noble refuse to produce it).
   */
  dh(name: DhName, privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array;

  /**
   * AEAD with a 32-byte key and a 12-byte nonce; returns `prefix` ‖ ciphertext ‖ 16-byte tag.
   * `plaintext` may come in pieces, encrypted as their concatenation (saves the caller a copy).
   */
  aeadEncrypt(
    name: CipherName,
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    plaintext: Bytes,
    prefix?: Uint8Array,
  ): Uint8Array;
  /** Inverse of aeadEncrypt; throws AEAD_FAILED when the tag does not verify. */
  aeadDecrypt(
    name: CipherName,
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    ciphertext: Uint8Array,
  ): Uint8Array;

  /**
   * The key made ready for many messages (set up once, each message only sets its nonce): what
   * secure channels encrypt with. The same results as aeadEncrypt/aeadDecrypt with `key`. Optional:
   * `aeadKeyFor` (vaults/software/aead-key.ts) falls back to those.
   */
  aeadKey?(name: CipherName, key: Uint8Array): AeadKey;

  /**
   * Signatures. Ed25519: 32-byte private seed, 32-byte public key, signs `message` itself.
   * P256: 32-byte private scalar, 65-byte uncompressed public key, ECDSA with SHA-256 over
   * `message`, signature raw r ‖ s (64 bytes). Verification accepts high-S P-256 signatures, as
   * hardware produces them, and 33-byte compressed public keys.
   */
  signingGenerate(type: SigningKeyType): KeyPair;
  signingPublicKey(type: SigningKeyType, privateKey: Uint8Array): Uint8Array;
  sign(type: SigningKeyType, privateKey: Uint8Array, message: Uint8Array): Uint8Array;
  verify(type: SigningKeyType, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
  /** `sign` and `verify` off the JavaScript thread, where the provider can (node:crypto's thread pool). */
  signAsync?(type: SigningKeyType, privateKey: Uint8Array, message: Uint8Array): Promise<Uint8Array>;
  verifyAsync?(
    type: SigningKeyType,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
  ): Promise<boolean>;
}
