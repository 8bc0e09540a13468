/**
 * `npm run bench -- mqtt` (issue 12): keyhop's MQTT mailboxes against mqtt.js on its own, through
 * the same broker in the same run.
 *
 * - Throughput: --messages (default 20,000) one-way messages of each --sizes (64 B, 1 KiB) from
 *   one mailbox to another, inside a secure channel (node:crypto), timed from the first send to the
 *   last delivery; against raw mqtt.js QoS 1 publish/subscribe of the same payloads with as many
 *   publishes in flight as keyhop's window (1,000). Target: ≥ 0.7× at 1 KiB.
 * - Latency: --round-trips (default 500) request/replies one at a time over the channel (to an
 *   echo worker), against a raw request/reply (publish, the responder publishes back); medians.
 * - Store-and-forward: --offline (default 100,000) 64 B messages sent to a mailbox whose node is
 *   offline, kept in the sender's durable outbox (state file); then the receiver comes online:
 *   every message arrives in order; time to drain; the process's heap at its peak over the start.
 * - Cluster failover: a three-node RabbitMQ cluster (test/rig/rabbitmq.ts), --failover-messages
 *   (default 6,000) secure-channel messages at 1,000/s, the receiver's node killed a third of the
 *   way: messages lost (target 0), duplicates to the application, time to the first delivery after
 *   the kill.
 * The broker of the other parts is Debian's mosquitto (test/rig/mosquitto.ts, max_queued_messages raised so that it
 * drops nothing) when installed, else the embedded aedes broker; the results say which.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { ChannelStore } from '../runtime/channel/channel-store.js';
import { Route } from '../runtime/routing/route.js';
import { Router } from '../runtime/routing/router.js';
import { EchoService } from '../runtime/services/echo.js';
import { startEmbeddedBroker } from '../runtime/transports/mqtt/embedded-broker.js';
import type { MqttConnection } from '../runtime/transports/mqtt/mqtt-connection.js';
import { MqttTransport } from '../runtime/transports/mqtt/mqtt-transport.js';
import { mosquittoSkipReason, startMosquitto } from '../test/rig/mosquitto.js';
import { rabbitmqSkipReason, startRabbitCluster } from '../test/rig/rabbitmq.js';
import { type BenchFlags, type Benchmark, intFlag, packageRoot } from './harness.js';
import { gcFunction, identityNode, median, round, sizeLabel } from './support.js';

const TARGET_RATIO = 0.7;
const WINDOW = 1000;

interface Broker {
  url: string;
  kind: string;
  close(): Promise<void>;
}

async function startBroker(): Promise<Broker> {
  let reason: string | undefined;
  try {
    reason = mosquittoSkipReason();
  } catch (e) {
    reason = String(e);
  }
  if (reason === undefined) {
    const m = await startMosquitto({ maxQueuedMessages: 1_000_000 });
    return { url: m.url, kind: 'mosquitto 2.0 (Debian)', close: () => m.dispose() };
  }
  const b = await startEmbeddedBroker('127.0.0.1:0');
  return { url: b.url, kind: 'aedes (embedded; mosquitto not installed)', close: () => b.close() };
}

const until = async (cond: () => boolean, what: string, timeoutMs = 300_000) => {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not done within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

async function mailbox(
  router: Router,
  url: string,
  name: string,
  extra: object = {},
): Promise<MqttConnection> {
  const t = (router.transport(7) as MqttTransport | undefined) ?? MqttTransport.create(router);
  return t.connect({ urls: [url], mailbox: name, broker: 'b', ...extra });
}

/**
 * keyhop: one-way messages across the broker, through a secure channel (`persistent`: one kept in
 * a channel store at both ends, fsync on, docs/protocols/channel-store.md), or the transport
 * alone; messages per second.
 */
export async function keyhopThroughput(
  url: string,
  size: number,
  count: number,
  tag: string,
  mode: 'secure' | 'transport' | 'persistent' | 'persistent-nosync' = 'secure',
): Promise<number> {
  const routers: Router[] = [];
  const stores: ChannelStore[] = [];
  const persist = mode === 'persistent' || mode === 'persistent-nosync';
  const dir = persist ? mkdtempSync(join(tmpdir(), 'keyhop-bench-store-')) : undefined;
  const store = async (name: string) => {
    if (!dir) return {};
    const s = await ChannelStore.open(join(dir, name), { fsync: mode === 'persistent' });
    stores.push(s);
    return { store: s };
  };
  const secure = mode !== 'transport';
  try {
    const rx = await identityNode(`rx-${tag}`, routers, await store('rx'));
    const tx = await identityNode(`tx-${tag}`, routers, await store('tx'));
    let received = 0;
    await rx.router.startWorker('sink', { handleMessage: () => void received++ });
    await rx.channels.createListener('api', { expose: ['sink'], persist });
    await mailbox(rx.router, url, `rx-${tag}`, { expose: ['api', 'sink'] });
    await mailbox(tx.router, url, `tx-${tag}`);
    const ctx = await tx.router.context();
    let route = Route.parse(`7#b/rx-${tag} => sink`);
    if (secure) {
      const channel = await tx.channels.create(Route.parse(`7#b/rx-${tag} => api`), { persist });
      route = Route.of(channel.encryptor, 'sink');
    }
    const payload = new Uint8Array(size).fill(7);
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      await ctx.send(route, payload);
      // Let the router and the socket work now and then, as a producer that is not a tight loop would.
      if (i % 256 === 255) await new Promise((r) => setImmediate(r));
    }
    await until(() => received >= count, 'keyhop throughput');
    return count / ((performance.now() - started) / 1000);
  } finally {
    for (const r of routers) await r.shutdown();
    for (const s of stores) await s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** mqtt.js alone: QoS 1 publish/subscribe, at most WINDOW publishes unacknowledged. */
async function rawThroughput(url: string, size: number, count: number, tag: string): Promise<number> {
  const sub = await mqtt.connectAsync(url, { clientId: `raw-rx-${tag}`, clean: true });
  const pub = await mqtt.connectAsync(url, { clientId: `raw-tx-${tag}`, clean: true });
  try {
    let received = 0;
    sub.on('message', () => void received++);
    await sub.subscribeAsync(`raw/${tag}`, { qos: 1 });
    const payload = Buffer.alloc(size, 7);
    let inFlight = 0;
    let sent = 0;
    const started = performance.now();
    await new Promise<void>((resolve) => {
      const pump = () => {
        while (inFlight < WINDOW && sent < count) {
          inFlight++;
          sent++;
          pub.publish(`raw/${tag}`, payload, { qos: 1 }, () => {
            inFlight--;
            if (sent < count) pump();
            else if (inFlight === 0) resolve();
          });
        }
      };
      pump();
    });
    await until(() => received >= count, 'raw throughput');
    return count / ((performance.now() - started) / 1000);
  } finally {
    await sub.endAsync();
    await pub.endAsync();
  }
}

async function keyhopLatency(url: string, rounds: number): Promise<number> {
  const routers: Router[] = [];
  try {
    const rx = await identityNode('lat-rx', routers);
    const tx = await identityNode('lat-tx', routers);
    await rx.router.startWorker('echo', new EchoService());
    await rx.channels.createListener('api', { expose: ['echo'] });
    await mailbox(rx.router, url, 'lat-rx', { expose: ['api'] });
    await mailbox(tx.router, url, 'lat-tx');
    const channel = await tx.channels.create(Route.parse('7#b/lat-rx => api'));
    const ctx = await tx.router.context();
    const route = Route.of(channel.encryptor, 'echo');
    const payload = new Uint8Array(64).fill(1);
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t = performance.now();
      await ctx.send(route, payload);
      await ctx.receive(10_000);
      times.push(performance.now() - t);
    }
    return median(times.slice(Math.min(50, rounds >> 2)));
  } finally {
    for (const r of routers) await r.shutdown();
  }
}

async function rawLatency(url: string, rounds: number): Promise<number> {
  const a = await mqtt.connectAsync(url, { clientId: 'raw-lat-a' });
  const b = await mqtt.connectAsync(url, { clientId: 'raw-lat-b' });
  // mqtt.js's own sockets: Nagle off, as keyhop's are.
  (a.stream as unknown as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
  (b.stream as unknown as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
  try {
    await b.subscribeAsync('raw/ping', { qos: 1 });
    b.on('message', (_t, p) => void b.publish('raw/pong', p, { qos: 1 }));
    await a.subscribeAsync('raw/pong', { qos: 1 });
    let waiting: (() => void) | undefined;
    a.on('message', () => waiting?.());
    const payload = Buffer.alloc(64, 1);
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t = performance.now();
      await new Promise<void>((resolve) => {
        waiting = resolve;
        a.publish('raw/ping', payload, { qos: 1 });
      });
      times.push(performance.now() - t);
    }
    return median(times.slice(Math.min(50, rounds >> 2)));
  } finally {
    await a.endAsync();
    await b.endAsync();
  }
}

interface StoreAndForward {
  messages: number;
  delivered: number;
  inOrder: boolean;
  queueSeconds: number;
  drainSeconds: number;
  drainPerSecond: number;
  stateFileBytes: number;
  /** Heap still in use (after a full GC) with every message queued, and after the drain, over the start. */
  retainedHeapQueuedMiB: number;
  retainedHeapDrainedMiB: number;
  rssPeakOverStartMiB: number;
}

export async function storeAndForward(url: string, count: number): Promise<StoreAndForward> {
  const dir = mkdtempSync(join(packageRoot(), 'bench', '.mqtt-'));
  const routers: Router[] = [];
  let rssPeak = 0;
  const sample = () => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  };
  const gc = gcFunction();
  const retained = (since: number) => {
    gc();
    return round((process.memoryUsage().heapUsed - since) / 2 ** 20, 1);
  };
  try {
    const rx1 = new Router({ name: 'sf-rx' });
    routers.push(rx1);
    const first = await mailbox(rx1, url, 'sf-rx', { stateDir: join(dir, 'rx') });
    await first.close(); // offline from now on; its session stays at the broker
    gc();
    const start = process.memoryUsage();
    const sampler = setInterval(sample, 20);
    const tx = new Router({ name: 'sf-tx' });
    routers.push(tx);
    const sender = await mailbox(tx, url, 'sf-tx', {
      stateDir: join(dir, 'tx'),
      outbox: { maxMessages: count },
    });
    const ctx = await tx.context();
    const route = Route.of('7#b/sf-rx', 'sink');
    const queued = performance.now();
    for (let i = 0; i < count; i++) {
      const p = new Uint8Array(64);
      new DataView(p.buffer).setUint32(0, i);
      await ctx.send(route, p);
      if (i % 256 === 255) await new Promise((r) => setImmediate(r));
    }
    await until(() => sender.stats().outbox.messages === count, 'queueing');
    const queueSeconds = (performance.now() - queued) / 1000;
    const retainedHeapQueuedMiB = retained(start.heapUsed);

    const rx = new Router({ name: 'sf-rx2' });
    routers.push(rx);
    let delivered = 0;
    let inOrder = true;
    await rx.startWorker('sink', {
      handleMessage: (_c, m) => {
        if (new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0) !== delivered) inOrder = false;
        delivered++;
      },
    });
    const draining = performance.now();
    await mailbox(rx, url, 'sf-rx', { stateDir: join(dir, 'rx'), expose: ['sink'] });
    await until(() => delivered >= count, 'draining', 600_000);
    const drainSeconds = (performance.now() - draining) / 1000;
    await until(() => sender.stats().outbox.messages === 0, 'acknowledgements');
    const stateFileBytes = sender.stats().stateFileBytes;
    clearInterval(sampler);
    sample();
    const retainedHeapDrainedMiB = retained(start.heapUsed);
    return {
      messages: count,
      delivered,
      inOrder,
      queueSeconds: round(queueSeconds, 2),
      drainSeconds: round(drainSeconds, 2),
      drainPerSecond: Math.round(count / drainSeconds),
      stateFileBytes,
      retainedHeapQueuedMiB,
      retainedHeapDrainedMiB,
      rssPeakOverStartMiB: round((rssPeak - start.rss) / 2 ** 20, 1),
    };
  } finally {
    for (const r of routers) await r.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Failover {
  messages: number;
  delivered: number;
  lost: number;
  duplicatesToApplication: number;
  inOrder: boolean;
  /** From the kill to the delivery of the first message sent after it. */
  failoverSeconds: number;
  receiverReconnects: number;
}

/**
 * Three-node RabbitMQ cluster (quorum queues): a secure-channel stream of `count` messages at
 * ~`rate`/s from a mailbox on node 1 to one on node 2; node 2 is killed (SIGKILL) at a third of
 * the way; the receiver moves to node 3.
 */
export async function clusterFailover(count: number, rate: number): Promise<Failover> {
  const cluster = await startRabbitCluster();
  const routers: Router[] = [];
  try {
    const urls = (first: number) => [0, 1, 2].map((i) => cluster.nodes[(first + i) % 3]!.url);
    const options = {
      retransmitMs: 2_000,
      reconnectMinMs: 200,
      reconnectMaxMs: 2_000,
      connectTimeoutMs: 60_000,
    };
    const rx = await identityNode('fo-rx', routers);
    const tx = await identityNode('fo-tx', routers);
    const seen: number[] = [];
    let firstAfterKill = 0;
    let killedAt = 0;
    const killSeq = Math.floor(count / 3);
    await rx.router.startWorker('sink', {
      handleMessage: (_c, m) => {
        const n = new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0);
        // Messages sent after the kill can only arrive through the receiver's new cluster node.
        if (killedAt > 0 && n > killSeq && firstAfterKill === 0) firstAfterKill = performance.now();
        seen.push(n);
      },
    });
    await rx.channels.createListener('api', { expose: ['sink'] });
    const t = MqttTransport.create(rx.router);
    const receiver = await t.connect({
      urls: urls(1),
      mailbox: 'fo-rx',
      broker: 'b',
      expose: ['api'],
      ...options,
    });
    await MqttTransport.create(tx.router).connect({
      urls: urls(0),
      mailbox: 'fo-tx',
      broker: 'b',
      ...options,
    });
    const channel = await tx.channels.create(Route.parse('7#b/fo-rx => api'));
    const ctx = await tx.router.context();
    const route = Route.of(channel.encryptor, 'sink');
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      const p = new Uint8Array(64);
      new DataView(p.buffer).setUint32(0, i);
      await ctx.send(route, p);
      if (i === killSeq) {
        killedAt = performance.now();
        await cluster.kill(1);
      }
      const due = started + ((i + 1) * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    }
    await until(() => new Set(seen).size >= count, 'failover drain', 180_000);
    const unique = new Set(seen).size;
    return {
      messages: count,
      delivered: seen.length,
      lost: count - unique,
      duplicatesToApplication: seen.length - unique,
      inOrder: seen.every((v, i) => v === i),
      failoverSeconds: round((firstAfterKill - killedAt) / 1000, 2),
      receiverReconnects: receiver.stats().connects - 1,
    };
  } finally {
    for (const r of routers) await r.shutdown();
    await cluster.dispose();
  }
}

function clusterAvailable(): boolean {
  try {
    return rabbitmqSkipReason() === undefined;
  } catch {
    return false;
  }
}

export const mqttBenchmark: Benchmark = {
  description:
    'MQTT mailboxes: secure-channel messages through a broker vs raw mqtt.js; store-and-forward of 100,000',
  async run(flags: BenchFlags) {
    const sizes = (flags.sizes ?? '64,1024').split(',').map(Number);
    const count = intFlag(flags, 'messages', 20_000);
    const rounds = intFlag(flags, 'round-trips', 500);
    const offline = intFlag(flags, 'offline', 100_000);
    const broker = await startBroker();
    try {
      const throughput = [];
      for (const size of sizes) {
        // Alternate, twice each, so neither side always runs on a warmer broker.
        const k: number[] = [];
        const t: number[] = [];
        const p: number[] = [];
        const q: number[] = [];
        const r: number[] = [];
        for (let i = 0; i < 2; i++) {
          r.push(await rawThroughput(broker.url, size, count, `${size}-${i}`));
          k.push(await keyhopThroughput(broker.url, size, count, `${size}-${i}`));
          t.push(await keyhopThroughput(broker.url, size, count, `${size}-${i}-plain`, 'transport'));
          p.push(await keyhopThroughput(broker.url, size, count, `${size}-${i}-kept`, 'persistent'));
          q.push(
            await keyhopThroughput(broker.url, size, count, `${size}-${i}-kept-nosync`, 'persistent-nosync'),
          );
        }
        const keyhop = Math.max(...k);
        const transport = Math.max(...t);
        const persistent = Math.max(...p);
        const persistentNoSync = Math.max(...q);
        const raw = Math.max(...r);
        throughput.push({
          size,
          keyhopPerSecond: Math.round(keyhop),
          transportOnlyPerSecond: Math.round(transport),
          persistentChannelPerSecond: Math.round(persistent),
          persistentNoSyncPerSecond: Math.round(persistentNoSync),
          rawPerSecond: Math.round(raw),
          ratio: round(keyhop / raw, 2),
          transportOnlyRatio: round(transport / raw, 2),
          persistentChannelRatio: round(persistent / raw, 2),
          persistentNoSyncRatio: round(persistentNoSync / raw, 2),
        });
      }
      const keyhopRtt = await keyhopLatency(broker.url, rounds);
      const rawRtt = await rawLatency(broker.url, rounds);
      const latency = {
        keyhopMedianMs: round(keyhopRtt, 3),
        rawMedianMs: round(rawRtt, 3),
        ratio: round(keyhopRtt / rawRtt, 2),
      };
      const sf = await storeAndForward(broker.url, offline);
      const failover = clusterAvailable()
        ? await clusterFailover(intFlag(flags, 'failover-messages', 6000), 1000)
        : null;
      const at1k = throughput.find((t) => t.size === 1024);
      return {
        parameters: {
          broker: broker.kind,
          messages: count,
          window: WINDOW,
          roundTrips: rounds,
          offline,
          sizes,
        },
        results: {
          throughput,
          latency,
          storeAndForward: sf,
          clusterFailover: failover ?? 'not run: rabbitmq-server is not installed',
        },
        summary: {
          target: `keyhop ≥ ${TARGET_RATIO}× raw mqtt.js at 1 KiB`,
          targetMet: at1k ? at1k.ratio >= TARGET_RATIO : null,
          storeAndForwardComplete: sf.delivered === sf.messages && sf.inOrder,
          clusterMessagesLost: failover?.lost ?? 'not run',
        },
        table: {
          columns: ['measure', 'keyhop', 'raw mqtt.js', 'ratio'],
          rows: [
            ...throughput.flatMap((t) => [
              [`${sizeLabel(t.size)} msg/s, secure channel`, t.keyhopPerSecond, t.rawPerSecond, t.ratio],
              [
                `${sizeLabel(t.size)} msg/s, transport only`,
                t.transportOnlyPerSecond,
                t.rawPerSecond,
                t.transportOnlyRatio,
              ],
              [
                `${sizeLabel(t.size)} msg/s, persistent secure channel (fsync)`,
                t.persistentChannelPerSecond,
                t.rawPerSecond,
                t.persistentChannelRatio,
              ],
              [
                `${sizeLabel(t.size)} msg/s, persistent, no fsync (persistSync false)`,
                t.persistentNoSyncPerSecond,
                t.rawPerSecond,
                t.persistentNoSyncRatio,
              ],
            ]),
            ['request/reply median ms', latency.keyhopMedianMs, latency.rawMedianMs, latency.ratio],
          ],
        },
        notes: [
          `broker: ${broker.kind}`,
          `store-and-forward: ${sf.delivered}/${sf.messages} delivered in order=${sf.inOrder}; queued in ${sf.queueSeconds} s, ` +
            `drained in ${sf.drainSeconds} s (${sf.drainPerSecond}/s); state file ${Math.round(sf.stateFileBytes / 2 ** 20)} MiB; ` +
            `heap in use after a GC +${sf.retainedHeapQueuedMiB} MiB with all queued, +${sf.retainedHeapDrainedMiB} MiB after the drain; ` +
            `RSS peak +${sf.rssPeakOverStartMiB} MiB over the start`,
          failover
            ? `RabbitMQ 3.10, 3 nodes, quorum queues: ${failover.messages} messages at 1,000/s, the receiver's node killed at a third: ` +
              `lost ${failover.lost}, duplicated to the application ${failover.duplicatesToApplication}, in order=${failover.inOrder}; ` +
              `the first message sent after the kill arrived ${failover.failoverSeconds} s after it (${failover.receiverReconnects} reconnects)`
            : 'cluster failover: not run (rabbitmq-server is not installed)',
        ],
      };
    } finally {
      await broker.close();
    }
  },
};
