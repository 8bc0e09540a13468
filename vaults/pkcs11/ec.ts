import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type { SigningKeyType } from '../provider.js';
import { CKK_EC, CKK_EC_EDWARDS } from './constants.js';

/**
 * The DER a token speaks for EC keys: CKA_EC_PARAMS (a named-curve OID, or for Edwards curves
 * also the PrintableString form some tokens use) and CKA_EC_POINT (the point wrapped in a DER
 * OCTET STRING). Decoders check lengths before they allocate and throw nothing but KeyhopError
 * (KEY_INVALID for malformed input, UNSUPPORTED for a well-formed curve keyhop does not use).
 */

/** Nothing keyhop reads from a token is longer: refused before parsing. */
export const MAX_EC_DER = 256;

/** id-prime256v1 (1.2.840.10045.3.1.7). */
const P256_OID = Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07);
/** id-Ed25519 (1.3.101.112, RFC 8410). */
const ED25519_OID = Uint8Array.of(0x06, 0x03, 0x2b, 0x65, 0x70);
/** PrintableString "edwards25519": the PKCS#11 3.0 alternative form of the Ed25519 params. */
const ED25519_NAME = Uint8Array.of(0x13, 0x0c, ...new TextEncoder().encode('edwards25519'));

const P256_POINT = 65;
const ED25519_POINT = 32;

/** CKA_EC_PARAMS for a new key of this type (the OID form, which every token accepts). */
export function ecParamsFor(type: SigningKeyType): Uint8Array {
  if (type === 'P256') return P256_OID.slice();
  if (type === 'Ed25519') return ED25519_OID.slice();
  throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported key type: ${String(type)}`);
}

/** The key type of a token key from its CKA_KEY_TYPE and CKA_EC_PARAMS. */
export function keyTypeOf(ckk: number, ecParams: Uint8Array): SigningKeyType {
  if (ecParams.length > MAX_EC_DER) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `CKA_EC_PARAMS of ${ecParams.length} bytes is too long`);
  }
  const { tag, value } = readTlv(ecParams, 'CKA_EC_PARAMS');
  if (tag !== 0x06 && tag !== 0x13) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      `CKA_EC_PARAMS is not a curve OID or name (tag 0x${hex1(tag)})`,
    );
  }
  if (ckk === CKK_EC && equal(ecParams, P256_OID)) return 'P256';
  if (ckk === CKK_EC_EDWARDS && (equal(ecParams, ED25519_OID) || equal(ecParams, ED25519_NAME)))
    return 'Ed25519';
  const curve = tag === 0x06 ? `OID ${oidString(value)}` : `"${printable(value)}"`;
  throw new KeyhopError(
    ErrorCodes.UNSUPPORTED,
    `token key of type 0x${ckk.toString(16)} on curve ${curve}: keyhop uses P-256 (CKK_EC) and Ed25519 (CKK_EC_EDWARDS) keys only`,
  );
}

/**
 * The public key from CKA_EC_POINT: P-256 as 65 bytes 04 ‖ X ‖ Y (checked to be on the curve),
 * Ed25519 as 32 bytes (checked to decode to a curve point). Accepts the DER OCTET STRING the
 * standard asks for and, as tokens predating it send, the bare point.
 */
export function publicKeyFromEcPoint(type: SigningKeyType, ecPoint: Uint8Array): Uint8Array {
  if (ecPoint.length > MAX_EC_DER) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `CKA_EC_POINT of ${ecPoint.length} bytes is too long`);
  }
  const size = type === 'P256' ? P256_POINT : ED25519_POINT;
  let point: Uint8Array;
  if (ecPoint.length === size && (type !== 'P256' || ecPoint[0] === 0x04)) {
    point = ecPoint;
  } else {
    const { tag, value } = readTlv(ecPoint, 'CKA_EC_POINT');
    if (tag !== 0x04) {
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `CKA_EC_POINT is not an OCTET STRING (tag 0x${hex1(tag)})`,
      );
    }
    point = value;
  }
  if (point.length !== size) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      `CKA_EC_POINT holds ${point.length} bytes, a ${type === 'P256' ? 'P-256 uncompressed point' : 'Ed25519 key'} is ${size}`,
    );
  }
  checkPoint(type, point);
  return point.slice();
}

/** Throws KEY_INVALID unless `point` is a valid public key of the type (65-byte 04‖X‖Y for P-256). */
export function checkPoint(type: SigningKeyType, point: Uint8Array): void {
  if (type === 'P256' && (point.length !== P256_POINT || point[0] !== 0x04)) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      'a P-256 public key must be 65 bytes, uncompressed (04 ‖ X ‖ Y)',
    );
  }
  if (type === 'Ed25519' && point.length !== ED25519_POINT) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, 'an Ed25519 public key must be 32 bytes');
  }
  try {
    if (type === 'P256') p256.Point.fromBytes(point).assertValidity();
    else ed25519.Point.fromBytes(point);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `not a point on ${type === 'P256' ? 'P-256' : 'Ed25519'}`, {
      cause: e,
    });
  }
}

/**
 * One DER TLV that must span all of `der`: definite lengths in short or minimal long form up to
 * two length bytes (nothing here is longer than MAX_EC_DER).
 */
export function readTlv(der: Uint8Array, what: string): { tag: number; value: Uint8Array } {
  const bad = (why: string) => new KeyhopError(ErrorCodes.KEY_INVALID, `${what} is not valid DER: ${why}`);
  if (der.length < 2) throw bad('shorter than a tag and a length');
  const tag = der[0]!;
  if ((tag & 0x1f) === 0x1f) throw bad('multi-byte tag');
  const first = der[1]!;
  let length: number;
  let at: number;
  if (first < 0x80) {
    length = first;
    at = 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw bad('indefinite length');
    if (n > 2) throw bad(`${n}-byte length`);
    if (der.length < 2 + n) throw bad('truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[2 + i]!;
    if (length < 0x80 || (n === 2 && length < 0x100)) throw bad('non-minimal length');
    at = 2 + n;
  }
  if (at + length > der.length) throw bad(`length ${length} runs past the ${der.length}-byte value`);
  if (at + length < der.length) throw bad(`${der.length - at - length} bytes after the value`);
  return { tag, value: der.subarray(at, at + length) };
}

function oidString(value: Uint8Array): string {
  if (value.length === 0 || value.length > 32) return `(${value.length} bytes)`;
  const arcs: number[] = [];
  let n = 0;
  for (const b of value) {
    n = n * 128 + (b & 0x7f);
    if (n > Number.MAX_SAFE_INTEGER / 256) return `(${hex(value)})`;
    if ((b & 0x80) === 0) {
      if (arcs.length === 0) arcs.push(n < 80 ? Math.floor(n / 40) : 2, n < 80 ? n % 40 : n - 80);
      else arcs.push(n);
      n = 0;
    }
  }
  return arcs.join('.');
}

function printable(value: Uint8Array): string {
  return Array.from(value.subarray(0, 64), (b) =>
    b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '?',
  ).join('');
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const hex1 = (n: number) => n.toString(16).padStart(2, '0');
