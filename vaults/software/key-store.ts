import { createHash, timingSafeEqual } from 'node:crypto';
import { type FileHandle, link, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  describeError,
  ErrorCodes,
  isKeyhopError,
  KeyhopError,
  thrownProperty,
} from '../../runtime/errors.js';
import type { SigningKeyType } from '../provider.js';
import type { KeyId } from '../vault.js';
import { nodeCrypto } from './node-provider.js';
import {
  AEAD_KEY_LENGTH,
  CHECK_LENGTH,
  ENCRYPTION_NONE,
  ENCRYPTION_SCRYPT_AES,
  encodeStoreHeader,
  encryptedHeader,
  fromHex,
  hasExactly,
  headerAccepts,
  isRecord,
  MAX_STORE_HEADER_SIZE,
  parseStoreHeader,
  SALT_LENGTH,
  type ScryptParams,
  STORE_HEADER_FILE,
  type StoreHeader,
  scryptAsync,
  scryptParamsProblem,
  toHex,
} from './store-header.js';

export type { ScryptParams } from './store-header.js';

/**
 * Where the software vault keeps its keys: in memory, or the embedded default, a directory with
 * one JSON file per key. The file format is documented in docs/vaults/software.md; keep the two in
 * step.
 *
 * Every file is written atomically (temporary file in the same directory, mode 0600, fsync,
 * rename, fsync of the directory), so a crash leaves the old state or the new one, never half a
 * key. Reading checks everything it can: size before parsing, strict schema, a checksum, the key
 * id against the public key, the private key against the public key. A file that fails any check
 * is reported as KEY_STORE_CORRUPT with its path, and nothing is ever regenerated in its place.
 */

export type StoredKeyType = SigningKeyType | 'X25519';

export interface StoredKeyInfo {
  readonly id: KeyId;
  readonly type: StoredKeyType;
  readonly publicKey: Uint8Array;
}

export interface StoredKey extends StoredKeyInfo {
  readonly privateKey: Uint8Array;
}

export interface KeyStore {
  /** `memory`, or the absolute path of the key directory. */
  readonly location: string;
  put(key: StoredKey): Promise<void>;
  /** The whole key; KEY_NOT_FOUND, KEY_STORE_LOCKED or KEY_STORE_CORRUPT. */
  get(id: KeyId): Promise<StoredKey>;
  /** The public part only: works without the passphrase. */
  info(id: KeyId): Promise<StoredKeyInfo>;
  delete(id: KeyId): Promise<void>;
  list(): Promise<Array<{ id: KeyId; type: StoredKeyType }>>;
  /** Forgets the passphrase (and, in memory, the keys). */
  close(): void;
}

/** 32 MiB of memory, about 0.1 s on a desktop CPU, under a second on a Raspberry Pi 4. */
export const DEFAULT_SCRYPT: ScryptParams = Object.freeze({ N: 2 ** 15, r: 8, p: 1 });

export const KEY_FILE_FORMAT = 'keyhop-key';
export const KEY_FILE_VERSION = 1;
/** Key files are under 1 KiB; anything bigger is not ours. */
export const MAX_KEY_FILE_SIZE = 16 * 1024;

const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;

const TYPES: readonly StoredKeyType[] = ['Ed25519', 'P256', 'X25519'];
const PUBLIC_KEY_LENGTH: Readonly<Record<StoredKeyType, number>> = { Ed25519: 32, P256: 65, X25519: 32 };
const PRIVATE_KEY_LENGTH: Readonly<Record<StoredKeyType, number>> = { Ed25519: 32, P256: 32, X25519: 32 };
const KEY_ID = /^[0-9a-f]{64}$/;
const FILE_NAME = /^(ed25519|p256|x25519)-([0-9a-f]{64})\.json$/;

/** Hex SHA-256 of the public key (as Ockam names keys). */
export function keyIdOf(publicKey: Uint8Array): KeyId {
  return createHash('sha256').update(publicKey).digest('hex');
}

function fileName(type: StoredKeyType, id: KeyId): string {
  return `${type.toLowerCase()}-${id}.json`;
}

function typeOfFileName(prefix: string): StoredKeyType {
  return prefix === 'ed25519' ? 'Ed25519' : prefix === 'p256' ? 'P256' : 'X25519';
}

function notFound(id: KeyId): KeyhopError {
  return new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no key with id ${id}`);
}

function checkStoredKey(key: StoredKey): void {
  if (!TYPES.includes(key.type)) {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported key type: ${String(key.type)}`);
  }
  if (
    !KEY_ID.test(key.id) ||
    key.publicKey.length !== PUBLIC_KEY_LENGTH[key.type] ||
    key.privateKey.length !== PRIVATE_KEY_LENGTH[key.type]
  ) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `malformed ${key.type} key ${key.id}`);
  }
}

function copyKey(key: StoredKey): StoredKey {
  return { id: key.id, type: key.type, publicKey: key.publicKey.slice(), privateKey: key.privateKey.slice() };
}

/** Keys in a Map: for tests, ephemeral nodes and boards without storage. */
export class MemoryKeyStore implements KeyStore {
  readonly location = 'memory';
  readonly #keys = new Map<KeyId, StoredKey>();

  async put(key: StoredKey): Promise<void> {
    checkStoredKey(key);
    this.#keys.set(key.id, copyKey(key));
  }

  async get(id: KeyId): Promise<StoredKey> {
    const key = this.#keys.get(id);
    if (!key) throw notFound(id);
    return copyKey(key);
  }

  async info(id: KeyId): Promise<StoredKeyInfo> {
    const key = this.#keys.get(id);
    if (!key) throw notFound(id);
    return { id, type: key.type, publicKey: key.publicKey.slice() };
  }

  async delete(id: KeyId): Promise<void> {
    const key = this.#keys.get(id);
    if (!key) throw notFound(id);
    key.privateKey.fill(0);
    this.#keys.delete(id);
  }

  async list(): Promise<Array<{ id: KeyId; type: StoredKeyType }>> {
    return [...this.#keys.values()].map((k) => ({ id: k.id, type: k.type })).sort(byId);
  }

  /** Memory is all there is: closing drops (and zeroes) every key. */
  close(): void {
    for (const key of this.#keys.values()) key.privateKey.fill(0);
    this.#keys.clear();
  }
}

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// File format

interface ClearPrivateKey {
  encryption: typeof ENCRYPTION_NONE;
  key: string;
}
interface EncryptedPrivateKey {
  encryption: typeof ENCRYPTION_SCRYPT_AES;
  scrypt: { N: number; r: number; p: number; salt: string };
  passphraseCheck: string;
  nonce: string;
  ciphertext: string;
}
interface KeyFileBody {
  format: typeof KEY_FILE_FORMAT;
  version: number;
  id: string;
  type: StoredKeyType;
  publicKey: string;
  privateKey: ClearPrivateKey | EncryptedPrivateKey;
}

/** A fresh object with the fields in their fixed order: its JSON is what the checksum covers. */
function canonical(body: KeyFileBody): KeyFileBody {
  const pk = body.privateKey;
  const privateKey: ClearPrivateKey | EncryptedPrivateKey =
    pk.encryption === ENCRYPTION_NONE
      ? { encryption: pk.encryption, key: pk.key }
      : {
          encryption: pk.encryption,
          scrypt: { N: pk.scrypt.N, r: pk.scrypt.r, p: pk.scrypt.p, salt: pk.scrypt.salt },
          passphraseCheck: pk.passphraseCheck,
          nonce: pk.nonce,
          ciphertext: pk.ciphertext,
        };
  return {
    format: body.format,
    version: body.version,
    id: body.id,
    type: body.type,
    publicKey: body.publicKey,
    privateKey,
  };
}

function checksumOf(body: KeyFileBody): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(body)))
    .digest('hex');
}

/** The AES-GCM associated data: binds the ciphertext to its format version, key type and id. */
function associatedData(type: StoredKeyType, id: KeyId): Uint8Array {
  return new TextEncoder().encode(`${KEY_FILE_FORMAT}/${KEY_FILE_VERSION}\0${type}\0${id}`);
}

// ---------------------------------------------------------------------------------------------
// The directory store

export interface DirectoryKeyStoreOptions {
  /**
   * The store's passphrase (a string is used as its NFC-normalized UTF-8 bytes). `create` with one
   * makes an encrypted store; `open` needs it to read or write the private keys of an encrypted
   * store, and refuses it for a store created in clear.
   */
  passphrase?: string | Uint8Array;
  /** scrypt cost for files written from now on (files keep their own). Default DEFAULT_SCRYPT. */
  scrypt?: Partial<ScryptParams>;
  /** Appended to the KEY_STORE_LOCKED error of a store used without its passphrase (how to give it). */
  lockedHint?: string;
}

/**
 * The key directory. Its header (`keystore.json`, store-header.ts) records whether it was created
 * encrypted; that never changes except through `encrypt`, which only goes from clear to encrypted.
 */
export class DirectoryKeyStore implements KeyStore {
  readonly location: string;
  #passphrase: Uint8Array | undefined;
  #encrypted: boolean;
  readonly #scrypt: ScryptParams;
  readonly #lockedHint: string;

  private constructor(
    dir: string,
    encrypted: boolean,
    passphrase: Uint8Array | undefined,
    params: ScryptParams,
    lockedHint: string | undefined,
  ) {
    this.location = dir;
    this.#encrypted = encrypted;
    this.#passphrase = passphrase;
    this.#scrypt = params;
    this.#lockedHint = lockedHint === undefined ? '' : `: ${lockedHint}`;
  }

  /** True when the store was created with a passphrase (its private keys are encrypted at rest). */
  get encrypted(): boolean {
    return this.#encrypted;
  }

  /** True when the store is encrypted and was opened without its passphrase: public keys only. */
  get locked(): boolean {
    return this.#encrypted && this.#passphrase === undefined;
  }

  /**
   * Creates the key directory (mode 0700) with its header: encrypted when a passphrase is given.
   * VAULT_EXISTS when `dir` already holds a key store or keys; an empty directory is taken.
   */
  static async create(dir: string, options: DirectoryKeyStoreOptions = {}): Promise<DirectoryKeyStore> {
    const { passphrase, params } = checkOptions(options);
    const location = resolve(dir);
    try {
      await mkdir(location, { recursive: true, mode: 0o700 });
      if (!(await stat(location)).isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw ioError(e, `key store ${location} cannot be created`);
    }
    const entries = await listDirectory(location);
    if (entries.includes(STORE_HEADER_FILE) || entries.some((n) => FILE_NAME.test(n))) {
      throw new KeyhopError(ErrorCodes.VAULT_EXISTS, `key store ${location} already exists`);
    }
    const header: StoreHeader = passphrase
      ? await encryptedHeader(passphrase, params)
      : { encryption: ENCRYPTION_NONE };
    const store = new DirectoryKeyStore(
      location,
      passphrase !== undefined,
      passphrase,
      params,
      options.lockedHint,
    );
    await store.#writeAtomic(STORE_HEADER_FILE, encodeStoreHeader(header), true);
    return store;
  }

  /**
   * Opens an existing key directory. An encrypted store opened with a passphrase checks it here (a
   * wrong one fails at once with KEY_STORE_LOCKED); opened without one, it serves public keys and
   * refuses private ones with KEY_STORE_LOCKED. A store created in clear refuses a passphrase
   * (CONFIG_INVALID): use `encrypt`. A directory that is not a key store is VAULT_NOT_FOUND.
   *
   * Directories written before the header existed are recognised by their key files and get a
   * header: encrypted if any key file is (once the passphrase has been checked against it),
   * otherwise in clear.
   */
  static async open(dir: string, options: DirectoryKeyStoreOptions = {}): Promise<DirectoryKeyStore> {
    const { passphrase, params } = checkOptions(options);
    const location = resolve(dir);
    const entries = await listDirectory(location);
    const headerPath = join(location, STORE_HEADER_FILE);
    if (entries.includes(STORE_HEADER_FILE)) {
      const header = parseStoreHeader(
        headerPath,
        (await readBounded(headerPath, MAX_STORE_HEADER_SIZE)) ?? '',
      );
      const encrypted = header.encryption === ENCRYPTION_SCRYPT_AES;
      if (passphrase && !encrypted) throw clearStoreWithPassphrase(location);
      if (passphrase && !(await headerAccepts(header, passphrase))) throw wrongPassphrase(location);
      return new DirectoryKeyStore(location, encrypted, passphrase, params, options.lockedHint);
    }
    if (!entries.some((n) => FILE_NAME.test(n))) {
      throw new KeyhopError(
        ErrorCodes.VAULT_NOT_FOUND,
        `${location} is not a key store (no ${STORE_HEADER_FILE})`,
      );
    }
    // A store from before the header: what it was created as shows in its key files.
    const legacy = new DirectoryKeyStore(location, false, undefined, params, options.lockedHint);
    const encryptedFile = await legacy.#firstEncryptedFile();
    if (encryptedFile === undefined) {
      if (passphrase) throw clearStoreWithPassphrase(location);
      await legacy.#writeHeaderOnce({ encryption: ENCRYPTION_NONE });
      return legacy;
    }
    const store = new DirectoryKeyStore(location, true, passphrase, params, options.lockedHint);
    if (passphrase) {
      if (!(await keyFileAccepts(encryptedFile.pk, passphrase))) throw wrongPassphrase(location);
      await store.#writeHeaderOnce(await encryptedHeader(passphrase, params));
    }
    return store;
  }

  /** Adds the header to a store from before headers; another process may have done it already. */
  async #writeHeaderOnce(header: StoreHeader): Promise<void> {
    try {
      await this.#writeAtomic(STORE_HEADER_FILE, encodeStoreHeader(header), true);
    } catch (e) {
      if (!isKeyhopError(e, ErrorCodes.VAULT_EXISTS)) throw e;
    }
  }

  /**
   * Encrypts a store created in clear: writes the encrypted header, then every clear key file again
   * under `passphrase` (each atomically). Run again after an interruption, it finishes the job. On
   * an encrypted store the passphrase must be its own. Returns how many key files it encrypted.
   */
  async encrypt(passphrase: string | Uint8Array): Promise<number> {
    const bytes = normalizePassphrase(passphrase);
    if (bytes === undefined) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'no passphrase given');
    const headerPath = join(this.location, STORE_HEADER_FILE);
    if (this.#encrypted) {
      const header = parseStoreHeader(
        headerPath,
        (await readBounded(headerPath, MAX_STORE_HEADER_SIZE)) ?? '',
      );
      if (!(await headerAccepts(header, bytes))) throw wrongPassphrase(this.location);
    } else {
      // Header first: from here on nothing is written in clear, even if this run is cut short.
      await this.#writeAtomic(
        STORE_HEADER_FILE,
        encodeStoreHeader(await encryptedHeader(bytes, this.#scrypt)),
      );
      this.#encrypted = true;
    }
    this.#passphrase?.fill(0);
    this.#passphrase = bytes;
    let encrypted = 0;
    for (const { id } of await this.list()) {
      const { body } = await this.#read(id);
      if (body.privateKey.encryption !== ENCRYPTION_NONE) continue;
      const key = await this.get(id);
      await this.put(key);
      key.privateKey.fill(0);
      encrypted++;
    }
    return encrypted;
  }

  async #firstEncryptedFile(): Promise<{ path: string; pk: EncryptedPrivateKey } | undefined> {
    for (const { id } of await this.list()) {
      let found: { path: string; body: KeyFileBody };
      try {
        found = await this.#read(id);
      } catch {
        continue; // a damaged file is reported when that key is used, not here
      }
      const pk = found.body.privateKey;
      if (pk.encryption === ENCRYPTION_SCRYPT_AES) return { path: found.path, pk };
    }
    return undefined;
  }

  #lockedError(what: string): KeyhopError {
    return new KeyhopError(
      ErrorCodes.KEY_STORE_LOCKED,
      `${what}: key store ${this.location} is encrypted at rest and was opened without its passphrase${this.#lockedHint}`,
    );
  }

  async put(key: StoredKey): Promise<void> {
    checkStoredKey(key);
    // The store's header decides, never the presence of a passphrase: an encrypted store gets no
    // key in clear.
    if (this.locked) throw this.#lockedError(`cannot store key ${key.id}`);
    const privateKey = this.#encrypted
      ? await this.#encrypt(key, this.#passphrase!)
      : ({ encryption: ENCRYPTION_NONE, key: toHex(key.privateKey) } as const);
    const body: KeyFileBody = {
      format: KEY_FILE_FORMAT,
      version: KEY_FILE_VERSION,
      id: key.id,
      type: key.type,
      publicKey: toHex(key.publicKey),
      privateKey,
    };
    const text = `${JSON.stringify({ ...canonical(body), checksum: checksumOf(body) }, null, 2)}\n`;
    await this.#writeAtomic(fileName(key.type, key.id), text);
  }

  async get(id: KeyId): Promise<StoredKey> {
    const { path, body } = await this.#read(id);
    const type = body.type;
    let privateKey: Uint8Array;
    if (body.privateKey.encryption === ENCRYPTION_NONE) {
      privateKey = fromHex(body.privateKey.key)!;
    } else {
      if (!this.#passphrase) throw this.#lockedError(`key file ${path} is encrypted`);
      privateKey = await this.#decrypt(path, body, body.privateKey, this.#passphrase);
    }
    const publicKey = fromHex(body.publicKey)!;
    if (privateKey.length !== PRIVATE_KEY_LENGTH[type] || !derivesPublicKey(type, privateKey, publicKey)) {
      privateKey.fill(0);
      throw corrupt(path, 'the private key does not match the public key');
    }
    return { id, type, publicKey, privateKey };
  }

  async info(id: KeyId): Promise<StoredKeyInfo> {
    const { body } = await this.#read(id);
    return { id, type: body.type, publicKey: fromHex(body.publicKey)! };
  }

  async delete(id: KeyId): Promise<void> {
    if (!KEY_ID.test(id)) throw notFound(id);
    let deleted = false;
    for (const type of TYPES) {
      try {
        await unlink(join(this.location, fileName(type, id)));
        deleted = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(e, `cannot delete key ${id}`);
      }
    }
    if (!deleted) throw notFound(id);
    await syncDirectory(this.location);
  }

  async list(): Promise<Array<{ id: KeyId; type: StoredKeyType }>> {
    let names: string[];
    try {
      names = await readdir(this.location);
    } catch (e) {
      throw ioError(e, `cannot list key store ${this.location}`);
    }
    const keys: Array<{ id: KeyId; type: StoredKeyType }> = [];
    for (const name of names) {
      const m = FILE_NAME.exec(name);
      if (m) keys.push({ id: m[2]!, type: typeOfFileName(m[1]!) });
    }
    return keys.sort(byId);
  }

  close(): void {
    this.#passphrase?.fill(0);
    this.#passphrase = undefined;
  }

  async #encrypt(key: StoredKey, passphrase: Uint8Array): Promise<EncryptedPrivateKey> {
    const salt = nodeCrypto.randomBytes(SALT_LENGTH);
    const nonce = nodeCrypto.randomBytes(NONCE_LENGTH);
    const derived = await scryptAsync(passphrase, salt, this.#scrypt);
    try {
      const ciphertext = nodeCrypto.aeadEncrypt(
        'AESGCM',
        derived.subarray(0, AEAD_KEY_LENGTH),
        nonce,
        associatedData(key.type, key.id),
        key.privateKey,
      );
      return {
        encryption: ENCRYPTION_SCRYPT_AES,
        scrypt: { N: this.#scrypt.N, r: this.#scrypt.r, p: this.#scrypt.p, salt: toHex(salt) },
        passphraseCheck: toHex(derived.subarray(AEAD_KEY_LENGTH)),
        nonce: toHex(nonce),
        ciphertext: toHex(ciphertext),
      };
    } finally {
      derived.fill(0);
    }
  }

  async #decrypt(
    path: string,
    body: KeyFileBody,
    pk: EncryptedPrivateKey,
    passphrase: Uint8Array,
  ): Promise<Uint8Array> {
    const derived = await scryptAsync(passphrase, fromHex(pk.scrypt.salt)!, pk.scrypt);
    try {
      // The second half of the scrypt output tells a wrong passphrase (LOCKED) from a damaged
      // ciphertext (CORRUPT), which AES-GCM alone cannot.
      if (!timingSafeEqual(derived.subarray(AEAD_KEY_LENGTH), fromHex(pk.passphraseCheck)!)) {
        throw wrongPassphrase(path);
      }
      try {
        return nodeCrypto.aeadDecrypt(
          'AESGCM',
          derived.subarray(0, AEAD_KEY_LENGTH),
          fromHex(pk.nonce)!,
          associatedData(body.type, body.id),
          fromHex(pk.ciphertext)!,
        );
      } catch {
        throw corrupt(path, 'the encrypted private key does not authenticate');
      }
    } finally {
      derived.fill(0);
    }
  }

  /** Finds, reads and validates the file of key `id` (everything but the private key itself). */
  async #read(id: KeyId): Promise<{ path: string; body: KeyFileBody }> {
    if (!KEY_ID.test(id)) throw notFound(id);
    for (const type of TYPES) {
      const path = join(this.location, fileName(type, id));
      const text = await readBounded(path);
      if (text === undefined) continue;
      return { path, body: parseKeyFile(path, text, id, type) };
    }
    throw notFound(id);
  }

  /**
   * Writes `name` atomically. `exclusive`: the final name must not exist yet (a hard link, not a
   * rename, puts it in place), so two processes creating one store cannot both succeed.
   */
  async #writeAtomic(name: string, text: string, exclusive = false): Promise<void> {
    const tmp = join(this.location, `.${name}.${toHex(nodeCrypto.randomBytes(8))}.tmp`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(tmp, 'wx', 0o600);
      await handle.chmod(0o600); // whatever the umask
      await handle.writeFile(text, 'utf8');
      await handle.sync();
      await handle.close();
      handle = undefined;
      if (exclusive) {
        await link(tmp, join(this.location, name));
        await unlink(tmp);
      } else {
        await rename(tmp, join(this.location, name));
      }
    } catch (e) {
      await handle?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      if (exclusive && thrownProperty(e, 'code') === 'EEXIST') {
        throw new KeyhopError(ErrorCodes.VAULT_EXISTS, `key store ${this.location} already exists`);
      }
      throw ioError(e, `cannot write ${join(this.location, name)}`);
    }
    await syncDirectory(this.location);
  }
}

function checkOptions(options: DirectoryKeyStoreOptions): {
  passphrase: Uint8Array | undefined;
  params: ScryptParams;
} {
  const params = { ...DEFAULT_SCRYPT, ...options.scrypt };
  const problem = scryptParamsProblem(params.N, params.r, params.p);
  if (problem) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, problem);
  return { passphrase: normalizePassphrase(options.passphrase), params };
}

/** The names in `dir`; VAULT_NOT_FOUND when it does not exist, KEY_STORE_IO when it cannot be read. */
async function listDirectory(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (thrownProperty(e, 'code') === 'ENOENT') {
      throw new KeyhopError(ErrorCodes.VAULT_NOT_FOUND, `key store ${dir} does not exist`);
    }
    throw ioError(e, `key store ${dir} cannot be read`);
  }
}

function clearStoreWithPassphrase(location: string): KeyhopError {
  return new KeyhopError(
    ErrorCodes.CONFIG_INVALID,
    `key store ${location} was created without a passphrase and keeps its keys in clear, but a passphrase was given (encrypt the store first)`,
  );
}

/** True when `passphrase` opens this encrypted key file (its passphrase check, constant time). */
async function keyFileAccepts(pk: EncryptedPrivateKey, passphrase: Uint8Array): Promise<boolean> {
  const derived = await scryptAsync(passphrase, fromHex(pk.scrypt.salt)!, pk.scrypt);
  try {
    return timingSafeEqual(derived.subarray(AEAD_KEY_LENGTH), fromHex(pk.passphraseCheck)!);
  } finally {
    derived.fill(0);
  }
}

function normalizePassphrase(passphrase: string | Uint8Array | undefined): Uint8Array | undefined {
  if (passphrase === undefined) return undefined;
  const bytes =
    typeof passphrase === 'string'
      ? new TextEncoder().encode(passphrase.normalize('NFC'))
      : passphrase.slice();
  if (bytes.length === 0)
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'the key store passphrase is empty');
  return bytes;
}

function derivesPublicKey(type: StoredKeyType, privateKey: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    const derived =
      type === 'X25519'
        ? nodeCrypto.dhPublicKey('25519', privateKey)
        : nodeCrypto.signingPublicKey(type, privateKey);
    return Buffer.compare(derived, publicKey) === 0;
  } catch {
    return false;
  }
}

/** The file's text, or undefined if it does not exist. Checks the size before reading. */
async function readBounded(path: string, limit = MAX_KEY_FILE_SIZE): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(e, `cannot read key file ${path}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw corrupt(path, 'not a regular file');
    if (info.size > limit) {
      throw corrupt(path, `${info.size} bytes, more than ${limit}`);
    }
    const buffer = new Uint8Array(limit + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > limit) throw corrupt(path, `more than ${limit} bytes`);
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, length));
    } catch {
      throw corrupt(path, 'not UTF-8 text');
    } finally {
      buffer.fill(0);
    }
  } catch (e) {
    if (isKeyhopError(e)) throw e;
    throw ioError(e, `cannot read key file ${path}`);
  } finally {
    await handle.close();
  }
}

/** Strict validation of a key file; every problem is KEY_STORE_CORRUPT naming the file. */
function parseKeyFile(path: string, text: string, id: KeyId, type: StoredKeyType): KeyFileBody {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw corrupt(path, 'not valid JSON (truncated or damaged)');
  }
  if (!isRecord(json) || json.format !== KEY_FILE_FORMAT) throw corrupt(path, 'not a keyhop key file');
  if (json.version !== KEY_FILE_VERSION) {
    if (Number.isSafeInteger(json.version) && (json.version as number) > KEY_FILE_VERSION) {
      throw new KeyhopError(
        ErrorCodes.UNSUPPORTED,
        `key file ${path} has format version ${json.version}, newer than this keyhop (${KEY_FILE_VERSION})`,
      );
    }
    throw corrupt(path, 'bad format version');
  }
  if (!hasExactly(json, ['format', 'version', 'id', 'type', 'publicKey', 'privateKey', 'checksum'])) {
    throw corrupt(path, 'unexpected or missing fields');
  }
  if (json.id !== id) throw corrupt(path, 'the key id does not match the file name');
  if (json.type !== type) throw corrupt(path, 'the key type does not match the file name');
  const publicKey = fromHex(json.publicKey);
  if (!publicKey || publicKey.length !== PUBLIC_KEY_LENGTH[type]) throw corrupt(path, 'bad public key');
  if (keyIdOf(publicKey) !== id) throw corrupt(path, 'the key id is not the hash of the public key');
  const pk = json.privateKey;
  if (!isRecord(pk)) throw corrupt(path, 'bad private key');
  if (pk.encryption === ENCRYPTION_NONE) {
    if (!hasExactly(pk, ['encryption', 'key'])) throw corrupt(path, 'bad private key fields');
    if (fromHex(pk.key)?.length !== PRIVATE_KEY_LENGTH[type]) throw corrupt(path, 'bad private key');
  } else if (pk.encryption === ENCRYPTION_SCRYPT_AES) {
    if (!hasExactly(pk, ['encryption', 'scrypt', 'passphraseCheck', 'nonce', 'ciphertext'])) {
      throw corrupt(path, 'bad encrypted private key fields');
    }
    const s = pk.scrypt;
    if (!isRecord(s) || !hasExactly(s, ['N', 'r', 'p', 'salt'])) throw corrupt(path, 'bad scrypt parameters');
    const problem = scryptParamsProblem(s.N, s.r, s.p);
    if (problem) throw corrupt(path, problem);
    const salt = fromHex(s.salt);
    if (!salt || salt.length < SALT_LENGTH || salt.length > 64) throw corrupt(path, 'bad scrypt salt');
    if (fromHex(pk.passphraseCheck)?.length !== CHECK_LENGTH) throw corrupt(path, 'bad passphrase check');
    if (fromHex(pk.nonce)?.length !== NONCE_LENGTH) throw corrupt(path, 'bad nonce');
    if (fromHex(pk.ciphertext)?.length !== PRIVATE_KEY_LENGTH[type] + TAG_LENGTH) {
      throw corrupt(path, 'bad ciphertext');
    }
  } else {
    throw corrupt(path, 'unknown private key encryption');
  }
  const body = json as unknown as KeyFileBody;
  if (typeof json.checksum !== 'string' || json.checksum !== checksumOf(body)) {
    throw corrupt(path, 'checksum mismatch');
  }
  return body;
}

function corrupt(path: string, detail: string): KeyhopError {
  return new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `key file ${path} is corrupt: ${detail}`);
}

function wrongPassphrase(where: string): KeyhopError {
  return new KeyhopError(ErrorCodes.KEY_STORE_LOCKED, `wrong passphrase for ${where}`);
}

/** File-system failures (permissions, read-only or full disk): KEY_STORE_IO. */
function ioError(e: unknown, context: string): KeyhopError {
  if (isKeyhopError(e)) return e;
  const errno = thrownProperty(e, 'code');
  const detail = describeError(e);
  return new KeyhopError(
    ErrorCodes.KEY_STORE_IO,
    `${context}: ${typeof errno === 'string' ? errno : detail}`,
    { cause: e },
  );
}

/** Makes a rename or unlink durable. Some platforms cannot fsync a directory: that is not an error. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // EISDIR / EPERM / EINVAL on platforms without directory fsync
  } finally {
    await handle?.close().catch(() => {});
  }
}
