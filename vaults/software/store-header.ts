import { createHash, scrypt, timingSafeEqual } from 'node:crypto';
import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import { nodeCrypto } from './node-provider.js';

/**
 * The header of a key directory, `keystore.json`: what the store was created as, so that it can
 * never be downgraded. A store created encrypted refuses to read or write private keys without its
 * passphrase (it never writes one in clear), and checks a passphrase before the first key exists;
 * a store created in clear refuses a passphrase instead of silently mixing clear and encrypted
 * keys. Layout in docs/vaults/software.md ("Key store header").
 */
export const STORE_HEADER_FILE = 'keystore.json';
export const STORE_HEADER_FORMAT = 'keyhop-key-store';
export const STORE_HEADER_VERSION = 1;
export const MAX_STORE_HEADER_SIZE = 4 * 1024;

export const ENCRYPTION_NONE = 'none';
export const ENCRYPTION_SCRYPT_AES = 'scrypt-aes-256-gcm';
/** The 64 bytes scrypt derives: 0..31 the AES-256-GCM key, 32..63 the passphrase check. */
export const AEAD_KEY_LENGTH = 32;
export const CHECK_LENGTH = 32;
export const SALT_LENGTH = 16;
/** Bounds on the scrypt parameters a file may ask for: at most 256 MiB of memory. */
const SCRYPT_MAX_MEMORY = 256 * 1024 * 1024;
const SCRYPT_MAX_P = 16;

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

export type StoreHeader =
  | { readonly encryption: typeof ENCRYPTION_NONE }
  | {
      readonly encryption: typeof ENCRYPTION_SCRYPT_AES;
      readonly scrypt: ScryptParams & { readonly salt: string };
      readonly passphraseCheck: string;
    };

export function scryptParamsProblem(N: unknown, r: unknown, p: unknown): string | undefined {
  if (!Number.isSafeInteger(N) || !Number.isSafeInteger(r) || !Number.isSafeInteger(p)) {
    return 'scrypt N, r and p must be integers';
  }
  const [n, rr, pp] = [N as number, r as number, p as number];
  if (n < 2 || (n & (n - 1)) !== 0) return 'scrypt N must be a power of two ≥ 2';
  if (rr < 1 || pp < 1 || pp > SCRYPT_MAX_P) return `scrypt r must be ≥ 1 and p in 1..${SCRYPT_MAX_P}`;
  if (128 * n * rr > SCRYPT_MAX_MEMORY) return 'scrypt parameters need more than 256 MiB';
  return undefined;
}

/** scrypt → 64 bytes (the AEAD key, then the passphrase check). */
export function scryptAsync(passphrase: Uint8Array, salt: Uint8Array, params: ScryptParams): Promise<Buffer> {
  const { N, r, p } = params;
  // OpenSSL counts 128·r·(N + 2 + p) bytes against maxmem.
  const maxmem = 128 * r * (N + 2 + p) + 1024 * 1024;
  return new Promise((ok, fail) => {
    scrypt(passphrase, salt, AEAD_KEY_LENGTH + CHECK_LENGTH, { N, r, p, maxmem }, (err, key) =>
      err ? fail(err) : ok(key),
    );
  });
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Strict lowercase hex into a fresh (non-pooled) array, or undefined. */
export function fromHex(value: unknown): Uint8Array | undefined {
  if (typeof value !== 'string' || value.length % 2 !== 0 || !/^[0-9a-f]*$/.test(value)) return undefined;
  const out = new Uint8Array(value.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(value.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function hasExactly(o: Record<string, unknown>, keys: readonly string[]): boolean {
  const own = Object.keys(o);
  return own.length === keys.length && keys.every((k) => Object.hasOwn(o, k));
}

/** The header of a new encrypted store: a fresh salt and the check of `passphrase`. */
export async function encryptedHeader(passphrase: Uint8Array, params: ScryptParams): Promise<StoreHeader> {
  const salt = nodeCrypto.randomBytes(SALT_LENGTH);
  const derived = await scryptAsync(passphrase, salt, params);
  try {
    return {
      encryption: ENCRYPTION_SCRYPT_AES,
      scrypt: { N: params.N, r: params.r, p: params.p, salt: toHex(salt) },
      passphraseCheck: toHex(derived.subarray(AEAD_KEY_LENGTH)),
    };
  } finally {
    derived.fill(0);
  }
}

/** True when `passphrase` is the one the header was made with (constant-time comparison). */
export async function headerAccepts(header: StoreHeader, passphrase: Uint8Array): Promise<boolean> {
  if (header.encryption !== ENCRYPTION_SCRYPT_AES) return false;
  const derived = await scryptAsync(passphrase, fromHex(header.scrypt.salt)!, header.scrypt);
  try {
    return timingSafeEqual(derived.subarray(AEAD_KEY_LENGTH), fromHex(header.passphraseCheck)!);
  } finally {
    derived.fill(0);
  }
}

function canonical(header: StoreHeader): Record<string, unknown> {
  const base = { format: STORE_HEADER_FORMAT, version: STORE_HEADER_VERSION, encryption: header.encryption };
  if (header.encryption === ENCRYPTION_NONE) return base;
  const { N, r, p, salt } = header.scrypt;
  return { ...base, scrypt: { N, r, p, salt }, passphraseCheck: header.passphraseCheck };
}

const checksumOf = (header: StoreHeader) =>
  createHash('sha256')
    .update(JSON.stringify(canonical(header)))
    .digest('hex');

export function encodeStoreHeader(header: StoreHeader): string {
  return `${JSON.stringify({ ...canonical(header), checksum: checksumOf(header) }, null, 2)}\n`;
}

/** Strict parse; every problem is KEY_STORE_CORRUPT naming the file (a newer version: UNSUPPORTED). */
export function parseStoreHeader(path: string, text: string): StoreHeader {
  const corrupt = (detail: string) =>
    new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `key store header ${path} is corrupt: ${detail}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw corrupt('not valid JSON');
  }
  if (!isRecord(json) || json.format !== STORE_HEADER_FORMAT) throw corrupt('not a keyhop key store header');
  if (json.version !== STORE_HEADER_VERSION) {
    if (Number.isSafeInteger(json.version) && (json.version as number) > STORE_HEADER_VERSION) {
      throw new KeyhopError(
        ErrorCodes.UNSUPPORTED,
        `key store header ${path} has format version ${json.version}, newer than this keyhop (${STORE_HEADER_VERSION})`,
      );
    }
    throw corrupt('bad format version');
  }
  let header: StoreHeader;
  if (json.encryption === ENCRYPTION_NONE) {
    if (!hasExactly(json, ['format', 'version', 'encryption', 'checksum']))
      throw corrupt('unexpected fields');
    header = { encryption: ENCRYPTION_NONE };
  } else if (json.encryption === ENCRYPTION_SCRYPT_AES) {
    if (!hasExactly(json, ['format', 'version', 'encryption', 'scrypt', 'passphraseCheck', 'checksum'])) {
      throw corrupt('unexpected fields');
    }
    const s = json.scrypt;
    if (!isRecord(s) || !hasExactly(s, ['N', 'r', 'p', 'salt'])) throw corrupt('bad scrypt parameters');
    const problem = scryptParamsProblem(s.N, s.r, s.p);
    if (problem) throw corrupt(problem);
    const salt = fromHex(s.salt);
    if (!salt || salt.length < SALT_LENGTH || salt.length > 64) throw corrupt('bad scrypt salt');
    if (fromHex(json.passphraseCheck)?.length !== CHECK_LENGTH) throw corrupt('bad passphrase check');
    header = {
      encryption: ENCRYPTION_SCRYPT_AES,
      scrypt: { N: s.N as number, r: s.r as number, p: s.p as number, salt: s.salt as string },
      passphraseCheck: json.passphraseCheck as string,
    };
  } else {
    throw corrupt('unknown encryption');
  }
  if (json.checksum !== checksumOf(header)) throw corrupt('checksum mismatch');
  return header;
}
