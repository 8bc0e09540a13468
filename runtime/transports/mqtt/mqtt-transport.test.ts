import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../test/support/wait.js';
import { Route } from '../../routing/route.js';
import { Router } from '../../routing/router.js';
import { EchoService } from '../../services/echo.js';
import { type EmbeddedBroker, startEmbeddedBroker } from './embedded-broker.js';
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
    const router = new Router({ name: 'bob2' });
    cleanups.push(() => router.shutdown());
    const seen: number[] = [];
    await router.startWorker('inbox', {
      handleMessage: (_c, m) => void seen.push((m.payload[0]! << 8) | m.payload[1]!),
    });
    const mqtt = MqttTransport.create(router);
    await mqtt.connect({
      urls: [b.url],
      mailbox: 'bob',
      broker: 'hub',
      expose: ['inbox'],
      stateDir: join(dir, 'bob'),
    });
    await until(() => seen.length >= 300, 15_000);
    expect(seen).toEqual([...Array(300).keys()]);
    await until(() => alice.conn.stats().outbox.messages === 0, 15_000);
  });
});
