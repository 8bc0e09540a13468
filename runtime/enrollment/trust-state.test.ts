import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { propertyRuns } from '../../test/support/property-runs.js';
import { refusalOf } from '../../test/support/refusal.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { createCredentialIssuer, issueCredential, verifyCredential } from '../identity/credentials.js';
import { createIdentity, type LocalIdentity, rotateIdentity } from '../identity/identity.js';
import { Authority } from './authority.js';
import { decodeSigned, encodeRevocationList, encodeSigned } from './codec.js';
import { TrustState } from './trust-state.js';

const verifier = new SoftwareVerifier();
let home: string;
const cleanups: (() => unknown)[] = [];

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-trust-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(home, { recursive: true, force: true });
});

const identity = (clock: Clock = systemClock): Promise<LocalIdentity> =>
  createIdentity({ vault: SoftwareVault.inMemory(), verifier, clock });

async function state(dir: string | undefined = join(home, 'trust'), clock: Clock = systemClock) {
  const s = await TrustState.open(dir, { verifier, clock });
  cleanups.push(() => s.close());
  return s;
}

async function authority(clock: Clock = systemClock, name = 'ca') {
  const local = await identity();
  const issuer = await createCredentialIssuer(local, { verifier, clock: systemClock });
  const a = await Authority.create({
    home: join(home, 'authorities'),
    name,
    local,
    issuer,
    verifier,
    clock,
    prekeys: 0,
    revocationValiditySeconds: 3600,
  });
  cleanups.push(() => a.close());
  return { a, issuer, local };
}

describe('known identities (Ockam: refuse a history older than, or conflicting with, the one seen)', () => {
  it('remembers the first history, follows a rotation, refuses the old key and a fork, across a restart', async () => {
    let s = await state();
    const device = await identity();
    await s.checkIdentity(device.identity);
    const rotated = await rotateIdentity(device, { verifier, clock: systemClock });
    await s.checkIdentity(rotated.identity);
    expect(await refusalOf(s.checkIdentity(device.identity))).toBe('IDENTITY_INVALID');
    await s.close();
    cleanups.pop();

    s = await state();
    expect(await refusalOf(s.checkIdentity(device.identity))).toBe('IDENTITY_INVALID');
    await s.checkIdentity(rotated.identity);
    const fork = await rotateIdentity(device, { verifier, clock: systemClock });
    expect(await refusalOf(s.checkIdentity(fork.identity))).toBe('IDENTITY_INVALID');
    // Counters are this run's.
    expect(s.known.counters).toMatchObject({ known: 1, refusedOlder: 1, refusedConflict: 1 });
  });

  it('refuses a history shorter than an authority says the identity has, on a node that never saw the rotation', async () => {
    const s = await state(undefined);
    const { a } = await authority();
    const device = await identity();
    await a.recordRotation(device.identity.identifier.toString(), 2);
    s.revocations.track(a.identifier);
    await s.acceptRevocations((await a.revocations()).bytes, a.identity);
    expect(await refusalOf(s.checkIdentity(device.identity))).toBe('IDENTITY_INVALID');
    await s.checkIdentity((await rotateIdentity(device, { verifier, clock: systemClock })).identity);
  });
});

describe('revocation lists', () => {
  it('refuses credentials of revoked identities and revoked credentials, from the list of their own issuer only', async () => {
    const s = await state();
    const { a, issuer } = await authority();
    const other = await authority(systemClock, 'other');
    s.revocations.track(a.identifier);
    const alice = await identity();
    const bob = await identity();
    const credentialOf = async (who: LocalIdentity, by = issuer, role = 'x') =>
      verifyCredential(
        await issueCredential(by, {
          subject: who.identity.identifier.toString(),
          attributes: { role },
          verifier,
          clock: systemClock,
        }),
        {
          authorities: [a.identity, other.a.identity],
          subject: who.identity.identifier.toString(),
          verifier,
          clock: systemClock,
        },
      );
    const aliceCredential = await credentialOf(alice);
    const bobFirst = await credentialOf(bob);
    const bobSecond = await credentialOf(bob, issuer, 'y');
    const aliceElsewhere = await credentialOf(alice, other.issuer);
    // No list yet: nothing to refuse.
    expect(s.credentialRefusal(aliceCredential)).toBeUndefined();

    await a.revokeIdentity(alice.identity.identifier.toString());
    await a.revokeCredential(bobFirst.id);
    const list = await s.acceptRevocations((await a.revocations()).bytes, a.identity);
    expect(list?.version).toBe(3);
    expect(s.credentialRefusal(aliceCredential)).toBe('identity_revoked');
    expect(s.credentialRefusal(bobFirst)).toBe('credential_revoked');
    expect(s.credentialRefusal(bobSecond)).toBeUndefined();
    // Another authority's credential is its own business (and that authority is not tracked).
    expect(s.credentialRefusal(aliceElsewhere)).toBeUndefined();
    expect(s.revocations.counters.refusedCredentials).toEqual({ identity_revoked: 1, credential_revoked: 1 });
  });

  it('refuses lists that are unsigned, signed by someone else, for someone else, rolled back or stale; keeps nothing of them', async () => {
    let now = Math.floor(Date.now() / 1000);
    const clock: Clock = { now: () => now };
    const s = await state(join(home, 'trust'), clock);
    const { a, issuer } = await authority(clock);
    const mallory = await identity();
    s.revocations.track(a.identifier);
    const v1 = await a.revocations();
    await a.revokeIdentity(mallory.identity.identifier.toString());
    const v2 = await a.revocations();
    expect(await s.acceptRevocations(v2.bytes, a.identity)).toBeDefined();
    // The same list again changes nothing; an older one is a rollback.
    expect(await s.acceptRevocations(v2.bytes, a.identity)).toBeUndefined();
    expect(await refusalOf(s.acceptRevocations(v1.bytes, a.identity))).toBe('rollback');
    // Signed by someone else (with the authority's list inside), or presented as someone else's.
    const body = decodeSigned(v2.bytes, 'list').body;
    const forged = encodeSigned({
      body,
      signature: await mallory.vault.sign(mallory.keyId, verifier.sha256(body)),
    });
    expect(await refusalOf(s.acceptRevocations(forged, a.identity))).toBe('SIGNATURE_INVALID');
    expect(await refusalOf(s.acceptRevocations(forged, mallory.identity))).toBe('other_authority');
    // Unsigned: not even a Signed structure.
    expect(await refusalOf(s.acceptRevocations(body, a.identity))).toMatch(/^DECODE_/);
    // Stale: signed long ago.
    const stale = encodeRevocationList({
      authority: a.identifier,
      version: 99,
      issuedAt: now - 7200,
      nextUpdate: now - 3600,
      identifiers: [],
      credentials: [],
      rotations: [],
    });
    const staleSigned = encodeSigned({ body: stale, signature: await a.signBody(stale, 'list') });
    expect(await refusalOf(s.acceptRevocations(staleSigned, a.identity))).toBe('stale');
    expect(s.revocations.versionOf(a.identifier)).toBe(2);
    expect(s.revocations.counters.refusedLists).toMatchObject({
      rollback: 1,
      signature: 1,
      other_authority: 1,
      stale: 1,
    });

    // Once the held list is past its next update, the authority's credentials stop counting.
    const device = await identity();
    const credential = verifyCredential(
      await issueCredential(issuer, {
        subject: device.identity.identifier.toString(),
        attributes: {},
        verifier,
        clock,
      }),
      { authorities: [a.identity], verifier, clock },
    );
    expect(s.credentialRefusal(credential)).toBeUndefined();
    now += 3601;
    expect(s.credentialRefusal(credential)).toBe('list_stale');
  });

  it('keeps the latest list across a restart, and a restarted verifier still refuses a rollback', async () => {
    let s = await state();
    const { a } = await authority();
    const v1 = await a.revocations();
    await a.revokeIdentity((await identity()).identity.identifier.toString());
    await s.acceptRevocations((await a.revocations()).bytes, a.identity);
    await s.close();
    cleanups.pop();
    s = await state();
    s.revocations.track(a.identifier);
    expect(s.revocations.versionOf(a.identifier)).toBe(2);
    expect(await refusalOf(s.acceptRevocations(v1.bytes, a.identity))).toBe('rollback');
  });

  it('answers any bytes with a typed error and keeps nothing', async () => {
    const s = await state(undefined);
    const { a } = await authority();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (bytes) => {
        const r = await refusalOf(s.acceptRevocations(bytes, a.identity));
        expect(r).not.toBe('accepted');
      }),
      { numRuns: propertyRuns(200) },
    );
    expect(s.revocations.versionOf(a.identifier)).toBe(0);
  });
});
