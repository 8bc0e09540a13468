import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { propertyRuns } from '../../test/support/property-runs.js';
import { refusalOf } from '../../test/support/refusal.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { ErrorCodes } from '../errors.js';
import { systemClock } from '../identity/clock.js';
import { createCredentialIssuer, verifyCredential } from '../identity/credentials.js';
import { createIdentity, type LocalIdentity, rotateIdentity } from '../identity/identity.js';
import { Router } from '../routing/router.js';
import { TcpTransport } from '../transports/tcp/tcp-transport.js';
import { Authority } from './authority.js';
import { ask, DIRECTORY_ADDRESS } from './client.js';
import { encodeDirectoryRequest, encodePublication } from './codec.js';
import { Directory, directoryWorker } from './directory.js';
import { collectAnswer, DirectoryClient, leaveRequest, publishAt, serveMailbox } from './directory-client.js';

const verifier = new SoftwareVerifier();
let home: string;
const cleanups: (() => unknown)[] = [];

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-directory-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(home, { recursive: true, force: true });
});

const identity = (): Promise<LocalIdentity> =>
  createIdentity({ vault: SoftwareVault.inMemory(), verifier, clock: systemClock });

function router(name: string): Router {
  const r = new Router({ name });
  TcpTransport.create(r);
  cleanups.push(() => r.shutdown());
  return r;
}

/** A hub node running the directory, reachable over real TCP. */
async function hub(limits: Parameters<typeof Directory.open>[1]['limits'] = {}) {
  const r = new Router({ name: 'hub' });
  const tcp = TcpTransport.create(r);
  const directory = await Directory.open(join(home, 'directory'), { verifier, limits });
  await r.startWorker(DIRECTORY_ADDRESS, directoryWorker(directory));
  const listener = await tcp.listen('127.0.0.1:0', { expose: [DIRECTORY_ADDRESS] });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await r.shutdown();
  };
  cleanups.push(stop);
  return { directory, route: `1#${listener.address}`, stop };
}

async function authority(name = 'ca', local?: LocalIdentity) {
  const id = local ?? (await identity());
  const issuer = await createCredentialIssuer(id, { verifier, clock: systemClock });
  const a = await Authority.create({
    home: join(home, 'authorities'),
    name,
    local: id,
    issuer,
    verifier,
    prekeys: 0,
  });
  cleanups.push(() => a.close());
  return a;
}

const deviceOptions = (local: LocalIdentity, anchor: Authority, token: Uint8Array | null) => ({
  local,
  anchor: anchor.identity,
  token,
  provider: nodeCrypto,
  verifier,
  clock: systemClock,
});

const answerOptions = (local: LocalIdentity, a: Authority) => ({
  authority: a.identity,
  subject: local.identity.identifier.toString(),
  provider: nodeCrypto,
  verifier,
  clock: systemClock,
});

describe('enrollment through a directory over TCP', () => {
  it('devices enroll while the authority is offline; it comes up, answers, and they collect their credentials', async () => {
    const h = await hub();
    const a = await authority();
    const operator = new DirectoryClient(router('operator'), h.route);
    expect(await publishAt(operator, a, 5)).toBe(5);

    // The authority is offline from here: devices fetch bundles and leave requests.
    const deviceRouter = router('devices');
    const client = new DirectoryClient(deviceRouter, h.route);
    const devices = await Promise.all(Array.from({ length: 8 }, () => identity()));
    const tickets = await Promise.all(
      devices.map(() => a.createTicket({ attributes: { role: 'sensor' }, route: h.route })),
    );
    const pendings = await Promise.all(
      devices.map((d, i) => leaveRequest(client, deviceOptions(d, a, tickets[i]!.ticket.code))),
    );
    // Five got a one-time prekey each, three none (3-DH): all different, none twice.
    expect(h.directory.describe()).toMatchObject({
      authorities: [{ prekeys: 0, pendingRequests: 8 }],
    });
    for (const [i, d] of devices.entries())
      expect(await collectAnswer(client, pendings[i]!, answerOptions(d, a))).toBeUndefined();

    // The authority comes up and works through its mailbox.
    expect(await serveMailbox(operator, a)).toBe(8);
    expect(a.counters.enrolled).toBe(8);
    expect(h.directory.describe()).toMatchObject({
      authorities: [{ pendingRequests: 0 }],
      answersWaiting: 8,
    });
    for (const [i, d] of devices.entries()) {
      const credential = await collectAnswer(client, pendings[i]!, answerOptions(d, a));
      const v = verifyCredential(credential!, {
        authorities: [a.identity],
        subject: d.identity.identifier.toString(),
        verifier,
        clock: systemClock,
      });
      expect(v.attributesText.get('role')).toBe('sensor');
    }
    expect(await serveMailbox(operator, a)).toBe(0);
  });

  it('keeps everything across a restart: a one-time prekey handed out is never handed out again, pending requests wait', async () => {
    let h = await hub();
    const a = await authority();
    const operator = router('operator');
    await publishAt(new DirectoryClient(operator, h.route), a, 3);
    const deviceRouter = router('device');
    const first = await new DirectoryClient(deviceRouter, h.route).fetch(a.identifier);
    const d = await identity();
    const { ticket } = await a.createTicket({ attributes: {}, route: '' });
    const pending = await leaveRequest(
      new DirectoryClient(deviceRouter, h.route),
      deviceOptions(d, a, ticket.code),
    );
    await h.stop();

    h = await hub();
    const client = new DirectoryClient(deviceRouter, h.route);
    const after = [await client.fetch(a.identifier), await client.fetch(a.identifier)];
    const ids = [first.prekey?.id, ...after.map((f) => f.prekey?.id)];
    expect(new Set(ids).size).toBe(3);
    expect((await client.fetch(a.identifier)).prekey).toBeNull();
    await serveMailbox(new DirectoryClient(operator, h.route), a);
    expect(await collectAnswer(client, pending, answerOptions(d, a))).toBeDefined();
  });

  it('refuses publications it cannot trust, and the pinned authority stays: forged, from someone else, stale, a conflicting history', async () => {
    const h = await hub();
    const a = await authority();
    const r = router('x');
    const client = new DirectoryClient(r, h.route);
    await publishAt(client, a, 2);
    const p = await a.publication(0);
    const body = encodePublication(p);
    const mallory = await identity();
    const forged = {
      body,
      signature: await mallory.vault.sign(mallory.keyId, verifier.sha256(body)),
    };
    // Someone else's signature over the authority's publication.
    expect(await refusalOf(client.publish(a.identity.export(), forged))).toBe(ErrorCodes.SIGNATURE_INVALID);
    // Mallory publishing the authority's bundle as her own: the bundle is not hers, and she is not pinned.
    const mal = { body, signature: await mallory.vault.sign(mallory.keyId, verifier.sha256(body)) };
    expect(await refusalOf(client.publish(mallory.identity.export(), mal))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
    expect(h.directory.describe().authorities).toHaveLength(1);
    // A replayed publication adds no prekey twice; an older one is refused.
    const older = encodePublication({ ...p, publishedAt: p.publishedAt - 10 });
    const signed = { body: older, signature: await a.signBody(older, 'publication') };
    expect(await refusalOf(client.publish(a.identity.export(), signed))).toBe('stale_publication');
    const first = encodePublication(await a.publication(2));
    const replayed = { body: first, signature: await a.signBody(first, 'publication') };
    await client.publish(a.identity.export(), replayed);
    await client.publish(a.identity.export(), replayed);
    expect(h.directory.describe()).toMatchObject({ authorities: [{ prekeys: 4 }] });
    expect(h.directory.counters.refused).toMatchObject({ stale_publication: 1, SIGNATURE_INVALID: 2 });
    // Devices still get the genuine bundle.
    const fetched = await client.fetch(a.identifier);
    expect(Buffer.from(fetched.authority).equals(Buffer.from(a.identity.export()))).toBe(true);
  });

  it('accepts a rotated authority history that extends the pinned one, refuses one that conflicts', async () => {
    const h = await hub();
    const local = await identity();
    const a = await authority('ca', local);
    const client = new DirectoryClient(router('x'), h.route);
    await publishAt(client, a, 1);
    const rotated = await rotateIdentity(local, { verifier, clock: systemClock });
    const after = await authority('ca-rotated', rotated);
    expect(after.identifier).toBe(a.identifier);
    await client.putRevocations(rotated.identity.export(), (await after.revocations()).bytes);
    expect(h.directory.describe().authorities).toHaveLength(1);
    // The rotated-away key signs nothing here any more, even presented with the old history.
    expect(await refusalOf(client.putRevocations(a.identity.export(), (await a.revocations()).bytes))).toBe(
      ErrorCodes.SIGNATURE_INVALID,
    );
    const fork = await rotateIdentity(local, { verifier, clock: systemClock });
    const forked = await authority('ca-fork', fork);
    expect(
      await refusalOf(client.putRevocations(fork.identity.export(), (await forked.revocations()).bytes)),
    ).toBe('history_conflict');
  });

  it('stores only answers to requests it holds, only the authority forgets requests, and revocation lists only move forward', async () => {
    const h = await hub();
    const a = await authority();
    const r = router('x');
    const client = new DirectoryClient(r, h.route);
    await publishAt(client, a, 1);
    const d = await identity();
    const { ticket } = await a.createTicket({ attributes: {}, route: '' });
    const pending = await leaveRequest(client, deviceOptions(d, a, ticket.code));

    // An answer for a request that was never left here.
    const response = await a.processRequest((await client.collect(a.identifier))[0]!);
    const alien = new Uint8Array(response!);
    alien[5] = alien[5]! ^ 1; // inside the request id
    expect(await refusalOf(client.reply(alien))).toBe('unknown_request');

    // An acknowledgement not signed by the authority.
    const mallory = await identity();
    const ackBody = (await a.acknowledgement([pending.requestId])).body;
    expect(
      await refusalOf(
        client.ack(a.identifier, {
          body: ackBody,
          signature: await mallory.vault.sign(mallory.keyId, verifier.sha256(ackBody)),
        }),
      ),
    ).toBe(ErrorCodes.SIGNATURE_INVALID);
    expect(await client.collect(a.identifier)).toHaveLength(1);

    // Revocations: a newer list replaces, an older one is refused, devices ask with what they hold.
    const v1 = await a.revocations();
    await a.revokeIdentity(mallory.identity.identifier.toString());
    const v2 = await a.revocations();
    expect(v2.version).toBeGreaterThan(v1.version);
    await client.putRevocations(a.identity.export(), v2.bytes);
    expect(await refusalOf(client.putRevocations(a.identity.export(), v1.bytes))).toBe('rollback');
    expect(
      Buffer.from((await client.getRevocations(a.identifier, v1.version))!).equals(Buffer.from(v2.bytes)),
    ).toBe(true);
    expect(await client.getRevocations(a.identifier, v2.version + 1)).toBeNull();
  });

  it('keeps its mailbox bounded and tells the device so', async () => {
    const h = await hub({ requestsPerAuthority: 2 });
    const a = await authority();
    const client = new DirectoryClient(router('x'), h.route);
    await publishAt(client, a, 0);
    const d = await identity();
    await leaveRequest(client, deviceOptions(d, a, null));
    await leaveRequest(client, deviceOptions(d, a, null));
    expect(await refusalOf(leaveRequest(client, deviceOptions(d, a, null)))).toBe('mailbox_full');
    expect(await refusalOf(client.fetch(`I${'0'.repeat(64)}`))).toBe('unknown_authority');
  });

  it('answers any bytes with a typed refusal and keeps serving', async () => {
    const h = await hub();
    const a = await authority();
    const r = router('x');
    const client = new DirectoryClient(r, h.route);
    await publishAt(client, a, 0);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (bytes) => {
        const code = await refusalOf(ask(r, client.route, bytes)).catch(() => 'accepted');
        expect(typeof code).toBe('string');
      }),
      { numRuns: propertyRuns(50) },
    );
    // A well-formed request of every kind for an unknown authority is refused, not crashed on.
    const unknown = `I${'a'.repeat(64)}`;
    for (const request of [
      { op: 'fetch' as const, authority: unknown },
      { op: 'collect' as const, authority: unknown, max: 1 },
      { op: 'get-revocations' as const, authority: unknown, have: 0 },
    ]) {
      expect(await refusalOf(ask(r, client.route, encodeDirectoryRequest(request)))).toBe(
        'unknown_authority',
      );
    }
    expect((await client.fetch(a.identifier)).prekey).toBeNull();
    expect(h.directory.counters.refused.undecodable).toBeGreaterThan(0);
  });
});
