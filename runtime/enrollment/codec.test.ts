import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../test/support/property-runs.js';
import { isKeyhopError } from '../errors.js';
import {
  type DirectoryRequest,
  decodeAckBody,
  decodeAnswer,
  decodeAuthorityRequest,
  decodeBundleCore,
  decodeBytesList,
  decodeDirectoryRequest,
  decodeFetchedBundle,
  decodePublication,
  decodeRequestBody,
  decodeRequestHeader,
  decodeRevocationList,
  decodeSealedRequest,
  decodeSealedResponse,
  decodeSigned,
  decodeTicket,
  encodeAckBody,
  encodeAnswer,
  encodeAuthorityRequest,
  encodeBundleCore,
  encodeBytesList,
  encodeDirectoryRequest,
  encodeFetchedBundle,
  encodePublication,
  encodeRequestBody,
  encodeRequestHeader,
  encodeRevocationList,
  encodeSealedRequest,
  encodeSealedResponse,
  encodeSigned,
  encodeTicket,
  TICKET_PREFIX,
} from './codec.js';

const id = `I${'ab'.repeat(32)}`;
const key = (b: number) => Uint8Array.from([5, ...new Array(32).fill(b)]);
const bytes = (n: number, b = 7) => new Uint8Array(n).fill(b);
const sig = bytes(64, 9);

const decoders: [string, (b: Uint8Array) => unknown][] = [
  ['authority request', decodeAuthorityRequest],
  ['answer', (b) => decodeAnswer(b)],
  ['bundle core', decodeBundleCore],
  ['signed', (b) => decodeSigned(b, 'x')],
  ['publication', decodePublication],
  ['fetched bundle', decodeFetchedBundle],
  ['request header', decodeRequestHeader],
  ['sealed request', decodeSealedRequest],
  ['request body', decodeRequestBody],
  ['sealed response', decodeSealedResponse],
  ['directory request', decodeDirectoryRequest],
  ['ack body', decodeAckBody],
  ['bytes list', (b) => decodeBytesList(b, 10, 100, 'x')],
  ['revocation list', decodeRevocationList],
  ['ticket', (b) => decodeTicket(TICKET_PREFIX + Buffer.from(b).toString('base64url'))],
];

describe('enrollment codecs', () => {
  it('round-trip every message', () => {
    const ticket = {
      authority: bytes(130),
      route: '1#ca.example:4000 => api',
      code: bytes(32, 1),
      expiresAt: 1_900_000_000,
    };
    expect(decodeTicket(encodeTicket(ticket))).toEqual(ticket);
    for (const m of [
      { kind: 'enroll', code: bytes(32) },
      { kind: 'credential' },
      { kind: 'revocations', have: 7 },
    ] as const) {
      expect(decodeAuthorityRequest(encodeAuthorityRequest(m))).toEqual(m);
    }
    for (const a of [
      { ok: true, value: bytes(300) },
      { ok: true, value: null },
      { ok: false, code: 'TRUST_REFUSED', message: 'no' },
    ] as const) {
      expect(decodeAnswer(encodeAnswer(a))).toEqual(a);
    }
    const core = { authority: id, ik: key(1), spkId: 3, spk: key(2), createdAt: 10, expiresAt: 20 };
    expect(decodeBundleCore(encodeBundleCore(core))).toEqual(core);
    const signed = { body: encodeBundleCore(core), signature: sig };
    expect(decodeSigned(encodeSigned(signed), 'x')).toEqual(signed);
    const publication = {
      bundle: encodeSigned(signed),
      prekeys: [
        { id: 1, key: key(3) },
        { id: 2, key: key(4) },
      ],
      publishedAt: 11,
    };
    expect(decodePublication(encodePublication(publication))).toEqual(publication);
    for (const prekey of [null, { id: 9, key: key(5) }]) {
      const f = { authority: bytes(128), bundle: publication.bundle, prekey };
      expect(decodeFetchedBundle(encodeFetchedBundle(f))).toEqual(f);
    }
    for (const opkId of [null, 4]) {
      const h = { authority: id, ik: key(6), ek: key(7), spkId: 3, opkId };
      expect(decodeRequestHeader(encodeRequestHeader(h))).toEqual(h);
    }
    const sealed = { header: bytes(100), ciphertext: bytes(500) };
    expect(decodeSealedRequest(encodeSealedRequest(sealed))).toEqual(sealed);
    for (const token of [null, bytes(32, 2)]) {
      const body = {
        changeHistory: bytes(128),
        proof: sig,
        token,
        attributes: { role: 'device', fleet: 'f1' },
      };
      expect(decodeRequestBody(encodeRequestBody(body))).toEqual(body);
    }
    const response = { requestId: bytes(32, 3), ciphertext: bytes(400) };
    expect(decodeSealedResponse(encodeSealedResponse(response))).toEqual(response);
    const requests: DirectoryRequest[] = [
      { op: 'publish', authority: bytes(128), publication: { body: bytes(200), signature: sig } },
      { op: 'fetch', authority: id },
      { op: 'deposit', request: bytes(600) },
      { op: 'collect', authority: id, max: 100 },
      { op: 'ack', authority: id, acknowledgement: { body: bytes(70), signature: sig } },
      { op: 'reply', response: bytes(300) },
      { op: 'poll', requestId: bytes(32) },
      { op: 'put-revocations', authority: bytes(128), list: bytes(90) },
      { op: 'get-revocations', authority: id, have: 3 },
    ];
    for (const m of requests) expect(decodeDirectoryRequest(encodeDirectoryRequest(m))).toEqual(m);
    const ack = { requestIds: [bytes(32, 1), bytes(32, 2)], at: 5 };
    expect(decodeAckBody(encodeAckBody(ack.requestIds, ack.at))).toEqual(ack);
    expect(decodeBytesList(encodeBytesList([bytes(3), bytes(4)]), 10, 10, 'x')).toEqual([bytes(3), bytes(4)]);
    const list = {
      authority: id,
      version: 4,
      issuedAt: 100,
      nextUpdate: 200,
      identifiers: [{ identifier: `I${'cd'.repeat(32)}`, at: 50 }],
      credentials: [{ id: 'ef'.repeat(32), at: 60 }],
      rotations: [{ identifier: `I${'01'.repeat(32)}`, changes: 2 }],
    };
    expect(decodeRevocationList(encodeRevocationList(list))).toEqual(list);
  });

  it('refuses what is not theirs with typed errors: other versions, bad identifiers, short keys, trailing bytes', () => {
    expect(() => decodeTicket('keyhop-ticket:!!')).toThrow(/not base64url/);
    expect(() => decodeTicket('hello')).toThrow(/not a keyhop ticket/);
    const core = encodeBundleCore({
      authority: id,
      ik: key(1),
      spkId: 3,
      spk: key(2),
      createdAt: 1,
      expiresAt: 2,
    });
    const v2 = core.slice();
    v2[1] = 2; // version
    expect(() => decodeBundleCore(v2)).toThrow(expect.objectContaining({ code: 'DECODE_VERSION' }));
    expect(() => decodeBundleCore(Uint8Array.from([...core, 0]))).toThrow(/trailing bytes/);
    expect(() =>
      decodeBundleCore(
        encodeBundleCore({
          authority: 'Inothex',
          ik: key(1),
          spkId: 3,
          spk: key(2),
          createdAt: 1,
          expiresAt: 2,
        }),
      ),
    ).toThrow(/is not an identifier/);
    expect(() =>
      decodeRequestHeader(
        encodeRequestHeader({ authority: id, ik: bytes(32), ek: key(1), spkId: 1, opkId: null }),
      ),
    ).toThrow(/IK_A/);
  });

  it.each(decoders)(
    '%s: random bytes decode or fail with a KeyhopError, never anything else',
    (_n, decode) => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
          try {
            decode(b);
          } catch (e) {
            if (!isKeyhopError(e)) throw e;
          }
        }),
        { numRuns: propertyRuns(400) },
      );
    },
  );

  it.each(decoders)(
    '%s: every mutation of a valid message decodes or fails with a KeyhopError',
    (_n, decode) => {
      const valid = encodeDirectoryRequest({
        op: 'publish',
        authority: bytes(40),
        publication: { body: bytes(30), signature: sig },
      });
      fc.assert(
        fc.property(fc.nat(valid.length - 1), fc.nat(255), (i, v) => {
          const m = valid.slice();
          m[i] = v;
          try {
            decode(m);
          } catch (e) {
            if (!isKeyhopError(e)) throw e;
          }
        }),
        { numRuns: propertyRuns(200) },
      );
    },
  );
});
