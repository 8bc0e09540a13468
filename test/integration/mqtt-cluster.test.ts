import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trustIdentifiers } from '../../runtime/identity/trust.js';
import { Route } from '../../runtime/routing/route.js';
import { EchoService } from '../../runtime/services/echo.js';
import type { MqttConnection } from '../../runtime/transports/mqtt/mqtt-connection.js';
import { MqttTransport } from '../../runtime/transports/mqtt/mqtt-transport.js';
import { type RabbitCluster, rabbitmqSkipReason, startRabbitCluster } from '../rig/rabbitmq.js';
import { type TestNode, testNode } from '../support/nodes.js';
import { until } from '../support/wait.js';

const skip = rabbitmqSkipReason();

describe.skipIf(skip !== undefined)('MQTT mailboxes on a three-node RabbitMQ cluster (quorum queues)', () => {
  let cluster: RabbitCluster;
  const nodes: TestNode[] = [];
  beforeAll(async () => {
    cluster = await startRabbitCluster();
  }, 400_000);
  afterAll(async () => {
    for (const n of nodes) await n.router.shutdown();
    await cluster?.dispose();
  }, 60_000);

  /** A node whose mailbox starts on cluster node `first` and fails over to the others in turn. */
  async function device(name: string, first: number): Promise<{ node: TestNode; conn: MqttConnection }> {
    const node = await testNode(name);
    nodes.push(node);
    const urls = [0, 1, 2].map((i) => cluster.nodes[(first + i) % 3]!.url);
    const conn = await MqttTransport.create(node.router).connect({
      urls,
      mailbox: name,
      broker: 'rmq',
      protocolVersion: 'auto',
      expose: ['api'],
      retransmitMs: 2_000,
      reconnectMinMs: 200,
      reconnectMaxMs: 2_000,
      connectTimeoutMs: 30_000,
    });
    return { node, conn };
  }

  it('serves devices through a relay tier without sticky routing: any relay node reaches any device, whichever cluster node either is on', async () => {
    const devices = ['dev-1', 'dev-2', 'dev-3', 'dev-4'];
    for (const [i, name] of devices.entries()) {
      const d = await device(name, i % 3);
      await d.node.router.startWorker('echo', new EchoService());
      await d.node.channels.createListener('api', { expose: ['echo'] });
    }
    // Two relay nodes on different cluster nodes; their TCP peers may reach any mailbox of the cluster.
    const relays: string[] = [];
    for (const [i, name] of ['relay-1', 'relay-2'].entries()) {
      const r = await device(name, i * 2);
      const listener = await r.node.tcp.listen('127.0.0.1:0', { expose: ['7#rmq/*'] });
      relays.push(listener.address);
    }
    const client = await testNode('client');
    nodes.push(client);
    const ctx = await client.router.context();
    const identifiers = new Map(
      nodes
        .filter((n) => devices.includes(n.router.name))
        .map((n) => [n.router.name, n.local.identity.identifier]),
    );
    for (const relay of relays) {
      for (const name of devices) {
        const channel = await client.channels.create(Route.parse(`1#${relay} => 7#rmq/${name} => api`), {
          trustPolicy: trustIdentifiers([identifiers.get(name)!]),
        });
        await ctx.send(Route.of(channel.encryptor, 'echo'), new TextEncoder().encode(`${relay} ${name}`));
        expect(new TextDecoder().decode((await ctx.receive(30_000)).payload)).toBe(`${relay} ${name}`);
      }
    }
    // The first relay node goes away: the second still reaches every device (no device was tied to it).
    await nodes.find((n) => n.router.name === 'relay-1')!.router.shutdown();
    for (const name of devices) {
      const channel = await client.channels.create(Route.parse(`1#${relays[1]} => 7#rmq/${name} => api`), {
        trustPolicy: trustIdentifiers([identifiers.get(name)!]),
      });
      await ctx.send(Route.of(channel.encryptor, 'echo'), new TextEncoder().encode('again'));
      expect(new TextDecoder().decode((await ctx.receive(30_000)).payload)).toBe('again');
    }
  }, 240_000);

  it('carries a secure channel between devices on different cluster nodes, and loses or duplicates nothing when the receiver node is killed mid-stream', async () => {
    const a = await device('dev-a', 0);
    const b = await device('dev-b', 1);
    const seen: number[] = [];
    await b.node.router.startWorker('inbox', {
      handleMessage: (_c, m) => void seen.push((m.payload[0]! << 8) | m.payload[1]!),
    });
    await b.node.channels.createListener('api', { expose: ['inbox'] });
    const channel = await a.node.channels.create(Route.parse('7#rmq/dev-b => api'), {
      trustPolicy: trustIdentifiers([b.node.local.identity.identifier]),
    });
    const ctx = await a.node.router.context();
    const total = 3000;
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        await ctx.send(Route.of(channel.encryptor, 'inbox'), Uint8Array.of(i >> 8, i & 0xff));
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await until(() => seen.length >= 500, 60_000);
    // dev-b's cluster node (and its session's queue leader) dies; dev-b moves to the next node.
    await cluster.kill(1);
    await sending;
    await until(() => seen.length >= total, 120_000);
    expect(seen).toEqual([...Array(total).keys()]);
    // dev-b moved to another node (its reconnection need not come before the last delivery).
    await until(() => b.conn.stats().connects >= 2, 60_000);
    await until(() => a.conn.stats().outbox.messages === 0, 60_000);
  }, 240_000);
});
