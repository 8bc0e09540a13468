import { afterEach, describe, expect, it } from 'vitest';
import { keyIdentity } from '../../test/support/key-identity.js';
import { until } from '../../test/support/wait.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { isKeyhopError } from '../errors.js';
import { Message } from '../routing/message.js';
import { Route } from '../routing/route.js';
import { Router } from '../routing/router.js';
import { EchoService } from '../services/echo.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transports/transport-info.js';
import { decodeChannelMessage } from './messages.js';
import { generateDhKey } from './noise/dh-key.js';
import { ockamHandshake } from './ockam-xx.js';
import { LIMIT_CLOSES, RateBucket } from './secure-channel.js';
import { CHANNEL_LIMIT_DEFAULTS, SecureChannels } from './secure-channels.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const provider = nodeCrypto;

describe('RateBucket', () => {
  it('lets a burst through, then the rate', () => {
    let now = 0;
    const b = new RateBucket(10, 3, () => now);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    now += 50; // half a token
    expect(b.take()).toBe(false);
    now += 50;
    expect(b.take()).toBe(true);
    expect(b.take()).toBe(false);
    now += 10_000; // refills to the burst, no further
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
  });
});

describe('limit refusals on the wire', () => {
  it('are Closes that any Ockam peer decodes (the padding names the limit)', () => {
    for (const bytes of Object.values(LIMIT_CLOSES))
      expect(decodeChannelMessage(bytes)).toEqual({ kind: 'close' });
    expect(Buffer.from(LIMIT_CLOSES['listener-full'])).not.toEqual(Buffer.from(LIMIT_CLOSES['per-peer']));
  });
});

describe('secure-channel listener limits', () => {
  const routers: Router[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.shutdown();
  });

  function router(name: string): Router {
    const r = new Router({ name });
    routers.push(r);
    return r;
  }

  it('validates limits and fills in the defaults', async () => {
    const r = router('v');
    expect(
      () => new SecureChannels(r, { identity: keyIdentity(provider, 'x'), limits: { maxChannels: 0 } }),
    ).toThrow(/maxChannels must be a whole number/);
    let err: unknown;
    try {
      new SecureChannels(r, {
        identity: keyIdentity(provider, 'x'),
        limits: { messageRate: { perSecond: -1 } },
      });
    } catch (e) {
      err = e;
    }
    expect(isKeyhopError(err, 'CONFIG_INVALID')).toBe(true);
    const channels = new SecureChannels(r, {
      identity: keyIdentity(provider, 'x'),
      limits: { maxChannelsPerPeer: 5, messageRate: { perSecond: 2.5 } },
    });
    await expect(channels.createListener('bad', { maxHandshakesPerSource: 1.5 })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    const l = await channels.createListener('api', { maxChannels: 7 });
    expect(l.limits).toEqual({
      maxPendingHandshakes: CHANNEL_LIMIT_DEFAULTS.maxPendingHandshakes,
      maxHandshakesPerSource: CHANNEL_LIMIT_DEFAULTS.maxHandshakesPerSource,
      maxChannels: 7,
      maxChannelsPerPeer: 5,
      cookieThreshold: CHANNEL_LIMIT_DEFAULTS.cookieThreshold,
      idleTimeoutMs: CHANNEL_LIMIT_DEFAULTS.idleTimeoutMs,
      messageRate: { perSecond: 2.5, burst: 3 },
    });
    // The cookie threshold follows a listener's own maxPendingHandshakes unless set.
    expect(
      (await channels.createListener('api2', { maxPendingHandshakes: 100 })).limits.cookieThreshold,
    ).toBe(25);
    await expect(channels.createListener('bad2', { idleTimeoutMs: -1 })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
    expect(channels.stats()).toEqual({
      handshakesInProgress: 0,
      channelsOpen: 0,
      handshakesRefusedBusy: 0,
      handshakesRefusedPerSource: 0,
      channelsRefusedListenerFull: 0,
      channelsRefusedPerPeer: 0,
      messagesRateLimited: 0,
      closedWithTransport: 0,
      closedIdle: 0,
      retriesSent: 0,
      retriesSkipped: 0,
      cookiesAccepted: 0,
      handshakesTimedOut: 0,
      handshakesInvalid: 0,
      handshakesRefusedTrust: 0,
    });
  });

  it('refuses channels over the per-peer and per-listener caps with CHANNEL_LIMIT, and frees slots on close', async () => {
    const r = router('b');
    await r.startWorker('echo', new EchoService());
    const server = new SecureChannels(r, { identity: keyIdentity(provider, 'bob'), provider });
    const listener = await server.createListener('api', {
      expose: ['echo'],
      maxChannels: 3,
      maxChannelsPerPeer: 2,
    });
    const alice = new SecureChannels(r, { identity: keyIdentity(provider, 'alice'), provider });
    const carol = new SecureChannels(r, { identity: keyIdentity(provider, 'carol'), provider });

    const a1 = await alice.create('api');
    await alice.create('api');
    const perPeer = await alice.create('api').catch((e: unknown) => e);
    expect(isKeyhopError(perPeer, 'CHANNEL_LIMIT')).toBe(true);
    expect(String((perPeer as Error).message)).toMatch(/maximum of channels per peer/);
    expect(alice.list()).toHaveLength(2);

    await carol.create('api');
    const full = await carol.create('api').catch((e: unknown) => e);
    expect(isKeyhopError(full, 'CHANNEL_LIMIT')).toBe(true);
    expect(String((full as Error).message)).toMatch(/its listener has its maximum of channels open/);
    expect(server.stats()).toMatchObject({
      channelsOpen: 3,
      channelsRefusedPerPeer: 1,
      channelsRefusedListenerFull: 1,
      handshakesInProgress: 0,
    });
    expect(listener.stats().channelsRefusedPerPeer).toBe(1);
    // The refused ends are gone on both sides: only the admitted ones remain.
    await until(() => server.list().length === 3);

    // Existing channels still work; one closing frees a slot.
    const ctx = await r.context();
    await ctx.send(Route.of(a1.encryptor, 'echo'), enc.encode('still here'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('still here');
    await a1.close();
    await until(() => server.stats().channelsOpen === 2);
    await alice.create('api');
    expect(server.stats().channelsOpen).toBe(3);
  });

  it('drops first messages over the per-source and per-listener handshake caps without creating an end', async () => {
    const r = router('b');
    const server = new SecureChannels(r, { identity: keyIdentity(provider, 'bob'), provider });
    // Never under load here: this is about the caps (cookies are tested below).
    await server.createListener('api', {
      maxPendingHandshakes: 5,
      maxHandshakesPerSource: 3,
      cookieThreshold: 5,
    });
    const m1 = ockamHandshake(provider, true, generateDhKey(provider, '25519')).writeMessage();
    const sink = await r.context();
    const workersBefore = r.workers().length;
    const fromSource = (peer: string) => {
      const info: TransportInfo = { transport: 'tcp', peer, sender: sink.address.toString() };
      return new Message(Route.of('api'), Route.of(sink.address), m1, [{ type: TRANSPORT_INFO, data: info }]);
    };
    // Two sources of one host (two ports), then another host (IPv4-mapped: the same key form).
    for (let i = 0; i < 5; i++) await r.send(sink.address, fromSource(`10.0.0.1:${4000 + (i % 2)}`));
    await until(() => server.stats().handshakesRefusedPerSource === 2);
    expect(server.stats().handshakesInProgress).toBe(3);
    for (let i = 0; i < 4; i++) await r.send(sink.address, fromSource('[::ffff:10.0.0.2]:5000'));
    await until(() => server.stats().handshakesRefusedBusy === 2);
    expect(server.stats()).toMatchObject({ handshakesInProgress: 5, handshakesRefusedPerSource: 2 });
    // One end per accepted first message, none for the dropped ones.
    expect(server.list()).toHaveLength(5);
    // Two mailboxes per end (inbound, outbound).
    expect(r.workers().length).toBe(workersBefore + 10);
    // Messages with no transport (local) count against the listener only.
    for (const e of server.list()) await e.close();
    await until(() => server.stats().handshakesInProgress === 0);
    for (let i = 0; i < 5; i++)
      await r.send(sink.address, new Message(Route.of('api'), Route.of(sink.address), m1));
    await until(() => server.stats().handshakesInProgress === 5);
    expect(server.stats().handshakesRefusedPerSource).toBe(2);
  });

  it('drops payloads over the message rate, per channel, and counts them', async () => {
    const r = router('b');
    const got: string[] = [];
    await r.startWorker('inbox', { handleMessage: (_c, m) => void got.push(dec.decode(m.payload)) });
    const server = new SecureChannels(r, { identity: keyIdentity(provider, 'bob'), provider });
    await server.createListener('api', { expose: ['inbox'], messageRate: { perSecond: 0.01, burst: 4 } });
    const alice = new SecureChannels(r, { identity: keyIdentity(provider, 'alice'), provider });
    const carol = new SecureChannels(r, { identity: keyIdentity(provider, 'carol'), provider });
    const a = await alice.create('api');
    const c = await carol.create('api');
    const ctx = await r.context();
    for (let i = 0; i < 10; i++) await ctx.send(Route.of(a.encryptor, 'inbox'), enc.encode(`a${i}`));
    const responderOf = (peer: string) => server.list().find((e) => e.peer?.identifier === peer)!;
    const aEnd = responderOf(alice.identity.identifier);
    await until(() => aEnd.stats.dropped.rate_limited === 6);
    expect(got).toEqual(['a0', 'a1', 'a2', 'a3']);
    // Carol's channel has its own bucket.
    for (let i = 0; i < 3; i++) await ctx.send(Route.of(c.encryptor, 'inbox'), enc.encode(`c${i}`));
    await until(() => got.length === 7);
    expect(responderOf(carol.identity.identifier).stats.dropped.rate_limited).toBe(0);
    expect(server.stats().messagesRateLimited).toBe(6);
    // Close is never rate-limited.
    await a.close();
    await until(() => aEnd.state === 'closed');
  });
});
