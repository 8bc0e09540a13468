import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRetry } from '../../runtime/channel/handshake-cookie.js';
import { generateDhKey } from '../../runtime/channel/noise/dh-key.js';
import { ockamHandshake } from '../../runtime/channel/ockam-xx.js';
import type { SecureChannelEnd } from '../../runtime/channel/secure-channel.js';
import type { ListenerOptions } from '../../runtime/channel/secure-channels.js';
import { isKeyhopError } from '../../runtime/errors.js';
import { parseNodeConfig } from '../../runtime/node/config.js';
import { KeyhopNode } from '../../runtime/node/node.js';
import { decodeCborFrame, encodeCborFrame } from '../../runtime/routing/codec/cbor-frame.js';
import { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import type { Router } from '../../runtime/routing/router.js';
import { EchoService } from '../../runtime/services/echo.js';
import { UdpTransport } from '../../runtime/transports/udp/udp-transport.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { type TestNode, testNode } from '../support/nodes.js';
import { tcpFrame } from '../support/tcp-frame.js';
import { until } from '../support/wait.js';

// Every wait is for an event or a counter, never for an amount of time; latencies are printed,
// not asserted (two busy cores).

const enc = new TextEncoder();
const dec = new TextDecoder();
const WAIT = 60_000;

const frame = tcpFrame;

/** One valid secure-channel message 1 (an ephemeral key) to `api`, framed for TCP: a hostile peer repeats it. */
function firstMessageFrame(): Buffer {
  const m1 = ockamHandshake(nodeCrypto, true, generateDhKey(nodeCrypto, '25519')).writeMessage();
  return frame(encodeCborFrame(new Message(Route.of('api'), Route.EMPTY, m1)));
}

describe('secure-channel limits over TCP', () => {
  const routers: Router[] = [];
  const sockets: Socket[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const r of routers.splice(0)) await r.shutdown();
    for (const c of cleanups.splice(0)) await c();
  });

  async function node(name: string): Promise<TestNode> {
    const n = await testNode(name);
    routers.push(n.router);
    return n;
  }

  /** A server with `echo` and a counting `sink` behind its listener `api`, on a TCP port. */
  async function server(options: ListenerOptions = {}) {
    const s = await node('server');
    await s.router.startWorker('echo', new EchoService());
    let sunk = 0;
    await s.router.startWorker('sink', { handleMessage: () => void sunk++ });
    const listener = await s.channels.createListener('api', { expose: ['echo', 'sink'], ...options });
    const tcp = await s.tcp.listen('127.0.0.1:0', { expose: ['api'] });
    return { ...s, listener, route: `1#${tcp.address} => api`, address: tcp.address, sunk: () => sunk };
  }

  async function echo(n: TestNode, channel: SecureChannelEnd, text: string): Promise<string> {
    const ctx = await n.router.context();
    try {
      await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode(text));
      return dec.decode((await ctx.receive(WAIT)).payload);
    } finally {
      await n.router.stopWorker(ctx.address);
    }
  }

  /** A raw TCP peer bound to `localAddress` that said the version byte and reads (and drops) what it gets. */
  function rawPeer(address: string, localAddress: string): Promise<Socket> {
    const [host, port] = address.split(':') as [string, string];
    return new Promise((resolve, reject) => {
      const s = connect({ host, port: Number(port), localAddress }, () => {
        s.write(Buffer.of(0x01));
        resolve(s);
      });
      s.on('error', reject);
      s.resume();
      sockets.push(s);
    });
  }

  it('per listener: the next channel is refused with CHANNEL_LIMIT while the open ones keep working', async () => {
    const s = await server({ maxChannels: 3 });
    const clients = await Promise.all(['c1', 'c2', 'c3', 'c4'].map(node));
    const open: SecureChannelEnd[] = [];
    for (const c of clients.slice(0, 3)) open.push(await c.channels.create(s.route));
    const refused = await clients[3]!.channels.create(s.route).catch((e: unknown) => e);
    expect(isKeyhopError(refused, 'CHANNEL_LIMIT')).toBe(true);
    expect((refused as Error).message).toMatch(/listener has its maximum of channels open/);
    expect(clients[3]!.channels.list()).toHaveLength(0);
    expect(s.channels.stats()).toMatchObject({ channelsOpen: 3, channelsRefusedListenerFull: 1 });
    for (let i = 0; i < 3; i++) expect(await echo(clients[i]!, open[i]!, `still ${i}`)).toBe(`still ${i}`);
    // A slot freed by a Close is taken again.
    await open[0]!.close();
    await until(() => s.channels.stats().channelsOpen === 2, WAIT);
    const late = await clients[3]!.channels.create(s.route);
    expect(await echo(clients[3]!, late, 'in')).toBe('in');
  });

  it('per peer: one identity is refused beyond its share, others are not', async () => {
    const s = await server({ maxChannelsPerPeer: 2 });
    const greedy = await node('greedy');
    const other = await node('other');
    const mine = [await greedy.channels.create(s.route), await greedy.channels.create(s.route)];
    const refused = await greedy.channels.create(s.route).catch((e: unknown) => e);
    expect(isKeyhopError(refused, 'CHANNEL_LIMIT')).toBe(true);
    expect((refused as Error).message).toMatch(/maximum of channels per peer/);
    const theirs = await other.channels.create(s.route);
    expect(await echo(other, theirs, 'fine')).toBe('fine');
    expect(await echo(greedy, mine[1]!, 'mine')).toBe('mine');
    expect(s.listener.stats()).toMatchObject({ channelsOpen: 3, channelsRefusedPerPeer: 1 });
  });

  it('per source: first messages beyond the cap are dropped unread, other sources are served', async () => {
    // Never under load (cookies): this is about the caps.
    const s = await server({ maxPendingHandshakes: 40, cookieThreshold: 40 });
    const m1 = firstMessageFrame();
    const hostile = await rawPeer(s.address, '127.0.0.2');
    hostile.write(Buffer.concat(Array.from({ length: 50 }, () => m1)));
    await until(() => s.channels.stats().handshakesRefusedPerSource === 18, WAIT);
    expect(s.channels.stats().handshakesInProgress).toBe(32);
    // One end per accepted first message; the refused ones left nothing behind.
    expect(s.channels.list()).toHaveLength(32);

    // A well-behaved client from another address opens a channel and uses it.
    const good = await node('good');
    const channel = await good.channels.create(s.route);
    expect(await echo(good, channel, 'served')).toBe('served');
    await until(() => s.channels.stats().handshakesInProgress === 32, WAIT);

    // A second hostile address fills the listener's 40: the rest is dropped as busy.
    const second = await rawPeer(s.address, '127.0.0.3');
    second.write(Buffer.concat(Array.from({ length: 20 }, () => m1)));
    await until(() => s.channels.stats().handshakesRefusedBusy === 12, WAIT);
    expect(s.channels.stats()).toMatchObject({ handshakesInProgress: 40, handshakesRefusedPerSource: 18 });
    expect(s.channels.list()).toHaveLength(41);
  });

  /** A raw TCP peer that keeps the payloads of the frames it receives. */
  async function listeningPeer(address: string, localAddress: string) {
    const s = await rawPeer(address, localAddress);
    const payloads: Uint8Array[] = [];
    let buf = Buffer.alloc(0);
    let versionSeen = false;
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!versionSeen && buf.length > 0) {
        versionSeen = true;
        buf = buf.subarray(1);
      }
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        payloads.push(decodeCborFrame(buf.subarray(4, 4 + n)).payload);
        buf = buf.subarray(4 + n);
      }
    });
    return { socket: s, payloads };
  }

  it('under load: a first message without a cookie gets a Retry and no slot; its echo and keyhop initiators get in', async () => {
    const s = await server({ cookieThreshold: 0 });
    const peer = await listeningPeer(s.address, '127.0.0.2');
    const e = generateDhKey(nodeCrypto, '25519');
    const m1 = ockamHandshake(nodeCrypto, true, e).writeMessage();
    const back = Route.of('0#raw_remote');
    peer.socket.write(frame(encodeCborFrame(new Message(Route.of('api'), back, m1))));
    await until(() => peer.payloads.length === 1, WAIT);
    const retry = peer.payloads[0]!;
    expect(retry.length).toBe(28);
    expect(Buffer.from(retry.subarray(0, 8)).toString('latin1')).toBe('KHRETRY\x01');
    expect(s.channels.stats()).toMatchObject({ retriesSent: 1, handshakesInProgress: 0 });
    expect(s.channels.list()).toHaveLength(0);

    // The same first message again with the cookie as its payload: a handshake slot and message 2.
    const block = parseRetry(retry)!;
    const m1c = ockamHandshake(nodeCrypto, true, e).writeMessage(block);
    peer.socket.write(frame(encodeCborFrame(new Message(Route.of('api'), back, m1c))));
    await until(() => peer.payloads.length === 2, WAIT);
    expect(peer.payloads[1]!.length).toBeGreaterThanOrEqual(96);
    expect(s.channels.stats()).toMatchObject({ cookiesAccepted: 1, handshakesInProgress: 1 });
    // Another return route is another source: its cookie does not carry over.
    peer.socket.write(frame(encodeCborFrame(new Message(Route.of('api'), Route.of('0#other'), m1c))));
    await until(() => s.channels.stats().retriesSent === 2, WAIT);

    // A keyhop initiator follows the Retry by itself.
    const good = await node('good');
    const channel = await good.channels.create(s.route);
    expect(await echo(good, channel, 'after a retry')).toBe('after a retry');
    expect(s.channels.stats()).toMatchObject({ retriesSent: 3, cookiesAccepted: 2 });
  });

  it('over UDP under load: the initiator follows the Retry, and the listener then counts its source as proven', async () => {
    const s = await server({ cookieThreshold: 0 });
    const sUdp = await UdpTransport.create(s.router, { bind: '127.0.0.1:0', expose: ['api'] });
    const c = await node('udp-client');
    await UdpTransport.create(c.router, { bind: '127.0.0.1:0' });
    const channel = await c.channels.create(`2#${sUdp.address} => api`);
    expect(await echo(c, channel, 'over udp')).toBe('over udp');
    expect(s.channels.stats()).toMatchObject({ retriesSent: 1, cookiesAccepted: 1 });
    expect(sUdp.stats()).toMatchObject({ provenPeers: 1, unprovenPeers: 0 });
  });

  it('idle timeout: a channel with no traffic closes at both ends', async () => {
    const s = await server({ idleTimeoutMs: 400 });
    const c = await node('quiet');
    const channel = await c.channels.create(s.route);
    expect(await echo(c, channel, 'once')).toBe('once');
    await until(() => s.channels.stats().closedIdle === 1, WAIT);
    // The responder said Close: the initiator's end closes too.
    await until(() => channel.state === 'closed', WAIT);
    expect(s.channels.stats().channelsOpen).toBe(0);
  });

  it('message rate: payloads over it are dropped and counted, other channels are unaffected', async () => {
    const s = await server({ messageRate: { perSecond: 0.5, burst: 10 } });
    const fast = await node('fast');
    const calm = await node('calm');
    const f = await fast.channels.create(s.route);
    const c = await calm.channels.create(s.route);
    const ctx = await fast.router.context();
    for (let i = 0; i < 50; i++) await ctx.send(Route.of(f.encryptor, 'sink'), enc.encode(`m${i}`));
    const fEnd = s.channels.list().find((e) => e.peer?.identifier === fast.channels.identity.identifier)!;
    await until(() => fEnd.stats.received === 50, WAIT);
    const limited = fEnd.stats.dropped.rate_limited;
    expect(limited).toBeGreaterThan(0);
    await until(() => s.sunk() === 50 - limited, WAIT);
    expect(s.channels.stats().messagesRateLimited).toBe(limited);
    expect(await echo(calm, c, 'unaffected')).toBe('unaffected');
  });

  it('a flood from one peer does not starve the others: ten clients complete their echoes', async () => {
    const K = 50;
    const CLIENTS = 10;
    // Well-behaved clients send fewer messages per channel than the burst: they are never limited.
    const s = await server({ messageRate: { perSecond: 200, burst: 2 * K } });
    const clients = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => node(`client-${i}`)));

    /** Each client: K echoes over `channel`, each waiting for its answer; returns how many came back right. */
    const echoes = (c: TestNode, i: number, channel: SecureChannelEnd, k: number, latencies: number[]) =>
      (async () => {
        const ctx = await c.router.context();
        let ok = 0;
        for (let j = 0; j < k; j++) {
          const t0 = performance.now();
          await ctx.send(Route.of(channel.encryptor, 'echo'), enc.encode(`${i}/${j}`));
          const answer = dec.decode((await ctx.receive(WAIT)).payload);
          latencies.push(performance.now() - t0);
          if (answer === `${i}/${j}`) ok++;
        }
        await c.router.stopWorker(ctx.address);
        return ok;
      })();

    // Baseline, no flood (printed only).
    const quiet: number[] = [];
    const before = await Promise.all(clients.map((c) => c.channels.create(s.route)));
    await Promise.all(clients.map((c, i) => echoes(c, i, before[i]!, 10, quiet)));

    // Hostile 1: its own channel, payloads at full speed (as fast as its connection takes them).
    const hostile = await node('hostile');
    const hc = await hostile.channels.create(s.route);
    const hctx = await hostile.router.context();
    const hEnd = s.channels.list().find((e) => e.peer?.identifier === hostile.channels.identity.identifier)!;
    let flooding = true;
    let floodSent = 0;
    const payload = new Uint8Array(256);
    const dataFlood = (async () => {
      let inFlight = 0;
      let wake: (() => void) | undefined;
      const done = () => {
        inFlight--;
        wake?.();
        wake = undefined;
      };
      while (flooding) {
        if (inFlight >= 64) {
          await new Promise<void>((r) => {
            wake = r;
          });
          continue;
        }
        inFlight++;
        floodSent++;
        hostile.router.post(
          hctx.address,
          new Message(Route.of(hc.encryptor, 'sink'), Route.of(hctx.address), payload),
          done,
        );
        // It shares this process's event loop with everyone (a real one has its own): let I/O in now and then.
        if (floodSent % 1024 === 0) await new Promise((r) => setImmediate(r));
      }
    })();
    await until(() => hEnd.stats.dropped.rate_limited > 0, WAIT);

    // Hostile 2: first messages from its own address, as fast as the socket takes them.
    const m1s = Buffer.concat(Array.from({ length: 64 }, () => firstMessageFrame()));
    const raw = await rawPeer(s.address, '127.0.0.2');
    const handshakeFlood = (async () => {
      while (flooding && !raw.destroyed) {
        if (!raw.write(m1s)) {
          await new Promise((r) => {
            raw.once('drain', r);
            raw.once('close', r);
          });
        }
      }
    })();
    await until(() => s.channels.stats().handshakesRefusedPerSource > 0, WAIT);

    // During both floods, each well-behaved client opens a new channel and runs its K echoes on it.
    const flooded: number[] = [];
    const completed = await Promise.all(
      clients.map(async (c, i) => echoes(c, i, await c.channels.create(s.route), K, flooded)),
    );
    const stats = s.channels.stats();
    const hostileDrops = hEnd.stats.dropped.rate_limited;
    flooding = false;
    raw.destroy();
    await Promise.all([dataFlood, handshakeFlood]);

    expect(completed).toEqual(Array.from({ length: CLIENTS }, () => K));
    // The floods were bounded: the hostile channel's excess dropped, its extra handshakes refused.
    expect(hostileDrops).toBeGreaterThan(0);
    expect(stats.handshakesRefusedPerSource).toBeGreaterThan(0);
    expect(stats.handshakesInProgress).toBeLessThanOrEqual(32 + CLIENTS);
    for (const e of s.channels.list()) {
      if (e !== hEnd && e.state === 'open') expect(e.stats.dropped.rate_limited).toBe(0);
    }
    const pct = (l: number[], q: number) =>
      [...l].sort((a, b) => a - b)[Math.min(l.length - 1, Math.floor(q * l.length))]!.toFixed(1);
    console.log(
      `flood fairness: echo latency without flood p50 ${pct(quiet, 0.5)} ms, p99 ${pct(quiet, 0.99)} ms; ` +
        `during the floods (${CLIENTS}×${K}) p50 ${pct(flooded, 0.5)} ms, p99 ${pct(flooded, 0.99)} ms; ` +
        `hostile: ${floodSent} payloads sent, ${hostileDrops} dropped over the rate, ${s.sunk()} delivered, ` +
        `${stats.handshakesRefusedPerSource} first messages refused for their source`,
    );
  }, 180_000);

  it("applies a node config's secureChannel limits to its listener", async () => {
    const config = parseNodeConfig({
      name: 'limited',
      identity: null,
      tcpListeners: ['127.0.0.1:0'],
      secureChannel: { maxChannelsPerPeer: 1, maxHandshakesPerSource: 8, messageRate: { perSecond: 50 } },
      log: { level: 'silent' },
    });
    const n = await KeyhopNode.start(config);
    cleanups.push(() => n.stop());
    expect(n.channels.listeners()[0]!.limits).toMatchObject({
      maxChannelsPerPeer: 1,
      maxHandshakesPerSource: 8,
      maxChannels: 10_000,
      messageRate: { perSecond: 50, burst: 50 },
    });
    const route = `1#${n.tcp.listenerList()[0]!.address} => api`;
    const client = await node('client');
    await client.channels.create(route);
    await expect(client.channels.create(route)).rejects.toMatchObject({ code: 'CHANNEL_LIMIT' });
    expect(n.channels.stats().channelsRefusedPerPeer).toBe(1);
  });
});

describe('node config: secureChannel limits', () => {
  it('reads them', () => {
    const c = parseNodeConfig({
      name: 'n',
      secureChannel: {
        maxPendingHandshakes: 100,
        maxHandshakesPerSource: 4,
        maxChannels: 1000,
        maxChannelsPerPeer: 10,
        messageRate: { perSecond: 0.5, burst: 20 },
      },
    });
    expect(c.secureChannel).toMatchObject({
      maxPendingHandshakes: 100,
      maxHandshakesPerSource: 4,
      maxChannels: 1000,
      maxChannelsPerPeer: 10,
      messageRate: { perSecond: 0.5, burst: 20 },
    });
  });

  it.each([
    [{ maxChannels: 0 }, /secureChannel.maxChannels must be a whole number/],
    [{ maxChannelsPerPeer: 1.5 }, /secureChannel.maxChannelsPerPeer must be a whole number/],
    [{ maxHandshakesPerSource: '8' }, /secureChannel.maxHandshakesPerSource must be a whole number/],
    [{ messageRate: 100 }, /secureChannel.messageRate must be an object/],
    [{ messageRate: { perSecond: 0 } }, /secureChannel.messageRate.perSecond/],
    [{ messageRate: { perSecond: 5, burst: 0 } }, /secureChannel.messageRate.burst/],
    [{ messageRate: { perSecond: 5, bursts: 3 } }, /unknown setting "bursts"/],
  ])('refuses %j', (sc, message) => {
    let err: unknown;
    try {
      parseNodeConfig({ name: 'n', secureChannel: sc });
    } catch (e) {
      err = e;
    }
    expect(isKeyhopError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(message);
  });
});
