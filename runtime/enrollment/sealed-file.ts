import { link, open, readFile, rename, unlink } from 'node:fs/promises';
import { DEFAULT_SCRYPT } from '../../vaults/software/key-store.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import {
  AEAD_KEY_LENGTH,
  CHECK_LENGTH,
  encryptedHeader,
  fromHex,
  headerAccepts,
  SALT_LENGTH,
  type ScryptParams,
  type StoreHeader,
  scryptAsync,
  scryptParamsProblem,
  toHex,
} from '../../vaults/software/store-header.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError, thrownProperty } from '../errors.js';

/**
 * A small JSON document kept on disk, sealed (scrypt → AES-256-GCM, the key store's construction,
 * docs/vaults/software.md) when it was created with a passphrase, in clear otherwise, and never
 * weaker than it was created: a sealed file is never rewritten in clear, and opening it needs its
 * passphrase. Written atomically (temporary file, fsync, rename). For secrets that are not signing
 * keys: an authority's prekeys, a device's pending enrollment.
 */
const FORMAT = 'keyhop-sealed';
const NONCE = 12;
const MAX_FILE = 16 * 1024 * 1024;

interface SealedDocument {
  format: typeof FORMAT;
  version: 1;
  header: unknown;
  nonce?: string;
  content: unknown;
}

export class SealedFile<T> {
  private constructor(
    readonly path: string,
    private header: StoreHeader,
    private key: Uint8Array | undefined,
  ) {}

  get sealed(): boolean {
    return this.header.encryption !== 'none';
  }

  /** Creates the file with `content`; sealed when a passphrase is given. */
  static async create<T>(
    path: string,
    content: T,
    passphrase?: string,
    params?: ScryptParams,
  ): Promise<SealedFile<T>> {
    let header: StoreHeader = { encryption: 'none' };
    let key: Uint8Array | undefined;
    if (passphrase !== undefined) {
      const bytes = new TextEncoder().encode(passphrase.normalize('NFC'));
      header = await encryptedHeader(bytes, params ?? DEFAULT_SCRYPT);
      key = await deriveKey(header, bytes);
    }
    const file = new SealedFile<T>(path, header, key);
    await file.write(content, true);
    return file;
  }

  /** Opens the file: KEY_STORE_LOCKED when it is sealed and the passphrase is missing or wrong. */
  static async open<T>(
    path: string,
    passphrase: string | undefined,
    check: (content: unknown) => T,
    lockedHint = '',
  ): Promise<{ file: SealedFile<T>; content: T }> {
    let text: string;
    try {
      const buf = await readFile(path);
      if (buf.length > MAX_FILE) throw new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `${path} is too large`);
      text = buf.toString('utf8');
    } catch (e) {
      if (isKeyhopError(e)) throw e;
      if (thrownProperty(e, 'code') === 'ENOENT')
        throw new KeyhopError(ErrorCodes.VAULT_NOT_FOUND, `${path} does not exist`);
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `${path}: ${describeError(e)}`, { cause: e });
    }
    const corrupt = (why: string) =>
      new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `${path} is corrupt: ${why}`);
    let doc: SealedDocument;
    try {
      doc = JSON.parse(text) as SealedDocument;
    } catch {
      throw corrupt('not JSON');
    }
    if (doc?.format !== FORMAT || doc.version !== 1) throw corrupt('not a keyhop sealed file');
    const parsed = parseHeader(path, doc.header);
    if (parsed.encryption === 'none') {
      if (passphrase !== undefined) {
        // Like a key store made in clear: it stays in clear, and a passphrase is not quietly ignored.
        throw new KeyhopError(
          ErrorCodes.CONFIG_INVALID,
          `${path} was created without a passphrase, but one was given`,
        );
      }
      return {
        file: new SealedFile<T>(path, parsed, undefined),
        content: checked(check, doc.content, corrupt),
      };
    }
    if (passphrase === undefined) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_LOCKED,
        `${path} is sealed and no passphrase was given${lockedHint}`,
      );
    }
    const bytes = new TextEncoder().encode(passphrase.normalize('NFC'));
    if (!(await headerAccepts(parsed, bytes)))
      throw new KeyhopError(ErrorCodes.KEY_STORE_LOCKED, `wrong passphrase for ${path}`);
    const key = await deriveKey(parsed, bytes);
    const nonce = fromHex(doc.nonce);
    const ciphertext = typeof doc.content === 'string' ? fromHex(doc.content) : undefined;
    if (nonce?.length !== NONCE || ciphertext === undefined) throw corrupt('bad nonce or ciphertext');
    let plain: Uint8Array;
    try {
      plain = nodeCrypto.aeadDecrypt('AESGCM', key, nonce, new TextEncoder().encode(FORMAT), ciphertext);
    } catch {
      throw corrupt('the sealed content does not authenticate');
    }
    const content = JSON.parse(new TextDecoder().decode(plain)) as unknown;
    plain.fill(0);
    return { file: new SealedFile<T>(path, parsed, key), content: checked(check, content, corrupt) };
  }

  /** Replaces the content (atomically), sealed if the file is. */
  async write(content: T, exclusive = false): Promise<void> {
    const doc: SealedDocument = { format: FORMAT, version: 1, header: headerJson(this.header), content };
    if (this.key !== undefined) {
      const nonce = nodeCrypto.randomBytes(NONCE);
      const plain = new TextEncoder().encode(JSON.stringify(content));
      doc.nonce = toHex(nonce);
      doc.content = toHex(
        nodeCrypto.aeadEncrypt('AESGCM', this.key, nonce, new TextEncoder().encode(FORMAT), plain),
      );
      plain.fill(0);
    }
    const tmp = `${this.path}.${process.pid}.${toHex(nodeCrypto.randomBytes(4))}.tmp`;
    const h = await open(tmp, 'wx', 0o600);
    try {
      await h.writeFile(`${JSON.stringify(doc)}\n`);
      await h.sync();
    } finally {
      await h.close();
    }
    if (exclusive) {
      try {
        await link(tmp, this.path);
      } catch (e) {
        await unlink(tmp).catch(() => undefined);
        if (thrownProperty(e, 'code') === 'EEXIST')
          throw new KeyhopError(ErrorCodes.VAULT_EXISTS, `${this.path} already exists`);
        throw e;
      }
      await unlink(tmp);
    } else {
      await rename(tmp, this.path);
    }
  }

  close(): void {
    this.key?.fill(0);
    this.key = undefined;
  }
}

function checked<T>(check: (c: unknown) => T, content: unknown, corrupt: (why: string) => KeyhopError): T {
  try {
    return check(content);
  } catch (e) {
    throw corrupt(describeError(e));
  }
}

async function deriveKey(header: StoreHeader, passphrase: Uint8Array): Promise<Uint8Array> {
  if (header.encryption === 'none') throw new Error('unreachable');
  const derived = await scryptAsync(passphrase, fromHex(header.scrypt.salt)!, header.scrypt);
  const key = derived.slice(0, AEAD_KEY_LENGTH);
  derived.fill(0);
  return key;
}

function headerJson(h: StoreHeader): unknown {
  return h.encryption === 'none'
    ? { encryption: 'none' }
    : { encryption: h.encryption, scrypt: h.scrypt, passphraseCheck: h.passphraseCheck };
}

function parseHeader(path: string, v: unknown): StoreHeader {
  const o = v as Record<string, unknown> | null;
  if (o?.encryption === 'none') return { encryption: 'none' };
  const s = o?.scrypt as Record<string, unknown> | undefined;
  if (
    o?.encryption !== 'scrypt-aes-256-gcm' ||
    (fromHex(s?.salt)?.length ?? 0) < SALT_LENGTH ||
    fromHex(o.passphraseCheck)?.length !== CHECK_LENGTH ||
    scryptParamsProblem(s?.N, s?.r, s?.p) !== undefined
  ) {
    throw new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `${path} is corrupt: bad header`);
  }
  return {
    encryption: 'scrypt-aes-256-gcm',
    scrypt: { N: s!.N as number, r: s!.r as number, p: s!.p as number, salt: s!.salt as string },
    passphraseCheck: o.passphraseCheck as string,
  };
}
