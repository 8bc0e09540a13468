import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from '../../runtime/channel/channel-identity.js';
import { Authority } from '../../runtime/enrollment/authority.js';
import { TrustState } from '../../runtime/enrollment/trust-state.js';
import { type Clock, systemClock } from '../../runtime/identity/clock.js';
import { createCredentialIssuer, issueCredential } from '../../runtime/identity/credentials.js';
import { type LocalIdentity, rotateIdentity } from '../../runtime/identity/identity.js';
import { trustCredential } from '../../runtime/identity/trust.js';
import type { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import type { Router } from '../../runtime/routing/router.js';
import { type TestNode, testNode } from '../support/nodes.js';
import { refusalOf } from '../support/refusal.js';
import { until } from '../support/wait.js';

/**
 * The trust lifecycle at a verifier, over real TCP: a revoked device loses its open channel and
 * cannot open another, a credential that expires while a channel is open stops counting, a
 * renewed one pushed in the channel keeps it, channels end at their maximum lifetime, and a
 * rotated-away key is refused.
 */

let home: string;
const routers: Router[] = [];
const cleanups: (() => unknown)[] = [];
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-lifecycle-'));
});
afterEach(async () => {
  for (const r of routers.splice(0)) await r.shutdown();
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(home, { recursive: true, force: true });
});

const enc = new TextEncoder();

async function node(name: string, o: Parameters<typeof testNode>[1] = {}): Promise<TestNode> {
  const n = await testNode(name, o);
  routers.push(n.router);
  return n;
}

async function setup(o: { clock?: Clock; ttl?: number; maxLifetimeMs?: number } = {}) {
  const clock = o.clock ?? systemClock;
  const ca = await node('ca');
  const issuer = await createCredentialIssuer(ca.local, { verifier: ca.verifier, clock });
  const authority = await Authority.create({
    home,
    name: 'ca',
    local: ca.local,
    issuer,
    verifier: ca.verifier,
    clock,
    prekeys: 0,
  });
  cleanups.push(() => authority.close());
  const trust = await TrustState.open(join(home, 'service-trust'), { verifier: ca.verifier, clock });
  cleanups.push(() => trust.close());
  trust.revocations.track(authority.identifier);
  const service = await node('service', {
    authorities: [ca.local.identity],
    checks: trust,
    clock,
    ...(o.maxLifetimeMs !== undefined ? { maxLifetimeMs: o.maxLifetimeMs } : {}),
  });
  const inbox: Message[] = [];
  await service.router.startWorker('inbox', { handleMessage: (_c, m) => void inbox.push(m) });
  await service.channels.createListener('api', {
    trustPolicy: trustCredential({ authorities: [ca.local.identity], policy: '(= subject.role "sensor")' }),
    expose: ['inbox'],
  });
  const listener = await service.tcp.listen('127.0.0.1:0', { expose: ['api'] });
  const credentialFor = (who: LocalIdentity, ttlSeconds = o.ttl ?? 3600) =>
    issueCredential(issuer, {
      subject: who.identity.identifier,
      attributes: { role: 'sensor' },
      verifier: ca.verifier,
      clock,
      ttlSeconds,
    });
  const device = async (local?: LocalIdentity) => {
    const probe = local ?? (await node('probe')).local;
    return node('device', { local: probe, credentials: [await credentialFor(probe)] });
  };
  return {
    ca,
    authority,
    trust,
    service,
    inbox,
    route: `1#${listener.address} => api`,
    credentialFor,
    device,
  };
}

async function send(d: TestNode, channel: { encryptor: { toString(): string } }, text: string) {
  const ctx = await d.router.context();
  await ctx.send(Route.of(channel.encryptor.toString(), 'inbox'), enc.encode(text));
  await ctx.stop();
}

describe('the trust lifecycle at a verifier', () => {
  it('a revoked device loses its open channel as soon as the new list arrives, and cannot open another', async () => {
    const s = await setup();
    const d = await s.device();
    const channel = await d.channels.create(s.route);
    await send(d, channel, 'before');
    await until(() => s.inbox.length === 1);
    const closed = new Promise<void>((r) => channel.onClose(r));

    await s.authority.revokeIdentity(d.local.identity.identifier.toString());
    await s.trust.acceptRevocations((await s.authority.revocations()).bytes, s.authority.identity);
    expect(await s.service.channels.revalidateAll('revocation list')).toBe(1);
    await closed;
    expect(await refusalOf(d.channels.create(s.route))).toBe('TRUST_REFUSED');
    // Another device of the same authority is unaffected.
    const other = await s.device();
    await other.channels.create(s.route);
  });

  it('a credential that expires while the channel is open stops counting; a renewed one pushed in time keeps the channel', async () => {
    let now = Math.floor(Date.now() / 1000);
    const clock: Clock = { now: () => now };
    const s = await setup({ clock, ttl: 100 });
    const renewing = await s.device();
    const kept = await renewing.channels.create(s.route);
    const lapsing = await s.device();
    const lapsed = await lapsing.channels.create(s.route);
    const closed = new Promise<void>((r) => lapsed.onClose(r));
    await send(lapsing, lapsed, 'in time');
    await until(() => s.inbox.length === 1);
    // Renewed in time: the device pushes a fresh credential before the first expires.
    now += 50;
    renewing.channelIdentity.setCredentials([await s.credentialFor(renewing.local, 100)]);
    await kept.refreshCredentials();
    await until(() => s.service.channels.list().some((c) => c.peer?.validUntil === now + 100));
    // Not renewed: the next message after expiry finds the peer without its credential.
    now += 70;
    await send(lapsing, lapsed, 'too late');
    await closed;
    await send(renewing, kept, 'renewed');
    await until(() => s.inbox.length === 2);
    expect(new TextDecoder().decode(s.inbox[1]!.payload)).toBe('renewed');
    const info = s.inbox[1]!.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)!;
    expect(info.peer.attributes.role).toBe('sensor');
  });

  it('closes channels at their maximum lifetime', async () => {
    const s = await setup({ maxLifetimeMs: 300 });
    const d = await s.device();
    const channel = await d.channels.create(s.route);
    await new Promise<void>((r) => channel.onClose(r));
    expect(channel.state).toBe('closed');
  });

  it('locks out a rotated-away key: the old history is refused once the new one was seen, or once the authority says so', async () => {
    const s = await setup();
    const first = await s.device();
    await first.channels.create(s.route);
    const rotated = await rotateIdentity(first.local, { verifier: first.verifier, clock: systemClock });
    const after = await s.device(rotated);
    await after.channels.create(s.route);
    // The thief kept the old key: same identifier, the history as it was, a valid credential.
    const thief = await s.device(first.local);
    expect(await refusalOf(thief.channels.create(s.route))).toMatch(
      /TRUST_REFUSED|HANDSHAKE_TIMEOUT|CHANNEL_CLOSED/,
    );
    expect(s.trust.known.counters.refusedOlder).toBe(1);

    // A service that never saw the new history learns it from the authority's list.
    const fresh = await TrustState.open(undefined, { verifier: first.verifier, clock: systemClock });
    cleanups.push(() => fresh.close());
    fresh.revocations.track(s.authority.identifier);
    await s.authority.recordRotation(rotated.identity.identifier.toString(), rotated.identity.changes.length);
    await fresh.acceptRevocations((await s.authority.revocations()).bytes, s.authority.identity);
    await expect(fresh.checkIdentity(first.local.identity)).rejects.toThrow(/rotated/);
  });
});
