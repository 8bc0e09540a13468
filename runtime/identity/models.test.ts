import { readFileSync } from 'node:fs';
import { encode } from 'cborg';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../test/support/bytes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { CborWriter } from './cbor-writer.js';
import { Identifier } from './identifier.js';
import {
  type Attributes,
  attributesAsText,
  type Change,
  type ChangeData,
  type CredentialAndPurposeKey,
  type CredentialData,
  DataType,
  decodeChangeData,
  decodeChangeHistory,
  decodeCredential,
  decodeCredentialAndPurposeKey,
  decodeCredentialData,
  decodePurposeKeyAttestation,
  decodePurposeKeyAttestationData,
  decodeVersionedData,
  encodeChangeData,
  encodeChangeHistory,
  encodeCredential,
  encodeCredentialAndPurposeKey,
  encodeCredentialData,
  encodePurposeKeyAttestation,
  encodePurposeKeyAttestationData,
  encodeVersionedData,
  MAX_ATTRIBUTES,
  MAX_CHANGE_DATA_BYTES,
  MAX_CHANGES,
  makeAttributes,
  makeBinaryAttributes,
  openChangeData,
  openCredentialData,
  openPurposeKeyAttestationData,
  type PurposeKeyAttestationData,
  type Signature,
} from './models.js';
import { splitRefreshCredentials } from './test-vectors.js';

interface IdentityVector {
  change_history: string;
  expected_identifier: string;
  decoded: {
    change_count: number;
    changes: {
      data: string;
      versioned_data: { version: number; data_type: number; data: string };
      change_data: {
        previous_change: null;
        primary_public_key: { variant: number; public_key: string };
        revoke_all_purpose_keys: boolean;
        attestations_valid_from: number;
        attestations_valid_until: number;
      };
      signature: { variant: number; signature: string };
      previous_signature: null;
    }[];
  };
}

const vector = (
  JSON.parse(readFileSync(new URL('../../test/vectors/ockam/identity.json', import.meta.url), 'utf8')) as {
    vectors: IdentityVector[];
  }
).vectors[0]!;

// ---- Arbitraries --------------------------------------------------------------------------------

const bytesOf = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const timestamp = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 32 + 5 }),
  fc.constantFrom(0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
);
const signingKey = fc.oneof(
  bytesOf(32).map((bytes) => ({ type: 'Ed25519' as const, bytes })),
  bytesOf(64).map((b) => ({ type: 'P256' as const, bytes: Uint8Array.of(4, ...b) })),
);
const signature: fc.Arbitrary<Signature> = fc.record({
  type: fc.constantFrom('Ed25519' as const, 'P256' as const),
  bytes: bytesOf(64),
});
const changeData: fc.Arbitrary<ChangeData> = fc.record({
  previousChange: fc.option(bytesOf(32), { nil: null }),
  primaryPublicKey: signingKey,
  revokeAllPurposeKeys: fc.boolean(),
  attestationsValidFrom: timestamp,
  attestationsValidUntil: timestamp,
});
const identifier = bytesOf(32).map((b) => Identifier.fromBytes(b));
const attestationData: fc.Arbitrary<PurposeKeyAttestationData> = fc.record({
  subject: identifier,
  subjectLatestChangeHash: bytesOf(32),
  publicKey: fc.oneof(
    bytesOf(32).map((x25519) => ({ purpose: 'SecureChannelStatic' as const, x25519 })),
    signingKey.map((publicKey) => ({ purpose: 'CredentialSigning' as const, publicKey })),
  ),
  createdAt: timestamp,
  expiresAt: timestamp,
});
const attributes: fc.Arbitrary<Attributes> = fc
  .tuple(
    fc.oneof(fc.constant(0), timestamp),
    fc.uniqueArray(
      fc.record({ key: fc.uint8Array({ maxLength: 40 }), value: fc.uint8Array({ maxLength: 60 }) }),
      {
        maxLength: 10,
        selector: (e) => hex(e.key),
      },
    ),
  )
  .map(([schema, entries]) => makeBinaryAttributes(entries, schema));
const credentialData: fc.Arbitrary<CredentialData> = fc.record({
  subject: fc.option(identifier, { nil: null }),
  subjectLatestChangeHash: fc.option(bytesOf(32), { nil: null }),
  attributes,
  createdAt: timestamp,
  expiresAt: timestamp,
});
const change: fc.Arbitrary<Change> = fc
  .tuple(fc.uint8Array({ maxLength: 300 }), signature, fc.option(signature, { nil: undefined }))
  .map(([data, sig, prev]) =>
    prev ? { data, signature: sig, previousSignature: prev } : { data, signature: sig },
  );

/** Decodes or throws a KeyhopError with a DECODE_* code, nothing else. */
function decodesOrRejects(decode: (b: Uint8Array) => unknown, b: Uint8Array): void {
  try {
    decode(b);
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    expect((e as KeyhopError).code).toMatch(/^DECODE_/);
  }
}

// ---- Tests --------------------------------------------------------------------------------------

describe('identity.json vector: CBOR layout', () => {
  it('decodes the change history into the documented fields', () => {
    const changes = decodeChangeHistory(unhex(vector.change_history));
    expect(changes).toHaveLength(vector.decoded.change_count);
    const c = changes[0]!;
    const expected = vector.decoded.changes[0]!;
    expect(hex(c.data)).toBe(expected.data);
    expect(c.previousSignature).toBeUndefined();
    expect(c.signature.type).toBe('Ed25519');
    expect(hex(c.signature.bytes)).toBe(expected.signature.signature);

    const inner = decodeVersionedData(c.data, DataType.ChangeData, MAX_CHANGE_DATA_BYTES);
    expect(hex(inner)).toBe(expected.versioned_data.data);
    const d = openChangeData(c.data);
    expect(d.previousChange).toBeNull();
    expect(d.primaryPublicKey.type).toBe('Ed25519');
    expect(hex(d.primaryPublicKey.bytes)).toBe(expected.change_data.primary_public_key.public_key);
    expect(d.revokeAllPurposeKeys).toBe(expected.change_data.revoke_all_purpose_keys);
    expect(d.attestationsValidFrom).toBe(expected.change_data.attestations_valid_from);
    expect(d.attestationsValidUntil).toBe(expected.change_data.attestations_valid_until);
  });

  it('re-encodes byte for byte', () => {
    const changes = decodeChangeHistory(unhex(vector.change_history));
    expect(hex(encodeChangeHistory(changes))).toBe(vector.change_history);
    const c = vector.decoded.changes[0]!;
    const d = decodeChangeData(unhex(c.versioned_data.data));
    expect(hex(encodeChangeData(d))).toBe(c.versioned_data.data);
    expect(hex(encodeVersionedData({ version: 1, dataType: 1, data: unhex(c.versioned_data.data) }))).toBe(
      c.data,
    );
  });

  it('matches what cborg encodes for the same values', () => {
    const d = decodeChangeData(unhex(vector.decoded.changes[0]!.versioned_data.data));
    const viaCborg = encode([
      null,
      [0, [d.primaryPublicKey.bytes]],
      d.revokeAllPurposeKeys,
      d.attestationsValidFrom,
      d.attestationsValidUntil,
    ]);
    expect(hex(encodeChangeData(d))).toBe(hex(viaCborg));
  });
});

describe('Ockam RefreshCredentials vector (Elixir messages_test.exs, encoded by Rust)', () => {
  const parts = splitRefreshCredentials();

  it('decodes the credential and the issuer attestation', () => {
    const cpk = decodeCredentialAndPurposeKey(parts.credentialAndPurposeKey);
    expect(hex(encodeCredentialAndPurposeKey(cpk))).toBe(hex(parts.credentialAndPurposeKey));

    const cred = openCredentialData(cpk.credential.data);
    expect(cred.subject?.toString()).toBe(
      'I904192e6e480915e0d1256d3abf9c3c9c67bc2b4c41ffca77550d8a3f12fbb1e',
    );
    expect(hex(cred.subjectLatestChangeHash!)).toBe(cred.subject!.toString().slice(1));
    expect(cred.attributes.schema).toBe(1);
    expect(Object.fromEntries(attributesAsText(cred.attributes))).toEqual({
      'ockam-relay': '*',
      'ockam-role': 'enroller',
      project_id: '767d461c-9851-4c0b-bfc6-6d3334b5bcc2',
      trust_context_id: '767d461c-9851-4c0b-bfc6-6d3334b5bcc2',
    });
    expect(cred.expiresAt - cred.createdAt).toBe(30);
    expect(cpk.credential.signature.type).toBe('Ed25519');

    const att = openPurposeKeyAttestationData(cpk.purposeKeyAttestation.data);
    expect(att.subject.toString()).toBe('Ib1fea1775d75079abdb1e78b96921fa9ec340bc2b5aa70f37e65342d859cf550');
    expect(att.publicKey.purpose).toBe('CredentialSigning');
    expect(att.expiresAt - att.createdAt).toBe(1825 * 24 * 3600);
  });

  it('re-encodes the credential data byte for byte (attribute keys in byte order, not length-first)', () => {
    const cpk = decodeCredentialAndPurposeKey(parts.credentialAndPurposeKey);
    const data = decodeVersionedData(cpk.credential.data, DataType.CredentialData, 1 << 14);
    const d = decodeCredentialData(data);
    expect(hex(encodeCredentialData(d))).toBe(hex(data));
    const keys = d.attributes.entries.map((e) => new TextDecoder().decode(e.key));
    expect(keys).toEqual(['ockam-relay', 'ockam-role', 'project_id', 'trust_context_id']);
    const att = decodeVersionedData(cpk.purposeKeyAttestation.data, DataType.PurposeKeyAttestationData, 512);
    expect(hex(encodePurposeKeyAttestationData(decodePurposeKeyAttestationData(att)))).toBe(hex(att));
  });

  it('decodes the embedded change history', () => {
    const changes = decodeChangeHistory(parts.changeHistory);
    expect(changes).toHaveLength(1);
    expect(hex(encodeChangeHistory(changes))).toBe(hex(parts.changeHistory));
  });
});

describe('round trips', () => {
  it('ChangeData', () => {
    fc.assert(
      fc.property(changeData, (d) => {
        const b = encodeChangeData(d);
        expect(decodeChangeData(b)).toEqual(d);
        expect(openChangeData(encodeVersionedData({ version: 1, dataType: 1, data: b }))).toEqual(d);
      }),
    );
  });

  it('ChangeHistory', () => {
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 5 }), (changes) => {
        const b = encodeChangeHistory(changes);
        expect(decodeChangeHistory(b)).toEqual(changes);
      }),
    );
  });

  it('PurposeKeyAttestation and its data', () => {
    fc.assert(
      fc.property(attestationData, signature, (d, sig) => {
        const b = encodePurposeKeyAttestationData(d);
        expect(decodePurposeKeyAttestationData(b)).toEqual(d);
        const a = { data: encodeVersionedData({ version: 1, dataType: 2, data: b }), signature: sig };
        expect(decodePurposeKeyAttestation(encodePurposeKeyAttestation(a))).toEqual(a);
        expect(openPurposeKeyAttestationData(a.data)).toEqual(d);
      }),
    );
  });

  it('Credential, its data and CredentialAndPurposeKey', () => {
    fc.assert(
      fc.property(credentialData, signature, signature, (d, s1, s2) => {
        const b = encodeCredentialData(d);
        expect(decodeCredentialData(b)).toEqual(d);
        const credential = { data: encodeVersionedData({ version: 1, dataType: 3, data: b }), signature: s1 };
        expect(decodeCredential(encodeCredential(credential))).toEqual(credential);
        const cpk: CredentialAndPurposeKey = {
          credential,
          purposeKeyAttestation: { data: Uint8Array.of(1, 2, 3), signature: s2 },
        };
        expect(decodeCredentialAndPurposeKey(encodeCredentialAndPurposeKey(cpk))).toEqual(cpk);
        expect(openCredentialData(credential.data)).toEqual(d);
      }),
    );
  });

  it('CborWriter matches cborg for integers of every width', () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 0, max: 2 ** 32 + 10 }), fc.maxSafeNat()), (n) => {
        expect(hex(new CborWriter().uint(n).finish())).toBe(hex(encode(n)));
      }),
    );
    for (const n of [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      expect(hex(new CborWriter().uint(n).finish())).toBe(hex(encode(n)));
    }
  });
});

describe('strict decoding', () => {
  const history = unhex(vector.change_history);

  it('random bytes decode or fail with a KeyhopError', () => {
    const decoders = [
      decodeChangeHistory,
      decodeChangeData,
      decodePurposeKeyAttestation,
      decodePurposeKeyAttestationData,
      decodeCredential,
      decodeCredentialData,
      decodeCredentialAndPurposeKey,
      openChangeData,
      openPurposeKeyAttestationData,
      openCredentialData,
    ];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        for (const d of decoders) decodesOrRejects(d, b);
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('mutated valid encodings decode or fail with a KeyhopError', () => {
    const cpk = splitRefreshCredentials().credentialAndPurposeKey;
    const samples: [Uint8Array, (b: Uint8Array) => unknown][] = [
      [history, decodeChangeHistory],
      [cpk, decodeCredentialAndPurposeKey],
      [cpk, (b) => openCredentialData(decodeCredentialAndPurposeKey(b).credential.data)],
    ];
    fc.assert(
      fc.property(fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 2 }), (at, value, which) => {
        const [sample, decode] = samples[which]!;
        const b = sample.slice();
        b[at % b.length] = value;
        decodesOrRejects(decode, b);
        decodesOrRejects(decode, b.subarray(0, at % b.length));
      }),
      { numRuns: propertyRuns(1000) },
    );
  });

  it('rejects truncation and trailing bytes', () => {
    expect(codeOf(() => decodeChangeHistory(history.subarray(0, history.length - 1)))).toBe(
      ErrorCodes.DECODE_TRUNCATED,
    );
    expect(codeOf(() => decodeChangeHistory(Uint8Array.of(...history, 0)))).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('rejects an empty history and more than MAX_CHANGES changes', () => {
    expect(codeOf(() => decodeChangeHistory(Uint8Array.of(0x80)))).toBe(ErrorCodes.DECODE_INVALID);
    const one = history.subarray(1);
    const many = new Uint8Array(3 + one.length * (MAX_CHANGES + 1));
    many.set([0x98, MAX_CHANGES + 1]);
    expect(codeOf(() => decodeChangeHistory(many))).toBe(ErrorCodes.DECODE_LIMIT);
    const max = new CborWriter().array(MAX_CHANGES);
    for (let i = 0; i < MAX_CHANGES; i++) max.raw(one);
    expect(decodeChangeHistory(max.finish())).toHaveLength(MAX_CHANGES);
  });

  it('rejects non-shortest integers and indefinite lengths', () => {
    const d = vector.decoded.changes[0]!.versioned_data.data;
    // attestations_valid_until 1a7818eee9 re-encoded as a 64-bit integer.
    const long = d.replace(/1a7818eee9$/, '1b000000007818eee9');
    expect(codeOf(() => decodeChangeData(unhex(long)))).toBe(ErrorCodes.DECODE_INVALID);
    const indefinite = `9f${d.slice(2)}ff`;
    expect(codeOf(() => decodeChangeData(unhex(indefinite)))).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('rejects wrong key, hash and signature sizes', () => {
    const d = vector.decoded.changes[0]!.versioned_data.data;
    // A 31-byte Ed25519 key.
    const k = new CborWriter().array(5).null().array(2).uint(0).array(1).bytes(new Uint8Array(31));
    k.bool(false).uint(1).uint(2);
    expect(codeOf(() => decodeChangeData(k.finish()))).toBe(ErrorCodes.DECODE_INVALID);
    // A 31-byte previous_change.
    const w = new CborWriter().array(5).bytes(new Uint8Array(31)).raw(unhex(d).subarray(2));
    expect(codeOf(() => decodeChangeData(w.finish()))).toBe(ErrorCodes.DECODE_INVALID);
    // P-256 key without the 04 prefix.
    const p = new CborWriter().array(5).null().array(2).uint(1).array(1).bytes(new Uint8Array(65));
    p.bool(false).uint(1).uint(2);
    expect(codeOf(() => decodeChangeData(p.finish()))).toBe(ErrorCodes.DECODE_INVALID);
    // Unknown key variant.
    const v = new CborWriter().array(5).null().array(2).uint(2).array(1).bytes(new Uint8Array(32));
    v.bool(false).uint(1).uint(2);
    expect(codeOf(() => decodeChangeData(v.finish()))).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('checks VersionedData version and data_type', () => {
    const inner = unhex(vector.decoded.changes[0]!.versioned_data.data);
    expect(codeOf(() => openChangeData(encodeVersionedData({ version: 2, dataType: 1, data: inner })))).toBe(
      ErrorCodes.DECODE_VERSION,
    );
    expect(codeOf(() => openChangeData(encodeVersionedData({ version: 1, dataType: 3, data: inner })))).toBe(
      ErrorCodes.DECODE_INVALID,
    );
    expect(codeOf(() => openChangeData(new Uint8Array(MAX_CHANGE_DATA_BYTES + 1)))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
  });

  it('accepts an explicit null previous_signature (minicbor reads it as None)', () => {
    const c = decodeChangeHistory(history)[0]!;
    const w = new CborWriter()
      .array(1)
      .array(3)
      .bytes(c.data)
      .raw(history.subarray(history.length - 69))
      .null();
    const back = decodeChangeHistory(w.finish());
    expect(back[0]!.previousSignature).toBeUndefined();
  });

  it('requires attribute keys unique and in byte order', () => {
    const enc = (pairs: [string, string][]) => {
      const w = new CborWriter().array(5).null().null().array(2).uint(0).map(pairs.length);
      for (const [k, v] of pairs) w.bytes(new TextEncoder().encode(k)).bytes(new TextEncoder().encode(v));
      return w.uint(1).uint(2).finish();
    };
    expect(
      decodeCredentialData(
        enc([
          ['a', '1'],
          ['ab', '2'],
          ['b', '3'],
        ]),
      ).attributes.entries,
    ).toHaveLength(3);
    expect(
      codeOf(() =>
        decodeCredentialData(
          enc([
            ['b', '1'],
            ['a', '2'],
          ]),
        ),
      ),
    ).toBe(ErrorCodes.DECODE_INVALID);
    expect(
      codeOf(() =>
        decodeCredentialData(
          enc([
            ['a', '1'],
            ['a', '2'],
          ]),
        ),
      ),
    ).toBe(ErrorCodes.DECODE_INVALID);
    const tooMany = Array.from({ length: MAX_ATTRIBUTES + 1 }, (_, i): [string, string] => [
      `k${String(i).padStart(3, '0')}`,
      'v',
    ]);
    expect(codeOf(() => decodeCredentialData(enc(tooMany)))).toBe(ErrorCodes.DECODE_LIMIT);
  });

  it('builds attributes sorted by key bytes, and refuses duplicates and oversize', () => {
    const a = makeAttributes({ b: '2', ab: '1', a: '0', é: '3' }, 7);
    expect(a.schema).toBe(7);
    expect([...attributesAsText(a).keys()]).toEqual(['a', 'ab', 'b', 'é']);
    const k = new Uint8Array([1]);
    expect(
      codeOf(() =>
        makeBinaryAttributes([
          { key: k, value: k },
          { key: k, value: k },
        ]),
      ),
    ).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => makeAttributes({ x: 'y'.repeat(5000) }))).toBe(ErrorCodes.ENCODE_LIMIT);
    const binary = makeBinaryAttributes([{ key: Uint8Array.of(0xff), value: Uint8Array.of(1) }]);
    expect(attributesAsText(binary).size).toBe(0);
  });

  it('refuses to encode wrong sizes', () => {
    const d = decodeChangeData(unhex(vector.decoded.changes[0]!.versioned_data.data));
    expect(
      codeOf(() =>
        encodeChangeData({ ...d, primaryPublicKey: { type: 'Ed25519', bytes: new Uint8Array(31) } }),
      ),
    ).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeChangeData({ ...d, attestationsValidFrom: -1 }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeChangeHistory([]))).toBe(ErrorCodes.ENCODE_LIMIT);
  });
});
