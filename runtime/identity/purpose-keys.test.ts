import { x25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { codeOf, hex } from '../../test/support/bytes.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { ErrorCodes } from '../errors.js';
import { DEFAULT_PURPOSE_KEY_TTL_SECONDS, fixedClock } from './clock.js';
import { createIdentity, type LocalIdentity, rotateIdentity } from './identity.js';
import {
  decodePurposeKeyAttestation,
  encodePurposeKeyAttestation,
  openPurposeKeyAttestationData,
  type PurposeKeyAttestation,
  type PurposeKeyAttestationData,
  sealPurposeKeyAttestationData,
} from './models.js';
import {
  attestCredentialSigningKey,
  attestPurposeKey,
  attestSecureChannelKey,
  verifyPurposeKeyAttestation,
  verifySecureChannelKey,
} from './purpose-keys.js';

const verifier = new SoftwareVerifier();

const T0 = 1_700_000_000;
const clock = fixedClock(T0);
const at = (t: number) => fixedClock(t);

describe.each(['Ed25519', 'P256'] as const)('purpose keys of a %s identity', (keyType) => {
  const vault = SoftwareVault.inMemory();
  let local: LocalIdentity;
  const staticKey = x25519.getPublicKey(x25519.utils.randomSecretKey());

  beforeAll(async () => {
    local = await createIdentity({ vault, verifier, clock, keyType });
  });

  it('attest a secure-channel static key', async () => {
    const att = await attestSecureChannelKey(local, staticKey, { verifier, clock });
    expect(att.signature.type).toBe(keyType);
    const d = openPurposeKeyAttestationData(att.data);
    expect(d.subject.equals(local.identity.identifier)).toBe(true);
    expect(hex(d.subjectLatestChangeHash)).toBe(hex(local.identity.latestChangeHash));
    expect(d.publicKey).toEqual({ purpose: 'SecureChannelStatic', x25519: staticKey });
    expect(d.createdAt).toBe(T0);
    expect(d.expiresAt).toBe(T0 + DEFAULT_PURPOSE_KEY_TTL_SECONDS);
    const back = decodePurposeKeyAttestation(encodePurposeKeyAttestation(att));
    expect(verifyPurposeKeyAttestation(back, { identity: local.identity, verifier, clock })).toEqual(d);
    expect(verifySecureChannelKey(back, staticKey, { identity: local.identity, verifier, clock })).toEqual(d);
  });

  it('attest a credential-signing key', async () => {
    const signing = await vault.publicKey(await vault.generateSigningKey('P256'));
    const att = await attestCredentialSigningKey(local, signing, { verifier, clock, ttlSeconds: 600 });
    const d = verifyPurposeKeyAttestation(att, {
      identity: local.identity,
      verifier,
      clock,
      purpose: 'CredentialSigning',
    });
    expect(d.publicKey).toEqual({ purpose: 'CredentialSigning', publicKey: signing });
    expect(d.expiresAt).toBe(T0 + 600);
    expect(
      codeOf(() =>
        verifyPurposeKeyAttestation(att, {
          identity: local.identity,
          verifier,
          clock,
          purpose: 'SecureChannelStatic',
        }),
      ),
    ).toBe(ErrorCodes.IDENTITY_INVALID);
    expect(
      codeOf(() => verifySecureChannelKey(att, staticKey, { identity: local.identity, verifier, clock })),
    ).toBe(ErrorCodes.IDENTITY_INVALID);
  });
});

describe('purpose key verification failures', () => {
  const vault = SoftwareVault.inMemory();
  let local: LocalIdentity;
  let other: LocalIdentity;
  let att: PurposeKeyAttestation;
  const staticKey = x25519.getPublicKey(x25519.utils.randomSecretKey());

  beforeAll(async () => {
    local = await createIdentity({ vault, verifier, clock, ttlSeconds: 10_000 });
    other = await createIdentity({ vault, verifier, clock });
    att = await attestSecureChannelKey(local, staticKey, { verifier, clock, ttlSeconds: 1000 });
  });

  /** An attestation of arbitrary data, signed by `signer`'s primary key. */
  async function forge(
    over: Partial<PurposeKeyAttestationData>,
    signer = local,
  ): Promise<PurposeKeyAttestation> {
    const data = sealPurposeKeyAttestationData({ ...openPurposeKeyAttestationData(att.data), ...over });
    const key = signer.identity.primaryPublicKey;
    return {
      data,
      signature: { type: key.type, bytes: await signer.vault.sign(signer.keyId, sha256(data)) },
    };
  }

  const check = (a: PurposeKeyAttestation, t = T0, identity = local.identity) =>
    codeOf(() => verifyPurposeKeyAttestation(a, { identity, verifier, clock: at(t) }));

  it('subject is someone else', async () => {
    expect(check(att, T0, other.identity)).toBe(ErrorCodes.IDENTITY_INVALID);
    expect(check(await forge({ subject: other.identity.identifier }, other), T0, other.identity)).toBe(
      ErrorCodes.IDENTITY_INVALID,
    );
  });

  it('signed by another key', async () => {
    expect(check(await forge({}, other))).toBe(ErrorCodes.SIGNATURE_INVALID);
    const flipped = att.signature.bytes.slice();
    flipped[5]! ^= 1;
    expect(check({ ...att, signature: { ...att.signature, bytes: flipped } })).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
  });

  it('made before the latest rotation', async () => {
    const rotated = await rotateIdentity(local, { verifier, clock: at(T0 + 10) });
    expect(check(att, T0 + 10, rotated.identity)).toBe(ErrorCodes.IDENTITY_INVALID);
    const fresh = await attestSecureChannelKey(rotated, staticKey, { verifier, clock: at(T0 + 10) });
    expect(
      verifyPurposeKeyAttestation(fresh, { identity: rotated.identity, verifier, clock: at(T0 + 10) })
        .createdAt,
    ).toBe(T0 + 10);
  });

  it('expired', () => {
    expect(
      verifyPurposeKeyAttestation(att, { identity: local.identity, verifier, clock: at(T0 + 1000) }),
    ).toBeTruthy();
    expect(check(att, T0 + 1001)).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('created in the future (beyond 60 s)', () => {
    expect(
      verifyPurposeKeyAttestation(att, { identity: local.identity, verifier, clock: at(T0 - 60) }),
    ).toBeTruthy();
    expect(check(att, T0 - 61)).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('outside the primary key window', async () => {
    expect(check(await forge({ createdAt: T0 - 1 }))).toBe(ErrorCodes.IDENTITY_INVALID);
    expect(check(await forge({ expiresAt: T0 + 10_001 }))).toBe(ErrorCodes.IDENTITY_INVALID);
    const edge = await forge({ expiresAt: T0 + 10_000 });
    expect(verifyPurposeKeyAttestation(edge, { identity: local.identity, verifier, clock }).expiresAt).toBe(
      T0 + 10_000,
    );
  });

  it('expires before it is created', async () => {
    expect(check(await forge({ createdAt: T0 + 10, expiresAt: T0 + 5 }))).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('wrong change hash', async () => {
    expect(check(await forge({ subjectLatestChangeHash: new Uint8Array(32) }))).toBe(
      ErrorCodes.IDENTITY_INVALID,
    );
  });

  it('for a different X25519 key than the Noise static key', () => {
    const otherKey = x25519.getPublicKey(x25519.utils.randomSecretKey());
    expect(
      codeOf(() => verifySecureChannelKey(att, otherKey, { identity: local.identity, verifier, clock })),
    ).toBe(ErrorCodes.IDENTITY_INVALID);
  });

  it('are clamped to the primary key window when created', async () => {
    const short = await createIdentity({ vault, verifier, clock, ttlSeconds: 100 });
    const a = await attestPurposeKey(
      short,
      { purpose: 'SecureChannelStatic', x25519: staticKey },
      { verifier, clock },
    );
    expect(openPurposeKeyAttestationData(a.data).expiresAt).toBe(T0 + 100);
    const early = await attestSecureChannelKey(short, staticKey, { verifier, clock: at(T0 - 30) });
    expect(openPurposeKeyAttestationData(early.data).createdAt).toBe(T0);
    await expect(
      attestSecureChannelKey(short, staticKey, { verifier, clock: at(T0 + 101) }),
    ).rejects.toMatchObject({
      code: ErrorCodes.IDENTITY_INVALID,
    });
    await expect(
      attestSecureChannelKey(short, new Uint8Array(31), { verifier, clock }),
    ).rejects.toMatchObject({
      code: ErrorCodes.KEY_INVALID,
    });
  });
});
