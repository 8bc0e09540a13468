import { readFileSync } from 'node:fs';
import { sha256 } from '@noble/hashes/sha2.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../test/support/bytes.js';
import type { SigningKeyType } from '../../vaults/provider.js';
import { nobleCrypto } from '../../vaults/software/noble-provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import type { KeyId, SigningVault } from '../../vaults/vault.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { DEFAULT_IDENTITY_TTL_SECONDS, fixedClock } from './clock.js';
import { Identifier } from './identifier.js';
import { createIdentity, Identity, type LocalIdentity, rotateIdentity } from './identity.js';
import {
  type Change,
  type ChangeData,
  decodeChangeHistory,
  encodeChangeData,
  encodeChangeHistory,
  encodeVersionedData,
  openChangeData,
  type Signature,
  sealChangeData,
} from './models.js';
import { ELIXIR_IDENTITY, SeededSigningVault } from './test-vectors.js';

const verifier = new SoftwareVerifier();

const vector = (
  JSON.parse(readFileSync(new URL('../../test/vectors/ockam/identity.json', import.meta.url), 'utf8')) as {
    vectors: {
      change_history: string;
      expected_identifier: string;
      decoded: {
        changes: {
          data: string;
          change_hash: string;
          signed_message: string;
          signature: { signature: string };
        }[];
        public_key: string;
      };
    }[];
  }
).vectors[0]!;

const T0 = 1_700_000_000;
const clock = fixedClock(T0);

/** Rejects with a KeyhopError; returns its code. */
async function rejectsWith(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    return (e as KeyhopError).code;
  }
  throw new Error('expected a rejection');
}

describe('identity.json vector', () => {
  const bytes = unhex(vector.change_history);
  const validFrom = 1699539945;

  it('imports, with the expected identifier', () => {
    const id = Identity.import(bytes, { verifier, clock: fixedClock(validFrom + 3600) });
    expect(id.identifier.toString()).toBe(vector.expected_identifier);
    expect(id.changes).toHaveLength(1);
    expect(hex(id.primaryPublicKey.bytes)).toBe(vector.decoded.public_key);
    expect(id.primaryPublicKey.type).toBe('Ed25519');
    expect(hex(id.latestChangeHash)).toBe(vector.decoded.changes[0]!.change_hash);
    expect(hex(id.export())).toBe(vector.change_history);
    expect(
      Identity.import(bytes, {
        verifier,
        clock: null,
        expectedIdentifier: vector.expected_identifier,
      }).toString(),
    ).toBe(vector.expected_identifier);
  });

  it('identifier = "I" + SHA-256 of the first change data; the signature covers that hash', () => {
    const c = vector.decoded.changes[0]!;
    const data = unhex(c.data);
    expect(`I${hex(sha256(data))}`).toBe(vector.expected_identifier);
    expect(hex(sha256(data))).toBe(c.signed_message);
    const key = { type: 'Ed25519' as const, bytes: unhex(vector.decoded.public_key) };
    const sig = unhex(c.signature.signature);
    expect(verifier.verify(key, sha256(data), sig)).toBe(true);
    expect(verifier.verify(key, data, sig)).toBe(false);
  });

  it('checks the time window of the key when given a clock', () => {
    expect(codeOf(() => Identity.import(bytes, { verifier, clock: fixedClock(2014899945 + 1) }))).toBe(
      ErrorCodes.IDENTITY_INVALID,
    );
    expect(Identity.import(bytes, { verifier, clock: fixedClock(2014899945) })).toBeInstanceOf(Identity);
    expect(Identity.import(bytes, { verifier, clock: fixedClock(validFrom - 60) })).toBeInstanceOf(Identity);
    expect(codeOf(() => Identity.import(bytes, { verifier, clock: fixedClock(validFrom - 61) }))).toBe(
      ErrorCodes.IDENTITY_INVALID,
    );
  });

  it('rejects another expected identifier', () => {
    const other = `I${'00'.repeat(32)}`;
    expect(codeOf(() => Identity.import(bytes, { verifier, clock: null, expectedIdentifier: other }))).toBe(
      ErrorCodes.IDENTITY_INVALID,
    );
  });

  it('rejects a flipped signature bit and a flipped data bit', () => {
    const sigFlipped = bytes.slice();
    sigFlipped[bytes.length - 1]! ^= 1;
    expect(codeOf(() => Identity.import(sigFlipped, { verifier, clock: null }))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
    const dataFlipped = bytes.slice();
    dataFlipped[58]! ^= 1; // inside attestations_valid_until
    expect(openChangeData(decodeChangeHistory(dataFlipped)[0]!.data).attestationsValidUntil).not.toBe(
      2014899945,
    );
    expect(codeOf(() => Identity.import(dataFlipped, { verifier, clock: null }))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
  });
});

describe('Elixir identity vector (secret key + change history)', () => {
  it.each([
    ['node', nodeCrypto],
    ['noble', nobleCrypto],
  ] as const)('re-creating the identity from its seed gives the same bytes (%s)', async (_, provider) => {
    const vault = new SeededSigningVault(provider);
    const keyId = vault.importKey('Ed25519', unhex(ELIXIR_IDENTITY.secret));
    const local = await createIdentity({
      vault,
      verifier: new SoftwareVerifier(provider),
      keyId,
      clock: fixedClock(ELIXIR_IDENTITY.createdAt),
    });
    expect(local.identity.identifier.toString()).toBe(ELIXIR_IDENTITY.identifier);
    expect(hex(local.identity.export())).toBe(ELIXIR_IDENTITY.changeHistory);
    const imported = Identity.import(unhex(ELIXIR_IDENTITY.changeHistory), { verifier, clock: null });
    expect(imported.identifier.equals(local.identity.identifier)).toBe(true);
  });
});

describe('Identifier', () => {
  const h = vector.expected_identifier.slice(1);

  it('parses and formats', () => {
    const id = Identifier.parse(vector.expected_identifier);
    expect(id.toString()).toBe(vector.expected_identifier);
    expect(hex(id.bytes)).toBe(h);
    expect(JSON.stringify({ id })).toBe(`{"id":"${vector.expected_identifier}"}`);
    expect(Identifier.parse(`I${h.toUpperCase()}`).toString()).toBe(vector.expected_identifier);
    expect(Identifier.fromBytes(unhex(h)).equals(id)).toBe(true);
    expect(Identifier.from(id)).toBe(id);
    expect(Identifier.from(vector.expected_identifier).equals(id)).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['no prefix', h],
    ['old P prefix', `P${h}`],
    ['lowercase prefix', `i${h}`],
    ['20-byte form', `I${h.slice(0, 40)}`],
    ['63 digits', `I${h.slice(1)}`],
    ['65 digits', `I${h}0`],
    ['non-hex', `I${h.slice(0, 63)}g`],
    ['whitespace', ` I${h}`],
    ['0x', `I0x${h.slice(2)}`],
  ])('rejects %s', (_, text) => {
    expect(codeOf(() => Identifier.parse(text))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('rejects wrong byte lengths', () => {
    expect(codeOf(() => Identifier.fromBytes(new Uint8Array(20)))).toBe(ErrorCodes.IDENTITY_INVALID);
  });
});

describe.each([
  ['Ed25519', 'node', nodeCrypto],
  ['P256', 'node', nodeCrypto],
  ['Ed25519', 'noble', nobleCrypto],
  ['P256', 'noble', nobleCrypto],
] as const)('%s identities (%s provider)', (keyType: SigningKeyType, _, provider) => {
  let vault: SoftwareVault;
  let local: LocalIdentity;
  const verifier = new SoftwareVerifier(provider);

  beforeAll(async () => {
    vault = SoftwareVault.inMemory({ provider });
    local = await createIdentity({ vault, verifier, clock, keyType });
  });

  it('are created with a self-signed change valid for 10 years', () => {
    const { identity } = local;
    expect(identity.changes).toHaveLength(1);
    const d = identity.latestChange.data;
    expect(d.primaryPublicKey.type).toBe(keyType);
    expect(d.primaryPublicKey.bytes).toHaveLength(keyType === 'Ed25519' ? 32 : 65);
    expect(d.previousChange).toBeNull();
    expect(d.revokeAllPurposeKeys).toBe(false);
    expect(d.attestationsValidFrom).toBe(T0);
    expect(d.attestationsValidUntil).toBe(T0 + DEFAULT_IDENTITY_TTL_SECONDS);
    expect(identity.latestChange.change.signature.type).toBe(keyType);
    expect(identity.identifier.toString()).toBe(`I${hex(sha256(identity.changes[0]!.change.data))}`);
    expect(identity.changes[0]!.change.data).toHaveLength(keyType === 'Ed25519' ? 55 : 88);
    expect(identity.export()).toHaveLength(keyType === 'Ed25519' ? 128 : 161);
  });

  it('round-trip through the CBOR change history', () => {
    const bytes = local.identity.export();
    const back = Identity.import(bytes, { verifier, clock, expectedIdentifier: local.identity.identifier });
    expect(back.identifier.equals(local.identity.identifier)).toBe(true);
    expect(hex(back.export())).toBe(hex(bytes));
    expect(back.changes.map((c) => hex(c.hash))).toEqual(local.identity.changes.map((c) => hex(c.hash)));
  });

  it('use an existing key and a custom ttl', async () => {
    const keyId = await vault.generateSigningKey(keyType);
    const other = await createIdentity({ vault, verifier, clock, keyId, ttlSeconds: 3600 });
    expect(other.keyId).toBe(keyId);
    expect(other.identity.latestChange.data.attestationsValidUntil).toBe(T0 + 3600);
    expect(await rejectsWith(createIdentity({ vault, verifier, clock, ttlSeconds: 0 }))).toBe(
      ErrorCodes.CONFIG_INVALID,
    );
  });
});

describe('rotation', () => {
  it('appends changes signed by the new key and the previous one', async () => {
    const vault = SoftwareVault.inMemory();
    const first = await createIdentity({ vault, verifier, clock });
    const second = await rotateIdentity(first, { verifier, clock: fixedClock(T0 + 100), keyType: 'P256' });
    const third = await rotateIdentity(second, {
      verifier,
      clock: fixedClock(T0 + 200),
      revokeAllPurposeKeys: true,
      ttlSeconds: 1000,
    });
    const id = third.identity;
    expect(id.changes).toHaveLength(3);
    expect(id.identifier.equals(first.identity.identifier)).toBe(true);
    expect(id.changes.map((c) => c.data.primaryPublicKey.type)).toEqual(['Ed25519', 'P256', 'P256']);
    expect(id.changes[0]!.change.previousSignature).toBeUndefined();
    expect(id.changes[1]!.change.previousSignature?.type).toBe('Ed25519');
    expect(id.changes[1]!.change.signature.type).toBe('P256');
    expect(hex(id.changes[1]!.data.previousChange!)).toBe(hex(id.changes[0]!.hash));
    expect(hex(id.changes[2]!.data.previousChange!)).toBe(hex(id.changes[1]!.hash));
    expect(id.changes[2]!.data.revokeAllPurposeKeys).toBe(true);
    expect(id.changes[2]!.data.attestationsValidFrom).toBe(T0 + 200);
    expect(id.changes[2]!.data.attestationsValidUntil).toBe(T0 + 1200);
    expect(id.primaryPublicKey).toEqual(await vault.publicKey(third.keyId));

    const back = Identity.import(id.export(), { verifier, clock: fixedClock(T0 + 300) });
    expect(back.identifier.equals(id.identifier)).toBe(true);
    expect(hex(back.latestChangeHash)).toBe(hex(id.latestChangeHash));
  });

  it('can move the key to another vault', async () => {
    const a = SoftwareVault.inMemory();
    const b = SoftwareVault.inMemory();
    const first = await createIdentity({ vault: a, verifier, clock });
    const second = await rotateIdentity(first, { verifier, clock, vault: b });
    expect(second.vault).toBe(b);
    expect(await b.listKeys()).toEqual([second.keyId]);
  });

  it('never moves attestations_valid_from backwards', async () => {
    const vault = SoftwareVault.inMemory();
    const first = await createIdentity({ vault, verifier, clock });
    const second = await rotateIdentity(first, { verifier, clock: fixedClock(T0 - 30) });
    expect(second.identity.latestChange.data.attestationsValidFrom).toBe(T0);
  });

  it('refuses a local key that is not the current primary key', async () => {
    const vault = SoftwareVault.inMemory();
    const first = await createIdentity({ vault, verifier, clock });
    const wrong = { ...first, keyId: await vault.generateSigningKey('Ed25519') };
    expect(await rejectsWith(rotateIdentity(wrong, { verifier, clock }))).toBe(ErrorCodes.KEY_INVALID);
  });
});

describe('verification failures', () => {
  const vault = SoftwareVault.inMemory();
  let k1: KeyId;
  let k2: KeyId;
  let k3: KeyId;

  beforeAll(async () => {
    k1 = await vault.generateSigningKey('Ed25519');
    k2 = await vault.generateSigningKey('P256');
    k3 = await vault.generateSigningKey('Ed25519');
  });

  async function sign(keyId: KeyId, data: Uint8Array): Promise<Signature> {
    const key = await vault.publicKey(keyId);
    return { type: key.type, bytes: await vault.sign(keyId, sha256(data)) };
  }

  async function changeData(keyId: KeyId, over: Partial<ChangeData> = {}): Promise<ChangeData> {
    return {
      previousChange: null,
      primaryPublicKey: await vault.publicKey(keyId),
      revokeAllPurposeKeys: false,
      attestationsValidFrom: T0,
      attestationsValidUntil: T0 + 1000,
      ...over,
    };
  }

  /** A change signed by `keyId`, with a previous_signature by `previousKeyId` if given. */
  async function change(
    cd: ChangeData,
    keyId: KeyId,
    previousKeyId?: KeyId,
    data = sealChangeData(cd),
  ): Promise<Change> {
    const signature = await sign(keyId, data);
    return previousKeyId
      ? { data, signature, previousSignature: await sign(previousKeyId, data) }
      : { data, signature };
  }

  async function validPair(): Promise<Change[]> {
    const c0 = await change(await changeData(k1), k1);
    const c1 = await change(await changeData(k2, { previousChange: sha256(c0.data) }), k2, k1);
    return [c0, c1];
  }

  const verify = (changes: Change[], at = T0) =>
    Identity.verify(changes, { verifier, clock: fixedClock(at) });

  it('accepts the well-formed pair the cases below break', async () => {
    const pair = await validPair();
    expect(verify(pair).changes).toHaveLength(2);
    expect(Identity.import(encodeChangeHistory(pair), { verifier, clock }).changes).toHaveLength(2);
  });

  it('bad signature', async () => {
    const [c0, c1] = await validPair();
    const bytes = c1!.signature.bytes.slice();
    bytes[10]! ^= 0x40;
    expect(codeOf(() => verify([c0!, { ...c1!, signature: { ...c1!.signature, bytes } }]))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
    const other = await sign(k3, c0!.data);
    expect(codeOf(() => verify([{ ...c0!, signature: other }]))).toBe(ErrorCodes.SIGNATURE_INVALID);
  });

  it('signature algorithm not the key algorithm', async () => {
    const [c0] = await validPair();
    const wrongType: Signature = { type: 'P256', bytes: c0!.signature.bytes };
    expect(codeOf(() => verify([{ ...c0!, signature: wrongType }]))).toBe(ErrorCodes.SIGNATURE_INVALID);
  });

  it('broken link (previous_change is not the previous hash)', async () => {
    const [c0] = await validPair();
    const wrongHash = sha256(c0!.data).slice();
    wrongHash[0]! ^= 1;
    const c1 = await change(await changeData(k2, { previousChange: wrongHash }), k2, k1);
    expect(codeOf(() => verify([c0!, c1]))).toBe(ErrorCodes.IDENTITY_INVALID);
    const unlinked = await change(await changeData(k2), k2, k1);
    expect(codeOf(() => verify([c0!, unlinked]))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('changes out of order, or the first one missing', async () => {
    const [c0, c1] = await validPair();
    expect(codeOf(() => verify([c1!, c0!]))).toBe(ErrorCodes.IDENTITY_INVALID);
    expect(codeOf(() => verify([c1!]))).toBe(ErrorCodes.IDENTITY_INVALID);
    expect(codeOf(() => verify([]))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('wrong previous signature', async () => {
    const [c0] = await validPair();
    const cd = await changeData(k2, { previousChange: sha256(c0!.data) });
    const byOther = await change(cd, k2, k3);
    expect(codeOf(() => verify([c0!, byOther]))).toBe(ErrorCodes.SIGNATURE_INVALID);
    const bySelf = await change(cd, k2, k2);
    expect(codeOf(() => verify([c0!, bySelf]))).toBe(ErrorCodes.SIGNATURE_INVALID);
  });

  it('missing previous signature', async () => {
    const [c0] = await validPair();
    const c1 = await change(await changeData(k2, { previousChange: sha256(c0!.data) }), k2);
    expect(codeOf(() => verify([c0!, c1]))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('first change with a previous_change or a previous_signature', async () => {
    const linked = await change(await changeData(k1, { previousChange: new Uint8Array(32) }), k1);
    expect(codeOf(() => verify([linked]))).toBe(ErrorCodes.IDENTITY_INVALID);
    const withPrevious = await change(await changeData(k1), k1, k1);
    expect(codeOf(() => verify([withPrevious]))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('attestations_valid_from going backwards', async () => {
    const [c0] = await validPair();
    const c1 = await change(
      await changeData(k2, { previousChange: sha256(c0!.data), attestationsValidFrom: T0 - 1 }),
      k2,
      k1,
    );
    expect(codeOf(() => verify([c0!, c1]))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('valid_until before valid_from', async () => {
    const c0 = await change(await changeData(k1, { attestationsValidUntil: T0 - 1 }), k1);
    expect(codeOf(() => Identity.verify([c0], { verifier, clock: null }))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('expired', async () => {
    const pair = await validPair();
    expect(verify(pair, T0 + 1000).changes).toHaveLength(2);
    expect(codeOf(() => verify(pair, T0 + 1001))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('future created_at (beyond the 60 s tolerance)', async () => {
    const pair = await validPair();
    expect(verify(pair, T0 - 60).changes).toHaveLength(2);
    expect(codeOf(() => verify(pair, T0 - 61))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('unknown VersionedData version, wrong data type', async () => {
    const cd = await changeData(k1);
    const v2 = await change(
      cd,
      k1,
      undefined,
      encodeVersionedData({ version: 2, dataType: 1, data: encodeChangeData(cd) }),
    );
    expect(codeOf(() => verify([v2]))).toBe(ErrorCodes.DECODE_VERSION);
    const t2 = await change(
      cd,
      k1,
      undefined,
      encodeVersionedData({ version: 1, dataType: 2, data: encodeChangeData(cd) }),
    );
    expect(codeOf(() => verify([t2]))).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('a vault that returns a bad signature is caught at creation', async () => {
    const broken: SigningVault = {
      backend: 'broken',
      generateSigningKey: (t) => vault.generateSigningKey(t),
      publicKey: (id) => vault.publicKey(id),
      sign: async (id, data) => {
        const s = await vault.sign(id, data);
        s[0]! ^= 1;
        return s;
      },
      deleteKey: (id) => vault.deleteKey(id),
      listKeys: () => vault.listKeys(),
    };
    expect(await rejectsWith(createIdentity({ vault: broken, verifier, clock }))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
    const der: SigningVault = { ...broken, sign: async () => new Uint8Array(70) };
    expect(await rejectsWith(createIdentity({ vault: der, verifier, clock, keyType: 'P256' }))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
  });
});
