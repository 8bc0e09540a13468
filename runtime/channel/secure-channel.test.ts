import { afterEach, describe, expect, it } from 'vitest';
import { keyIdentity } from '../../test/support/key-identity.js';
import { until } from '../../test/support/wait.js';
import { nobleCrypto } from '../../vaults/software/noble-provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import type { Message } from '../routing/message.js';
import { Route } from '../routing/route.js';
import { Router } from '../routing/router.js';
import { EchoService } from '../services/echo.js';
import { TcpTransport } from '../transports/tcp/tcp-transport.js';
import type { ChannelIdentity } from './channel-identity.js';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from './channel-identity.js';
import { SecureChannels } from './secure-channels.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe.each([nodeCrypto, nobleCrypto])('secure channel mechanics ($name provider)', (provider) => {
  const routers: Router[] = [];
  afterEach(async () => {
    for (const r of routers.splice(0)) await r.shutdown();
  });

  async function setup() {
    const b = new Router({ name: 'b' });
    const a = new Router({ name: 'a' });
    routers.push(a, b);
    const tcpB = TcpTransport.create(b);
    TcpTransport.create(a);
    await b.startWorker('echo', new EchoService());
    const seen: Message[] = [];
    await b.startWorker('inbox', { handleMessage: (_c, m) => void seen.push(m) });
    const channelsB = new SecureChannels(b, { identity: keyIdentity(provider, 'bob'), provider });
    await channelsB.createListener('api', { expose: ['echo', 'inbox'] });
    const listener = await tcpB.listen('127.0.0.1:0', { expose: ['api'] });
    const channelsA = new SecureChannels(a, { identity: keyIdentity(provider, 'alice'), provider });
    return { a, b, channelsA, channelsB, listener, seen };
  }

  it('opens a channel over TCP, carries messages both ways and tells the receiver who sent them', async () => {
    const { a, channelsA, channelsB, listener, seen } = await setup();
    const channel = await channelsA.create(`1#${listener.address} => api`);
    expect(channel.state).toBe('open');
    expect(channel.peer?.attributes.name).toBe('bob');
    const ctx = await a.context();
    for (let i = 0; i < 100; i++) await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode(`m${i}`));
    for (let i = 0; i < 100; i++) expect(dec.decode((await ctx.receive()).payload)).toBe(`m${i}`);
    await ctx.send(Route.of(channel.encryptor, 'inbox'), enc.encode('who am i'));
    await until(() => seen.length === 1);
    const info = seen[0]!.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)!;
    expect(info.peer.attributes.name).toBe('alice');
    expect(info.peer.identifier).toBe(channelsA.identity.identifier);
    expect(channelsB.list()).toHaveLength(1);
  });

  it('rekeys: 200 messages cross several 32-message key buckets', async () => {
    const { a, channelsA, listener } = await setup();
    const channel = await channelsA.create(`1#${listener.address} => api`);
    const ctx = await a.context();
    for (let i = 0; i < 200; i++) await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode(String(i)));
    for (let i = 0; i < 200; i++) expect(dec.decode((await ctx.receive()).payload)).toBe(String(i));
  });

  it('drops tampered, replayed, truncated and garbage ciphertext and keeps working', async () => {
    const { a, b, channelsA, channelsB, listener, seen } = await setup();
    const channel = await channelsA.create(`1#${listener.address} => api`);
    const ctx = await a.context();
    // Capture the ciphertext A sends by watching B's router.
    const wire: Uint8Array[] = [];
    const bEnd = channelsB.list()[0]!;
    await bEnd.whenOpen(); // the initiator is open once it sent message 3; the responder once it read it
    b.onTrace((e) => {
      if (e.to.equals(bEnd.remote)) wire.push(e.message.payload);
    });
    await ctx.send(Route.of(channel.encryptor, 'inbox'), enc.encode('original'));
    await until(() => seen.length === 1);
    expect(wire).toHaveLength(1);
    const forger = await b.context();
    const inject = (payload: Uint8Array) => forger.send(Route.of(bEnd.remote), payload);
    await inject(wire[0]!); // replay
    const flipped = Uint8Array.from(wire[0]!);
    flipped[7] = 3; // an unused nonce, so the window lets it through to the AEAD…
    flipped[flipped.length - 1]! ^= 1; // …which refuses the altered tag
    await inject(flipped);
    await inject(wire[0]!.subarray(0, 10)); // truncated
    const garbage = new Uint8Array(64).fill(7);
    garbage.set([0, 0, 0, 0, 0, 0, 0, 5]); // a nonce inside the window, so the AEAD is what refuses it
    await inject(garbage);
    const dropped = () => Object.values(bEnd.stats.dropped).reduce((n, k) => n + k, 0);
    await until(() => dropped() === 4); // all four handled by B's decryptor
    expect(seen.map((m) => dec.decode(m.payload))).toEqual(['original']);
    expect(bEnd.stats.dropped).toMatchObject({ replayed_or_stale: 1, tampered: 2, truncated: 1 });
    await ctx.send(Route.of(channel.encryptor, 'inbox'), enc.encode('still fine'));
    await until(() => seen.length === 2);
    expect(seen.map((m) => dec.decode(m.payload))).toEqual(['original', 'still fine']);
  });

  it('refuses a peer that fails the trust policy, on both sides', async () => {
    const { a, b, listener } = await setup();
    const strictB = new SecureChannels(b, { identity: keyIdentity(provider, 'bob2'), provider });
    await strictB.createListener('strict', {
      trustPolicy: (p) => p.attributes.name === 'carol',
      expose: ['inbox'],
    });
    (b.transport(1) as TcpTransport).listenerList()[0]!.expose('strict');
    const channelsA = new SecureChannels(a, { identity: keyIdentity(provider, 'alice'), provider });
    // The responder refuses after message 3 and says so (an encrypted Close): creation fails.
    await expect(channelsA.create(`1#${listener.address} => strict`)).rejects.toMatchObject({
      code: 'TRUST_REFUSED',
      message: expect.stringMatching(
        /^the responder I[0-9a-f]{64} refused this node's identity I[0-9a-f]{64}/,
      ),
    });
    expect(strictB.list()).toHaveLength(0);
    expect(channelsA.list()).toHaveLength(0);
    // The initiator refuses in message 2, before it reveals its identity.
    await expect(
      channelsA.create(`1#${listener.address} => api`, {
        trustPolicy: (p) => p.attributes.name === 'mallory',
      }),
    ).rejects.toMatchObject({ code: 'TRUST_REFUSED' });
  });

  it('runs a channel inside another channel and many channels over one TCP connection', async () => {
    const { a, channelsA, channelsB, listener } = await setup();
    channelsB.listeners()[0]!.expose('api'); // lets a channel run inside a channel
    const outer = await channelsA.create(`1#${listener.address} => api`);
    const inner = await channelsA.create(Route.of(outer.encryptor, 'api'));
    const ctx = await a.context();
    await ctx.send(Route.of(inner.encryptor, 'echo'), enc.encode('nested'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('nested');
    const many = await Promise.all(
      Array.from({ length: 20 }, () => channelsA.create(`1#${listener.address} => api`)),
    );
    for (const c of many) await ctx.send(Route.of(c.encryptor, 'echo'), enc.encode(c.encryptor.text));
    const got = new Set<string>();
    for (let i = 0; i < many.length; i++) got.add(dec.decode((await ctx.receive()).payload));
    expect(got.size).toBe(20);
    expect((a.transport(1) as TcpTransport).connections()).toHaveLength(1);
  });

  it('closes both ends when one end closes', async () => {
    const { a, channelsA, channelsB, listener } = await setup();
    const channel = await channelsA.create(`1#${listener.address} => api`);
    expect(channelsB.list()).toHaveLength(1);
    await channel.close();
    await until(() => channelsB.list().length === 0);
    const ctx = await a.context();
    await expect(ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode('x'))).rejects.toMatchObject({
      code: 'ADDRESS_UNKNOWN',
    });
  });

  it('times out a handshake nobody answers', async () => {
    const a = new Router({ name: 'a' });
    routers.push(a);
    await a.startWorker('blackhole', { handleMessage: () => undefined });
    const channelsA = new SecureChannels(a, {
      identity: keyIdentity(provider, 'alice'),
      provider,
      handshakeTimeoutMs: 100,
    });
    await expect(channelsA.create(Route.of('blackhole'))).rejects.toMatchObject({
      code: 'HANDSHAKE_TIMEOUT',
    });
    expect(channelsA.list()).toHaveLength(0);
  });

  it('does not deliver decrypted messages to workers that were not exposed', async () => {
    const { a, b, channelsA, listener } = await setup();
    const secret: Message[] = [];
    await b.startWorker('secret', { handleMessage: (_c, m) => void secret.push(m) });
    const channel = await channelsA.create(`1#${listener.address} => api`);
    const ctx = await a.context();
    await ctx.send(Route.of(channel.encryptor, 'secret'), enc.encode('x'));
    await until(() => b.metrics.dropped.outgoing_denied === 1);
    expect(secret).toHaveLength(0);
  });

  it('roams: the responder follows the return route of the newest authenticated message', async () => {
    const router = new Router({ name: 'solo' });
    routers.push(router);
    const via: Record<string, number> = { hop1: 0, hop2: 0 };
    for (const name of ['hop1', 'hop2']) {
      await router.startWorker(name, {
        handleMessage: (ctx, m) => {
          via[name]!++;
          return ctx.forward(m.stepForward(ctx.address));
        },
      });
    }
    await router.startWorker('echo', new EchoService());
    const responder = new SecureChannels(router, { identity: keyIdentity(provider, 'bob'), provider });
    await responder.createListener('api', { expose: ['echo'] });
    const initiator = new SecureChannels(router, { identity: keyIdentity(provider, 'alice'), provider });
    const channel = await initiator.create(Route.of('hop1', 'api'));
    const bEnd = responder.list()[0]!;
    await bEnd.whenOpen();
    expect(bEnd.remoteRoute.toString()).toBe(`0#hop1 => ${channel.remote}`);
    // The initiator's path changes (a new connection, another relay): it now goes through hop2.
    channel.remoteRoute = Route.of('hop2', bEnd.remote);
    const ctx = await router.context();
    await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode('moved'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('moved');
    expect(bEnd.remoteRoute.toString()).toBe(`0#hop2 => ${channel.remote}`);
    expect(via.hop2).toBe(2); // the message there and the answer back
  });
});

describe('receive window option', () => {
  it.each([16, 31, 65_537, 1.5])('refuses receiveWindow %s with CONFIG_INVALID', (receiveWindow) => {
    expect(
      () => new SecureChannels(new Router(), { identity: {} as ChannelIdentity, receiveWindow }),
    ).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
