import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type { CryptoProvider, SigningKeyType } from '../provider.js';
import type {
  DhKey,
  KeyId,
  SecureChannelVault,
  SignatureVerifier,
  SigningPublicKey,
  SigningVault,
} from '../vault.js';
import {
  DirectoryKeyStore,
  type KeyStore,
  MemoryKeyStore,
  type ScryptParams,
  type StoredKey,
  type StoredKeyType,
} from './key-store.js';
import { nodeCrypto } from './node-provider.js';

/** Verification and hashing in software, for keys of any backend. Stateless. */
export class SoftwareVerifier implements SignatureVerifier {
  readonly #provider: CryptoProvider;

  constructor(provider: CryptoProvider = nodeCrypto) {
    this.#provider = provider;
  }

  /**
   * Ed25519 over `data`; P256 is ECDSA-SHA256 over `data` (high-S and compressed keys accepted).
   * A malformed public key throws KEY_INVALID; a malformed signature is just `false`.
   */
  verify(publicKey: SigningPublicKey, data: Uint8Array, signature: Uint8Array): boolean {
    return this.#provider.verify(publicKey.type, publicKey.bytes, data, signature);
  }

  async verifyAsync(publicKey: SigningPublicKey, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const p = this.#provider;
    return p.verifyAsync
      ? p.verifyAsync(publicKey.type, publicKey.bytes, data, signature)
      : p.verify(publicKey.type, publicKey.bytes, data, signature);
  }

  sha256(data: Uint8Array): Uint8Array {
    return this.#provider.hash('SHA256', data);
  }
}

export interface SoftwareVaultOptions {
  /** Key directory (the embedded key store). Without one, keys live in memory only. */
  dir?: string;
  /**
   * The key store's passphrase: `create` with one encrypts private keys at rest (scrypt →
   * AES-256-GCM) for the store's whole life; `open` needs it to use the private keys of such a
   * store and refuses it for a store created in clear.
   */
  passphrase?: string | Uint8Array;
  /** Default: nodeCrypto. */
  provider?: CryptoProvider;
  /** scrypt cost for key files written from now on. Default N=2^15, r=8, p=1. */
  scrypt?: Partial<ScryptParams>;
  /** How to give the passphrase, appended to the error of an encrypted store used without it. */
  lockedHint?: string;
}

/** A loaded key. Held only inside the vault and the closures of the DhKeys it hands out. */
interface Entry {
  readonly type: StoredKeyType;
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
  deleted: boolean;
}

/**
 * The software backend: signing keys (Ed25519, P-256) and secure-channel X25519 keys, over a
 * CryptoProvider and a KeyStore. Key ids are the hex SHA-256 of the public key, as in Ockam.
 * Private keys leave the vault only through `exportPrivateKey`, which no other backend has.
 */
export class SoftwareVault implements SigningVault, SignatureVerifier, SecureChannelVault {
  readonly backend = 'software';
  readonly provider: CryptoProvider;
  readonly #store: KeyStore;
  readonly #verifier: SoftwareVerifier;
  /** Loaded keys (a promise each, so concurrent first uses read the file once). */
  readonly #loaded = new Map<KeyId, Promise<Entry>>();

  private constructor(store: KeyStore, provider: CryptoProvider) {
    this.#store = store;
    this.provider = provider;
    this.#verifier = new SoftwareVerifier(provider);
  }

  /** The vault over the existing key directory `dir` (VAULT_NOT_FOUND if there is none), or in memory. */
  static async open(options: SoftwareVaultOptions = {}): Promise<SoftwareVault> {
    return SoftwareVault.#openStore(options, false);
  }

  /** A new key directory `dir` (VAULT_EXISTS if it already holds one): encrypted when given a passphrase. */
  static async create(options: SoftwareVaultOptions & { dir: string }): Promise<SoftwareVault> {
    return SoftwareVault.#openStore(options, true);
  }

  static async #openStore(options: SoftwareVaultOptions, create: boolean): Promise<SoftwareVault> {
    const provider = options.provider ?? nodeCrypto;
    if (options.dir === undefined) {
      if (options.passphrase !== undefined) {
        throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'a passphrase needs a key directory (dir)');
      }
      return new SoftwareVault(new MemoryKeyStore(), provider);
    }
    const storeOptions = {
      ...(options.passphrase !== undefined && { passphrase: options.passphrase }),
      ...(options.scrypt !== undefined && { scrypt: options.scrypt }),
      ...(options.lockedHint !== undefined && { lockedHint: options.lockedHint }),
    };
    const store = create
      ? await DirectoryKeyStore.create(options.dir, storeOptions)
      : await DirectoryKeyStore.open(options.dir, storeOptions);
    return new SoftwareVault(store, provider);
  }

  static inMemory(options: { provider?: CryptoProvider } = {}): SoftwareVault {
    return new SoftwareVault(new MemoryKeyStore(), options.provider ?? nodeCrypto);
  }

  /** `memory` or the key directory. */
  get location(): string {
    return this.#store.location;
  }

  /** True when private keys are encrypted at rest (a key directory created with a passphrase). */
  get encrypted(): boolean {
    return this.#store instanceof DirectoryKeyStore && this.#store.encrypted;
  }

  /** True when the keys are encrypted at rest and the passphrase was not given: public keys only. */
  get locked(): boolean {
    return this.#store instanceof DirectoryKeyStore && this.#store.locked;
  }

  /** Encrypts a key directory created in clear (DirectoryKeyStore.encrypt); returns the keys rewritten. */
  async encryptAtRest(passphrase: string | Uint8Array): Promise<number> {
    if (!(this.#store instanceof DirectoryKeyStore)) {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'keys in memory cannot be encrypted at rest');
    }
    return this.#store.encrypt(passphrase);
  }

  // SigningVault

  async generateSigningKey(type: SigningKeyType): Promise<KeyId> {
    if (type !== 'Ed25519' && type !== 'P256') {
      throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported signing key type: ${String(type)}`);
    }
    const { privateKey, publicKey } = this.provider.signingGenerate(type);
    return this.#add(type, publicKey, privateKey);
  }

  async publicKey(keyId: KeyId): Promise<SigningPublicKey> {
    // Public keys are readable without the passphrase: a failed private load does not matter here.
    const cached = this.#loaded.get(keyId);
    const info = cached ? await cached.catch(() => this.#store.info(keyId)) : await this.#store.info(keyId);
    const type = signingType(keyId, info.type);
    return { type, bytes: info.publicKey.slice() };
  }

  async sign(keyId: KeyId, data: Uint8Array): Promise<Uint8Array> {
    const entry = await this.#load(keyId);
    const type = signingType(keyId, entry.type);
    return this.provider.signAsync
      ? this.provider.signAsync(type, entry.privateKey, data)
      : this.provider.sign(type, entry.privateKey, data);
  }

  async deleteKey(keyId: KeyId): Promise<void> {
    await this.#store.delete(keyId);
    const cached = this.#loaded.get(keyId);
    this.#loaded.delete(keyId);
    if (cached) {
      const entry = await cached.catch(() => undefined);
      if (entry) forget(entry);
    }
  }

  /** The signing keys (X25519 keys are listed by `listStaticX25519`). */
  async listKeys(): Promise<KeyId[]> {
    return (await this.#store.list()).filter((k) => k.type !== 'X25519').map((k) => k.id);
  }

  // SignatureVerifier

  verify(publicKey: SigningPublicKey, data: Uint8Array, signature: Uint8Array): boolean {
    return this.#verifier.verify(publicKey, data, signature);
  }

  sha256(data: Uint8Array): Uint8Array {
    return this.#verifier.sha256(data);
  }

  // SecureChannelVault

  async generateStaticX25519(): Promise<KeyId> {
    const { privateKey, publicKey } = this.provider.dhGenerate('25519');
    return this.#add('X25519', publicKey, privateKey);
  }

  async staticX25519(keyId: KeyId): Promise<DhKey> {
    const entry = await this.#load(keyId);
    if (entry.type !== 'X25519') {
      throw new KeyhopError(ErrorCodes.KEY_INVALID, `key ${keyId} is a ${entry.type} key, not X25519`);
    }
    const provider = this.provider;
    // The private key is reachable only from this closure, never as a property.
    return Object.freeze({
      publicKey: entry.publicKey.slice(),
      dh(peerPublicKey: Uint8Array): Uint8Array {
        if (entry.deleted) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `key ${keyId} was deleted`);
        return provider.dh('25519', entry.privateKey, peerPublicKey);
      },
    });
  }

  async listStaticX25519(): Promise<KeyId[]> {
    return (await this.#store.list()).filter((k) => k.type === 'X25519').map((k) => k.id);
  }

  // Software backend only

  /** A copy of the raw private key: the one explicit way a secret leaves this vault. */
  async exportPrivateKey(keyId: KeyId): Promise<Uint8Array> {
    return (await this.#load(keyId)).privateKey.slice();
  }

  /**
   * Zeroes the keys held in memory and forgets the passphrase. An in-memory vault loses its keys;
   * a directory vault can be opened again.
   */
  async close(): Promise<void> {
    const entries = [...this.#loaded.values()];
    this.#loaded.clear();
    for (const p of entries) {
      const entry = await p.catch(() => undefined);
      if (entry) forget(entry);
    }
    this.#store.close();
  }

  async #add(type: StoredKeyType, publicKey: Uint8Array, privateKey: Uint8Array): Promise<KeyId> {
    const id = Buffer.from(this.provider.hash('SHA256', publicKey)).toString('hex');
    const key: StoredKey = { id, type, publicKey, privateKey };
    await this.#store.put(key);
    this.#loaded.set(id, Promise.resolve({ type, publicKey, privateKey, deleted: false }));
    return id;
  }

  #load(keyId: KeyId): Promise<Entry> {
    let entry = this.#loaded.get(keyId);
    if (!entry) {
      const loading = this.#store
        .get(keyId)
        .then(
          (k): Entry => ({ type: k.type, publicKey: k.publicKey, privateKey: k.privateKey, deleted: false }),
        );
      entry = loading;
      this.#loaded.set(keyId, loading);
      // A failed load (wrong passphrase, damaged file) is not remembered: the next use retries.
      loading.catch(() => {
        if (this.#loaded.get(keyId) === loading) this.#loaded.delete(keyId);
      });
    }
    return entry;
  }
}

function signingType(keyId: KeyId, type: StoredKeyType): SigningKeyType {
  if (type === 'X25519') {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `key ${keyId} is an X25519 key, not a signing key`);
  }
  return type;
}

function forget(entry: Entry): void {
  entry.deleted = true;
  entry.privateKey.fill(0);
}
