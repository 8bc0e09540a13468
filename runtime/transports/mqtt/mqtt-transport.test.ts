import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../test/support/wait.js';
import { Address } from '../../routing/address.js';
import { encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import { Message } from '../../routing/message.js';
import { Route } from '../../routing/route.js';
import { Router } from '../../routing/router.js';
import { EchoService } from '../../services/echo.js';
import { type EmbeddedBroker, startEmbeddedBroker } from './embedded-broker.js';
import { encodeAck, encodeData } from './frame.js';
import type { MqttConnectionOptions } from './mqtt-connection.js';
import { MqttTransport } from './mqtt-transport.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function broker(): Promise<EmbeddedBroker> {
  const b = await startEmbeddedBroker('127.0.0.1:0');
  cleanups.push(() => b.close());
  return b;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'keyhop-mqtt-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function node(name: string, b: EmbeddedBroker, o: Partial<MqttConnectionOptions> = {}) {
  const router = new Router({ name });
  cleanups.push(() => router.shutdown());
  const mqtt = MqttTransport.create(router);
  const conn = await mqtt.connect({ urls: [b.url], mailbox: name, broker: 'hub', retransmitMs: 500, ...o });
  return { router, mqtt, conn };
}

/** A node whose `inbox` worker records what `read` makes of each payload, with mailbox `mailbox` open. */
async function inboxNode<T>(
  name: string,
  mailbox: string,
  b: EmbeddedBroker,
  read: (payload: Uint8Array) => T,
  o: Partial<MqttConnectionOptions> = {},
) {
  const router = new Router({ name });
  cleanups.push(() => router.shutdown());
  const seen: T[] = [];
  await router.startWorker('inbox', { handleMessage: (_c, m) => void seen.push(read(m.payload)) });
  const conn = await MqttTransport.create(router).connect({
    urls: [b.url],
    mailbox,
    broker: 'hub',
    expose: ['inbox'],
    ...o,
  });
  return { router, conn, seen };
}

const firstByte = (p: Uint8Array) => p[0]!;

describe('MQTT transport through the embedded broker', () => {
  it('carries request/replies between two mailboxes, the reply through the sender worker', async () => {
    const b = await broker();
    const bob = await node('bob', b, { expose: ['echo'] });
    await bob.router.startWorker('echo', new EchoService());
    const alice = await node('alice', b);
    const ctx = await alice.router.context();
    for (let i = 0; i < 50; i++) {
      const payload = new TextEncoder().encode(`hello ${i}`.repeat(i + 1));
      await ctx.send(Route.of('7#hub/bob', 'echo'), payload);
      const reply = await ctx.receive(5000);
      expect(Buffer.from(reply.payload).equals(Buffer.from(payload))).toBe(true);
      expect(reply.returnRoute.length).toBe(2);
    }
    await until(() => alice.conn.stats().outbox.messages === 0 && bob.conn.stats().outbox.messages === 0);
    const sa = alice.conn.stats();
    expect(sa.messagesOut).toBe(50);
    expect(sa.messagesIn).toBe(50);
    expect(Object.values(sa.drops).every((n) => n === 0)).toBe(true);
  });

  it('keeps messages for a mailbox that is offline and delivers them in order, once, when it returns', async () => {
    const b = await broker();
    const dir = tempDir();
    const bob1 = await node('bob', b, { expose: ['inbox'], stateDir: join(dir, 'bob') });
    await bob1.router.shutdown(); // bob's session stays at the broker
    const alice = await node('alice', b, { stateDir: join(dir, 'alice') });
    const ctx = await alice.router.context();
    for (let i = 0; i < 300; i++)
      await ctx.send(Route.of('7#hub/bob', 'inbox'), Uint8Array.of(i >> 8, i & 0xff));
    const { seen } = await inboxNode('bob2', 'bob', b, (p) => (p[0]! << 8) | p[1]!, {
      stateDir: join(dir, 'bob'),
    });
    await until(() => seen.length >= 300, 15_000);
    expect(seen).toEqual([...Array(300).keys()]);
    await until(() => alice.conn.stats().outbox.messages === 0, 15_000);
  });

  it('counts and drops bad input on its topics and goes on delivering: garbage, oversized, retained, undecodable, foreign acks', async () => {
    const b = await broker();
    const raw = await mqtt.connectAsync(b.url, { clientId: 'raw' });
    cleanups.push(() => raw.endAsync());
    const stream = Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1);
    const frame = (i: number, seq = i) =>
      Buffer.from(
        encodeData(
          stream,
          seq,
          1,
          encodeCborFrame(new Message(Route.of('inbox'), Route.EMPTY, Uint8Array.of(i))),
        ),
      );
    // Left retained on bob's topic before bob subscribes: the broker hands it to every new subscription.
    await raw.publishAsync('keyhop/bob/old', frame(9, 1), { qos: 1, retain: true });
    const { conn: bob, seen } = await inboxNode('bob', 'bob', b, firstByte, { maxMessageBytes: 4096 });
    await raw.publishAsync('keyhop/bob/raw', frame(1), { qos: 1 });
    await raw.publishAsync('keyhop/bob/raw', Buffer.from('garbage'), { qos: 1 });
    await raw.publishAsync('keyhop/bob/raw', Buffer.from(encodeData(stream, 2, 1, new Uint8Array(5000))), {
      qos: 1,
    });
    await raw.publishAsync(
      'keyhop/bob/raw',
      Buffer.from(encodeData(stream, 2, 1, Uint8Array.of(0xff, 0x00))),
      { qos: 1 },
    );
    await raw.publishAsync(
      'keyhop/bob/raw',
      Buffer.from(encodeAck(Uint8Array.of(7, 7, 7, 7, 7, 7, 7, 7), 5)),
      { qos: 1 },
    );
    await raw.publishAsync('keyhop/bob/raw', frame(1), { qos: 1 }); // a duplicate
    await raw.publishAsync('keyhop/bob/raw', frame(3), { qos: 1 });
    await until(() => seen.length === 2);
    expect(seen).toEqual([1, 3]);
    expect(bob.stats().drops).toMatchObject({
      undecodable_frame: 2,
      retained: 1,
      undecodable_message: 1,
      unknown_stream: 1,
      duplicate: 1,
    });
    await raw.publishAsync('keyhop/bob/old', Buffer.alloc(0), { qos: 1, retain: true });
  });

  it('refuses a message when the outbox is full, with OUTBOX_FULL and a counter, and keeps what it took', async () => {
    const b = await broker();
    const alice = await node('alice', b, { outbox: { maxMessages: 10 } });
    const ctx = await alice.router.context();
    for (let i = 0; i < 12; i++) await ctx.send(Route.of('7#hub/nobody', 'inbox'), Uint8Array.of(i));
    await until(() => alice.conn.stats().drops.outbox_full === 2);
    expect(alice.conn.stats().outbox.messages).toBe(10);
    expect(alice.router.metrics.workerErrors).toBe(2);
  });

  it('gives up messages older than maxAgeMs, counted at both ends, and delivers the rest', async () => {
    const b = await broker();
    const bob1 = await node('bob', b, { expose: ['inbox'] });
    await bob1.router.shutdown();
    const alice = await node('alice', b, { outbox: { maxAgeMs: 100, window: 1 } });
    const ctx = await alice.router.context();
    for (let i = 0; i < 5; i++) await ctx.send(Route.of('7#hub/bob', 'inbox'), Uint8Array.of(i));
    await until(() => alice.conn.stats().drops.expired === 5);
    await ctx.send(Route.of('7#hub/bob', 'inbox'), Uint8Array.of(9));
    const { conn: bob, seen } = await inboxNode('bob2', 'bob', b, firstByte);
    await until(() => seen.includes(9), 10_000);
    // The one published before it expired may arrive first (it was at the broker); 9 arrives, once.
    expect(seen.filter((x) => x === 9)).toHaveLength(1);
    expect(bob.stats().drops.skipped + seen.length).toBeGreaterThanOrEqual(5);
  });

  it('fails to open with CONNECT_FAILED when the broker never answers, and keeps trying when told not to wait', async () => {
    // Reads (so it notices a client leaving) and never answers.
    const silent = createServer((socket) => socket.resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => silent.close(() => r())));
    const port = (silent.address() as { port: number }).port;
    const router = new Router({ name: 'x' });
    cleanups.push(() => router.shutdown());
    const t = MqttTransport.create(router);
    await expect(
      t.connect({ urls: [`mqtt://127.0.0.1:${port}`], mailbox: 'x', connectTimeoutMs: 300 }),
    ).rejects.toMatchObject({ code: 'CONNECT_FAILED' });
    const c = await t.connect({ urls: [`mqtt://127.0.0.1:${port}`], mailbox: 'x', connectTimeoutMs: 0 });
    expect(c.connected).toBe(false);
    const ctx = await router.context();
    await ctx.send(Route.of(`7#127.0.0.1:${port}/y`, 'inbox'), Uint8Array.of(1));
    await until(() => c.stats().outbox.messages === 1);
  });

  it('refuses bad options with CONFIG_INVALID and routes to unknown brokers with CONNECT_FAILED', async () => {
    const router = new Router({ name: 'x' });
    cleanups.push(() => router.shutdown());
    const t = MqttTransport.create(router);
    for (const bad of [
      { urls: [] },
      { urls: ['http://x:1'] },
      { urls: ['mqtt://x:1/path'] },
      { urls: ['mqtt://x:1'], outbox: { window: 0 } },
      { urls: ['mqtt://x:1'], protocolVersion: 3 as never },
      { urls: ['mqtt://x:1'], maxMessageBytes: 32 * 1024 * 1024 },
    ]) {
      await expect(t.connect({ mailbox: 'x', connectTimeoutMs: 0, ...bad })).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
      });
    }
    await expect(t.connect({ urls: ['mqtt://x:1'], mailbox: 'bad/name' })).rejects.toMatchObject({
      code: 'ADDRESS_INVALID',
    });
    await expect(t.resolve(Address.parse('7#elsewhere/box'))).rejects.toMatchObject({
      code: 'CONNECT_FAILED',
    });
  });

  it('goes offline on purpose and back, keeping its workers, routes and the messages sent meanwhile', async () => {
    const b = await broker();
    const bob = await node('bob', b, { expose: ['echo'] });
    await bob.router.startWorker('echo', new EchoService());
    const alice = await node('alice', b);
    const ctx = await alice.router.context();
    await ctx.send(Route.of('7#hub/bob', 'echo'), Uint8Array.of(0));
    await ctx.receive(5000);
    await bob.conn.disconnect();
    expect(bob.conn.connected).toBe(false);
    for (let i = 1; i <= 20; i++) await ctx.send(Route.of('7#hub/bob', 'echo'), Uint8Array.of(i));
    bob.conn.reconnect();
    const replies: number[] = [];
    for (let i = 1; i <= 20; i++) replies.push((await ctx.receive(10_000)).payload[0]!);
    expect(replies).toEqual([...Array(20).keys()].map((i) => i + 1));
    expect(bob.conn.stats().connects).toBe(2);
  });

  it('keeps the reply paths of a mailbox that is closed and opened again in the same process', async () => {
    const b = await broker();
    const bob = await node('bob', b, { expose: ['later'] });
    let replyTo: Route | undefined;
    await bob.router.startWorker('later', {
      handleMessage: (_c, m) => {
        replyTo = m.returnRoute;
      },
    });
    const alice = await node('alice', b);
    const ctx = await alice.router.context();
    await ctx.send(Route.of('7#hub/bob', 'later'), Uint8Array.of(1));
    await until(() => replyTo !== undefined);
    await alice.mqtt.close(alice.conn);
    const reopened = await alice.mqtt.connect({ urls: [b.url], mailbox: 'alice', broker: 'hub' });
    // bob answers only now, to the worker that asked before the mailbox closed.
    const bctx = await bob.router.context();
    await bctx.send(replyTo!, Uint8Array.of(2));
    expect((await ctx.receive(10_000)).payload).toEqual(Uint8Array.of(2));
    expect(reopened.stats().drops.not_exposed).toBe(0);
  });
});
