import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
  sign as nodeSign,
  verify as nodeVerify,
  hash as oneShotHash,
  randomFillSync,
  timingSafeEqual,
} from 'node:crypto';
import { asKeyhopError, ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type {
  AeadKey,
  Bytes,
  CipherName,
  CryptoProvider,
  DhName,
  HashName,
  KeyPair,
  SigningKeyType,
} from '../provider.js';
import { perMessageAeadKey } from './aead-key.js';
import {
  AEAD_TAG_LENGTH,
  checkAeadInputs,
  checkHashName,
  checkHkdfLength,
  checkLength,
  checkP256PrivateKey,
  checkP256PublicKeyShape,
  checkSigningType,
  concatBytes,
  dhKeyLength,
  ED25519_KEY_LENGTH,
  hexToBytes,
  isValidP256Scalar,
  normalizeLowS,
  P256_SCALAR_LENGTH,
  plain,
  SIGNATURE_LENGTH,
} from './common.js';
import { nativeAeadKey } from './native-aead.js';

/**
 * CryptoProvider on `node:crypto` (OpenSSL) alone.
 *
 * Raw keys become KeyObjects by the fastest import OpenSSL 3.0 offers, measured on Node 20
 * (`createPrivateKey` of an X25519 key: PKCS #8 DER ≈ 600 µs through OpenSSL's decoders, JWK
 * ≈ 40 µs through the raw-key API):
 * - X25519, X448, Ed25519: JWK (RFC 8037). Node imports an OKP private key from `d` alone; `x`
 *   must be present but is not used, so it is left empty. Public keys are exported as JWK too.
 * - P-256 private keys: RFC 5915 ECPrivateKey DER (`sec1`), from a fixed prefix and suffix around
 *   the scalar; OpenSSL computes the public point. JWK would need the public point first.
 * - P-256 public keys: JWK when uncompressed, RFC 5480 SPKI DER when compressed (JWK has no
 *   compressed form). OpenSSL checks that the point is on the curve either way.
 * The DER copy of a private key is zeroed once parsed; the base64url string of a JWK `d` cannot
 * be (JavaScript strings are immutable) and lives until garbage collection, next to the caller's
 * own copy of the key. No KeyObject is cached.
 */

const HASH_ALGORITHM: Readonly<Record<HashName, string>> = {
  SHA256: 'sha256',
  SHA512: 'sha512',
  BLAKE2s: 'blake2s256',
  BLAKE2b: 'blake2b512',
};

type OkpCurve = 'X25519' | 'X448' | 'Ed25519';

// RFC 5915 ECPrivateKey { version 1, privateKey [32 bytes], parameters [0] prime256v1 }.
const P256_SEC1_PREFIX = hexToBytes('30310201010420');
const P256_SEC1_SUFFIX = hexToBytes('a00a06082a8648ce3d030107');
// RFC 5480 SubjectPublicKeyInfo, id-ecPublicKey, prime256v1, compressed point (33 bytes).
const P256_SPKI_COMPRESSED = hexToBytes('3039301306072a8648ce3d020106082a8648ce3d030107032200');

/** Node's HKDF refuses `info` longer than 1024 bytes; RFC 5869 has no such limit. */
const NODE_HKDF_MAX_INFO = 1024;

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function base64url(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('base64url');
}

function fromBase64url(text: string | undefined, length: number, what: string): Uint8Array {
  const bytes = Buffer.from(text ?? '', 'base64url');
  if (bytes.length === 0 || bytes.length > length) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `unexpected ${what} public key export from OpenSSL`);
  }
  const out = new Uint8Array(length); // JWK coordinates are fixed-length; left-pad defensively
  out.set(bytes, length - bytes.length);
  return out;
}

/**
 * Imported KeyObjects, so that a key used again (a channel's static key, a handshake's ephemeral
 * key, a peer's identity key checked several times) is parsed by OpenSSL once. Private keys are
 * cached per Uint8Array object (weakly, dropped with it) and only used again if the bytes are
 * still the same; public keys, which are not secret, by value in a small LRU.
 */
const privateKeys = new WeakMap<Uint8Array, { bytes: Uint8Array; key: KeyObject }>();
const publicKeys = new Map<string, KeyObject>();
const MAX_PUBLIC_KEYS = 1024;

function cachedPrivate(raw: Uint8Array, make: () => KeyObject): KeyObject {
  const hit = privateKeys.get(raw);
  if (hit && hit.bytes.length === raw.length && timingSafeEqual(hit.bytes, raw)) return hit.key;
  const key = make();
  privateKeys.set(raw, { bytes: Uint8Array.from(raw), key });
  return key;
}

function cachedPublic(kind: string, raw: Uint8Array, make: () => KeyObject): KeyObject {
  const id = `${kind}:${Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('hex')}`;
  const hit = publicKeys.get(id);
  if (hit) {
    publicKeys.delete(id);
    publicKeys.set(id, hit);
    return hit;
  }
  const key = make();
  publicKeys.set(id, key);
  if (publicKeys.size > MAX_PUBLIC_KEYS) publicKeys.delete(publicKeys.keys().next().value as string);
  return key;
}

function isParts(b: Bytes): b is readonly Uint8Array[] {
  return Array.isArray(b);
}

function okpPrivateKey(crv: OkpCurve, raw: Uint8Array): KeyObject {
  return cachedPrivate(raw, () => importOkpPrivateKey(crv, raw));
}

function okpPublicKey(crv: OkpCurve, raw: Uint8Array): KeyObject {
  return cachedPublic(crv, raw, () => importOkpPublicKey(crv, raw));
}

function p256PrivateKey(scalar: Uint8Array): KeyObject {
  return cachedPrivate(scalar, () => importP256PrivateKey(scalar));
}

function p256PublicKey(point: Uint8Array): KeyObject {
  return cachedPublic('P-256', point, () => importP256PublicKey(point));
}

function importOkpPrivateKey(crv: OkpCurve, raw: Uint8Array): KeyObject {
  try {
    return createPrivateKey({ key: { kty: 'OKP', crv, d: base64url(raw), x: '' }, format: 'jwk' });
  } catch (e) {
    throw asKeyhopError(e, ErrorCodes.KEY_INVALID, `${crv} private key rejected`);
  }
}

function importOkpPublicKey(crv: OkpCurve, raw: Uint8Array): KeyObject {
  try {
    return createPublicKey({ key: { kty: 'OKP', crv, x: base64url(raw) }, format: 'jwk' });
  } catch (e) {
    throw asKeyhopError(e, ErrorCodes.KEY_INVALID, `${crv} public key rejected`);
  }
}

function okpRawPublicKey(privateKey: KeyObject, crv: OkpCurve, length: number): Uint8Array {
  return fromBase64url(createPublicKey(privateKey).export({ format: 'jwk' }).x, length, crv);
}

function importP256PrivateKey(scalar: Uint8Array): KeyObject {
  checkP256PrivateKey(scalar);
  const der = new Uint8Array(P256_SEC1_PREFIX.length + 32 + P256_SEC1_SUFFIX.length);
  der.set(P256_SEC1_PREFIX, 0);
  der.set(scalar, P256_SEC1_PREFIX.length);
  der.set(P256_SEC1_SUFFIX, P256_SEC1_PREFIX.length + 32);
  try {
    return createPrivateKey({ key: asBuffer(der), format: 'der', type: 'sec1' });
  } catch (e) {
    throw asKeyhopError(e, ErrorCodes.KEY_INVALID, 'P256 private key rejected');
  } finally {
    der.fill(0);
  }
}

function importP256PublicKey(point: Uint8Array): KeyObject {
  checkP256PublicKeyShape(point);
  try {
    if (point.length === 33) {
      return createPublicKey({
        key: asBuffer(concatBytes(P256_SPKI_COMPRESSED, point)),
        format: 'der',
        type: 'spki',
      });
    }
    const x = base64url(point.subarray(1, 33));
    const y = base64url(point.subarray(33, 65));
    return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
  } catch (e) {
    throw asKeyhopError(e, ErrorCodes.KEY_INVALID, 'P256 public key rejected');
  }
}

/** 04 ‖ x ‖ y. */
function p256RawPublicKey(privateKey: KeyObject): Uint8Array {
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const out = new Uint8Array(65);
  out[0] = 0x04;
  out.set(fromBase64url(jwk.x, 32, 'P256'), 1);
  out.set(fromBase64url(jwk.y, 32, 'P256'), 33);
  return out;
}

const dhCurve = (name: DhName): OkpCurve => (name === '25519' ? 'X25519' : 'X448');

function signingPrivateKeyObject(type: SigningKeyType, privateKey: Uint8Array): KeyObject {
  checkSigningType(type);
  if (type === 'P256') return p256PrivateKey(privateKey);
  checkLength(privateKey, ED25519_KEY_LENGTH, 'Ed25519 private key');
  return okpPrivateKey('Ed25519', privateKey);
}

function randomBytes(length: number): Uint8Array {
  return randomFillSync(new Uint8Array(length));
}

function feed(h: { update(data: Uint8Array): unknown }, data: Bytes): void {
  if (data instanceof Uint8Array) h.update(data);
  else for (const part of data) h.update(part);
}

function hkdfSha256ViaHmac(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  // RFC 5869 §2.2–2.3 built on HMAC-SHA256, for `info` beyond node's limit.
  const prk = createHmac('sha256', salt).update(ikm).digest();
  const out = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  const counter = new Uint8Array(1);
  for (let offset = 0, i = 1; offset < length; i++, offset += 32) {
    counter[0] = i;
    t = createHmac('sha256', prk).update(t).update(info).update(counter).digest();
    out.set(t.subarray(0, Math.min(32, length - offset)), offset);
  }
  prk.fill(0);
  t.fill(0);
  return out;
}

export const nodeCrypto: CryptoProvider = Object.freeze({
  name: 'node' as const,

  randomBytes,

  hash(name: HashName, data: Bytes): Uint8Array {
    checkHashName(name);
    const algorithm = HASH_ALGORITHM[name];
    if (data instanceof Uint8Array) return plain(oneShotHash(algorithm, data, 'buffer'));
    const h = createHash(algorithm);
    feed(h, data);
    return plain(h.digest());
  },

  hmac(name: HashName, key: Uint8Array, data: Bytes): Uint8Array {
    checkHashName(name);
    // OpenSSL's HMAC pads keys to the digest's block size (64 bytes for BLAKE2s, 128 for
    // BLAKE2b), which is RFC 2104 over the unkeyed hash, as Noise requires; the tests check it
    // against noble's generic HMAC.
    const h = createHmac(HASH_ALGORITHM[name], key);
    feed(h, data);
    return plain(h.digest());
  },

  hkdfSha256(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): Uint8Array {
    checkHkdfLength(length);
    if (info.length > NODE_HKDF_MAX_INFO) return hkdfSha256ViaHmac(salt, ikm, info, length);
    return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
  },

  dhGenerate(name: DhName): KeyPair {
    // RFC 7748 §6: a private key is uniformly random bytes; the function clamps them.
    const privateKey = randomBytes(dhKeyLength(name));
    return { privateKey, publicKey: nodeCrypto.dhPublicKey(name, privateKey) };
  },

  dhPublicKey(name: DhName, privateKey: Uint8Array): Uint8Array {
    const length = dhKeyLength(name);
    checkLength(privateKey, length, `X${name} private key`);
    const crv = dhCurve(name);
    return okpRawPublicKey(okpPrivateKey(crv, privateKey), crv, length);
  },

  dh(name: DhName, privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    const length = dhKeyLength(name);
    checkLength(privateKey, length, `X${name} private key`);
    checkLength(publicKey, length, `X${name} public key`);
    const crv = dhCurve(name);
    const priv = okpPrivateKey(crv, privateKey);
    const pub = okpPublicKey(crv, publicKey);
    try {
      return plain(diffieHellman({ privateKey: priv, publicKey: pub }));
    } catch (e) {
      // With well-sized keys the only failure is OpenSSL refusing an all-zero result, i.e. a
      // low-order public key (RFC 7748 §6.1). noble refuses the same keys.
      throw asKeyhopError(
        e,
        ErrorCodes.KEY_INVALID,
        `X${name}: low-order public key (all-zero shared secret)`,
      );
    }
  },

  aeadEncrypt(
    name: CipherName,
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    plaintext: Bytes,
    prefix?: Uint8Array,
  ): Uint8Array {
    checkAeadInputs(name, key, nonce);
    const cipher =
      name === 'AESGCM'
        ? createCipheriv('aes-256-gcm', key, nonce, { authTagLength: AEAD_TAG_LENGTH })
        : createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_LENGTH });
    if (ad.length > 0) cipher.setAAD(ad);
    const parts = isParts(plaintext) ? plaintext : [plaintext];
    let length = prefix?.length ?? 0;
    for (const p of parts) length += p.length;
    // One output buffer; each piece's ciphertext is copied into it once (node has no update-into).
    const out = new Uint8Array(length + AEAD_TAG_LENGTH);
    let pos = 0;
    if (prefix) {
      out.set(prefix, 0);
      pos = prefix.length;
    }
    for (const p of parts) {
      const c = cipher.update(p);
      out.set(c, pos);
      pos += c.length;
    }
    const rest = cipher.final(); // empty for these stream modes
    if (rest.length > 0) {
      out.set(rest, pos);
      pos += rest.length;
    }
    out.set(cipher.getAuthTag(), pos);
    return out;
  },

  aeadDecrypt(
    name: CipherName,
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    ciphertext: Uint8Array,
  ): Uint8Array {
    checkAeadInputs(name, key, nonce);
    if (ciphertext.length < AEAD_TAG_LENGTH) {
      throw new KeyhopError(ErrorCodes.AEAD_FAILED, `${name}: ciphertext shorter than the tag`);
    }
    const end = ciphertext.length - AEAD_TAG_LENGTH;
    const decipher =
      name === 'AESGCM'
        ? createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: AEAD_TAG_LENGTH })
        : createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_LENGTH });
    decipher.setAuthTag(ciphertext.subarray(end));
    if (ad.length > 0) decipher.setAAD(ad);
    const body = decipher.update(ciphertext.subarray(0, end));
    let rest: Buffer;
    try {
      rest = decipher.final();
    } catch (e) {
      body.fill(0); // never release unauthenticated plaintext
      throw new KeyhopError(ErrorCodes.AEAD_FAILED, `${name}: authentication failed`, { cause: e });
    }
    return rest.length === 0 ? plain(body) : concatBytes(body, rest);
  },

  aeadKey(name: CipherName, key: Uint8Array): AeadKey {
    return nativeAeadKey(name, key) ?? perMessageAeadKey(nodeCrypto, name, key);
  },

  signingGenerate(type: SigningKeyType): KeyPair {
    checkSigningType(type);
    let privateKey: Uint8Array;
    if (type === 'Ed25519') {
      privateKey = randomBytes(ED25519_KEY_LENGTH); // RFC 8032 §5.1.5: 32 random bytes
    } else {
      // FIPS 186-5 A.2.2 (rejection sampling): retry until 0 < d < n; a retry has odds ~2^-32.
      do privateKey = randomBytes(P256_SCALAR_LENGTH);
      while (!isValidP256Scalar(privateKey));
    }
    return { privateKey, publicKey: nodeCrypto.signingPublicKey(type, privateKey) };
  },

  signingPublicKey(type: SigningKeyType, privateKey: Uint8Array): Uint8Array {
    const key = signingPrivateKeyObject(type, privateKey);
    return type === 'Ed25519' ? okpRawPublicKey(key, 'Ed25519', ED25519_KEY_LENGTH) : p256RawPublicKey(key);
  },

  sign(type: SigningKeyType, privateKey: Uint8Array, message: Uint8Array): Uint8Array {
    const key = signingPrivateKeyObject(type, privateKey);
    if (type === 'Ed25519') return plain(nodeSign(null, message, key));
    // OpenSSL picks a random k and either half of S; emit low-S like noble and the p256 crate.
    return normalizeLowS(plain(nodeSign('sha256', message, { key, dsaEncoding: 'ieee-p1363' })));
  },

  verify(type: SigningKeyType, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    checkSigningType(type);
    let key: KeyObject;
    if (type === 'Ed25519') {
      checkLength(publicKey, ED25519_KEY_LENGTH, 'Ed25519 public key');
      key = okpPublicKey('Ed25519', publicKey);
    } else {
      key = p256PublicKey(publicKey); // OpenSSL checks that the point is on the curve
    }
    if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_LENGTH) return false;
    try {
      // OpenSSL's ECDSA verification accepts high-S signatures (it does not enforce low-S).
      return type === 'Ed25519'
        ? nodeVerify(null, message, key, signature)
        : nodeVerify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature);
    } catch {
      return false;
    }
  },

  signAsync(type: SigningKeyType, privateKey: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
    let key: KeyObject;
    try {
      key = signingPrivateKeyObject(type, privateKey);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const done = (e: Error | null, sig: Buffer) => {
        if (e) reject(e);
        else resolve(type === 'Ed25519' ? plain(sig) : normalizeLowS(plain(sig)));
      };
      if (type === 'Ed25519') nodeSign(null, message, key, done);
      else nodeSign('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, done);
    });
  },

  verifyAsync(
    type: SigningKeyType,
    publicKey: Uint8Array,
    message: Uint8Array,
    signature: Uint8Array,
  ): Promise<boolean> {
    let key: KeyObject;
    try {
      checkSigningType(type);
      if (type === 'Ed25519') {
        checkLength(publicKey, ED25519_KEY_LENGTH, 'Ed25519 public key');
        key = okpPublicKey('Ed25519', publicKey);
      } else {
        key = p256PublicKey(publicKey);
      }
    } catch (e) {
      return Promise.reject(e);
    }
    if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_LENGTH)
      return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (e: Error | null, ok: boolean) => resolve(e === null && ok);
      try {
        if (type === 'Ed25519') nodeVerify(null, message, key, signature, done);
        else nodeVerify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, signature, done);
      } catch {
        resolve(false);
      }
    });
  },
});
