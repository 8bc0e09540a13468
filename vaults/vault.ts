import type { SigningKeyType } from './provider.js';

/**
 * Vault interfaces, split by capability as Ockam does (ockam.md §5.1). A hardware backend
 * (ATECC608, TPM, PKCS#11) implements `SigningVault` only; verification and secure-channel crypto
 * stay in software on every board. Key ids are opaque strings; no secret leaves a vault except
 * through the software backend's explicit export.
 */
export type KeyId = string;

export interface SigningPublicKey {
  readonly type: SigningKeyType;
  /** Ed25519: 32 bytes. P256: 65 bytes, uncompressed (04 ‖ x ‖ y). */
  readonly bytes: Uint8Array;
}

export interface SigningVault {
  /** Backend name for logs and `show` commands: `software`, `atecc608`, `tpm`, `pkcs11`. */
  readonly backend: string;
  generateSigningKey(type: SigningKeyType): Promise<KeyId>;
  publicKey(keyId: KeyId): Promise<SigningPublicKey>;
  /**
   * Signs `data`. Ed25519 signs the bytes; P256 signs SHA-256(data) (hash on the host, sign the
   * digest: the pattern a secure element needs), returning raw r ‖ s. Ockam always passes a
   * 32-byte SHA-256 digest as `data`.
   */
  sign(keyId: KeyId, data: Uint8Array): Promise<Uint8Array>;
  deleteKey(keyId: KeyId): Promise<void>;
  listKeys(): Promise<KeyId[]>;
}

/** Pure software and stateless: any key type, from any backend. */
export interface SignatureVerifier {
  verify(publicKey: SigningPublicKey, data: Uint8Array, signature: Uint8Array): boolean;
  /**
   * The same check, off the JavaScript thread where the implementation can (node:crypto runs it
   * on libuv's thread pool): what a busy verifier (an authority) uses to keep both cores working.
   */
  verifyAsync?(publicKey: SigningPublicKey, data: Uint8Array, signature: Uint8Array): Promise<boolean>;
  sha256(data: Uint8Array): Uint8Array;
}

/**
 * A Diffie-Hellman key whose private half stays where it is (the vault, or channel memory for an
 * ephemeral key): the Noise engine only ever asks it for a shared secret.
 */
export interface DhKey {
  readonly publicKey: Uint8Array;
  dh(peerPublicKey: Uint8Array): Uint8Array;
}

/** The X25519 static keys of secure channels. */
export interface SecureChannelVault {
  generateStaticX25519(): Promise<KeyId>;
  /** The key as a DhKey; its private half never leaves the vault. */
  staticX25519(keyId: KeyId): Promise<DhKey>;
  deleteKey(keyId: KeyId): Promise<void>;
}
