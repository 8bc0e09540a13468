import { sha256 } from '@noble/hashes/sha2.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { codeOf, hex } from '../../test/support/bytes.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { ErrorCodes } from '../errors.js';
import { DEFAULT_CREDENTIAL_TTL_SECONDS, fixedClock } from './clock.js';
import {
  type CredentialIssuer,
  createCredentialIssuer,
  issueCredential,
  verifyCredential,
} from './credentials.js';
import { createIdentity, Identity, type LocalIdentity, rotateIdentity } from './identity.js';
import {
  attributesAsText,
  type CredentialAndPurposeKey,
  type CredentialData,
  decodeCredentialAndPurposeKey,
  encodeCredentialAndPurposeKey,
  makeBinaryAttributes,
  openCredentialData,
  openPurposeKeyAttestationData,
  sealCredentialData,
} from './models.js';
import { attestSecureChannelKey } from './purpose-keys.js';
import { splitRefreshCredentials } from './test-vectors.js';

const verifier = new SoftwareVerifier();

const T0 = 1_700_000_000;
const clock = fixedClock(T0);
const at = (t: number) => fixedClock(t);

describe('Ockam RefreshCredentials vector', () => {
  it('the credential is about the identity it came with, and its signature verifies under the attested key', () => {
    const parts = splitRefreshCredentials();
    const subject = Identity.import(parts.changeHistory, { verifier, clock: null });
    const cpk = decodeCredentialAndPurposeKey(parts.credentialAndPurposeKey);
    const cred = openCredentialData(cpk.credential.data);
    expect(cred.subject!.equals(subject.identifier)).toBe(true);
    expect(hex(cred.subjectLatestChangeHash!)).toBe(hex(subject.latestChangeHash));
    const att = openPurposeKeyAttestationData(cpk.purposeKeyAttestation.data);
    if (att.publicKey.purpose !== 'CredentialSigning') throw new Error('expected a credential-signing key');
    const digest = sha256(cpk.credential.data);
    expect(verifier.verify(att.publicKey.publicKey, digest, cpk.credential.signature.bytes)).toBe(true);
    expect(
      verifier.verify(att.publicKey.publicKey, cpk.credential.data, cpk.credential.signature.bytes),
    ).toBe(false);
    expect(cred.createdAt).toBeGreaterThanOrEqual(att.createdAt);
    expect(cred.expiresAt).toBeLessThanOrEqual(att.expiresAt);
  });

  it('is refused without the authority identity (not a trusted authority)', () => {
    const cpk = decodeCredentialAndPurposeKey(splitRefreshCredentials().credentialAndPurposeKey);
    expect(codeOf(() => verifyCredential(cpk, { authorities: [], verifier, clock: at(0x659ca3cf) }))).toBe(
      ErrorCodes.CREDENTIAL_INVALID,
    );
  });
});

describe.each(['Ed25519', 'P256'] as const)('credentials from a %s authority', (keyType) => {
  const vault = SoftwareVault.inMemory();
  let authority: LocalIdentity;
  let issuer: CredentialIssuer;
  let subject: LocalIdentity;

  beforeAll(async () => {
    authority = await createIdentity({ vault, verifier, clock, keyType });
    issuer = await createCredentialIssuer(authority, { verifier, clock, keyType });
    subject = await createIdentity({ vault, verifier, clock });
  });

  it('are issued and verified', async () => {
    const cpk = await issueCredential(issuer, {
      subject: subject.identity.identifier,
      subjectLatestChangeHash: subject.identity.latestChangeHash,
      attributes: { role: 'admin', site: 'lab' },
      schema: 1,
      verifier,
      clock,
    });
    expect(cpk.credential.signature.type).toBe(keyType);
    const back = decodeCredentialAndPurposeKey(encodeCredentialAndPurposeKey(cpk));
    const v = verifyCredential(back, {
      authorities: [subject.identity, authority.identity],
      subject: subject.identity.identifier.toString(),
      verifier,
      clock: at(T0 + 10),
    });
    expect(v.issuer.equals(authority.identity.identifier)).toBe(true);
    expect(v.subject.equals(subject.identity.identifier)).toBe(true);
    expect(hex(v.subjectLatestChangeHash!)).toBe(hex(subject.identity.latestChangeHash));
    expect(Object.fromEntries(v.attributesText)).toEqual({ role: 'admin', site: 'lab' });
    expect(v.attributes.schema).toBe(1);
    expect(v.createdAt).toBe(T0);
    expect(v.expiresAt).toBe(T0 + DEFAULT_CREDENTIAL_TTL_SECONDS);
    expect(v.purposeKey.publicKey.purpose).toBe('CredentialSigning');
  });
});

describe('credential verification failures', () => {
  const vault = SoftwareVault.inMemory();
  let authority: LocalIdentity;
  let issuer: CredentialIssuer;
  let subject: LocalIdentity;
  let cpk: CredentialAndPurposeKey;
  const TTL = 3600;

  beforeAll(async () => {
    authority = await createIdentity({ vault, verifier, clock });
    issuer = await createCredentialIssuer(authority, { verifier, clock, ttlSeconds: 100_000 });
    subject = await createIdentity({ vault, verifier, clock });
    cpk = await issueCredential(issuer, {
      subject: subject.identity.identifier,
      attributes: new Map([['role', 'member']]),
      ttlSeconds: TTL,
      verifier,
      clock,
    });
  });

  const check = (c: CredentialAndPurposeKey, t = T0, authorities = [authority.identity]) =>
    codeOf(() =>
      verifyCredential(c, { authorities, subject: subject.identity.identifier, verifier, clock: at(t) }),
    );

  /** A credential with arbitrary data, signed with the issuer's credential key. */
  async function forge(over: Partial<CredentialData>): Promise<CredentialAndPurposeKey> {
    const data = sealCredentialData({ ...openCredentialData(cpk.credential.data), ...over });
    const bytes = await issuer.vault.sign(issuer.keyId, sha256(data));
    return { ...cpk, credential: { data, signature: { ...cpk.credential.signature, bytes } } };
  }

  it('issuer not among the trusted authorities', async () => {
    expect(check(cpk, T0, [])).toBe(ErrorCodes.CREDENTIAL_INVALID);
    expect(check(cpk, T0, [subject.identity])).toBe(ErrorCodes.CREDENTIAL_INVALID);
    // A self-made issuer claiming to be about the subject is not an authority either.
    const self = await createCredentialIssuer(subject, { verifier, clock });
    const selfIssued = await issueCredential(self, {
      subject: subject.identity.identifier,
      attributes: { role: 'admin' },
      verifier,
      clock,
    });
    expect(check(selfIssued)).toBe(ErrorCodes.CREDENTIAL_INVALID);
  });

  it('about someone else', () => {
    expect(
      codeOf(() =>
        verifyCredential(cpk, {
          authorities: [authority.identity],
          subject: authority.identity.identifier,
          verifier,
          clock,
        }),
      ),
    ).toBe(ErrorCodes.CREDENTIAL_INVALID);
  });

  it('no subject', async () => {
    expect(check(await forge({ subject: null }))).toBe(ErrorCodes.CREDENTIAL_INVALID);
  });

  it('expired → CREDENTIAL_EXPIRED', () => {
    expect(
      verifyCredential(cpk, { authorities: [authority.identity], verifier, clock: at(T0 + TTL) }),
    ).toBeTruthy();
    expect(check(cpk, T0 + TTL + 1)).toBe(ErrorCodes.CREDENTIAL_EXPIRED);
  });

  it("issuer's key attestation expired → CREDENTIAL_EXPIRED", async () => {
    const long = await forge({ expiresAt: T0 + 100_000 });
    expect(
      verifyCredential(long, { authorities: [authority.identity], verifier, clock: at(T0 + 100_000) }),
    ).toBeTruthy();
    expect(check(long, T0 + 100_001)).toBe(ErrorCodes.CREDENTIAL_EXPIRED);
  });

  it('created in the future → CREDENTIAL_INVALID', async () => {
    expect(
      verifyCredential(cpk, { authorities: [authority.identity], verifier, clock: at(T0 - 60) }),
    ).toBeTruthy();
    expect(check(cpk, T0 - 61)).toBe(ErrorCodes.CREDENTIAL_INVALID);
    const future = await forge({ createdAt: T0 + 500, expiresAt: T0 + 1000 });
    expect(check(future, T0 + 439)).toBe(ErrorCodes.CREDENTIAL_INVALID);
    expect(
      verifyCredential(future, { authorities: [authority.identity], verifier, clock: at(T0 + 440) }),
    ).toBeTruthy();
  });

  it("outside the issuer key's window", async () => {
    expect(check(await forge({ createdAt: T0 - 1 }))).toBe(ErrorCodes.CREDENTIAL_INVALID);
    expect(check(await forge({ expiresAt: T0 + 100_001 }))).toBe(ErrorCodes.CREDENTIAL_INVALID);
    expect(check(await forge({ createdAt: T0 + 10, expiresAt: T0 + 5 }))).toBe(ErrorCodes.CREDENTIAL_INVALID);
  });

  it('bad signature → SIGNATURE_INVALID', async () => {
    const bytes = cpk.credential.signature.bytes.slice();
    bytes[0]! ^= 1;
    const bad = {
      ...cpk,
      credential: { ...cpk.credential, signature: { ...cpk.credential.signature, bytes } },
    };
    expect(check(bad)).toBe(ErrorCodes.SIGNATURE_INVALID);
    // Data changed after signing.
    const data = sealCredentialData({
      ...openCredentialData(cpk.credential.data),
      attributes: makeBinaryAttributes([{ key: Uint8Array.of(0x72), value: Uint8Array.of(0x61) }]),
    });
    expect(check({ ...cpk, credential: { ...cpk.credential, data } })).toBe(ErrorCodes.SIGNATURE_INVALID);
    // Signed by the authority's primary key instead of its credential-signing key.
    const byPrimary = await authority.vault.sign(authority.keyId, sha256(cpk.credential.data));
    const wrongKey = {
      ...cpk,
      credential: { ...cpk.credential, signature: { type: 'Ed25519' as const, bytes: byPrimary } },
    };
    expect(check(wrongKey)).toBe(ErrorCodes.SIGNATURE_INVALID);
  });

  it('signed with a secure-channel key attestation → CREDENTIAL_INVALID', async () => {
    const scAttestation = await attestSecureChannelKey(authority, new Uint8Array(32).fill(9), {
      verifier,
      clock,
    });
    expect(check({ ...cpk, purposeKeyAttestation: scAttestation })).toBe(ErrorCodes.CREDENTIAL_INVALID);
  });

  it("issuer's attestation tampered with → SIGNATURE_INVALID; authority rotated since → CREDENTIAL_INVALID", async () => {
    const sig = cpk.purposeKeyAttestation.signature.bytes.slice();
    sig[3]! ^= 1;
    const tampered = {
      ...cpk,
      purposeKeyAttestation: {
        ...cpk.purposeKeyAttestation,
        signature: { ...cpk.purposeKeyAttestation.signature, bytes: sig },
      },
    };
    expect(check(tampered)).toBe(ErrorCodes.SIGNATURE_INVALID);
    const rotated = await rotateIdentity(authority, { verifier, clock });
    expect(check(cpk, T0, [rotated.identity])).toBe(ErrorCodes.CREDENTIAL_INVALID);
  });

  it('issuing is clamped to the signing key attestation', async () => {
    const c = await issueCredential(issuer, {
      subject: subject.identity.identifier,
      attributes: {},
      ttlSeconds: 10_000_000,
      verifier,
      clock: at(T0 - 50),
    });
    const d = openCredentialData(c.credential.data);
    expect(d.createdAt).toBe(T0);
    expect(d.expiresAt).toBe(T0 + 100_000);
    expect(d.subjectLatestChangeHash).toBeNull();
    expect(attributesAsText(d.attributes).size).toBe(0);
    await expect(
      issueCredential(issuer, {
        subject: subject.identity.identifier,
        attributes: {},
        verifier,
        clock: at(T0 + 100_001),
      }),
    ).rejects.toMatchObject({ code: ErrorCodes.CREDENTIAL_EXPIRED });
    await expect(
      issueCredential(issuer, { subject: 'Inot-an-identifier', attributes: {}, verifier, clock }),
    ).rejects.toMatchObject({ code: ErrorCodes.IDENTITY_INVALID });
  });
});
