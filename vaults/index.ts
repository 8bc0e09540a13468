/**
 * Vaults: the capability-split interfaces (`vault.ts`), the crypto providers behind them
 * (`provider.ts`) and the software backend.
 */
export type {
  Bytes,
  CipherName,
  CryptoProvider,
  DhName,
  HashName,
  KeyPair,
  SigningKeyType,
} from './provider.js';
export {
  DEFAULT_SCRYPT,
  DirectoryKeyStore,
  type DirectoryKeyStoreOptions,
  KEY_FILE_VERSION,
  type KeyStore,
  keyIdOf,
  MAX_KEY_FILE_SIZE,
  MemoryKeyStore,
  type ScryptParams,
  type StoredKey,
  type StoredKeyInfo,
  type StoredKeyType,
} from './software/key-store.js';
export { nobleCrypto } from './software/noble-provider.js';
export { nodeCrypto } from './software/node-provider.js';
export { SoftwareVault, type SoftwareVaultOptions, SoftwareVerifier } from './software/software-vault.js';
export type {
  DhKey,
  KeyId,
  SecureChannelVault,
  SignatureVerifier,
  SigningPublicKey,
  SigningVault,
} from './vault.js';
