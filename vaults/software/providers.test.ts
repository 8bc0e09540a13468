import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { codeOf, hex, unhex } from '../../test/support/bytes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import type { AeadKey, CryptoProvider, DhName, HashName } from '../provider.js';
import { aeadKeyFor, perMessageAeadKey } from './aead-key.js';
import { bigintToBytes, bytesToBigint, P256_ORDER } from './common.js';
import { nativeAeadKey, nativeAeadUnavailable } from './native-aead.js';
import { nobleCrypto } from './noble-provider.js';
import { nodeCrypto } from './node-provider.js';

/**
 * One suite, run against both providers: Wycheproof vectors (test/vectors/wycheproof), RFC
 * known-answer tests inlined below with their source, and input checks. A second part checks with
 * random inputs that the two providers agree with each other.
 */

const providers: CryptoProvider[] = [nodeCrypto, nobleCrypto];
const HASHES: HashName[] = ['SHA256', 'SHA512', 'BLAKE2s', 'BLAKE2b'];
const utf8 = (s: string) => new TextEncoder().encode(s);
const empty = new Uint8Array(0);

interface WycheproofFile<T> {
  testGroups: Array<Record<string, unknown> & { tests: Array<T & WycheproofTest> }>;
}
interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  result: 'valid' | 'invalid' | 'acceptable';
}
function wycheproof<T>(file: string): WycheproofFile<T> {
  const url = new URL(`../../test/vectors/wycheproof/${file}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')) as WycheproofFile<T>;
}

const x25519File = wycheproof<{ public: string; private: string; shared: string }>('x25519_test.json');
const x25519Tests = x25519File.testGroups.flatMap((g) => g.tests);

const ed25519File = wycheproof<{ msg: string; sig: string }>('ed25519_test.json');
const ed25519Tests = ed25519File.testGroups.flatMap((g) =>
  g.tests.map((t) => ({ ...t, pk: (g.publicKey as { pk: string }).pk })),
);

type GcmTest = { key: string; iv: string; aad: string; msg: string; ct: string; tag: string };
const gcmFile = wycheproof<GcmTest>('aes_gcm_test.json');
// Ockam's AES-256-GCM: 256-bit key, 96-bit nonce, 128-bit tag. The other groups do not apply.
const gcmTests = gcmFile.testGroups
  .filter((g) => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128)
  .flatMap((g) => g.tests);

type HkdfTest = { ikm: string; salt: string; info: string; size: number; okm: string };
const hkdfTests = wycheproof<HkdfTest>('hkdf_sha256_test.json').testGroups.flatMap((g) => g.tests);

/** Runs `verify`, counting a thrown KeyhopError as a rejection (anything else thrown is a bug). */
function rejects(fn: () => boolean): boolean {
  try {
    return !fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    return true;
  }
}

/** The same signature with s replaced by n − s: the other valid form of an ECDSA signature. */
function flipS(signature: Uint8Array): Uint8Array {
  const out = signature.slice();
  out.set(bigintToBytes(P256_ORDER - bytesToBigint(signature.subarray(32)), 32), 32);
  return out;
}
const isHighS = (signature: Uint8Array) => bytesToBigint(signature.subarray(32)) > P256_ORDER >> 1n;

describe.each(providers)('CryptoProvider $name', (p) => {
  describe('Wycheproof x25519_test.json', () => {
    // "acceptable" cases: public keys on the twist and non-canonical encodings are computed per
    // RFC 7748 (the result must equal `shared`); low-order public keys, whose shared secret is all
    // zero, are refused with KEY_INVALID (OpenSSL and noble both refuse them).
    it.each(x25519Tests)('tcId $tcId $result $flags', (t) => {
      const zero = /^(00)+$/.test(t.shared);
      if (t.result === 'valid' || (t.result === 'acceptable' && !zero)) {
        expect(hex(p.dh('25519', unhex(t.private), unhex(t.public)))).toBe(t.shared);
      } else if (t.result === 'acceptable' && zero) {
        expect(codeOf(() => p.dh('25519', unhex(t.private), unhex(t.public)))).toBe('KEY_INVALID');
      } else {
        expect(rejects(() => p.dh('25519', unhex(t.private), unhex(t.public)).length > 0)).toBe(true);
      }
    });
  });

  describe('Wycheproof ed25519_test.json', () => {
    it.each(ed25519Tests)('tcId $tcId $result $flags', (t) => {
      const verify = () => p.verify('Ed25519', unhex(t.pk), unhex(t.msg), unhex(t.sig));
      if (t.result === 'valid') expect(verify()).toBe(true);
      else expect(rejects(verify)).toBe(true);
    });
  });

  describe('Wycheproof aes_gcm_test.json (256-bit key, 96-bit IV, 128-bit tag)', () => {
    it('has the groups that apply', () => expect(gcmTests.length).toBe(66));
    it.each(gcmTests)('tcId $tcId $result $flags', (t) => {
      const [key, iv, aad, msg] = [unhex(t.key), unhex(t.iv), unhex(t.aad), unhex(t.msg)];
      const sealed = unhex(t.ct + t.tag);
      if (t.result === 'valid') {
        expect(hex(p.aeadEncrypt('AESGCM', key, iv, aad, msg))).toBe(t.ct + t.tag);
        expect(hex(p.aeadDecrypt('AESGCM', key, iv, aad, sealed))).toBe(t.msg);
      } else {
        expect(codeOf(() => p.aeadDecrypt('AESGCM', key, iv, aad, sealed))).toBe('AEAD_FAILED');
      }
    });
  });

  describe('Wycheproof hkdf_sha256_test.json', () => {
    it.each(hkdfTests)('tcId $tcId $result $comment', (t) => {
      const derive = () => p.hkdfSha256(unhex(t.salt), unhex(t.ikm), unhex(t.info), t.size);
      if (t.result === 'valid') expect(hex(derive())).toBe(t.okm);
      else expect(codeOf(derive)).toBe('KEY_INVALID');
    });
  });

  describe('known answers', () => {
    it('SHA-256 and SHA-512 of "abc" (FIPS 180-2 Appendix B.1 and C.1)', () => {
      expect(hex(p.hash('SHA256', utf8('abc')))).toBe(
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
      );
      expect(hex(p.hash('SHA512', utf8('abc')))).toBe(
        'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a' +
          '2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
      );
    });

    it('BLAKE2b-512 and BLAKE2s-256 of "abc" (RFC 7693 Appendix A and B)', () => {
      expect(hex(p.hash('BLAKE2b', utf8('abc')))).toBe(
        'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1' +
          '7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
      );
      expect(hex(p.hash('BLAKE2s', utf8('abc')))).toBe(
        '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982',
      );
    });

    it('hashes an array of parts as their concatenation', () => {
      for (const name of HASHES) {
        expect(hex(p.hash(name, [utf8('a'), empty, utf8('bc')]))).toBe(hex(p.hash(name, utf8('abc'))));
        expect(hex(p.hmac(name, utf8('k'), [utf8('ab'), utf8('c')]))).toBe(
          hex(p.hmac(name, utf8('k'), utf8('abc'))),
        );
      }
    });

    it('HMAC-SHA-256 (RFC 4231 test case 2)', () => {
      expect(hex(p.hmac('SHA256', utf8('Jefe'), utf8('what do ya want for nothing?')))).toBe(
        '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
      );
    });

    it('X25519 (RFC 7748 §6.1)', () => {
      const a = unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
      const b = unhex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
      expect(hex(p.dhPublicKey('25519', a))).toBe(
        '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
      );
      expect(hex(p.dhPublicKey('25519', b))).toBe(
        'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
      );
      expect(hex(p.dh('25519', a, p.dhPublicKey('25519', b)))).toBe(
        '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
      );
    });

    it('X448 (RFC 7748 §6.2)', () => {
      const a = unhex(
        '9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b',
      );
      const b = unhex(
        '1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d',
      );
      const aPub =
        '9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0';
      const bPub =
        '3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609';
      const shared =
        '07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56fd2464c335543936521c24403085d59a449a5037514a879d';
      expect(hex(p.dhPublicKey('448', a))).toBe(aPub);
      expect(hex(p.dhPublicKey('448', b))).toBe(bPub);
      expect(hex(p.dh('448', a, unhex(bPub)))).toBe(shared);
      expect(hex(p.dh('448', b, unhex(aPub)))).toBe(shared);
    });

    it('ChaCha20-Poly1305 AEAD (RFC 8439 §2.8.2)', () => {
      const key = unhex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
      const nonce = unhex('070000004041424344454647');
      const aad = unhex('50515253c0c1c2c3c4c5c6c7');
      const plaintext = utf8(
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
      );
      const sealed =
        'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6' +
        '3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36' +
        '92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc' +
        '3ff4def08e4b7a9de576d26586cec64b6116' +
        '1ae10b594f09e26a7e902ecbd0600691'; // tag
      expect(hex(p.aeadEncrypt('ChaChaPoly', key, nonce, aad, plaintext))).toBe(sealed);
      expect(hex(p.aeadDecrypt('ChaChaPoly', key, nonce, aad, unhex(sealed)))).toBe(hex(plaintext));
      const tampered = unhex(sealed);
      tampered[tampered.length - 1]! ^= 1;
      expect(codeOf(() => p.aeadDecrypt('ChaChaPoly', key, nonce, aad, tampered))).toBe('AEAD_FAILED');
      expect(codeOf(() => p.aeadDecrypt('ChaChaPoly', key, nonce, utf8('other'), unhex(sealed)))).toBe(
        'AEAD_FAILED',
      );
    });

    it('Ed25519 (RFC 8032 §7.1 TEST 1)', () => {
      const seed = unhex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
      const pub = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
      const sig =
        'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155' +
        '5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
      expect(hex(p.signingPublicKey('Ed25519', seed))).toBe(pub);
      expect(hex(p.sign('Ed25519', seed, empty))).toBe(sig);
      expect(p.verify('Ed25519', unhex(pub), empty, unhex(sig))).toBe(true);
    });

    it('ECDSA P-256/SHA-256 (RFC 6979 A.2.5, "sample"): the published high-S signature verifies', () => {
      const d = unhex('c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721');
      const pub =
        '04' +
        '60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6' +
        '7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299';
      const sig = unhex(
        'efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716' +
          'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8',
      );
      expect(hex(p.signingPublicKey('P256', d))).toBe(pub);
      expect(isHighS(sig)).toBe(true);
      expect(p.verify('P256', unhex(pub), utf8('sample'), sig)).toBe(true);
      expect(p.verify('P256', unhex(pub), utf8('sample'), flipS(sig))).toBe(true);
      // the same key compressed: 02/03 by the parity of y (…99 is odd)
      const compressed = unhex(`03${pub.slice(2, 66)}`);
      expect(p.verify('P256', compressed, utf8('sample'), sig)).toBe(true);
      expect(p.verify('P256', unhex(pub), utf8('samplE'), sig)).toBe(false);
    });
  });

  describe('generation and round trips', () => {
    it('randomBytes: lengths, including beyond one getRandomValues call', () => {
      expect(p.randomBytes(0).length).toBe(0);
      expect(p.randomBytes(70_000).length).toBe(70_000);
      expect(hex(p.randomBytes(32))).not.toBe(hex(p.randomBytes(32)));
      expect(p.randomBytes(8).constructor).toBe(Uint8Array);
    });

    it.each(['25519', '448'] as DhName[])('X%s: generated pairs agree', (name) => {
      const a = p.dhGenerate(name);
      const b = p.dhGenerate(name);
      expect(hex(p.dhPublicKey(name, a.privateKey))).toBe(hex(a.publicKey));
      expect(hex(p.dh(name, a.privateKey, b.publicKey))).toBe(hex(p.dh(name, b.privateKey, a.publicKey)));
    });

    it.each(['AESGCM', 'ChaChaPoly'] as const)('%s: round trip, empty plaintext, tampering', (name) => {
      const key = p.randomBytes(32);
      const nonce = p.randomBytes(12);
      const ad = utf8('header');
      const pt = p.randomBytes(1000);
      const ct = p.aeadEncrypt(name, key, nonce, ad, pt);
      expect(ct.length).toBe(1016);
      expect(hex(p.aeadDecrypt(name, key, nonce, ad, ct))).toBe(hex(pt));
      expect(p.aeadEncrypt(name, key, nonce, empty, empty).length).toBe(16);
      expect(
        p.aeadDecrypt(name, key, nonce, empty, p.aeadEncrypt(name, key, nonce, empty, empty)).length,
      ).toBe(0);
      for (const i of [0, 500, 1015]) {
        const bad = ct.slice();
        bad[i]! ^= 0x80;
        expect(codeOf(() => p.aeadDecrypt(name, key, nonce, ad, bad))).toBe('AEAD_FAILED');
      }
      expect(codeOf(() => p.aeadDecrypt(name, key, nonce, ad, ct.subarray(0, 15)))).toBe('AEAD_FAILED');
      expect(codeOf(() => p.aeadDecrypt(name, p.randomBytes(32), nonce, ad, ct))).toBe('AEAD_FAILED');
    });

    it.each(['Ed25519', 'P256'] as const)('%s: generate, sign, verify', (type) => {
      const { privateKey, publicKey } = p.signingGenerate(type);
      expect(publicKey.length).toBe(type === 'Ed25519' ? 32 : 65);
      expect(hex(p.signingPublicKey(type, privateKey))).toBe(hex(publicKey));
      const msg = utf8('hello');
      const sig = p.sign(type, privateKey, msg);
      expect(sig.length).toBe(64);
      expect(p.verify(type, publicKey, msg, sig)).toBe(true);
      expect(p.verify(type, publicKey, utf8('hellO'), sig)).toBe(false);
      const bad = sig.slice();
      bad[10]! ^= 1;
      expect(p.verify(type, publicKey, msg, bad)).toBe(false);
      expect(p.verify(type, publicKey, msg, sig.subarray(0, 63))).toBe(false);
      expect(p.verify(type, publicKey, msg, new Uint8Array(65))).toBe(false);
      expect(p.verify(type, publicKey, msg, new Uint8Array(64))).toBe(false);
    });

    it('P256: signatures are low-S; their high-S twins and compressed keys verify', () => {
      const { privateKey, publicKey } = p.signingGenerate('P256');
      const compressed = new Uint8Array(33);
      compressed[0] = 2 + (publicKey[64]! & 1);
      compressed.set(publicKey.subarray(1, 33), 1);
      for (let i = 0; i < 16; i++) {
        const msg = p.randomBytes(i * 7);
        const sig = p.sign('P256', privateKey, msg);
        expect(isHighS(sig)).toBe(false);
        expect(p.verify('P256', publicKey, msg, flipS(sig))).toBe(true);
        expect(p.verify('P256', compressed, msg, sig)).toBe(true);
        expect(p.verify('P256', compressed, msg, flipS(sig))).toBe(true);
      }
    });

    it('P256: r or s out of range does not verify', () => {
      const { privateKey, publicKey } = p.signingGenerate('P256');
      const msg = utf8('x');
      const sig = p.sign('P256', privateKey, msg);
      const n = bigintToBytes(P256_ORDER, 32);
      const sPlusN = sig.slice();
      sPlusN.set(bigintToBytes(bytesToBigint(sig.subarray(32)) + P256_ORDER, 32), 32);
      const zeroR = sig.slice();
      zeroR.fill(0, 0, 32);
      const nR = sig.slice();
      nR.set(n, 0);
      for (const bad of [zeroR, nR]) expect(p.verify('P256', publicKey, msg, bad)).toBe(false);
      // s + n only fits in 32 bytes when s < 2^256 - n
      if (bytesToBigint(sig.subarray(32)) + P256_ORDER < 1n << 256n) {
        expect(p.verify('P256', publicKey, msg, sPlusN)).toBe(false);
      }
    });
  });

  describe('input checks', () => {
    it('refuses keys and nonces of the wrong size with KEY_INVALID', () => {
      const k = new Uint8Array(32);
      expect(codeOf(() => p.dhPublicKey('25519', new Uint8Array(31)))).toBe('KEY_INVALID');
      expect(codeOf(() => p.dhPublicKey('448', k))).toBe('KEY_INVALID');
      expect(codeOf(() => p.dh('25519', k, new Uint8Array(33)))).toBe('KEY_INVALID');
      expect(
        codeOf(() => p.aeadEncrypt('AESGCM', new Uint8Array(16), new Uint8Array(12), empty, empty)),
      ).toBe('KEY_INVALID');
      expect(codeOf(() => p.aeadEncrypt('ChaChaPoly', k, new Uint8Array(8), empty, empty))).toBe(
        'KEY_INVALID',
      );
      expect(codeOf(() => p.aeadDecrypt('AESGCM', k, new Uint8Array(24), empty, new Uint8Array(16)))).toBe(
        'KEY_INVALID',
      );
      expect(codeOf(() => p.sign('Ed25519', new Uint8Array(64), empty))).toBe('KEY_INVALID');
      expect(codeOf(() => p.signingPublicKey('P256', new Uint8Array(33)))).toBe('KEY_INVALID');
      expect(codeOf(() => p.verify('Ed25519', new Uint8Array(33), empty, new Uint8Array(64)))).toBe(
        'KEY_INVALID',
      );
      expect(codeOf(() => p.hkdfSha256(empty, empty, empty, 255 * 32 + 1))).toBe('KEY_INVALID');
      expect(codeOf(() => p.hkdfSha256(empty, empty, empty, -1))).toBe('KEY_INVALID');
      expect(p.hkdfSha256(empty, empty, empty, 0).length).toBe(0);
    });

    it('refuses P-256 scalars outside 1..n-1', () => {
      const n = bigintToBytes(P256_ORDER, 32);
      const nMinus1 = bigintToBytes(P256_ORDER - 1n, 32);
      for (const d of [
        new Uint8Array(32),
        n,
        bigintToBytes(P256_ORDER + 1n, 32),
        new Uint8Array(32).fill(0xff),
      ]) {
        expect(codeOf(() => p.signingPublicKey('P256', d))).toBe('KEY_INVALID');
        expect(codeOf(() => p.sign('P256', d, empty))).toBe('KEY_INVALID');
      }
      expect(p.signingPublicKey('P256', nMinus1).length).toBe(65);
      expect(p.signingPublicKey('P256', bigintToBytes(1n, 32)).length).toBe(65);
    });

    it('refuses P-256 public keys of the wrong shape or off the curve', () => {
      const { publicKey } = p.signingGenerate('P256');
      const sig = new Uint8Array(64);
      const offCurve = publicKey.slice();
      offCurve[64]! ^= 1;
      const wrongPrefix = publicKey.slice();
      wrongPrefix[0] = 0x06;
      for (const pub of [
        publicKey.subarray(1),
        offCurve,
        wrongPrefix,
        new Uint8Array(33),
        new Uint8Array(65),
      ]) {
        expect(codeOf(() => p.verify('P256', pub, empty, sig))).toBe('KEY_INVALID');
      }
    });

    it('low-order X25519/X448 public keys give KEY_INVALID, not an all-zero secret', () => {
      const k = p.randomBytes(56);
      expect(codeOf(() => p.dh('25519', k.subarray(0, 32), new Uint8Array(32)))).toBe('KEY_INVALID');
      expect(codeOf(() => p.dh('448', k, new Uint8Array(56)))).toBe('KEY_INVALID');
      const one = new Uint8Array(56);
      one[0] = 1;
      expect(codeOf(() => p.dh('448', k, one))).toBe('KEY_INVALID');
    });

    it('refuses unknown algorithm names with UNSUPPORTED', () => {
      const k = new Uint8Array(32);
      const any = (s: string) => s as never;
      expect(codeOf(() => p.hash(any('MD5'), empty))).toBe('UNSUPPORTED');
      expect(codeOf(() => p.hmac(any('SHA1'), k, empty))).toBe('UNSUPPORTED');
      expect(codeOf(() => p.dhGenerate(any('P256')))).toBe('UNSUPPORTED');
      expect(codeOf(() => p.aeadEncrypt(any('AESCCM'), k, new Uint8Array(12), empty, empty))).toBe(
        'UNSUPPORTED',
      );
      expect(codeOf(() => p.signingGenerate(any('RSA')))).toBe('UNSUPPORTED');
      expect(codeOf(() => p.verify(any('secp256k1'), k, empty, new Uint8Array(64)))).toBe('UNSUPPORTED');
    });

    it('returns plain Uint8Arrays, never Buffers', () => {
      const key = new Uint8Array(32);
      const nonce = new Uint8Array(12);
      const outs = [
        p.hash('SHA256', empty),
        p.hash('BLAKE2b', [empty]),
        p.hmac('SHA512', key, empty),
        p.hkdfSha256(empty, key, empty, 32),
        p.dh('25519', p.dhGenerate('25519').privateKey, p.dhGenerate('25519').publicKey),
        p.aeadEncrypt('AESGCM', key, nonce, empty, key),
        p.aeadDecrypt('AESGCM', key, nonce, empty, p.aeadEncrypt('AESGCM', key, nonce, empty, key)),
        p.sign('Ed25519', key, empty),
        p.sign('P256', p.signingGenerate('P256').privateKey, empty),
      ];
      for (const out of outs) expect(out.constructor).toBe(Uint8Array);
    });
  });
});

describe('node and noble providers agree (fast-check)', () => {
  const [a, b] = [nodeCrypto, nobleCrypto];
  const bytes = (max: number) => fc.uint8Array({ maxLength: max });
  const exact = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
  const parts = fc.array(bytes(200), { maxLength: 5 });
  const runs = { numRuns: propertyRuns(100) };

  it('hash: same digest, whole or in parts', () => {
    fc.assert(
      fc.property(fc.constantFrom(...HASHES), parts, (name, chunks) => {
        const whole = new Uint8Array(Buffer.concat(chunks));
        const h = hex(a.hash(name, chunks));
        expect(hex(b.hash(name, chunks))).toBe(h);
        expect(hex(a.hash(name, whole))).toBe(h);
        expect(hex(b.hash(name, whole))).toBe(h);
      }),
      runs,
    );
  });

  it('hmac: same tag for any key length (BLAKE2 block sizes 64/128 included)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...HASHES), bytes(300), parts, (name, key, chunks) => {
        expect(hex(a.hmac(name, key, chunks))).toBe(hex(b.hmac(name, key, chunks)));
      }),
      runs,
    );
  });

  it('hkdfSha256: same output, including info longer than 1024 bytes', () => {
    fc.assert(
      fc.property(
        bytes(80),
        bytes(80),
        fc.oneof(bytes(100), fc.uint8Array({ minLength: 1025, maxLength: 1500 })),
        fc.integer({ min: 0, max: 600 }),
        (salt, ikm, info, length) => {
          expect(hex(a.hkdfSha256(salt, ikm, info, length))).toBe(hex(b.hkdfSha256(salt, ikm, info, length)));
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it.each([
    ['25519', 32],
    ['448', 56],
  ] as const)('X%s: same public keys and shared secrets', (name, length) => {
    fc.assert(
      fc.property(exact(length), exact(length), (x, y) => {
        const xa = a.dhPublicKey(name, x);
        expect(hex(b.dhPublicKey(name, x))).toBe(hex(xa));
        const ya = b.dhPublicKey(name, y);
        const shared = hex(a.dh(name, x, ya));
        expect(hex(b.dh(name, x, ya))).toBe(shared);
        expect(hex(b.dh(name, y, xa))).toBe(shared);
      }),
      { numRuns: propertyRuns(50) },
    );
  });

  it.each(['AESGCM', 'ChaChaPoly'] as const)('%s: same ciphertext, each opens the other', (name) => {
    fc.assert(
      fc.property(exact(32), exact(12), bytes(64), bytes(600), (key, nonce, ad, pt) => {
        const ct = a.aeadEncrypt(name, key, nonce, ad, pt);
        expect(hex(b.aeadEncrypt(name, key, nonce, ad, pt))).toBe(hex(ct));
        expect(hex(b.aeadDecrypt(name, key, nonce, ad, ct))).toBe(hex(pt));
        expect(hex(a.aeadDecrypt(name, key, nonce, ad, ct))).toBe(hex(pt));
      }),
      runs,
    );
  });

  it('Ed25519: same public key and (deterministic) signature; each verifies the other', () => {
    fc.assert(
      fc.property(exact(32), bytes(300), (seed, msg) => {
        const pub = a.signingPublicKey('Ed25519', seed);
        expect(hex(b.signingPublicKey('Ed25519', seed))).toBe(hex(pub));
        const sig = a.sign('Ed25519', seed, msg);
        expect(hex(b.sign('Ed25519', seed, msg))).toBe(hex(sig));
        expect(b.verify('Ed25519', pub, msg, sig)).toBe(true);
        expect(a.verify('Ed25519', pub, msg, b.sign('Ed25519', seed, msg))).toBe(true);
      }),
      { numRuns: propertyRuns(50) },
    );
  });

  it('P256: same public key; each verifies the other, low-S and high-S, compressed or not', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: P256_ORDER - 1n }), bytes(300), (scalar, msg) => {
        const d = bigintToBytes(scalar, 32);
        const pub = a.signingPublicKey('P256', d);
        expect(hex(b.signingPublicKey('P256', d))).toBe(hex(pub));
        const compressed = new Uint8Array([2 + (pub[64]! & 1), ...pub.subarray(1, 33)]);
        for (const [signer, verifier] of [
          [a, b],
          [b, a],
        ] as const) {
          const sig = signer.sign('P256', d, msg);
          expect(isHighS(sig)).toBe(false);
          expect(verifier.verify('P256', pub, msg, sig)).toBe(true);
          expect(verifier.verify('P256', pub, msg, flipS(sig))).toBe(true);
          expect(verifier.verify('P256', compressed, msg, flipS(sig))).toBe(true);
        }
      }),
      { numRuns: propertyRuns(30) },
    );
  });

  it('P256: generated keys are usable by the other provider', () => {
    for (const [gen, other] of [
      [a, b],
      [b, a],
    ] as const) {
      const { privateKey, publicKey } = gen.signingGenerate('P256');
      expect(hex(other.signingPublicKey('P256', privateKey))).toBe(hex(publicKey));
      expect(other.verify('P256', publicKey, empty, gen.sign('P256', privateKey, empty))).toBe(true);
    }
  });
});

describe('node provider off the JavaScript thread (signAsync, verifyAsync)', () => {
  const p = nodeCrypto;
  it.each(ed25519Tests)('Wycheproof ed25519 tcId $tcId $result', async (t) => {
    const ok = await p.verifyAsync!('Ed25519', unhex(t.pk), unhex(t.msg), unhex(t.sig)).catch(() => false);
    expect(ok).toBe(t.result === 'valid');
  });

  it('agree with sign and verify (Ed25519 and P-256, low-S, bad signatures, bad keys)', async () => {
    for (const type of ['Ed25519', 'P256'] as const) {
      const { privateKey, publicKey } = p.signingGenerate(type);
      for (let i = 0; i < 8; i++) {
        const msg = p.randomBytes(i * 11);
        const sig = await p.signAsync!(type, privateKey, msg);
        expect(p.verify(type, publicKey, msg, sig)).toBe(true);
        if (type === 'P256') expect(isHighS(sig)).toBe(false);
        else expect(hex(sig)).toBe(hex(p.sign(type, privateKey, msg)));
        expect(await p.verifyAsync!(type, publicKey, msg, sig)).toBe(true);
        const bad = sig.slice();
        bad[5]! ^= 1;
        expect(await p.verifyAsync!(type, publicKey, msg, bad)).toBe(false);
        expect(await p.verifyAsync!(type, publicKey, msg, sig.subarray(0, 63))).toBe(false);
      }
      await expect(
        p.verifyAsync!(type, new Uint8Array(3), utf8('x'), new Uint8Array(64)),
      ).rejects.toMatchObject({
        code: 'KEY_INVALID',
      });
      await expect(p.signAsync!(type, new Uint8Array(3), utf8('x'))).rejects.toMatchObject({
        code: 'KEY_INVALID',
      });
    }
  });
});

/** The prepared keys channels encrypt with: the providers' own, and the native addon's (in CI it must be built). */
const nativeMissing = nativeAeadUnavailable();
if (nativeMissing !== undefined && process.env.KEYHOP_REQUIRE_RIG === '1') {
  throw new Error(`KEYHOP_REQUIRE_RIG=1 but the native AEAD addon is not available: ${nativeMissing}`);
}
const aeadKeyMakers: { name: string; make: (c: 'AESGCM' | 'ChaChaPoly', key: Uint8Array) => AeadKey }[] = [
  { name: 'node (per message)', make: (c, k) => perMessageAeadKey(nodeCrypto, c, k) },
  { name: 'noble (per message)', make: (c, k) => aeadKeyFor(nobleCrypto, c, k) },
  ...(nativeMissing === undefined
    ? [{ name: 'native addon', make: (c: 'AESGCM' | 'ChaChaPoly', k: Uint8Array) => nativeAeadKey(c, k)! }]
    : []),
];

describe.each(aeadKeyMakers)('AeadKey: $name', ({ make }) => {
  it('passes the Wycheproof AES-256-GCM vectors, one key per vector, used twice', () => {
    for (const t of gcmTests) {
      const k = make('AESGCM', unhex(t.key));
      const [iv, aad, sealed] = [unhex(t.iv), unhex(t.aad), unhex(t.ct + t.tag)];
      for (let i = 0; i < 2; i++) {
        if (t.result === 'valid') {
          expect(hex(k.seal(iv, aad, unhex(t.msg)))).toBe(t.ct + t.tag);
          expect(hex(k.open(iv, aad, sealed))).toBe(t.msg);
        } else {
          expect(codeOf(() => k.open(iv, aad, sealed))).toBe('AEAD_FAILED');
        }
      }
      k.destroy();
    }
  });

  it('agrees with aeadEncrypt for pieces and a prefix, both ciphers, and refuses what is tampered or short', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('AESGCM' as const, 'ChaChaPoly' as const),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 4 }),
        fc.uint8Array({ maxLength: 9 }),
        (cipher, key, nonce, parts, prefix) => {
          const k = make(cipher, key);
          const sealed = k.seal(nonce, empty, parts, prefix);
          expect(hex(sealed)).toBe(hex(nodeCrypto.aeadEncrypt(cipher, key, nonce, empty, parts, prefix)));
          const body = sealed.subarray(prefix.length);
          const joined = parts.reduce((a, p) => a + hex(p), '');
          expect(hex(k.open(nonce, empty, body))).toBe(joined);
          const bad = body.slice();
          bad[bad.length - 1]! ^= 1;
          expect(codeOf(() => k.open(nonce, empty, bad))).toBe('AEAD_FAILED');
          expect(codeOf(() => k.open(nonce, empty, body.subarray(0, 15)))).toBe('AEAD_FAILED');
          expect(codeOf(() => k.seal(new Uint8Array(11), empty, parts))).toBe('KEY_INVALID');
          k.destroy();
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });
});
