import { CborReader } from '../codec/cbor.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { CborWriter } from '../identity/cbor-writer.js';
import { IDENTIFIER_LENGTH } from '../identity/identifier.js';
import {
  MAX_ATTRIBUTE_KEY_BYTES,
  MAX_ATTRIBUTE_VALUE_BYTES,
  MAX_ATTRIBUTES,
  SIGNATURE_LENGTH,
} from '../identity/models.js';
import { ENCODED_KEY } from './x3dh.js';

/**
 * Every message keyhop's enrollment defines (docs/protocols/enrollment.md has the byte layouts):
 * CBOR arrays whose first item is the protocol version (1). Decoders check every count and length
 * against its limit before reading what it announces, and fail with DECODE_* KeyhopErrors.
 */
export const ENROLLMENT_VERSION = 1;

export const LIMITS = {
  /** A change history (identity.ts allows 64 changes of ≤ 512 bytes, plus CBOR). */
  history: 40 * 1024,
  /** A CredentialAndPurposeKey (credential data ≤ 16 KiB, attestation ≤ 512, signatures). */
  credential: 20 * 1024,
  route: 4096,
  identifier: 70,
  code: 32,
  requestId: 32,
  message: 1024,
  errorCode: 64,
  /** One-time prekeys in one publication. */
  prekeysPerPublish: 10_000,
  /** An enrollment request or response as a whole. */
  request: 64 * 1024,
  response: 32 * 1024,
  /** Requests one collect may return, replies one poll may return. */
  batch: 1000,
  repliesPerRequest: 4,
  revokedEntries: 100_000,
  signedBody: 8 * 1024 * 1024,
} as const;

const bad = (what: string, detail: string) =>
  new KeyhopError(ErrorCodes.DECODE_INVALID, `${what}: ${detail}`);

function version(r: CborReader, what: string): void {
  const v = r.uint(255);
  if (v !== ENROLLMENT_VERSION) {
    throw new KeyhopError(
      ErrorCodes.DECODE_VERSION,
      `${what}: version ${v}, this keyhop speaks ${ENROLLMENT_VERSION}`,
    );
  }
}

function readAll<T>(bytes: Uint8Array, what: string, read: (r: CborReader) => T): T {
  // A plain view even of a Buffer: Buffer's slice() does not copy, and decoded fields must be copies.
  const r = new CborReader(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), what);
  const v = read(r);
  r.end();
  return v;
}

const IDENTIFIER = /^I[0-9a-f]{64}$/;

function identifier(r: CborReader, what: string): string {
  const id = r.text(LIMITS.identifier);
  if (!IDENTIFIER.test(id)) throw bad(what, `"${id.slice(0, 70)}" is not an identifier`);
  return id;
}

function exact(r: CborReader, length: number, what: string): Uint8Array {
  const b = r.bytesValue(length).slice();
  if (b.length !== length) throw bad(what, `${b.length} bytes, expected ${length}`);
  return b;
}

function nonEmpty(r: CborReader, max: number): Uint8Array {
  const b = r.bytesValue(max).slice();
  if (b.length === 0) throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'empty byte string');
  return b;
}

function attributesOf(r: CborReader): Record<string, string> {
  const t = r.next();
  if (t.type.name !== 'map') throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'attributes: expected a map');
  const n = t.value as number;
  if (n > MAX_ATTRIBUTES)
    throw new KeyhopError(ErrorCodes.DECODE_LIMIT, `attributes: ${n}, more than ${MAX_ATTRIBUTES}`);
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i++) {
    const k = r.text(MAX_ATTRIBUTE_KEY_BYTES);
    const v = r.text(MAX_ATTRIBUTE_VALUE_BYTES);
    if (k === '' || Object.hasOwn(out, k))
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, `attributes: bad key "${k}"`);
    out[k] = v;
  }
  return out;
}

function writeAttributes(w: CborWriter, a: Readonly<Record<string, string>>): void {
  const keys = Object.keys(a).sort();
  w.map(keys.length);
  for (const k of keys) w.text(k).text(a[k]!);
}

// ---- tickets (one-time codes) -------------------------------------------------------------------

export const TICKET_PREFIX = 'keyhop-ticket:';

/** What a device needs to enroll with a one-time code: whom to trust, where it is, the code. */
export interface Ticket {
  /** The authority's change history: the device's trust anchor. */
  readonly authority: Uint8Array;
  /** Route to the authority node's secure-channel listener. */
  readonly route: string;
  readonly code: Uint8Array;
  readonly expiresAt: number;
}

export function encodeTicket(t: Ticket): string {
  const w = new CborWriter().array(5).uint(ENROLLMENT_VERSION).bytes(t.authority).text(t.route);
  w.bytes(t.code).uint(t.expiresAt);
  return `${TICKET_PREFIX}${Buffer.from(w.finish()).toString('base64url')}`;
}

export function decodeTicket(text: string): Ticket {
  const t = text.trim();
  if (!t.startsWith(TICKET_PREFIX) || t.length > 4 * LIMITS.history) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `not a keyhop ticket (it starts with ${TICKET_PREFIX})`);
  }
  const body = t.slice(TICKET_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw bad('ticket', 'not base64url');
  return readAll(Buffer.from(body, 'base64url'), 'ticket', (r) => {
    r.array(5, 5);
    version(r, 'ticket');
    return {
      authority: nonEmpty(r, LIMITS.history),
      route: r.text(LIMITS.route),
      code: exact(r, LIMITS.code, 'ticket code'),
      expiresAt: r.uint(),
    };
  });
}

// ---- requests to an authority node (over a secure channel) --------------------------------------

export type AuthorityRequest =
  /** Present a one-time code: become a member, get a credential. */
  | { readonly kind: 'enroll'; readonly code: Uint8Array }
  /** A member asks for a fresh credential (renewal). */
  | { readonly kind: 'credential' }
  /** The authority's current signed revocation list, unless `have` is its version already. */
  | { readonly kind: 'revocations'; readonly have: number };

export function encodeAuthorityRequest(m: AuthorityRequest): Uint8Array {
  const w = new CborWriter();
  if (m.kind === 'enroll') return w.array(3).uint(ENROLLMENT_VERSION).uint(0).bytes(m.code).finish();
  if (m.kind === 'credential') return w.array(2).uint(ENROLLMENT_VERSION).uint(1).finish();
  return w.array(3).uint(ENROLLMENT_VERSION).uint(2).uint(m.have).finish();
}

export function decodeAuthorityRequest(bytes: Uint8Array): AuthorityRequest {
  return readAll(bytes, 'authority request', (r) => {
    const n = r.array(3, 2);
    version(r, 'authority request');
    const kind = r.uint(255);
    if (kind === 0 && n === 3) return { kind: 'enroll', code: exact(r, LIMITS.code, 'code') };
    if (kind === 1 && n === 2) return { kind: 'credential' };
    if (kind === 2 && n === 3) return { kind: 'revocations', have: r.uint() };
    throw bad('authority request', `unknown kind ${kind} with ${n} items`);
  });
}

/** An authority's answer: a value (credential or revocation list bytes, or nothing new), or a refusal. */
export type AuthorityAnswer =
  | { readonly ok: true; readonly value: Uint8Array | null }
  | { readonly ok: false; readonly code: string; readonly message: string };

export function encodeAnswer(a: AuthorityAnswer): Uint8Array {
  const w = new CborWriter()
    .array(a.ok ? 3 : 4)
    .uint(ENROLLMENT_VERSION)
    .uint(a.ok ? 0 : 1);
  if (a.ok) {
    if (a.value === null) w.null();
    else w.bytes(a.value);
  } else w.text(a.code).text(a.message);
  return w.finish();
}

export function decodeAnswer(bytes: Uint8Array, maxValue = LIMITS.signedBody): AuthorityAnswer {
  return readAll(bytes, 'authority answer', (r) => {
    const n = r.array(4, 3);
    version(r, 'authority answer');
    const ok = r.uint(1) === 0;
    if (ok && n === 3) return { ok: true, value: r.nullValue() ? null : r.bytesValue(maxValue).slice() };
    if (!ok && n === 4) return { ok: false, code: r.text(LIMITS.errorCode), message: r.text(LIMITS.message) };
    throw bad('authority answer', `${n} items`);
  });
}

// ---- X3DH: the prekey bundle --------------------------------------------------------------------

/** The signed part of a prekey bundle (signed by the authority's latest primary key). */
export interface BundleCore {
  readonly authority: string;
  /** Encode(IK_B): the authority's X3DH identity key. */
  readonly ik: Uint8Array;
  readonly spkId: number;
  /** Encode(SPK_B). */
  readonly spk: Uint8Array;
  readonly createdAt: number;
  readonly expiresAt: number;
}

export function encodeBundleCore(b: BundleCore): Uint8Array {
  return new CborWriter()
    .array(7)
    .uint(ENROLLMENT_VERSION)
    .text(b.authority)
    .bytes(b.ik)
    .uint(b.spkId)
    .bytes(b.spk)
    .uint(b.createdAt)
    .uint(b.expiresAt)
    .finish();
}

export function decodeBundleCore(bytes: Uint8Array): BundleCore {
  return readAll(bytes, 'prekey bundle', (r) => {
    r.array(7, 7);
    version(r, 'prekey bundle');
    return {
      authority: identifier(r, 'prekey bundle'),
      ik: exact(r, ENCODED_KEY, 'IK_B'),
      spkId: r.uint(0xffff_ffff),
      spk: exact(r, ENCODED_KEY, 'SPK_B'),
      createdAt: r.uint(),
      expiresAt: r.uint(),
    };
  });
}

/** Bytes and a signature over their SHA-256 by an identity's latest primary key. */
export interface Signed {
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}

export function encodeSigned(s: Signed): Uint8Array {
  return new CborWriter().array(2).bytes(s.body).bytes(s.signature).finish();
}

export function decodeSigned(bytes: Uint8Array, what: string, maxBody = LIMITS.signedBody): Signed {
  return readAll(bytes, what, (r) => {
    r.array(2, 2);
    return { body: nonEmpty(r, maxBody), signature: exact(r, SIGNATURE_LENGTH, `${what} signature`) };
  });
}

export interface OneTimePrekey {
  readonly id: number;
  /** Encode(OPK_B). */
  readonly key: Uint8Array;
}

function writePrekey(w: CborWriter, p: OneTimePrekey): void {
  w.array(2).uint(p.id).bytes(p.key);
}

function readPrekey(r: CborReader): OneTimePrekey {
  r.array(2, 2);
  return { id: r.uint(0xffff_ffff), key: exact(r, ENCODED_KEY, 'OPK_B') };
}

/** What the authority hands a directory: the signed bundle and a batch of one-time prekeys. */
export interface Publication {
  readonly bundle: Uint8Array;
  readonly prekeys: readonly OneTimePrekey[];
  readonly publishedAt: number;
}

export function encodePublication(p: Publication): Uint8Array {
  const w = new CborWriter().array(4).uint(ENROLLMENT_VERSION).bytes(p.bundle).array(p.prekeys.length);
  for (const k of p.prekeys) writePrekey(w, k);
  return w.uint(p.publishedAt).finish();
}

export function decodePublication(bytes: Uint8Array): Publication {
  return readAll(bytes, 'publication', (r) => {
    r.array(4, 4);
    version(r, 'publication');
    const bundle = nonEmpty(r, 4096);
    const n = r.array(LIMITS.prekeysPerPublish);
    const prekeys: OneTimePrekey[] = [];
    for (let i = 0; i < n; i++) prekeys.push(readPrekey(r));
    return { bundle, prekeys, publishedAt: r.uint() };
  });
}

/** What a device gets from a directory: whom it is from, the signed bundle, maybe a one-time prekey. */
export interface FetchedBundle {
  readonly authority: Uint8Array;
  readonly bundle: Uint8Array;
  readonly prekey: OneTimePrekey | null;
}

export function encodeFetchedBundle(b: FetchedBundle): Uint8Array {
  const w = new CborWriter().array(4).uint(ENROLLMENT_VERSION).bytes(b.authority).bytes(b.bundle);
  if (b.prekey === null) w.null();
  else writePrekey(w, b.prekey);
  return w.finish();
}

export function decodeFetchedBundle(bytes: Uint8Array): FetchedBundle {
  return readAll(bytes, 'fetched bundle', (r) => {
    r.array(4, 4);
    version(r, 'fetched bundle');
    return {
      authority: nonEmpty(r, LIMITS.history),
      bundle: nonEmpty(r, 4096),
      prekey: r.nullValue() ? null : readPrekey(r),
    };
  });
}

// ---- X3DH: the enrollment request and its response ----------------------------------------------

export interface RequestHeader {
  readonly authority: string;
  /** Encode(IK_A), Encode(EK_A). */
  readonly ik: Uint8Array;
  readonly ek: Uint8Array;
  readonly spkId: number;
  readonly opkId: number | null;
}

export function encodeRequestHeader(h: RequestHeader): Uint8Array {
  const w = new CborWriter()
    .array(6)
    .uint(ENROLLMENT_VERSION)
    .text(h.authority)
    .bytes(h.ik)
    .bytes(h.ek)
    .uint(h.spkId);
  if (h.opkId === null) w.null();
  else w.uint(h.opkId);
  return w.finish();
}

export function decodeRequestHeader(bytes: Uint8Array): RequestHeader {
  return readAll(bytes, 'enrollment request header', (r) => {
    r.array(6, 6);
    version(r, 'enrollment request header');
    return {
      authority: identifier(r, 'enrollment request header'),
      ik: exact(r, ENCODED_KEY, 'IK_A'),
      ek: exact(r, ENCODED_KEY, 'EK_A'),
      spkId: r.uint(0xffff_ffff),
      opkId: r.nullValue() ? null : r.uint(0xffff_ffff),
    };
  });
}

/** The request as it travels: the header in clear (Bob needs it to find his keys), the rest sealed. */
export interface SealedRequest {
  readonly header: Uint8Array;
  readonly ciphertext: Uint8Array;
}

export function encodeSealedRequest(s: SealedRequest): Uint8Array {
  return new CborWriter().array(3).uint(ENROLLMENT_VERSION).bytes(s.header).bytes(s.ciphertext).finish();
}

export function decodeSealedRequest(bytes: Uint8Array): SealedRequest {
  if (bytes.length > LIMITS.request) {
    throw new KeyhopError(ErrorCodes.DECODE_LIMIT, `enrollment request of ${bytes.length} bytes`);
  }
  return readAll(bytes, 'enrollment request', (r) => {
    r.array(3, 3);
    version(r, 'enrollment request');
    return { header: nonEmpty(r, 512), ciphertext: nonEmpty(r, LIMITS.request) };
  });
}

/** The sealed part: who the device is, its proof, its token and what it asks for. */
export interface RequestBody {
  readonly changeHistory: Uint8Array;
  /** The device's latest primary key's signature over SHA-256(proof label ‖ header bytes). */
  readonly proof: Uint8Array;
  readonly token: Uint8Array | null;
  readonly attributes: Readonly<Record<string, string>>;
}

export function encodeRequestBody(b: RequestBody): Uint8Array {
  const w = new CborWriter().array(4).bytes(b.changeHistory).bytes(b.proof);
  if (b.token === null) w.null();
  else w.bytes(b.token);
  writeAttributes(w, b.attributes);
  return w.finish();
}

export function decodeRequestBody(bytes: Uint8Array): RequestBody {
  return readAll(bytes, 'enrollment request body', (r) => {
    r.array(4, 4);
    return {
      changeHistory: nonEmpty(r, LIMITS.history),
      proof: exact(r, SIGNATURE_LENGTH, 'proof'),
      token: r.nullValue() ? null : exact(r, LIMITS.code, 'token'),
      attributes: attributesOf(r),
    };
  });
}

export interface SealedResponse {
  readonly requestId: Uint8Array;
  readonly ciphertext: Uint8Array;
}

export function encodeSealedResponse(s: SealedResponse): Uint8Array {
  return new CborWriter().array(3).uint(ENROLLMENT_VERSION).bytes(s.requestId).bytes(s.ciphertext).finish();
}

export function decodeSealedResponse(bytes: Uint8Array): SealedResponse {
  if (bytes.length > LIMITS.response) {
    throw new KeyhopError(ErrorCodes.DECODE_LIMIT, `enrollment response of ${bytes.length} bytes`);
  }
  return readAll(bytes, 'enrollment response', (r) => {
    r.array(3, 3);
    version(r, 'enrollment response');
    return { requestId: exact(r, LIMITS.requestId, 'request id'), ciphertext: nonEmpty(r, LIMITS.response) };
  });
}

// ---- directory service ---------------------------------------------------------------------------

export type DirectoryRequest =
  | { readonly op: 'publish'; readonly authority: Uint8Array; readonly publication: Signed }
  | { readonly op: 'fetch'; readonly authority: string }
  | { readonly op: 'deposit'; readonly request: Uint8Array }
  | { readonly op: 'collect'; readonly authority: string; readonly max: number }
  | { readonly op: 'ack'; readonly authority: string; readonly acknowledgement: Signed }
  | { readonly op: 'reply'; readonly response: Uint8Array }
  | { readonly op: 'poll'; readonly requestId: Uint8Array }
  | { readonly op: 'put-revocations'; readonly authority: Uint8Array; readonly list: Uint8Array }
  | { readonly op: 'get-revocations'; readonly authority: string; readonly have: number };

const OPS = [
  'publish',
  'fetch',
  'deposit',
  'collect',
  'ack',
  'reply',
  'poll',
  'put-revocations',
  'get-revocations',
] as const;

export function encodeDirectoryRequest(m: DirectoryRequest): Uint8Array {
  const w = new CborWriter();
  const head = (n: number) => w.array(n).uint(ENROLLMENT_VERSION).uint(OPS.indexOf(m.op));
  switch (m.op) {
    case 'publish':
      head(4).bytes(m.authority).bytes(encodeSigned(m.publication));
      break;
    case 'fetch':
      head(3).text(m.authority);
      break;
    case 'deposit':
      head(3).bytes(m.request);
      break;
    case 'collect':
      head(4).text(m.authority).uint(m.max);
      break;
    case 'ack':
      head(4).text(m.authority).bytes(encodeSigned(m.acknowledgement));
      break;
    case 'reply':
      head(3).bytes(m.response);
      break;
    case 'poll':
      head(3).bytes(m.requestId);
      break;
    case 'put-revocations':
      head(4).bytes(m.authority).bytes(m.list);
      break;
    case 'get-revocations':
      head(4).text(m.authority).uint(m.have);
      break;
  }
  return w.finish();
}

export function decodeDirectoryRequest(bytes: Uint8Array): DirectoryRequest {
  return readAll(bytes, 'directory request', (r) => {
    const n = r.array(4, 3);
    version(r, 'directory request');
    const op = OPS[r.uint(255)];
    const size = (want: number) => {
      if (n !== want) throw bad('directory request', `${op} with ${n} items`);
    };
    switch (op) {
      case 'publish':
        size(4);
        return {
          op,
          authority: nonEmpty(r, LIMITS.history),
          publication: decodeSigned(r.bytesValue(LIMITS.signedBody), 'publication'),
        };
      case 'fetch':
        size(3);
        return { op, authority: identifier(r, 'fetch') };
      case 'deposit':
        size(3);
        return { op, request: nonEmpty(r, LIMITS.request) };
      case 'collect':
        size(4);
        return { op, authority: identifier(r, 'collect'), max: r.uint(LIMITS.batch) };
      case 'ack':
        size(4);
        return {
          op,
          authority: identifier(r, 'ack'),
          acknowledgement: decodeSigned(r.bytesValue(64 * 1024), 'ack'),
        };
      case 'reply':
        size(3);
        return { op, response: nonEmpty(r, LIMITS.response) };
      case 'poll':
        size(3);
        return { op, requestId: exact(r, LIMITS.requestId, 'request id') };
      case 'put-revocations':
        size(4);
        return { op, authority: nonEmpty(r, LIMITS.history), list: nonEmpty(r, LIMITS.signedBody) };
      case 'get-revocations':
        size(4);
        return { op, authority: identifier(r, 'get-revocations'), have: r.uint() };
      default:
        throw bad('directory request', 'unknown operation');
    }
  });
}

/** An acknowledgement the authority signs: these requests were handled, the directory may forget them. */
export function encodeAckBody(requestIds: readonly Uint8Array[], at: number): Uint8Array {
  const w = new CborWriter().array(3).uint(ENROLLMENT_VERSION).array(requestIds.length);
  for (const id of requestIds) w.bytes(id);
  return w.uint(at).finish();
}

export function decodeAckBody(bytes: Uint8Array): { requestIds: Uint8Array[]; at: number } {
  return readAll(bytes, 'acknowledgement', (r) => {
    r.array(3, 3);
    version(r, 'acknowledgement');
    const n = r.array(LIMITS.batch);
    const requestIds: Uint8Array[] = [];
    for (let i = 0; i < n; i++) requestIds.push(exact(r, LIMITS.requestId, 'request id'));
    return { requestIds, at: r.uint() };
  });
}

/** A list of byte strings (the values of collect and poll answers). */
export function encodeBytesList(items: readonly Uint8Array[]): Uint8Array {
  const w = new CborWriter().array(items.length);
  for (const i of items) w.bytes(i);
  return w.finish();
}

export function decodeBytesList(
  bytes: Uint8Array,
  maxItems: number,
  maxItem: number,
  what: string,
): Uint8Array[] {
  return readAll(bytes, what, (r) => {
    const n = r.array(maxItems);
    const out: Uint8Array[] = [];
    for (let i = 0; i < n; i++) out.push(r.bytesValue(maxItem).slice());
    return out;
  });
}

// ---- revocation lists ------------------------------------------------------------------------------

export interface RevocationList {
  readonly authority: string;
  /** Grows by one with every change; a verifier never goes back to a lower one. */
  readonly version: number;
  readonly issuedAt: number;
  /** After this time the list is stale: verifiers refuse credentials of this authority until a newer one comes. */
  readonly nextUpdate: number;
  /** Identities whose every credential is refused, and whose channels are closed. */
  readonly identifiers: readonly { readonly identifier: string; readonly at: number }[];
  /** Single credentials (hex SHA-256 of their data) refused. */
  readonly credentials: readonly { readonly id: string; readonly at: number }[];
  /** Identities that rotated their key: change histories shorter than `changes` are refused. */
  readonly rotations: readonly { readonly identifier: string; readonly changes: number }[];
}

export function encodeRevocationList(l: RevocationList): Uint8Array {
  const w = new CborWriter()
    .array(8)
    .uint(ENROLLMENT_VERSION)
    .text(l.authority)
    .uint(l.version)
    .uint(l.issuedAt)
    .uint(l.nextUpdate);
  w.array(l.identifiers.length);
  for (const e of l.identifiers) w.array(2).text(e.identifier).uint(e.at);
  w.array(l.credentials.length);
  for (const e of l.credentials) w.array(2).bytes(Buffer.from(e.id, 'hex')).uint(e.at);
  w.array(l.rotations.length);
  for (const e of l.rotations) w.array(2).text(e.identifier).uint(e.changes);
  return w.finish();
}

export function decodeRevocationList(bytes: Uint8Array): RevocationList {
  return readAll(bytes, 'revocation list', (r) => {
    r.array(8, 8);
    version(r, 'revocation list');
    const authority = identifier(r, 'revocation list');
    const v = r.uint();
    const issuedAt = r.uint();
    const nextUpdate = r.uint();
    const identifiers: { identifier: string; at: number }[] = [];
    for (let i = r.array(LIMITS.revokedEntries); i > 0; i--) {
      r.array(2, 2);
      identifiers.push({ identifier: identifier(r, 'revoked identity'), at: r.uint() });
    }
    const credentials: { id: string; at: number }[] = [];
    for (let i = r.array(LIMITS.revokedEntries); i > 0; i--) {
      r.array(2, 2);
      credentials.push({
        id: Buffer.from(exact(r, IDENTIFIER_LENGTH, 'credential id')).toString('hex'),
        at: r.uint(),
      });
    }
    const rotations: { identifier: string; changes: number }[] = [];
    for (let i = r.array(LIMITS.revokedEntries); i > 0; i--) {
      r.array(2, 2);
      rotations.push({ identifier: identifier(r, 'rotated identity'), changes: r.uint(64) });
    }
    return { authority, version: v, issuedAt, nextUpdate, identifiers, credentials, rotations };
  });
}
