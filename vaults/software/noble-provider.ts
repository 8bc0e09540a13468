import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x448 } from '@noble/curves/ed448.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { blake2b, blake2s } from '@noble/hashes/blake2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { asKeyhopError, ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type {
  Bytes,
  CipherName,
  CryptoProvider,
  DhName,
  HashName,
  KeyPair,
  SigningKeyType,
} from '../provider.js';
import {
  AEAD_TAG_LENGTH,
  checkAeadInputs,
  checkHashName,
  checkHkdfLength,
  checkLength,
  checkP256PrivateKey,
  checkP256PublicKeyShape,
  checkSigningType,
  dhKeyLength,
  ED25519_KEY_LENGTH,
  SIGNATURE_LENGTH,
} from './common.js';

/**
 * CryptoProvider on the audited pure-JS @noble libraries: runs wherever JavaScript has
 * `crypto.getRandomValues`. Its behaviour is kept identical to the node provider (same accepted
 * inputs, same error codes); the shared test suite checks both.
 */

const HASHES = { SHA256: sha256, SHA512: sha512, BLAKE2s: blake2s, BLAKE2b: blake2b } as const;
const DH = { '25519': x25519, '448': x448 } as const;

/** getRandomValues fills at most 65536 bytes per call. */
const RANDOM_CHUNK = 65536;

function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += RANDOM_CHUNK) {
    globalThis.crypto.getRandomValues(out.subarray(offset, Math.min(length, offset + RANDOM_CHUNK)));
  }
  return out;
}

function hashFn(name: HashName) {
  checkHashName(name);
  return HASHES[name];
}

function aead(name: CipherName, key: Uint8Array, nonce: Uint8Array, ad: Uint8Array) {
  checkAeadInputs(name, key, nonce);
  return name === 'AESGCM' ? gcm(key, nonce, ad) : chacha20poly1305(key, nonce, ad);
}

export const nobleCrypto: CryptoProvider = Object.freeze({
  name: 'noble' as const,

  randomBytes,

  hash(name: HashName, data: Bytes): Uint8Array {
    const h = hashFn(name);
    if (data instanceof Uint8Array) return h(data);
    const state = h.create();
    for (const part of data) state.update(part);
    return state.digest();
  },

  hmac(name: HashName, key: Uint8Array, data: Bytes): Uint8Array {
    const state = hmac.create(hashFn(name), key);
    if (data instanceof Uint8Array) state.update(data);
    else for (const part of data) state.update(part);
    return state.digest();
  },

  hkdfSha256(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array, length: number): Uint8Array {
    checkHkdfLength(length);
    return hkdf(sha256, ikm, salt, info, length);
  },

  dhGenerate(name: DhName): KeyPair {
    const privateKey = randomBytes(dhKeyLength(name));
    return { privateKey, publicKey: nobleCrypto.dhPublicKey(name, privateKey) };
  },

  dhPublicKey(name: DhName, privateKey: Uint8Array): Uint8Array {
    checkLength(privateKey, dhKeyLength(name), `X${name} private key`);
    return DH[name].getPublicKey(privateKey);
  },

  dh(name: DhName, privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    const length = dhKeyLength(name);
    checkLength(privateKey, length, `X${name} private key`);
    checkLength(publicKey, length, `X${name} public key`);
    try {
      return DH[name].getSharedSecret(privateKey, publicKey);
    } catch (e) {
      // noble refuses low-order public keys (all-zero result), as OpenSSL does.
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
    const sealed = aead(name, key, nonce, ad).encrypt(
      Array.isArray(plaintext)
        ? Buffer.concat(plaintext as readonly Uint8Array[])
        : (plaintext as Uint8Array),
    );
    if (!prefix) return sealed;
    const out = new Uint8Array(prefix.length + sealed.length);
    out.set(prefix, 0);
    out.set(sealed, prefix.length);
    return out;
  },

  aeadDecrypt(
    name: CipherName,
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    ciphertext: Uint8Array,
  ): Uint8Array {
    const cipher = aead(name, key, nonce, ad);
    if (ciphertext.length < AEAD_TAG_LENGTH) {
      throw new KeyhopError(ErrorCodes.AEAD_FAILED, `${name}: ciphertext shorter than the tag`);
    }
    try {
      return cipher.decrypt(ciphertext);
    } catch (e) {
      throw new KeyhopError(ErrorCodes.AEAD_FAILED, `${name}: authentication failed`, { cause: e });
    }
  },

  signingGenerate(type: SigningKeyType): KeyPair {
    checkSigningType(type);
    const privateKey = type === 'Ed25519' ? randomBytes(ED25519_KEY_LENGTH) : p256.utils.randomSecretKey();
    return { privateKey, publicKey: nobleCrypto.signingPublicKey(type, privateKey) };
  },

  signingPublicKey(type: SigningKeyType, privateKey: Uint8Array): Uint8Array {
    checkSigningType(type);
    if (type === 'Ed25519') {
      checkLength(privateKey, ED25519_KEY_LENGTH, 'Ed25519 private key');
      return ed25519.getPublicKey(privateKey);
    }
    checkP256PrivateKey(privateKey);
    return p256.getPublicKey(privateKey, false);
  },

  sign(type: SigningKeyType, privateKey: Uint8Array, message: Uint8Array): Uint8Array {
    checkSigningType(type);
    if (type === 'Ed25519') {
      checkLength(privateKey, ED25519_KEY_LENGTH, 'Ed25519 private key');
      return ed25519.sign(message, privateKey);
    }
    checkP256PrivateKey(privateKey);
    // ECDSA-SHA256 (prehash), low-S, RFC 6979 nonce hedged with fresh randomness.
    return p256.sign(message, privateKey, { prehash: true, lowS: true, extraEntropy: true });
  },

  verify(type: SigningKeyType, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    checkSigningType(type);
    if (type === 'Ed25519') {
      checkLength(publicKey, ED25519_KEY_LENGTH, 'Ed25519 public key');
    } else {
      checkP256PublicKeyShape(publicKey);
      try {
        p256.Point.fromBytes(publicKey).assertValidity();
      } catch (e) {
        throw asKeyhopError(e, ErrorCodes.KEY_INVALID, 'P256 public key rejected');
      }
    }
    if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_LENGTH) return false;
    try {
      return type === 'Ed25519'
        ? // RFC 8032 strict decoding (as OpenSSL), not ZIP-215.
          ed25519.verify(signature, message, publicKey, { zip215: false })
        : // Accept high-S signatures, as hardware produces them.
          p256.verify(signature, message, publicKey, { prehash: true, lowS: false });
    } catch {
      return false;
    }
  },
});
