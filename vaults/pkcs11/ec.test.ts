import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { codeOf, hex, unhex } from '../../test/support/bytes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import { CKK_EC, CKK_EC_EDWARDS } from './constants.js';
import { checkPoint, ecParamsFor, keyTypeOf, MAX_EC_DER, publicKeyFromEcPoint, readTlv } from './ec.js';

const P256_OID = unhex('06082a8648ce3d030107');
const ED25519_OID = unhex('06032b6570');
const ED25519_NAME = unhex(`130c${Buffer.from('edwards25519').toString('hex')}`);
const SECP384R1 = unhex('06052b81040022');
const X25519_OID = unhex('06032b656e');

/** Runs `fn` and requires that it returns or throws a KeyhopError, nothing else. */
function onlyKeyhopErrors(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    return e instanceof KeyhopError;
  }
}

describe('CKA_EC_PARAMS', () => {
  it('names the curves keyhop makes keys on', () => {
    expect(hex(ecParamsFor('P256'))).toBe(hex(P256_OID));
    expect(hex(ecParamsFor('Ed25519'))).toBe(hex(ED25519_OID));
    expect(codeOf(() => ecParamsFor('X25519' as never))).toBe('UNSUPPORTED');
  });

  it('reads P-256 and Ed25519 (OID or PrintableString form) keys', () => {
    expect(keyTypeOf(CKK_EC, P256_OID)).toBe('P256');
    expect(keyTypeOf(CKK_EC_EDWARDS, ED25519_OID)).toBe('Ed25519');
    expect(keyTypeOf(CKK_EC_EDWARDS, ED25519_NAME)).toBe('Ed25519');
  });

  it('refuses other curves (UNSUPPORTED, naming them) and malformed params (KEY_INVALID)', () => {
    try {
      keyTypeOf(CKK_EC, SECP384R1);
      throw new Error('accepted');
    } catch (e) {
      expect((e as KeyhopError).code).toBe('UNSUPPORTED');
      expect((e as KeyhopError).message).toContain('OID 1.3.132.0.34');
    }
    expect(codeOf(() => keyTypeOf(CKK_EC, ED25519_OID))).toBe('UNSUPPORTED');
    expect(codeOf(() => keyTypeOf(CKK_EC_EDWARDS, P256_OID))).toBe('UNSUPPORTED');
    expect(codeOf(() => keyTypeOf(0x41, X25519_OID))).toBe('UNSUPPORTED');
    expect(codeOf(() => keyTypeOf(CKK_EC, P256_OID.subarray(0, 9)))).toBe('KEY_INVALID');
    expect(codeOf(() => keyTypeOf(CKK_EC, unhex('0500')))).toBe('KEY_INVALID');
    expect(codeOf(() => keyTypeOf(CKK_EC, new Uint8Array(0)))).toBe('KEY_INVALID');
    expect(codeOf(() => keyTypeOf(CKK_EC, new Uint8Array(MAX_EC_DER + 1)))).toBe('KEY_INVALID');
  });
});

describe('CKA_EC_POINT', () => {
  const p256Pub = p256.getPublicKey(p256.utils.randomSecretKey(), false);
  const edPub = ed25519.getPublicKey(ed25519.utils.randomSecretKey());

  it('unwraps the DER OCTET STRING (04 41 04‖X‖Y, 04 20 key) and takes a bare point', () => {
    expect(hex(publicKeyFromEcPoint('P256', Uint8Array.of(0x04, 0x41, ...p256Pub)))).toBe(hex(p256Pub));
    expect(hex(publicKeyFromEcPoint('P256', p256Pub))).toBe(hex(p256Pub));
    expect(hex(publicKeyFromEcPoint('Ed25519', Uint8Array.of(0x04, 0x20, ...edPub)))).toBe(hex(edPub));
    expect(hex(publicKeyFromEcPoint('Ed25519', edPub))).toBe(hex(edPub));
  });

  it('copies: the result does not alias the input', () => {
    const der = Uint8Array.of(0x04, 0x41, ...p256Pub);
    const out = publicKeyFromEcPoint('P256', der);
    der[10]! ^= 1;
    expect(hex(out)).toBe(hex(p256Pub));
  });

  it('refuses wrong sizes, tags, compressed and off-curve points', () => {
    expect(codeOf(() => publicKeyFromEcPoint('P256', Uint8Array.of(0x04, 0x41, ...p256Pub, 0)))).toBe(
      'KEY_INVALID',
    );
    expect(codeOf(() => publicKeyFromEcPoint('P256', Uint8Array.of(0x03, 0x41, ...p256Pub)))).toBe(
      'KEY_INVALID',
    );
    const compressed = p256.getPublicKey(p256.utils.randomSecretKey(), true);
    expect(codeOf(() => publicKeyFromEcPoint('P256', Uint8Array.of(0x04, 0x21, ...compressed)))).toBe(
      'KEY_INVALID',
    );
    const off = p256Pub.slice();
    off[64]! ^= 1;
    expect(codeOf(() => publicKeyFromEcPoint('P256', Uint8Array.of(0x04, 0x41, ...off)))).toBe('KEY_INVALID');
    expect(codeOf(() => publicKeyFromEcPoint('Ed25519', Uint8Array.of(0x04, 0x41, ...p256Pub)))).toBe(
      'KEY_INVALID',
    );
    expect(codeOf(() => publicKeyFromEcPoint('P256', new Uint8Array(MAX_EC_DER + 1)))).toBe('KEY_INVALID');
    expect(codeOf(() => checkPoint('P256', p256Pub.subarray(1)))).toBe('KEY_INVALID');
    expect(codeOf(() => checkPoint('Ed25519', new Uint8Array(31)))).toBe('KEY_INVALID');
  });

  it('round-trips every valid point wrapped in DER', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (seed) => {
        const pub = ed25519.getPublicKey(seed);
        return hex(publicKeyFromEcPoint('Ed25519', Uint8Array.of(0x04, 0x20, ...pub))) === hex(pub);
      }),
      { numRuns: propertyRuns(50) },
    );
  });
});

describe('DER TLV', () => {
  it('reads short and minimal long lengths, refuses the rest', () => {
    expect(readTlv(unhex('0403010203'), 'x').value.length).toBe(3);
    const long = Uint8Array.of(0x04, 0x81, 0x80, ...new Uint8Array(0x80));
    expect(readTlv(long, 'x').value.length).toBe(0x80);
    const two = Uint8Array.of(0x04, 0x82, 0x01, 0x00, ...new Uint8Array(0x100));
    expect(readTlv(two, 'x').value.length).toBe(0x100);
    for (const bad of [
      '04',
      '0480',
      '04810100',
      '0482007f',
      '048300000100',
      '040301',
      '04010203',
      '1f0100',
    ]) {
      expect(
        codeOf(() => readTlv(unhex(bad), 'x')),
        bad,
      ).toBe('KEY_INVALID');
    }
  });
});

describe('decoders on random bytes throw nothing but KeyhopError', () => {
  const bytes = fc.uint8Array({ maxLength: 300 });
  const tagged = fc
    .tuple(fc.constantFrom(0x04, 0x06, 0x13), fc.uint8Array({ maxLength: 80 }))
    .map(([tag, v]) => Uint8Array.of(tag, v.length, ...v));
  const ckk = fc.constantFrom(CKK_EC, CKK_EC_EDWARDS, 0, 0x41, 0xffffffff);

  it('readTlv', () => {
    fc.assert(fc.property(bytes, (b) => onlyKeyhopErrors(() => readTlv(b, 'x'))));
  });
  it('keyTypeOf', () => {
    fc.assert(fc.property(ckk, fc.oneof(bytes, tagged), (k, b) => onlyKeyhopErrors(() => keyTypeOf(k, b))));
  });
  it('publicKeyFromEcPoint and checkPoint', () => {
    const type = fc.constantFrom('P256' as const, 'Ed25519' as const);
    const points = fc.oneof(
      bytes,
      tagged,
      fc.uint8Array({ minLength: 64, maxLength: 64 }).map((v) => Uint8Array.of(0x04, 0x41, 0x04, ...v)),
      fc.uint8Array({ minLength: 32, maxLength: 32 }).map((v) => Uint8Array.of(0x04, 0x20, ...v)),
    );
    fc.assert(
      fc.property(
        type,
        points,
        (t, b) =>
          onlyKeyhopErrors(() => publicKeyFromEcPoint(t, b)) && onlyKeyhopErrors(() => checkPoint(t, b)),
      ),
      { numRuns: propertyRuns(500) },
    );
  });
});
