import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type TestNode, testNode } from '../../test/support/nodes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import { refusalOf } from '../../test/support/refusal.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { createCredentialIssuer, verifyCredential } from '../identity/credentials.js';
import type { Router } from '../routing/router.js';
import { Authority } from './authority.js';
import {
  authorityWorker,
  enrollWithCode,
  fetchRevocationsFromAuthority,
  type MemberOptions,
  renewCredential,
} from './authority-service.js';
import { AUTHORITY_ADDRESS, ask } from './client.js';
import { encodeAuthorityRequest } from './codec.js';
import { TrustState } from './trust-state.js';

let home: string;
const routers: Router[] = [];
const cleanups: (() => unknown)[] = [];
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-authority-service-'));
});
afterEach(async () => {
  for (const r of routers.splice(0)) await r.shutdown();
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(home, { recursive: true, force: true });
});

async function node(name: string): Promise<TestNode> {
  const n = await testNode(name);
  routers.push(n.router);
  return n;
}

/** The authority's node: its identity is the authority's; `authority` reachable through its listener. */
async function authorityNode(clock: Clock = systemClock, name = 'ca') {
  const ca = await node(name);
  const issuer = await createCredentialIssuer(ca.local, { verifier: ca.verifier, clock: systemClock });
  const authority = await Authority.create({
    home,
    name,
    local: ca.local,
    issuer,
    verifier: ca.verifier,
    clock,
    prekeys: 0,
  });
  cleanups.push(() => authority.close());
  await ca.router.startWorker(AUTHORITY_ADDRESS, authorityWorker(authority));
  await ca.channels.createListener('api', { expose: [AUTHORITY_ADDRESS] });
  const listener = await ca.tcp.listen('127.0.0.1:0', { expose: ['api', AUTHORITY_ADDRESS] });
  return { ca, authority, tcp: `1#${listener.address}`, route: `1#${listener.address} => api` };
}

function member(d: TestNode, a: Authority, route: string): MemberOptions {
  return {
    channels: d.channels,
    router: d.router,
    authority: a.identity,
    route,
    subject: d.local.identity.identifier.toString(),
    verifier: d.verifier,
    clock: systemClock,
  };
}

describe('one-time-code enrollment over a secure channel', () => {
  it('a code gives a credential with its attributes once; renewal gives a fresh one to members only', async () => {
    const { authority, route } = await authorityNode();
    const d = await node('device');
    const { ticket } = await authority.createTicket({ attributes: { role: 'sensor' }, route });
    const credential = await enrollWithCode(member(d, authority, route), ticket.code);
    const v = verifyCredential(credential, {
      authorities: [authority.identity],
      subject: d.local.identity.identifier,
      verifier: d.verifier,
      clock: systemClock,
    });
    expect(v.attributesText.get('role')).toBe('sensor');
    expect(authority.memberList()).toHaveLength(1);

    // Used once: another device with the same code is refused, and so is the same device again.
    const other = await node('other');
    expect(await refusalOf(enrollWithCode(member(other, authority, route), ticket.code))).toBe('ticket_used');
    expect(await refusalOf(enrollWithCode(member(d, authority, route), ticket.code))).toBe('ticket_used');

    const renewed = await renewCredential(member(d, authority, route));
    expect(renewed.credential.data).toBeDefined();
    expect(await refusalOf(renewCredential(member(other, authority, route)))).toBe('not_member');

    // Revoked: renewal refused.
    await authority.revokeIdentity(d.local.identity.identifier.toString());
    expect(await refusalOf(renewCredential(member(d, authority, route)))).toBe('revoked');
    expect(authority.counters.refused).toMatchObject({ ticket_used: 2, not_member: 1, revoked: 1 });
  });

  it('refuses withdrawn, expired and unknown codes', async () => {
    let now = Math.floor(Date.now() / 1000);
    const { authority, route } = await authorityNode({ now: () => now });
    const withdrawn = await authority.createTicket({ attributes: {}, route });
    await authority.withdrawTicket(withdrawn.id);
    const d = await node('device');
    expect(await refusalOf(enrollWithCode(member(d, authority, route), withdrawn.ticket.code))).toBe(
      'ticket_withdrawn',
    );
    expect(await refusalOf(enrollWithCode(member(d, authority, route), new Uint8Array(32)))).toBe(
      'ticket_unknown',
    );
    const short = await authority.createTicket({ attributes: {}, route, ttlSeconds: 1 });
    now += 5;
    expect(await refusalOf(enrollWithCode(member(d, authority, route), short.ticket.code))).toBe(
      'ticket_expired',
    );
  });

  it('only talks to the authority: another node answering at the route is refused before anything is sent', async () => {
    const { authority } = await authorityNode();
    const impostor = await authorityNode(systemClock, 'impostor');
    const d = await node('device');
    const { ticket } = await authority.createTicket({ attributes: {}, route: impostor.route });
    expect(await refusalOf(enrollWithCode(member(d, authority, impostor.route), ticket.code))).toBe(
      'TRUST_REFUSED',
    );
    expect(impostor.authority.counters.refused).toEqual({});
  });

  it('serves the signed revocation list with or without a channel, enrollment only through one, and typed refusals for any bytes', async () => {
    const { authority, route, tcp } = await authorityNode();
    const d = await node('device');
    await authority.revokeIdentity(d.local.identity.identifier.toString());
    const trust = await TrustState.open(undefined, { verifier: d.verifier, clock: systemClock });
    cleanups.push(() => trust.close());
    const plain = await fetchRevocationsFromAuthority(
      { ...member(d, authority, `${tcp} => ${AUTHORITY_ADDRESS}`) },
      0,
    );
    expect((await trust.acceptRevocations(plain!, authority.identity))?.version).toBe(2);
    const viaChannel = await fetchRevocationsFromAuthority(member(d, authority, route), 3);
    expect(viaChannel).toBeNull();

    const { ticket } = await authority.createTicket({ attributes: {}, route });
    const direct = ask(
      d.router,
      `${tcp} => ${AUTHORITY_ADDRESS}`,
      encodeAuthorityRequest({ kind: 'enroll', code: ticket.code }),
    );
    expect(await refusalOf(direct)).toBe('secure_channel_required');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        expect(await refusalOf(ask(d.router, `${tcp} => ${AUTHORITY_ADDRESS}`, bytes))).not.toBe('accepted');
      }),
      { numRuns: propertyRuns(30) },
    );
    // The plain request spent nothing: the code still enrolls a device.
    const e = await node('e');
    await enrollWithCode(member(e, authority, route), ticket.code);
  });
});
