import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SigningKeyType } from '../../vaults/provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { createCredentialIssuer, verifyCredential } from '../identity/credentials.js';
import { createIdentity, type LocalIdentity, rotateIdentity } from '../identity/identity.js';
import { Authority } from './authority.js';
import {
  decodeRevocationList,
  decodeSealedRequest,
  decodeSigned,
  encodeSealedRequest,
  type FetchedBundle,
  type OneTimePrekey,
  type Publication,
} from './codec.js';
import { openResponse, prepareEnrollment } from './device.js';

const verifier = new SoftwareVerifier();
let home: string;
const opened: Authority[] = [];

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-authority-'));
});
afterEach(async () => {
  for (const a of opened.splice(0)) await a.close();
  rmSync(home, { recursive: true, force: true });
});

async function identity(
  keyType: SigningKeyType = 'Ed25519',
  clock: Clock = systemClock,
): Promise<LocalIdentity> {
  return createIdentity({ vault: SoftwareVault.inMemory(), verifier, clock, keyType });
}

async function authority(options: { passphrase?: string; prekeys?: number; clock?: Clock } = {}) {
  const local = await identity();
  const issuer = await createCredentialIssuer(local, { verifier, clock: systemClock });
  const o = {
    home,
    name: 'ca',
    local,
    issuer,
    verifier,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.passphrase ? { passphrase: options.passphrase } : {}),
  };
  const a = await Authority.create({ ...o, prekeys: options.prekeys ?? 5 });
  opened.push(a);
  return { a, o, local };
}

/** What a directory would hand a device: the bundle and the next one-time prekey. */
function fetchFrom(a: Authority, p: Publication, take = true): FetchedBundle {
  return {
    authority: a.identity.export(),
    bundle: p.bundle,
    prekey: take ? ((p.prekeys as OneTimePrekey[]).shift() ?? null) : null,
  };
}

async function enroll(
  a: Authority,
  p: Publication,
  device: LocalIdentity,
  code: Uint8Array | null,
  o: { take?: boolean; attributes?: Record<string, string> } = {},
) {
  const { request, pending } = await prepareEnrollment({
    local: device,
    anchor: a.identity,
    fetched: fetchFrom(a, p, o.take ?? true),
    token: code,
    ...(o.attributes ? { attributes: o.attributes } : {}),
    provider: nodeCrypto,
    verifier,
    clock: systemClock,
  });
  const response = await a.processRequest(request);
  return { request, pending, response };
}

describe('X3DH enrollment through an authority', () => {
  it('issues a credential to a device with a code, with or without a one-time prekey; the answer opens only for that device', async () => {
    const { a } = await authority();
    const p = await a.publication(5);
    expect(p.prekeys).toHaveLength(5);
    for (const take of [true, false]) {
      const device = await identity(take ? 'Ed25519' : 'P256');
      const { ticket } = await a.createTicket({ attributes: { role: 'device', fleet: 'f1' }, route: 'x' });
      const { pending, response } = await enroll(a, p, device, ticket.code, { take });
      expect(response).toBeDefined();
      const subject = device.identity.identifier.toString();
      const credential = openResponse(pending, response!, {
        authority: a.identity,
        subject,
        provider: nodeCrypto,
        verifier,
        clock: systemClock,
      });
      const v = verifyCredential(credential, {
        authorities: [a.identity],
        subject,
        verifier,
        clock: systemClock,
      });
      expect(Object.fromEntries(v.attributesText)).toEqual({ role: 'device', fleet: 'f1' });
      // Nobody else can read the answer.
      expect(() =>
        openResponse({ ...pending, responseKey: new Uint8Array(32) }, response!, {
          authority: a.identity,
          subject,
          provider: nodeCrypto,
          verifier,
          clock: systemClock,
        }),
      ).toThrow();
    }
    expect(a.counters.enrolled).toBe(2);
    expect(a.memberList().map((m) => m.via)).toEqual(['x3dh', 'x3dh']);
  });

  it("refuses a device presenting someone else's identity (its proof does not verify), and spends nothing", async () => {
    const { a } = await authority();
    const p = await a.publication(2);
    const victim = await identity();
    const mallory = await identity();
    const { ticket } = await a.createTicket({ attributes: { role: 'device' }, route: 'x' });
    // Mallory's own software, which does not check what her key signs against the history she sends.
    const lax = { verify: () => true, sha256: (d: Uint8Array) => verifier.sha256(d) };
    const { request, pending } = await prepareEnrollment({
      local: { identity: victim.identity, vault: mallory.vault, keyId: mallory.keyId },
      anchor: a.identity,
      fetched: fetchFrom(a, p),
      token: ticket.code,
      provider: nodeCrypto,
      verifier: lax,
      clock: systemClock,
    });
    const response = await a.processRequest(request);
    expect(() =>
      openResponse(pending, response!, {
        authority: a.identity,
        subject: victim.identity.identifier.toString(),
        provider: nodeCrypto,
        verifier,
        clock: systemClock,
      }),
    ).toThrow(/\(proof_invalid\)/);
    expect(a.memberList()).toHaveLength(0);
    expect(a.ticketList()[0]).toMatchObject({ state: 'valid', used: 0 });
    expect(a.counters.refused).toMatchObject({ proof_invalid: 1 });
    // The victim, with the same code, is still welcome.
    const { response: ok } = await enroll(a, p, victim, ticket.code);
    expect(ok).toBeDefined();
    expect(a.memberList()).toHaveLength(1);
  });

  it('refuses, with a reason the device can read: no code, a used or unknown code, attributes the code does not grant, a revoked identity', async () => {
    const { a } = await authority();
    const p = await a.publication(10);
    const refusal = async (
      device: LocalIdentity,
      code: Uint8Array | null,
      attributes?: Record<string, string>,
    ) => {
      const { pending, response } = await enroll(a, p, device, code, attributes ? { attributes } : {});
      const subject = device.identity.identifier.toString();
      try {
        openResponse(pending, response!, {
          authority: a.identity,
          subject,
          provider: nodeCrypto,
          verifier,
          clock: systemClock,
        });
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('expected a refusal');
    };
    expect(await refusal(await identity(), null)).toMatch(/\(token_required\)/);
    expect(await refusal(await identity(), new Uint8Array(32).fill(1))).toMatch(/\(ticket_unknown\)/);
    const { ticket } = await a.createTicket({ attributes: { role: 'device' }, route: 'x' });
    expect(await refusal(await identity(), ticket.code, { role: 'admin' })).toMatch(
      /\(attributes_refused\).*role=admin/,
    );
    const first = await identity();
    await enroll(a, p, first, ticket.code, { attributes: { role: 'device' } });
    expect(await refusal(await identity(), ticket.code)).toMatch(/\(ticket_used\)/);
    const revoked = await identity();
    await a.revokeIdentity(revoked.identity.identifier.toString());
    const { ticket: t2 } = await a.createTicket({ attributes: {}, route: 'x' });
    expect(await refusal(revoked, t2.code)).toMatch(/\(revoked\)/);
    expect(a.counters.refused).toMatchObject({
      token_required: 1,
      ticket_unknown: 1,
      attributes_refused: 1,
      ticket_used: 1,
      revoked: 1,
    });
  });

  it('never uses a one-time prekey twice, not even after a restart; replays are dropped and counted', async () => {
    const { a, o } = await authority();
    const p = await a.publication(3);
    const { ticket } = await a.createTicket({ attributes: {}, uses: 5, route: 'x' });
    const device = await identity();
    const { request, response } = await enroll(a, p, device, ticket.code);
    expect(response).toBeDefined();
    expect(await a.processRequest(request)).toBeUndefined();
    expect(a.counters.dropped.prekey_reused).toBe(1);
    await a.close();
    opened.pop();
    const again = await Authority.open(o);
    opened.push(again);
    expect(await again.processRequest(request)).toBeUndefined();
    expect(again.counters.dropped).toMatchObject({ prekey_reused: 1 }); // the journal remembers it
    // Tampered requests open nothing and spend nothing.
    const sealed = decodeSealedRequest((await enroll(again, p, device, ticket.code, { take: true })).request);
    const flipped = sealed.ciphertext.slice();
    flipped[0]! ^= 1;
    expect(
      await again.processRequest(encodeSealedRequest({ header: sealed.header, ciphertext: flipped })),
    ).toBeUndefined();
  });

  it('takes concurrent enrollments with distinct prekeys and codes, all durable', async () => {
    const { a, o } = await authority();
    const p = await a.publication(40);
    const runs = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const device = await identity();
        const { ticket } = await a.createTicket({ attributes: { n: '1' }, route: 'x' });
        return enroll(a, p, device, ticket.code);
      }),
    );
    expect(runs.every((r) => r.response !== undefined)).toBe(true);
    await a.close();
    opened.pop();
    const again = await Authority.open(o);
    opened.push(again);
    expect(again.memberList()).toHaveLength(40);
    expect(again.ticketList().every((t) => t.state === 'used')).toBe(true);
  });

  it('refuses a bundle that is not signed by the authority the device trusts', async () => {
    const { a } = await authority();
    const p = await a.publication(2);
    const impostor = await identity();
    const fetched = { ...fetchFrom(a, p), authority: impostor.identity.export() };
    await expect(
      prepareEnrollment({
        local: await identity(),
        anchor: a.identity,
        fetched,
        token: null,
        provider: nodeCrypto,
        verifier,
        clock: systemClock,
      }),
    ).rejects.toMatchObject({ code: 'TRUST_REFUSED' });
    const other = await identity();
    await expect(
      prepareEnrollment({
        local: await identity(),
        anchor: other.identity,
        fetched: fetchFrom(a, p),
        token: null,
        provider: nodeCrypto,
        verifier,
        clock: systemClock,
      }),
    ).rejects.toMatchObject({ code: 'TRUST_REFUSED' });
  });

  it('keeps answering requests made with the previous signed prekey during its grace period', async () => {
    let now = systemClock.now();
    const clock = { now: () => now };
    const { a } = await authority({ clock });
    const old = await a.publication(2);
    const { ticket } = await a.createTicket({ attributes: {}, uses: 3, route: 'x' });
    await a.rotateSignedPrekey(3600);
    const inFlight = await enroll(a, old, await identity(), ticket.code);
    expect(inFlight.response).toBeDefined();
    now += 3601;
    const late = await enroll(a, old, await identity('Ed25519', clock), ticket.code);
    expect(late.response).toBeUndefined();
    expect(a.counters.dropped.unknown_signed_prekey).toBe(1);
  });

  it('refuses a device that presents an older history than the one it enrolled with', async () => {
    const { a } = await authority();
    const p = await a.publication(4);
    const v1 = await identity();
    const { ticket } = await a.createTicket({ attributes: {}, uses: 2, route: 'x' });
    const v2 = await rotateIdentity(v1, { verifier, clock: systemClock });
    await enroll(a, p, v2, ticket.code);
    const { pending, response } = await enroll(a, p, v1, ticket.code);
    expect(() =>
      openResponse(pending, response!, {
        authority: a.identity,
        subject: v1.identity.identifier.toString(),
        provider: nodeCrypto,
        verifier,
        clock: systemClock,
      }),
    ).toThrow(/history_older/);
  });

  it("announces a member's rotation in its revocation list when it renews with a longer history", async () => {
    const { a } = await authority();
    const v1 = await identity();
    const { ticket } = await a.createTicket({ attributes: { role: 'x' }, route: 'x' });
    const id = v1.identity.identifier.toString();
    await a.enrollWithCode(id, 1, ticket.code);
    const before = await a.revocations();
    await a.credentialFor(id, 2);
    const after = await a.revocations();
    expect(after.version).toBe(before.version + 1);
    expect(decodeRevocationList(decodeSigned(after.bytes, 'list').body).rotations).toEqual([
      { identifier: id, changes: 2 },
    ]);
    // The old history is refused from now on.
    await expect(a.credentialFor(id, 1)).rejects.toMatchObject({ reason: 'history_older' });
  });

  it('seals its prekeys when created with a passphrase, and needs it to open', async () => {
    const { a, o } = await authority({ passphrase: 'pw' });
    await a.close();
    opened.pop();
    const { passphrase: _drop, ...without } = o;
    await expect(Authority.open(without)).rejects.toMatchObject({ code: 'KEY_STORE_LOCKED' });
    opened.push(await Authority.open(o));
  });

  it('is held by one process at a time, and says which node holds it', async () => {
    const { o } = await authority();
    await expect(Authority.open({ ...o, owner: 'other' })).rejects.toMatchObject({ code: 'STATE_IN_USE' });
    await expect(Authority.create(o)).rejects.toMatchObject({ code: 'AUTHORITY_EXISTS' });
    await expect(Authority.open({ ...o, name: 'nosuch' })).rejects.toMatchObject({
      code: 'AUTHORITY_NOT_FOUND',
    });
    await opened.pop()!.close();
    const again = await Authority.open({ ...o, owner: 'ca-node' });
    opened.push(again);
    await expect(Authority.open(o)).rejects.toThrow(/served by node "ca-node"/);
  });

  it('signs a versioned revocation list', async () => {
    const { a } = await authority();
    const first = await a.revocations();
    expect(first.version).toBe(1);
    const device = await identity();
    await a.revokeIdentity(device.identity.identifier.toString());
    await a.revokeCredential('ab'.repeat(32));
    const second = await a.revocations();
    expect(second.version).toBe(3);
    expect(second.bytes).not.toEqual(first.bytes);
  });
});
