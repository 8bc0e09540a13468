import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../runtime/errors.js';
import { createLogger } from '../../runtime/log.js';
import { parseNodeConfig } from '../../runtime/node/config.js';
import { KeyhopNode } from '../../runtime/node/node.js';
import { encodeCborFrame } from '../../runtime/routing/codec/cbor-frame.js';
import { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import { Router } from '../../runtime/routing/router.js';
import { EchoService } from '../../runtime/services/echo.js';
import {
  type ListenOptions,
  TcpTransport,
  type TcpTransportOptions,
} from '../../runtime/transports/tcp/tcp-transport.js';
import { tcpFrame } from '../support/tcp-frame.js';
import { until } from '../support/wait.js';

// Every wait here is for an event (a close, a counter), never for an amount of time: the timeouts
// under test are short, but nothing asserts how long anything took.

const enc = new TextEncoder();
const dec = new TextDecoder();
const WAIT = 30_000;

const frame = tcpFrame;

function prefix(length: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(length);
  return h;
}

describe('TCP listener limits and timeouts', () => {
  const routers: Router[] = [];
  const sockets: Socket[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const r of routers.splice(0)) await r.shutdown();
    for (const c of cleanups.splice(0)) await c();
  });

  function node(name: string, options: TcpTransportOptions = {}) {
    const router = new Router({ name });
    routers.push(router);
    return { router, tcp: TcpTransport.create(router, options) };
  }

  async function echoServer(listen: ListenOptions = {}, options: TcpTransportOptions = {}) {
    const b = node('b', options);
    await b.router.startWorker('echo', new EchoService());
    const listener = await b.tcp.listen('127.0.0.1:0', { expose: ['echo'], ...listen });
    return { ...b, listener };
  }

  /** A raw socket, connected (the kernel's handshake done: the listener may still refuse it). */
  function rawClient(address: string, localAddress?: string): Promise<Socket> {
    const [host, port] = address.split(':') as [string, string];
    return new Promise((resolve, reject) => {
      const s = connect({ host, port: Number(port), ...(localAddress ? { localAddress } : {}) }, () =>
        resolve(s),
      );
      s.on('error', reject); // after `connect`: a reset by the listener, nothing to report
      sockets.push(s);
    });
  }

  /** A raw client that says the version byte, so that only the limits under test close it. */
  async function speaker(address: string, localAddress?: string): Promise<Socket> {
    const s = await rawClient(address, localAddress);
    s.write(Buffer.of(0x01));
    return s;
  }

  function closedBy(s: Socket): Promise<void> {
    return new Promise((resolve) => {
      if (s.destroyed || s.readableEnded) resolve();
      s.on('close', () => resolve());
      s.on('end', () => resolve());
      s.resume();
    });
  }

  /** Sends `payload` to the echo worker through a keyhop node dialling from 127.0.0.1 and waits for it back. */
  async function echoFromAnotherNode(address: string, payload: string): Promise<string> {
    const a = node('a');
    const ctx = await a.router.context();
    await ctx.send(Route.parse(`1#${address} => echo`), enc.encode(payload));
    return dec.decode((await ctx.receive(WAIT)).payload);
  }

  it('refuses a source over its limit while another source still connects and exchanges messages', async () => {
    const lines: { kind?: string; msg?: string; source?: string }[] = [];
    const log = createLogger(
      { level: 'debug' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(JSON.parse(String(chunk)));
          done();
        },
      }),
    );
    const b = await echoServer({ maxConnectionsPerSource: 2 }, { log });
    const address = b.listener.address;
    const first = [await speaker(address, '127.0.0.2'), await speaker(address, '127.0.0.2')];
    await until(() => b.tcp.connections().length === 2, WAIT);

    for (let i = 0; i < 3; i++) {
      const over = await rawClient(address, '127.0.0.2');
      await closedBy(over);
    }
    await until(() => b.tcp.stats().refusedPerSource === 3, WAIT);
    expect(b.tcp.connections()).toHaveLength(2);

    // 127.0.0.1 is another source.
    expect(await echoFromAnotherNode(address, 'from elsewhere')).toBe('from elsewhere');
    expect(b.tcp.stats()).toMatchObject({ accepted: 3, refusedPerSource: 3, refusedListenerFull: 0 });

    // A slot of 127.0.0.2 frees when one of its connections ends.
    first[0]!.destroy();
    await until(() => b.tcp.connections().length === 2, WAIT);
    await speaker(address, '127.0.0.2');
    await until(() => b.tcp.connections().length === 3, WAIT);
    expect(b.tcp.stats()).toMatchObject({ accepted: 4, refusedPerSource: 3 });

    // Logged once (three refusals within 10 s at most: the others are counted, not written).
    const refusals = lines.filter((l) => l.kind === 'per-source');
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    expect(refusals.length).toBeLessThanOrEqual(3);
    expect(refusals[0]).toMatchObject({ source: '127.0.0.2' });
  });

  it('refuses connections beyond the listener limit, and takes new ones once some close', async () => {
    const b = await echoServer({ maxConnections: 2 });
    const address = b.listener.address;
    const first = [await speaker(address, '127.0.0.3'), await speaker(address, '127.0.0.4')];
    await until(() => b.tcp.connections().length === 2, WAIT);

    const over = await rawClient(address, '127.0.0.5');
    await closedBy(over);
    await until(() => b.tcp.stats().refusedListenerFull === 1, WAIT);
    expect(b.tcp.connections()).toHaveLength(2);

    first[0]!.destroy();
    await until(() => b.tcp.connections().length === 1, WAIT);
    expect(await echoFromAnotherNode(address, 'room again')).toBe('room again');
    expect(b.tcp.stats()).toMatchObject({ accepted: 3, refusedListenerFull: 1, refusedPerSource: 0 });
  });

  it.each([
    ['part of a length prefix', Buffer.of(0x00, 0x00)],
    ['a length prefix', prefix(1000)],
    ['a length prefix and part of the body', Buffer.concat([prefix(1000), Buffer.alloc(100, 7)])],
  ])('closes a connection that sends %s and then nothing (slowloris)', async (_name, bytes) => {
    const b = await echoServer({ frameTimeoutMs: 200 });
    const s = await rawClient(b.listener.address);
    const closed = closedBy(s);
    s.write(Buffer.concat([Buffer.of(0x01), bytes]));
    await closed;
    await until(() => b.tcp.stats().closedSlowFrame === 1, WAIT);
    expect(b.tcp.connections()).toHaveLength(0);
    expect(b.tcp.stats()).toMatchObject({ closedIdle: 0, closedNoVersion: 0, closedBadFrame: 0 });
  });

  it('closes a connection that trickles a large frame', async () => {
    const b = await echoServer({ frameTimeoutMs: 200 });
    const s = await rawClient(b.listener.address);
    const closed = closedBy(s);
    s.write(Buffer.concat([Buffer.of(0x01), prefix(1_000_000)]));
    // A byte every 20 ms: far below the 1,024 bytes per second a frame must average.
    const trickle = setInterval(() => {
      if (!s.destroyed && s.writable) s.write(Buffer.of(0x42));
    }, 20);
    try {
      await closed;
    } finally {
      clearInterval(trickle);
    }
    await until(() => b.tcp.stats().closedSlowFrame === 1, WAIT);
  });

  it('closes the connection that takes its source over its budget of held bytes; other sources are unaffected', async () => {
    const b = await echoServer({ maxBufferedBytesPerSource: 1024 * 1024 });
    // A valid frame of about 1 MB to an address that does not exist (dropped once complete).
    const big = frame(
      encodeCborFrame(new Message(Route.of('nowhere'), Route.EMPTY, Buffer.alloc(1_000_000))),
    );
    // Two connections from one source, each part-way through it: 600 KB each.
    const first = await speaker(b.listener.address, '127.0.0.2');
    const second = await speaker(b.listener.address, '127.0.0.2');
    first.write(big.subarray(0, 600_000));
    await until(() => b.tcp.connections().some((c) => c.stats.bytesIn >= 600_001), WAIT);
    const secondClosed = closedBy(second);
    second.write(big.subarray(0, 600_000));
    await secondClosed;
    await until(() => b.tcp.stats().closedOverBudget === 1, WAIT);
    expect(first.destroyed).toBe(false);
    // Another source is served as ever.
    const c = node('c');
    const ctx = await c.router.context();
    await ctx.send(Route.of(`1#${b.listener.address}`, 'echo'), enc.encode('fine'));
    expect(dec.decode((await ctx.receive(WAIT)).payload)).toBe('fine');
    // The first connection finishes its frame, and the source's budget is given back: another
    // connection's frame of the same size fits again.
    first.write(big.subarray(600_000));
    await until(
      () => b.tcp.connections().some((x) => x.stats.framesIn === 1 && x.stats.bytesIn === big.length + 1),
      WAIT,
    );
    const third = await speaker(b.listener.address, '127.0.0.2');
    third.write(big);
    await until(() => b.tcp.connections().filter((x) => x.stats.framesIn === 1).length === 2, WAIT);
    expect(b.tcp.stats().closedOverBudget).toBe(1);
  });

  it('lets a frame that arrives in pieces within the timeout through', async () => {
    const b = node('b');
    const got: string[] = [];
    await b.router.startWorker('sink', { handleMessage: (_c, m) => void got.push(dec.decode(m.payload)) });
    const listener = await b.tcp.listen('127.0.0.1:0', { expose: ['sink'], frameTimeoutMs: 20_000 });
    const s = await rawClient(listener.address);
    const bytes = frame(encodeCborFrame(Message.create(Route.of('sink'), enc.encode('in pieces'))));
    s.write(Buffer.concat([Buffer.of(0x01), bytes.subarray(0, 6)]));
    await until(() => b.tcp.connections()[0]?.stats.bytesIn === 7, WAIT);
    await new Promise((r) => setTimeout(r, 300)); // a pause, well within the timeout
    s.write(bytes.subarray(6));
    await until(() => got.length === 1, WAIT);
    expect(got).toEqual(['in pieces']);
    expect(b.tcp.connections()).toHaveLength(1);
    expect(b.tcp.stats().closedSlowFrame).toBe(0);
  });

  it('closes a half-open connection (version byte, then silence) after the idle timeout', async () => {
    const b = await echoServer({ idleTimeoutMs: 300 });
    const s = await rawClient(b.listener.address);
    const closed = closedBy(s);
    s.write(Buffer.of(0x01));
    await closed;
    await until(() => b.tcp.stats().closedIdle === 1, WAIT);
    expect(b.tcp.stats()).toMatchObject({ closedSlowFrame: 0, closedNoVersion: 0 });
  });

  it('counts a peer that never sends the version byte, and one that sends a wrong one', async () => {
    const b = await echoServer({}, { handshakeTimeoutMs: 200 });
    const silent = await rawClient(b.listener.address);
    await closedBy(silent);
    await until(() => b.tcp.stats().closedNoVersion === 1, WAIT);

    const wrong = await rawClient(b.listener.address);
    const closed = closedBy(wrong);
    wrong.write(Buffer.of(0x02));
    await closed;
    await until(() => b.tcp.stats().closedBadFrame === 1, WAIT);
    expect(b.tcp.stats()).toMatchObject({ accepted: 2, closedNoVersion: 1, closedBadFrame: 1 });
  });

  it('leaves connections alone by default: no idle timeout', async () => {
    const b = await echoServer();
    await speaker(b.listener.address);
    await until(() => b.tcp.connections()[0]?.stats.bytesIn === 1, WAIT);
    await new Promise((r) => setTimeout(r, 1500));
    expect(b.tcp.connections()).toHaveLength(1);
  });

  it('refuses invalid limits with CONFIG_INVALID', async () => {
    const b = node('b');
    for (const bad of [{ maxConnections: 0 }, { maxConnectionsPerSource: 1.5 }, { idleTimeoutMs: -1 }]) {
      const err = await b.tcp.listen('127.0.0.1:0', bad).catch((e: unknown) => e);
      expect(isKeyhopError(err, 'CONFIG_INVALID')).toBe(true);
    }
    let thrown: unknown;
    try {
      node('c', { frameMinBytesPerSecond: 0 });
    } catch (e) {
      thrown = e;
    }
    expect(isKeyhopError(thrown, 'CONFIG_INVALID')).toBe(true);
  });

  it("applies a node config's listener limits", async () => {
    const config = parseNodeConfig({
      name: 'limited',
      identity: null,
      tcpListeners: [{ address: '127.0.0.1:0', maxConnectionsPerSource: 1, maxConnections: 10 }],
      log: { level: 'silent' },
    });
    const n = await KeyhopNode.start(config);
    cleanups.push(() => n.stop());
    const address = n.tcp.listenerList()[0]!.address;
    await speaker(address, '127.0.0.6');
    await until(() => n.tcp.connections().length === 1, WAIT);
    await closedBy(await rawClient(address, '127.0.0.6'));
    await until(() => n.tcp.stats().refusedPerSource === 1, WAIT);
    expect(await echoFromAnotherNode(address, 'still served')).toBe('still served');
  });
});

describe('node config: tcpListeners limits', () => {
  it('reads them', () => {
    const c = parseNodeConfig({
      name: 'n',
      tcpListeners: [
        {
          address: '0.0.0.0:4000',
          maxConnections: 100,
          maxConnectionsPerSource: 8,
          frameTimeoutMs: 0,
          idleTimeoutMs: 600_000,
        },
      ],
    });
    expect(c.tcpListeners).toEqual([
      {
        address: '0.0.0.0:4000',
        maxConnections: 100,
        maxConnectionsPerSource: 8,
        frameTimeoutMs: 0,
        idleTimeoutMs: 600_000,
      },
    ]);
  });

  it.each([
    [{ maxConnections: 0 }, /tcpListeners\[0\]\.maxConnections must be a whole number, 1\.\.1000000/],
    [{ maxConnectionsPerSource: '8' }, /maxConnectionsPerSource must be a whole number/],
    [{ frameTimeoutMs: 1.5 }, /frameTimeoutMs must be a whole number, 0\.\.86400000/],
    [{ idleTimeoutMs: -1 }, /idleTimeoutMs must be a whole number/],
    [{ maxConnection: 3 }, /unknown setting "maxConnection"/],
  ])('rejects %j with CONFIG_INVALID', (limits, message) => {
    const raw = { name: 'n', tcpListeners: [{ address: 'h:1', ...limits }] };
    expect(() => parseNodeConfig(raw)).toThrow(message);
    let err: unknown;
    try {
      parseNodeConfig(raw);
    } catch (e) {
      err = e;
    }
    expect(isKeyhopError(err, 'CONFIG_INVALID')).toBe(true);
  });
});
