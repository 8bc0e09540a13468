import { Type } from 'cborg';
import type { SigningKeyType } from '../../vaults/provider.js';
import type { SigningPublicKey } from '../../vaults/vault.js';
import { CborReader } from '../codec/cbor.js';
import { type ErrorCode, ErrorCodes, KeyhopError } from '../errors.js';
import { CborWriter } from './cbor-writer.js';
import { CHANGE_HASH_LENGTH, IDENTIFIER_LENGTH, Identifier } from './identifier.js';

/**
 * Ockam's identity data model (ockam_identity/src/models, build-trust/ockam @ fb8fb64c) in
 * minicbor's encoding: a struct is an array of its fields in index order, a trailing absent
 * Option is left out (an absent one followed by other fields is null), an enum is
 * [variant, [fields…]], byte fields are byte strings. docs/protocols/identity.md has the layouts.
 *
 * Decoders are strict (shortest-form heads, definite lengths, exact key and hash sizes, no
 * trailing bytes) and check every count and length against the limits below before reading on.
 * They fail with DECODE_TRUNCATED, DECODE_INVALID, DECODE_LIMIT or DECODE_VERSION.
 */

// ---- Limits -------------------------------------------------------------------------------------

/** Changes in one history (Ockam sets no limit; real histories have a handful). */
export const MAX_CHANGES = 64;
/** A Change's VersionedData bytes. The largest ChangeData (P-256) is about 130 bytes. */
export const MAX_CHANGE_DATA_BYTES = 512;
/** A PurposeKeyAttestation's VersionedData bytes (about 120 bytes for Ed25519, 160 for P-256). */
export const MAX_ATTESTATION_DATA_BYTES = 512;
/** A Credential's VersionedData bytes. */
export const MAX_CREDENTIAL_DATA_BYTES = 16 * 1024;
export const MAX_ATTRIBUTES = 64;
export const MAX_ATTRIBUTE_KEY_BYTES = 256;
export const MAX_ATTRIBUTE_VALUE_BYTES = 4096;

export const SIGNATURE_LENGTH = 64;
export const ED25519_PUBLIC_KEY_LENGTH = 32;
export const P256_PUBLIC_KEY_LENGTH = 65;
export const X25519_PUBLIC_KEY_LENGTH = 32;

// ---- Types --------------------------------------------------------------------------------------

/** `VersionedData.version`: the only version defined. */
export const VERSIONED_DATA_VERSION = 1;

/** `VersionedData.data_type`. */
export const DataType = {
  ChangeData: 1,
  PurposeKeyAttestationData: 2,
  CredentialData: 3,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

export interface VersionedData {
  readonly version: number;
  readonly dataType: number;
  /** CBOR of the ChangeData / PurposeKeyAttestationData / CredentialData. */
  readonly data: Uint8Array;
}

/**
 * ChangeSignature, PurposeKeyAttestationSignature and CredentialSignature: [0, [Ed25519 64 B]] or
 * [1, [P-256 raw r ‖ s 64 B]].
 */
export interface Signature {
  readonly type: SigningKeyType;
  readonly bytes: Uint8Array;
}

export interface Change {
  /** CBOR VersionedData (data_type 1) whose data is the CBOR ChangeData. Signed, and hashed. */
  readonly data: Uint8Array;
  /** By this change's primary key, over SHA-256(data). */
  readonly signature: Signature;
  /** By the previous change's primary key, over SHA-256(data); absent on the first change. */
  readonly previousSignature?: Signature;
}

export interface ChangeData {
  /** ChangeHash of the previous change; null on the first change. */
  readonly previousChange: Uint8Array | null;
  /** PrimaryPublicKey: Ed25519 (32 B) or P-256 (65 B uncompressed). */
  readonly primaryPublicKey: SigningPublicKey;
  readonly revokeAllPurposeKeys: boolean;
  /** UTC seconds: the key may attest purpose keys from… */
  readonly attestationsValidFrom: number;
  /** …until (UTC seconds). */
  readonly attestationsValidUntil: number;
}

export type PurposePublicKey =
  /** variant 0: the X25519 static key of a secure channel (Noise `s`). */
  | { readonly purpose: 'SecureChannelStatic'; readonly x25519: Uint8Array }
  /** variant 1: a key that signs credentials (a VerifyingPublicKey). */
  | { readonly purpose: 'CredentialSigning'; readonly publicKey: SigningPublicKey };

export interface PurposeKeyAttestation {
  /** CBOR VersionedData (data_type 2) whose data is the CBOR PurposeKeyAttestationData. */
  readonly data: Uint8Array;
  /** By the subject's latest primary key, over SHA-256(data). */
  readonly signature: Signature;
}

export interface PurposeKeyAttestationData {
  readonly subject: Identifier;
  readonly subjectLatestChangeHash: Uint8Array;
  readonly publicKey: PurposePublicKey;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export interface Attribute {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface Attributes {
  /** CredentialSchemaIdentifier (u64; keyhop handles values up to 2^53 − 1). */
  readonly schema: number;
  /** Sorted by key bytes (as Rust's BTreeMap), keys unique. */
  readonly entries: readonly Attribute[];
}

export interface Credential {
  /** CBOR VersionedData (data_type 3) whose data is the CBOR CredentialData. */
  readonly data: Uint8Array;
  /** By the issuer's credential-signing purpose key, over SHA-256(data). */
  readonly signature: Signature;
}

export interface CredentialData {
  readonly subject: Identifier | null;
  readonly subjectLatestChangeHash: Uint8Array | null;
  readonly attributes: Attributes;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export interface CredentialAndPurposeKey {
  readonly credential: Credential;
  /** The issuer's attestation of the credential-signing key. */
  readonly purposeKeyAttestation: PurposeKeyAttestation;
}

// ---- Shared helpers -----------------------------------------------------------------------------

function fail(what: string, detail: string, code: ErrorCode = ErrorCodes.DECODE_INVALID): never {
  throw new KeyhopError(code, `${what}: ${detail}`);
}

function exactBytes(r: CborReader, length: number, what: string, field: string): Uint8Array {
  const b = r.bytesValue(length);
  if (b.length !== length) fail(what, `${field} has ${b.length} bytes, expected ${length}`);
  return b.slice();
}

/** An enum header `[variant, [` with exactly one field; returns the variant. */
function readVariant(r: CborReader, maxVariant: number, what: string, field: string): number {
  r.array(2, 2);
  const v = r.uint(255);
  if (v > maxVariant) fail(what, `unknown ${field} variant ${v}`);
  r.array(1, 1);
  return v;
}

function keyTypeIndex(type: SigningKeyType): number {
  if (type === 'Ed25519') return 0;
  if (type === 'P256') return 1;
  throw new KeyhopError(ErrorCodes.UNSUPPORTED, `signing key type ${String(type)}`);
}

function checkLength(b: Uint8Array, length: number, what: string): void {
  if (!(b instanceof Uint8Array) || b.length !== length) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `${what}: ${b instanceof Uint8Array ? b.length : typeof b} bytes, expected ${length}`,
    );
  }
}

function checkTimestamp(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `${what}: ${n} is not a u64 timestamp keyhop can encode`);
  }
}

export function writeSignature(w: CborWriter, s: Signature): void {
  checkLength(s.bytes, SIGNATURE_LENGTH, `${s.type} signature`);
  w.array(2).uint(keyTypeIndex(s.type)).array(1).bytes(s.bytes);
}

export function readSignature(r: CborReader, what: string): Signature {
  const v = readVariant(r, 1, what, 'signature');
  return { type: v === 0 ? 'Ed25519' : 'P256', bytes: exactBytes(r, SIGNATURE_LENGTH, what, 'signature') };
}

/** VerifyingPublicKey (also PrimaryPublicKey): [0, [Ed25519 32 B]] | [1, [P-256 65 B]]. */
export function writeVerifyingPublicKey(w: CborWriter, k: SigningPublicKey): void {
  const i = keyTypeIndex(k.type);
  checkLength(k.bytes, i === 0 ? ED25519_PUBLIC_KEY_LENGTH : P256_PUBLIC_KEY_LENGTH, `${k.type} public key`);
  w.array(2).uint(i).array(1).bytes(k.bytes);
}

export function readVerifyingPublicKey(r: CborReader, what: string): SigningPublicKey {
  const v = readVariant(r, 1, what, 'public key');
  if (v === 0)
    return { type: 'Ed25519', bytes: exactBytes(r, ED25519_PUBLIC_KEY_LENGTH, what, 'Ed25519 key') };
  const bytes = exactBytes(r, P256_PUBLIC_KEY_LENGTH, what, 'P-256 key');
  if (bytes[0] !== 0x04) fail(what, 'P-256 key is not in uncompressed form (04 ‖ x ‖ y)');
  return { type: 'P256', bytes };
}

function readTimestamp(r: CborReader): number {
  return r.uint();
}

// ---- VersionedData ------------------------------------------------------------------------------

export function encodeVersionedData(v: VersionedData): Uint8Array {
  return new CborWriter().array(3).uint(v.version).uint(v.dataType).bytes(v.data).finish();
}

/**
 * Decodes a VersionedData and checks it is version 1 (else DECODE_VERSION) of `dataType`
 * (else DECODE_INVALID). Returns the inner data bytes (a copy).
 */
export function decodeVersionedData(bytes: Uint8Array, dataType: DataType, maxBytes: number): Uint8Array {
  const what = 'VersionedData';
  if (bytes.length > maxBytes)
    fail(what, `${bytes.length} bytes, more than ${maxBytes}`, ErrorCodes.DECODE_LIMIT);
  const r = new CborReader(bytes, what);
  r.array(3, 3);
  const version = r.uint(255);
  const type = r.uint(255);
  if (version !== VERSIONED_DATA_VERSION) fail(what, `unknown version ${version}`, ErrorCodes.DECODE_VERSION);
  if (type !== dataType) fail(what, `data_type ${type}, expected ${dataType}`);
  const data = r.bytesValue(maxBytes).slice();
  r.end();
  return data;
}

// ---- ChangeData / Change / ChangeHistory --------------------------------------------------------

export function encodeChangeData(d: ChangeData): Uint8Array {
  checkTimestamp(d.attestationsValidFrom, 'attestations_valid_from');
  checkTimestamp(d.attestationsValidUntil, 'attestations_valid_until');
  const w = new CborWriter().array(5);
  if (d.previousChange === null) w.null();
  else {
    checkLength(d.previousChange, CHANGE_HASH_LENGTH, 'previous_change');
    w.bytes(d.previousChange);
  }
  writeVerifyingPublicKey(w, d.primaryPublicKey);
  return w.bool(d.revokeAllPurposeKeys).uint(d.attestationsValidFrom).uint(d.attestationsValidUntil).finish();
}

export function decodeChangeData(bytes: Uint8Array): ChangeData {
  const what = 'ChangeData';
  const r = new CborReader(bytes, what);
  r.array(5, 5);
  const previousChange = r.nullValue() ? null : exactBytes(r, CHANGE_HASH_LENGTH, what, 'previous_change');
  const primaryPublicKey = readVerifyingPublicKey(r, what);
  const revokeAllPurposeKeys = r.bool();
  const attestationsValidFrom = readTimestamp(r);
  const attestationsValidUntil = readTimestamp(r);
  r.end();
  return {
    previousChange,
    primaryPublicKey,
    revokeAllPurposeKeys,
    attestationsValidFrom,
    attestationsValidUntil,
  };
}

/** ChangeData → the VersionedData bytes that go into Change.data. */
export function sealChangeData(d: ChangeData): Uint8Array {
  return encodeVersionedData({
    version: VERSIONED_DATA_VERSION,
    dataType: DataType.ChangeData,
    data: encodeChangeData(d),
  });
}

/** Change.data → ChangeData. */
export function openChangeData(changeData: Uint8Array): ChangeData {
  return decodeChangeData(decodeVersionedData(changeData, DataType.ChangeData, MAX_CHANGE_DATA_BYTES));
}

export function writeChange(w: CborWriter, c: Change): void {
  w.array(c.previousSignature ? 3 : 2).bytes(c.data);
  writeSignature(w, c.signature);
  if (c.previousSignature) writeSignature(w, c.previousSignature);
}

export function readChange(r: CborReader, what = 'Change'): Change {
  const n = r.array(3, 2);
  const data = r.bytesValue(MAX_CHANGE_DATA_BYTES).slice();
  const signature = readSignature(r, what);
  // A trailing None is normally left out; minicbor also reads an explicit null as None.
  if (n === 3 && !r.nullValue()) return { data, signature, previousSignature: readSignature(r, what) };
  return { data, signature };
}

export function encodeChangeHistory(changes: readonly Change[]): Uint8Array {
  if (changes.length === 0 || changes.length > MAX_CHANGES) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `change history: ${changes.length} changes, 1 to ${MAX_CHANGES}`,
    );
  }
  const w = new CborWriter().array(changes.length);
  for (const c of changes) writeChange(w, c);
  return w.finish();
}

/** Reads a ChangeHistory item (an array of 1 to MAX_CHANGES changes) from a larger structure. */
export function readChangeHistory(r: CborReader): Change[] {
  const n = r.array(MAX_CHANGES, 1);
  const changes: Change[] = [];
  for (let i = 0; i < n; i++) changes.push(readChange(r, `ChangeHistory change ${i}`));
  return changes;
}

export function decodeChangeHistory(bytes: Uint8Array): Change[] {
  const r = new CborReader(bytes, 'ChangeHistory');
  const changes = readChangeHistory(r);
  r.end();
  return changes;
}

// ---- Purpose keys -------------------------------------------------------------------------------

export function writePurposePublicKey(w: CborWriter, k: PurposePublicKey): void {
  if (k.purpose === 'SecureChannelStatic') {
    checkLength(k.x25519, X25519_PUBLIC_KEY_LENGTH, 'X25519 public key');
    w.array(2).uint(0).array(1).bytes(k.x25519);
  } else if (k.purpose === 'CredentialSigning') {
    w.array(2).uint(1).array(1);
    writeVerifyingPublicKey(w, k.publicKey);
  } else {
    throw new KeyhopError(ErrorCodes.UNSUPPORTED, `purpose ${String((k as { purpose: unknown }).purpose)}`);
  }
}

export function readPurposePublicKey(r: CborReader, what: string): PurposePublicKey {
  const v = readVariant(r, 1, what, 'purpose key');
  if (v === 0) {
    return {
      purpose: 'SecureChannelStatic',
      x25519: exactBytes(r, X25519_PUBLIC_KEY_LENGTH, what, 'X25519 key'),
    };
  }
  return { purpose: 'CredentialSigning', publicKey: readVerifyingPublicKey(r, what) };
}

export function encodePurposeKeyAttestationData(d: PurposeKeyAttestationData): Uint8Array {
  checkLength(d.subjectLatestChangeHash, CHANGE_HASH_LENGTH, 'subject_latest_change_hash');
  checkTimestamp(d.createdAt, 'created_at');
  checkTimestamp(d.expiresAt, 'expires_at');
  const w = new CborWriter().array(5).bytes(d.subject.bytes).bytes(d.subjectLatestChangeHash);
  writePurposePublicKey(w, d.publicKey);
  return w.uint(d.createdAt).uint(d.expiresAt).finish();
}

export function decodePurposeKeyAttestationData(bytes: Uint8Array): PurposeKeyAttestationData {
  const what = 'PurposeKeyAttestationData';
  const r = new CborReader(bytes, what);
  r.array(5, 5);
  const subject = Identifier.fromBytes(exactBytes(r, IDENTIFIER_LENGTH, what, 'subject'));
  const subjectLatestChangeHash = exactBytes(r, CHANGE_HASH_LENGTH, what, 'subject_latest_change_hash');
  const publicKey = readPurposePublicKey(r, what);
  const createdAt = readTimestamp(r);
  const expiresAt = readTimestamp(r);
  r.end();
  return { subject, subjectLatestChangeHash, publicKey, createdAt, expiresAt };
}

export function sealPurposeKeyAttestationData(d: PurposeKeyAttestationData): Uint8Array {
  return encodeVersionedData({
    version: VERSIONED_DATA_VERSION,
    dataType: DataType.PurposeKeyAttestationData,
    data: encodePurposeKeyAttestationData(d),
  });
}

/** PurposeKeyAttestation.data → PurposeKeyAttestationData. */
export function openPurposeKeyAttestationData(data: Uint8Array): PurposeKeyAttestationData {
  return decodePurposeKeyAttestationData(
    decodeVersionedData(data, DataType.PurposeKeyAttestationData, MAX_ATTESTATION_DATA_BYTES),
  );
}

export function writePurposeKeyAttestation(w: CborWriter, a: PurposeKeyAttestation): void {
  w.array(2).bytes(a.data);
  writeSignature(w, a.signature);
}

export function readPurposeKeyAttestation(
  r: CborReader,
  what = 'PurposeKeyAttestation',
): PurposeKeyAttestation {
  r.array(2, 2);
  const data = r.bytesValue(MAX_ATTESTATION_DATA_BYTES).slice();
  return { data, signature: readSignature(r, what) };
}

export function encodePurposeKeyAttestation(a: PurposeKeyAttestation): Uint8Array {
  const w = new CborWriter();
  writePurposeKeyAttestation(w, a);
  return w.finish();
}

export function decodePurposeKeyAttestation(bytes: Uint8Array): PurposeKeyAttestation {
  const r = new CborReader(bytes, 'PurposeKeyAttestation');
  const a = readPurposeKeyAttestation(r);
  r.end();
  return a;
}

// ---- Credentials --------------------------------------------------------------------------------

/** Byte-wise order of Rust's `Vec<u8>` (and so of minicbor's BTreeMap): a prefix sorts first. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Builds Attributes from text pairs (UTF-8), sorted as Ockam writes them. Throws ENCODE_LIMIT on
 * too many or too long entries.
 */
export function makeAttributes(
  values: Readonly<Record<string, string>> | ReadonlyMap<string, string>,
  schema = 0,
): Attributes {
  const pairs = values instanceof Map ? [...values] : Object.entries(values);
  return makeBinaryAttributes(
    pairs.map(([k, v]) => ({ key: utf8Encoder.encode(k), value: utf8Encoder.encode(v) })),
    schema,
  );
}

export function makeBinaryAttributes(entries: readonly Attribute[], schema = 0): Attributes {
  if (!Number.isSafeInteger(schema) || schema < 0) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `attributes: schema ${schema} is not a u64 keyhop can encode`,
    );
  }
  if (entries.length > MAX_ATTRIBUTES) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `attributes: ${entries.length} entries, at most ${MAX_ATTRIBUTES}`,
    );
  }
  const sorted = entries.map((e) => ({ key: e.key.slice(), value: e.value.slice() }));
  sorted.sort((a, b) => compareBytes(a.key, b.key));
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!;
    if (e.key.length > MAX_ATTRIBUTE_KEY_BYTES || e.value.length > MAX_ATTRIBUTE_VALUE_BYTES) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `attributes: key or value too long (at most ${MAX_ATTRIBUTE_KEY_BYTES} / ${MAX_ATTRIBUTE_VALUE_BYTES} bytes)`,
      );
    }
    if (i > 0 && compareBytes(sorted[i - 1]!.key, e.key) === 0) {
      throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, 'attributes: duplicate key');
    }
  }
  return { schema, entries: sorted };
}

/** The attributes whose key and value are both valid UTF-8, as text (others are skipped). */
export function attributesAsText(attributes: Attributes): Map<string, string> {
  const out = new Map<string, string>();
  for (const { key, value } of attributes.entries) {
    try {
      out.set(utf8Decoder.decode(key), utf8Decoder.decode(value));
    } catch {
      // Not text: ABAC and trust policies only see text attributes, as in Ockam.
    }
  }
  return out;
}

function writeAttributes(w: CborWriter, a: Attributes): void {
  const checked = makeBinaryAttributes(a.entries, a.schema);
  w.array(2).uint(checked.schema).map(checked.entries.length);
  for (const e of checked.entries) w.bytes(e.key).bytes(e.value);
}

function readAttributes(r: CborReader, what: string): Attributes {
  r.array(2, 2);
  const schema = r.uint();
  const t = r.next();
  if (t.type !== Type.map) fail(what, `expected a map of attributes, found ${t.type.name}`);
  const n = t.value as number;
  if (n > MAX_ATTRIBUTES) fail(what, `${n} attributes, more than ${MAX_ATTRIBUTES}`, ErrorCodes.DECODE_LIMIT);
  const entries: Attribute[] = [];
  for (let i = 0; i < n; i++) {
    const key = r.bytesValue(MAX_ATTRIBUTE_KEY_BYTES).slice();
    const value = r.bytesValue(MAX_ATTRIBUTE_VALUE_BYTES).slice();
    const prev = entries[i - 1];
    if (prev && compareBytes(prev.key, key) >= 0) fail(what, 'attribute keys are not unique and sorted');
    entries.push({ key, value });
  }
  return { schema, entries };
}

export function encodeCredentialData(d: CredentialData): Uint8Array {
  checkTimestamp(d.createdAt, 'created_at');
  checkTimestamp(d.expiresAt, 'expires_at');
  const w = new CborWriter().array(5);
  if (d.subject === null) w.null();
  else w.bytes(d.subject.bytes);
  if (d.subjectLatestChangeHash === null) w.null();
  else {
    checkLength(d.subjectLatestChangeHash, CHANGE_HASH_LENGTH, 'subject_latest_change_hash');
    w.bytes(d.subjectLatestChangeHash);
  }
  writeAttributes(w, d.attributes);
  return w.uint(d.createdAt).uint(d.expiresAt).finish();
}

export function decodeCredentialData(bytes: Uint8Array): CredentialData {
  const what = 'CredentialData';
  const r = new CborReader(bytes, what);
  r.array(5, 5);
  const subject = r.nullValue()
    ? null
    : Identifier.fromBytes(exactBytes(r, IDENTIFIER_LENGTH, what, 'subject'));
  const subjectLatestChangeHash = r.nullValue()
    ? null
    : exactBytes(r, CHANGE_HASH_LENGTH, what, 'subject_latest_change_hash');
  const attributes = readAttributes(r, what);
  const createdAt = readTimestamp(r);
  const expiresAt = readTimestamp(r);
  r.end();
  return { subject, subjectLatestChangeHash, attributes, createdAt, expiresAt };
}

export function sealCredentialData(d: CredentialData): Uint8Array {
  const sealed = encodeVersionedData({
    version: VERSIONED_DATA_VERSION,
    dataType: DataType.CredentialData,
    data: encodeCredentialData(d),
  });
  if (sealed.length > MAX_CREDENTIAL_DATA_BYTES) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `credential data: ${sealed.length} bytes, at most ${MAX_CREDENTIAL_DATA_BYTES}`,
    );
  }
  return sealed;
}

/** Credential.data → CredentialData. */
export function openCredentialData(data: Uint8Array): CredentialData {
  return decodeCredentialData(decodeVersionedData(data, DataType.CredentialData, MAX_CREDENTIAL_DATA_BYTES));
}

export function writeCredential(w: CborWriter, c: Credential): void {
  w.array(2).bytes(c.data);
  writeSignature(w, c.signature);
}

export function readCredential(r: CborReader, what = 'Credential'): Credential {
  r.array(2, 2);
  const data = r.bytesValue(MAX_CREDENTIAL_DATA_BYTES).slice();
  return { data, signature: readSignature(r, what) };
}

export function encodeCredential(c: Credential): Uint8Array {
  const w = new CborWriter();
  writeCredential(w, c);
  return w.finish();
}

export function decodeCredential(bytes: Uint8Array): Credential {
  const r = new CborReader(bytes, 'Credential');
  const c = readCredential(r);
  r.end();
  return c;
}

export function writeCredentialAndPurposeKey(w: CborWriter, c: CredentialAndPurposeKey): void {
  w.array(2);
  writeCredential(w, c.credential);
  writePurposeKeyAttestation(w, c.purposeKeyAttestation);
}

export function readCredentialAndPurposeKey(r: CborReader): CredentialAndPurposeKey {
  r.array(2, 2);
  const credential = readCredential(r, 'CredentialAndPurposeKey credential');
  const purposeKeyAttestation = readPurposeKeyAttestation(r, 'CredentialAndPurposeKey attestation');
  return { credential, purposeKeyAttestation };
}

export function encodeCredentialAndPurposeKey(c: CredentialAndPurposeKey): Uint8Array {
  const w = new CborWriter();
  writeCredentialAndPurposeKey(w, c);
  return w.finish();
}

export function decodeCredentialAndPurposeKey(bytes: Uint8Array): CredentialAndPurposeKey {
  const r = new CborReader(bytes, 'CredentialAndPurposeKey');
  const c = readCredentialAndPurposeKey(r);
  r.end();
  return c;
}
