import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { trustIdentifiers } from '../../runtime/identity/trust.js';
import { KeyhopNode } from '../../runtime/node/node.js';
import type { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import { Router } from '../../runtime/routing/router.js';
import { EchoService } from '../../runtime/services/echo.js';
import { decodeFrame, encodeData, FrameKind } from '../../runtime/transports/mqtt/frame.js';
import type { MqttConnection, MqttConnectionOptions } from '../../runtime/transports/mqtt/mqtt-connection.js';
import { MqttTransport } from '../../runtime/transports/mqtt/mqtt-transport.js';
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from '../rig/mosquitto.js';
import { makeTestCertificates } from '../rig/tls-certs.js';
import { testNode } from '../support/nodes.js';
import { until } from '../support/wait.js';

const skip = mosquittoSkipReason();
const enc = new TextEncoder();
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function broker(options: Parameters<typeof startMosquitto>[0] = {}): Promise<Mosquitto> {
  const b = await startMosquitto(options);
  cleanups.push(() => b.dispose());
  return b;
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'keyhop-mqtt-it-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function mailbox(
  name: string,
  b: Mosquitto,
  o: Partial<MqttConnectionOptions> = {},
  router = new Router({ name }),
): Promise<{ router: Router; conn: MqttConnection }> {
  cleanups.push(() => router.shutdown());
  const t = router.transport(7) ? (router.transport(7) as MqttTransport) : MqttTransport.create(router);
  const conn = await t.connect({
    urls: [b.url],
    mailbox: name,
    broker: 'b',
    retransmitMs: 300,
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
    ...o,
  });
  return { router, conn };
}

/** A worker that records 2-byte sequence numbers. */
function counter(router: Router, address = 'inbox'): Promise<number[]> {
  const seen: number[] = [];
  return router
    .startWorker(address, { handleMessage: (_c, m) => void seen.push((m.payload[0]! << 8) | m.payload[1]!) })
    .then(() => seen);
}

const seq = (i: number) => Uint8Array.of(i >> 8, i & 0xff);
const range = (n: number) => [...Array(n).keys()];

describe.skipIf(skip !== undefined)('MQTT transport through mosquitto', () => {
  it('carries a secure channel across TCP and MQTT hops; the broker and other clients see only ciphertext and cannot forge', async () => {
    const b = await broker();
    // A raw client that reads every keyhop topic: what a curious broker (or an unconfined client) sees.
    const spy = await mqtt.connectAsync(b.url, { protocolVersion: 5, clientId: 'spy' });
    cleanups.push(() => spy.endAsync());
    const seenByBroker: { topic: string; payload: Buffer }[] = [];
    spy.on('message', (topic, payload) => seenByBroker.push({ topic, payload }));
    await spy.subscribeAsync('keyhop/#', { qos: 1 });

    // The device: a secure-channel listener, reachable only over MQTT.
    const device = await testNode('device');
    const inbox: Message[] = [];
    await device.router.startWorker('inbox', { handleMessage: (_c, m) => void inbox.push(m) });
    await device.router.startWorker('echo', new EchoService());
    await device.channels.createListener('api', { expose: ['inbox', 'echo'] });
    const dev = await mailbox('device', b, { protocolVersion: 5, expose: ['api'] }, device.router);

    // The hub: TCP on one side, MQTT on the other; TCP peers may go on to the device's mailbox.
    const hub = await testNode('hub');
    await mailbox('hub', b, { protocolVersion: 5 }, hub.router);
    const listener = await hub.tcp.listen('127.0.0.1:0', { expose: ['7#b/device'] });

    const client = await testNode('client');
    cleanups.push(() => client.router.shutdown());
    const channel = await client.channels.create(Route.parse(`1#${listener.address} => 7#b/device => api`), {
      trustPolicy: trustIdentifiers([device.local.identity.identifier]),
    });
    const ctx = await client.router.context();
    for (let i = 0; i < 20; i++) {
      await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode(`secret reading ${i}`));
      expect(new TextDecoder().decode((await ctx.receive(10_000)).payload)).toBe(`secret reading ${i}`);
    }
    await ctx.send(Route.of(channel.encryptor, 'inbox'), enc.encode('secret reading final'));
    await until(() => inbox.length === 1, 10_000);
    await until(() => seenByBroker.length >= 42, 10_000);
    for (const { payload } of seenByBroker)
      expect(payload.includes(Buffer.from('secret reading'))).toBe(false);
    const toDevice = seenByBroker.filter(
      (s) => s.topic === 'keyhop/device/hub' && s.payload[1] === FrameKind.DATA && s.payload.length > 100,
    );
    expect(toDevice.length).toBeGreaterThan(20);

    // Forgery attempts, as any client of the broker could make them.
    const mallory = await mqtt.connectAsync(b.url, { protocolVersion: 5, clientId: 'mallory' });
    cleanups.push(() => mallory.endAsync());
    const secureEnd = device.channels.list()[0]!;
    const droppedBefore = { ...secureEnd.stats.dropped };
    // 1. Captured frames replayed as they were, under the hub's name: the transport drops them as duplicates.
    for (const s of toDevice.slice(0, 5))
      await mallory.publishAsync('keyhop/device/hub', s.payload, { qos: 1 });
    // 2. The same ciphertexts in a new stream under the hub's name: the channel refuses the nonces again.
    const forgedStream = randomBytes(8);
    for (const [i, s] of toDevice.slice(0, 5).entries()) {
      const f = decodeFrame(s.payload, 1 << 20);
      if (f.kind !== FrameKind.DATA) continue;
      await mallory.publishAsync(
        'keyhop/device/hub',
        Buffer.from(encodeData(forgedStream, i + 1, 1, f.body)),
        { qos: 1 },
      );
    }
    // 3. Made-up ciphertext: the channel's AEAD refuses it.
    const lastFrame = decodeFrame(toDevice.at(-1)!.payload, 1 << 20);
    if (lastFrame.kind !== FrameKind.DATA) throw new Error('expected DATA');
    const tampered = Uint8Array.from(lastFrame.body);
    tampered[tampered.length - 5]! ^= 0x55;
    await mallory.publishAsync('keyhop/device/hub', Buffer.from(encodeData(forgedStream, 6, 1, tampered)), {
      qos: 1,
    });
    // 4. As itself, with captured frames: a replayed handshake start gets an answer nobody can
    // complete, replayed channel data is refused by the channel.
    for (const s of toDevice.slice(0, 3))
      await mallory.publishAsync('keyhop/device/mallory', s.payload, { qos: 1 });
    const dropped = (d: typeof droppedBefore) => d.replayed_or_stale + d.tampered + d.undecodable;
    // The first captured frame is the handshake's first message (to the listener); the rest are channel data.
    await until(() => dropped(secureEnd.stats.dropped) >= dropped(droppedBefore) + 7, 10_000);
    await until(() => dev.conn.stats().drops.duplicate >= 5, 10_000);
    // Nothing forged reached the application, no other channel opened, and the channel still works.
    expect(inbox).toHaveLength(1);
    expect(device.channels.list().filter((c) => c.state === 'open')).toHaveLength(1);
    await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode('still fine'));
    expect(new TextDecoder().decode((await ctx.receive(10_000)).payload)).toBe('still fine');
  }, 60_000);

  it('loses nothing when mosquitto acknowledges and then drops (max_queued_messages) while the receiver is offline (MQTT 3.1.1)', async () => {
    const b = await broker({ maxQueuedMessages: 50 });
    const bob1 = await mailbox('bob', b, { protocolVersion: 4 });
    await bob1.conn.close(); // the session (and its subscription) stays at the broker
    const alice = await mailbox('alice', b, { protocolVersion: 4 });
    const ctx = await alice.router.context();
    for (const i of range(400)) await ctx.send(Route.of('7#b/bob', 'inbox'), seq(i));
    // mosquitto PUBACKs all 400 and keeps 50.
    await until(() => alice.conn.stats().publishes >= 400);
    const bob = new Router({ name: 'bob-again' });
    const seen = await counter(bob);
    await mailbox('bob', b, { protocolVersion: 4, expose: ['inbox'] }, bob);
    await until(() => seen.length >= 400, 30_000);
    expect(seen).toEqual(range(400));
    expect(alice.conn.stats().retransmits).toBeGreaterThan(0);
    await until(() => alice.conn.stats().outbox.messages === 0, 30_000);
  }, 60_000);

  it('delivers every message once and in order across a broker crash (kill -9) mid-stream', async () => {
    const b = await broker();
    const bob = new Router({ name: 'bob' });
    const seen = await counter(bob);
    const bobBox = await mailbox('bob', b, { expose: ['inbox'] }, bob);
    const alice = await mailbox('alice', b);
    const ctx = await alice.router.context();
    const total = 2000;
    const sending = (async () => {
      for (const i of range(total)) await ctx.send(Route.of('7#b/bob', 'inbox'), seq(i));
    })();
    await until(() => seen.length >= 300, 30_000);
    await b.stop('SIGKILL');
    await b.restart();
    await sending;
    await until(() => seen.length >= total, 60_000);
    expect(seen).toEqual(range(total));
    expect(bobBox.conn.stats().connects).toBeGreaterThanOrEqual(2);
    await until(() => alice.conn.stats().outbox.messages === 0, 30_000);
  }, 90_000);

  it('keeps the outbox across a restart of the sending process while the broker is down', async () => {
    const b = await broker();
    const dir = tempDir();
    const bob = new Router({ name: 'bob' });
    const seen = await counter(bob);
    await mailbox('bob', b, { expose: ['inbox'] }, bob);
    await b.stop();
    const alice1 = await mailbox('alice', b, { stateDir: dir, connectTimeoutMs: 0 });
    // A second process cannot open the same state while this one holds it.
    const other = MqttTransport.create(new Router({ name: 'other' }));
    await expect(
      other.connect({ urls: [b.url], mailbox: 'alice', broker: 'b', stateDir: dir, connectTimeoutMs: 0 }),
    ).rejects.toMatchObject({
      code: 'STATE_IN_USE',
    });
    const ctx = await alice1.router.context();
    for (const i of range(300)) await ctx.send(Route.of('7#b/bob', 'inbox'), seq(i));
    expect(alice1.conn.stats().outbox.messages).toBe(300);
    await alice1.router.shutdown();

    const alice2 = await mailbox('alice', b, { stateDir: dir, connectTimeoutMs: 0 });
    expect(alice2.conn.stats().outbox.messages).toBe(300);
    const ctx2 = await alice2.router.context();
    for (const i of range(100)) await ctx2.send(Route.of('7#b/bob', 'inbox'), seq(300 + i));
    await b.restart();
    // Deadlines for a loaded machine (the broker restarts and the mailbox backs off first): they
    // bound a hang, they time nothing.
    await until(() => seen.length >= 400, 90_000);
    expect(seen).toEqual(range(400));
    await until(() => alice2.conn.stats().outbox.messages === 0, 60_000);
  }, 180_000);

  it('works with broker users and an ACL that confines each mailbox to its own topics', async () => {
    const b = await broker({
      users: { alice: 'alice-pw', bob: 'bob-pw', mallory: 'mallory-pw' },
      acl: ['pattern read keyhop/%u/+', 'pattern write keyhop/+/%u'],
    });
    await expect(
      mailbox('alice', b, { username: 'alice', password: 'wrong', connectTimeoutMs: 3000 }),
    ).rejects.toMatchObject({
      code: 'CONNECT_FAILED',
    });
    const bob = new Router({ name: 'bob' });
    const seen = await counter(bob);
    await mailbox('bob', b, { username: 'bob', password: 'bob-pw', expose: ['inbox'] }, bob);
    const alice = await mailbox('alice', b, { username: 'alice', password: 'alice-pw' });
    const mallory = await mqtt.connectAsync(b.url, {
      username: 'mallory',
      password: 'mallory-pw',
      clientId: 'mallory',
      protocolVersion: 5,
    });
    cleanups.push(() => mallory.endAsync());
    const stolen: Buffer[] = [];
    mallory.on('message', (_t, p) => stolen.push(p));
    await mallory.subscribeAsync('keyhop/bob/+', { qos: 1 });
    const ctx = await alice.router.context();
    for (const i of range(50)) await ctx.send(Route.of('7#b/bob', 'inbox'), seq(i));
    await until(() => seen.length >= 50, 30_000);
    // Forging alice's name is refused by the broker (write ACL), so nothing of it reaches bob.
    const fake = encodeData(randomBytes(8), 1, 1, Uint8Array.of(0x83, 0x80, 0x80, 0x40));
    await mallory.publishAsync('keyhop/bob/alice', Buffer.from(fake), { qos: 1 }).catch(() => undefined);
    await ctx.send(Route.of('7#b/bob', 'inbox'), seq(50));
    await until(() => seen.length >= 51, 30_000);
    expect(seen).toEqual(range(51));
    expect(stolen).toHaveLength(0);
  }, 60_000);

  it('authenticates to the broker with a client certificate over TLS, and is refused without one', async () => {
    const certs = makeTestCertificates(tempDir());
    const b = await broker({
      tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey, requireCertificate: true },
    });
    expect(b.url.startsWith('mqtts://')).toBe(true);
    await expect(
      mailbox('nocert', b, { tls: { ca: certs.ca }, connectTimeoutMs: 3000, reconnectMinMs: 5000 }),
    ).rejects.toMatchObject({ code: 'CONNECT_FAILED' });
    const bob = new Router({ name: 'bob' });
    const seen = await counter(bob);
    const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    await mailbox('bob', b, { tls, expose: ['inbox'] }, bob);
    const alice = await mailbox('alice', b, { tls });
    const ctx = await alice.router.context();
    for (const i of range(20)) await ctx.send(Route.of('7#b/bob', 'inbox'), seq(i));
    await until(() => seen.length >= 20, 30_000);
    expect(seen).toEqual(range(20));
  }, 60_000);

  it('serves a TCP portal through a secure channel whose traffic crosses the broker, between two nodes configured with mailboxes', async () => {
    const b = await broker();
    const blob = randomBytes(2 * 1024 * 1024);
    const web = createHttpServer((_req, res) => {
      res.setHeader('content-length', blob.length);
      res.end(blob);
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      web.closeAllConnections();
      return new Promise((r) => web.close(r));
    });
    const base = {
      tcpListeners: [],
      services: { echo: true, relay: false },
      relays: [],
      identity: null,
      secureChannel: { listener: true, address: 'api', authorities: [] },
      inlets: [],
      log: { level: 'silent' },
    };
    const server = await KeyhopNode.start({
      ...base,
      name: 'server',
      outlets: [{ target: `127.0.0.1:${(web.address() as AddressInfo).port}` }],
      mqtt: [{ urls: [b.url], broker: 'fleet' }],
    });
    cleanups.push(() => server.stop());
    const client = await KeyhopNode.start({
      ...base,
      name: 'client',
      outlets: [],
      mqtt: [{ urls: [b.url], broker: 'fleet' }],
    });
    cleanups.push(() => client.stop());
    const inlet = await client.createInlet({
      bind: '127.0.0.1:0',
      to: '7#fleet/server => api',
      authorized: [server.identity!.identity.identifier.toString()],
    });
    const res = await fetch(`http://${inlet.address}/`);
    const body = Buffer.from(await res.arrayBuffer());
    expect(createHash('sha256').update(body).digest('hex')).toBe(
      createHash('sha256').update(blob).digest('hex'),
    );
    const shown = client.describe().mqtt as { route: string; connected: boolean }[];
    expect(shown).toEqual([expect.objectContaining({ route: '7#fleet/client', connected: true })]);
  }, 60_000);
});
