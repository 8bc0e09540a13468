import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Message } from '../../routing/message.js';
import { Route } from '../../routing/route.js';
import { Router } from '../../routing/router.js';
import { TcpTransport } from '../../transports/tcp/tcp-transport.js';
import { TcpInlet, TcpOutlet } from './index.js';
import {
  decodePortalMessage,
  encodeFlowMessage,
  encodePayload,
  encodePortalMessage,
  type PortalMessage,
} from './portal-message.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const addr = server.address();
  if (typeof addr !== 'object' || !addr) throw new Error('no address');
  return addr.port;
}

/** A target that echoes; records its sockets. */
async function echoServer(): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const port = await listen(server);
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
  });
  return { port, sockets };
}

function connect(address: string, allowHalfOpen = false): Promise<Socket> {
  const [host, port] = address.split(':') as [string, string];
  const s = createConnection({ host, port: Number(port), allowHalfOpen });
  s.on('error', () => undefined);
  cleanups.push(() => s.destroy());
  return once(s, 'connect').then(() => s);
}

function readAll(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => s.once('close', () => resolve(Buffer.concat(chunks))));
}

function readN(s: Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        s.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed after ${got} of ${n} bytes`)));
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function newRouter(name = 'n'): Router {
  const r = new Router({ name });
  cleanups.push(() => r.shutdown());
  return r;
}

async function localPortal(
  targetPort: number,
  options: { inlet?: Record<string, unknown>; outlet?: Record<string, unknown> } = {},
) {
  const router = newRouter();
  const outlet = await TcpOutlet.create(router, { target: `127.0.0.1:${targetPort}`, ...options.outlet });
  const inlet = await TcpInlet.create(router, {
    bind: '127.0.0.1:0',
    outletRoute: Route.of('outlet'),
    ...options.inlet,
  });
  return { router, outlet, inlet };
}

describe('TCP portal in one router', () => {
  it('carries bytes both ways and counts them', async () => {
    const target = await echoServer();
    const { inlet, outlet } = await localPortal(target.port);
    const client = await connect(inlet.address);
    const data = randomBytes(300_000);
    const got = readN(client, data.length);
    client.write(data);
    expect((await got).equals(data)).toBe(true);
    expect(inlet.stats).toMatchObject({
      connections: 1,
      opened: 1,
      bytesSent: 300_000,
      bytesReceived: 300_000,
    });
    expect(outlet.stats).toMatchObject({
      connections: 1,
      opened: 1,
      bytesSent: 300_000,
      bytesReceived: 300_000,
    });
    expect(inlet.connections()).toHaveLength(1);
    expect(outlet.connections()[0]).toMatchObject({ kind: 'outlet', state: 'open' });
  });

  it('serves many connections at once', async () => {
    const target = await echoServer();
    const { inlet, outlet } = await localPortal(target.port);
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const c = await connect(inlet.address);
        const msg = Buffer.from(`hello ${i} `.repeat(i + 1));
        const got = readN(c, msg.length);
        c.write(msg);
        const back = await got;
        c.end();
        return back.equals(msg);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    await waitFor(() => inlet.stats.connections === 0 && outlet.stats.connections === 0);
    expect(outlet.stats.opened).toBe(100);
    expect(target.sockets.every((s) => s.destroyed)).toBe(true);
  });

  it('works across two nodes over TCP (`1#host:port => outlet`)', async () => {
    const target = await echoServer();
    const b = newRouter('b');
    const tcpB = TcpTransport.create(b);
    const listener = await tcpB.listen('127.0.0.1:0', { expose: ['outlet'] });
    await TcpOutlet.create(b, { target: `127.0.0.1:${target.port}` });
    const a = newRouter('a');
    TcpTransport.create(a);
    const inlet = await TcpInlet.create(a, {
      bind: '127.0.0.1:0',
      outletRoute: `1#${listener.address} => outlet`,
    });
    const client = await connect(inlet.address);
    const data = randomBytes(1_000_000);
    const got = readN(client, data.length);
    client.write(data);
    expect(
      createHash('sha256')
        .update(await got)
        .digest('hex'),
    ).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a client close reaches the target and a target close reaches the client', async () => {
    const target = await echoServer();
    const { inlet, outlet } = await localPortal(target.port);
    const c1 = await connect(inlet.address);
    c1.write('x');
    await readN(c1, 1);
    const targetSocket = target.sockets[0]!;
    const targetClosed = once(targetSocket, 'close');
    c1.end();
    await targetClosed;

    const c2 = await connect(inlet.address);
    c2.write('y');
    await readN(c2, 1);
    const clientClosed = once(c2, 'close');
    target.sockets[1]!.end();
    await clientClosed;
    await waitFor(() => inlet.stats.connections === 0 && outlet.stats.connections === 0);
  });

  it('supports a half-close: the answer still flows after the client ended its side', async () => {
    // A target that answers only after the client has sent everything (like `nc -q`).
    const server = createServer({ allowHalfOpen: true }, (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => {
        s.end(Buffer.from(Buffer.concat(chunks).toString('utf8').toUpperCase()));
      });
    });
    const port = await listen(server);
    const { inlet } = await localPortal(port);
    const client = await connect(inlet.address, true);
    const all = readAll(client);
    client.end('shout this');
    expect((await all).toString()).toBe('SHOUT THIS');
  });

  it('releases a socket that stays half-open after a Disconnect', async () => {
    const target = await echoServer();
    const { inlet } = await localPortal(target.port, { inlet: { closeTimeoutMs: 200 } });
    const client = await connect(inlet.address, true); // will not answer our FIN
    client.write('x');
    await readN(client, 1);
    client.resume();
    const ended = once(client, 'end');
    const start = Date.now();
    target.sockets[0]!.end();
    await ended; // the target's FIN, passed on as a FIN…
    // …and the socket dropped after the timeout, not at once: the timer is armed after `start`.
    await waitFor(() => inlet.stats.connections === 0);
    expect(Date.now() - start).toBeGreaterThanOrEqual(150);
  });

  it('closes the client when the target refuses (outlet answers Disconnect)', async () => {
    const probe = createServer();
    const deadPort = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const { inlet, outlet } = await localPortal(deadPort);
    const client = await connect(inlet.address);
    const data = await readAll(client);
    expect(data.length).toBe(0);
    await waitFor(() => outlet.stats.failed === 1 && inlet.stats.failed === 1);
    expect(outlet.stats.connections).toBe(0);
    expect(inlet.stats.connections).toBe(0);
  });

  it('refuses connections beyond maxConnections and ignores anything but Ping', async () => {
    const target = await echoServer();
    const { router, inlet, outlet } = await localPortal(target.port, { outlet: { maxConnections: 1 } });
    const first = await connect(inlet.address);
    first.write('1');
    await readN(first, 1);
    const second = await connect(inlet.address);
    expect((await readAll(second)).length).toBe(0);
    expect(outlet.stats).toMatchObject({ failed: 1, opened: 1 });
    const probe = await router.context('probe');
    await probe.send('outlet', encodePayload(Buffer.from('not a ping')));
    await probe.send('outlet', Uint8Array.of(9));
    await new Promise((r) => setTimeout(r, 20));
    expect(outlet.stats.connections).toBe(1);
    expect(router.metrics.workerErrors).toBe(0);
  });

  it('closes the client when no Pong comes, and answers a late Pong with Disconnect', async () => {
    const router = newRouter();
    const pings: Message[] = [];
    let pinged!: () => void;
    const ping = new Promise<void>((r) => {
      pinged = r;
    });
    await router.startWorker('slow_outlet', {
      handleMessage: (_c, m) => {
        pings.push(m);
        pinged();
      },
    });
    const inlet = await TcpInlet.create(router, {
      bind: '127.0.0.1:0',
      outletRoute: 'slow_outlet',
      pongTimeoutMs: 100,
    });
    // The inlet's two Pong timers (give up on the client, then stop listening for a late Pong)
    // run on a fake clock, so the late Pong below falls between them however slow the machine.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const client = await connect(inlet.address);
      const closed = readAll(client);
      await ping;
      vi.advanceTimersByTime(100);
      await closed;
      expect(inlet.stats).toMatchObject({ failed: 1, opened: 0 });
      // The Pong comes after all: the inlet worker is still there to release the outlet side.
      const late = await router.context('late_outlet_worker');
      expect(pings).toHaveLength(1);
      await late.send(pings[0]!.returnRoute, encodePortalMessage({ type: 'pong' }));
      const answer = await late.receive();
      expect(decodePortalMessage(answer.payload).type).toBe('disconnect');
    } finally {
      vi.useRealTimers();
    }
    await waitFor(() => inlet.stats.connections === 0);
    expect(inlet.stats).toMatchObject({ failed: 1, opened: 0 });
  });

  it('gives up on a late Pong after a second timeout', async () => {
    const router = newRouter();
    await router.startWorker('blackhole', { handleMessage: () => undefined });
    const inlet = await TcpInlet.create(router, {
      bind: '127.0.0.1:0',
      outletRoute: 'blackhole',
      pongTimeoutMs: 50,
    });
    const client = await connect(inlet.address);
    await readAll(client);
    await waitFor(() => inlet.stats.connections === 0);
    expect(inlet.stats.failed).toBe(1);
  });

  it('closes the client when the outlet route is unreachable', async () => {
    const router = newRouter();
    const inlet = await TcpInlet.create(router, { bind: '127.0.0.1:0', outletRoute: 'nobody' });
    const client = await connect(inlet.address);
    await readAll(client);
    expect(inlet.stats.failed).toBe(1);
  });

  it('outlet portal workers accept only the route their Ping came from', async () => {
    const received: Buffer[] = [];
    const server = createServer((s) => s.on('data', (c: Buffer) => received.push(c)));
    const port = await listen(server);
    const router = newRouter();
    const outlet = await TcpOutlet.create(router, { target: `127.0.0.1:${port}` });
    const peer = await router.context('peer');
    const intruder = await router.context('intruder');
    await peer.send('outlet', encodePortalMessage({ type: 'ping' }));
    const pong = await peer.receive();
    expect(decodePortalMessage(pong.payload).type).toBe('pong');
    const worker = pong.returnRoute;
    expect(worker.length).toBe(1);
    expect(outlet.connections()).toHaveLength(1);

    const denied = router.metrics.dropped.incoming_denied;
    await intruder.send(worker, encodePayload(Buffer.from('evil')));
    expect(router.metrics.dropped.incoming_denied).toBe(denied + 1);
    // A message routed *through* the worker is not for it either.
    await peer.send(worker.append('elsewhere'), encodePayload(Buffer.from('no')));
    await peer.send(worker, encodePayload(Buffer.from('good')));
    await waitFor(() => Buffer.concat(received).toString() === 'good');
  });

  it('checks packet counters and disconnects on a gap', async () => {
    const received: Buffer[] = [];
    const targetSockets: Socket[] = [];
    const server = createServer((s) => {
      targetSockets.push(s);
      s.on('data', (c: Buffer) => received.push(c));
    });
    const port = await listen(server);
    const router = newRouter();
    await TcpOutlet.create(router, { target: `127.0.0.1:${port}` });
    const peer = await router.context('peer');
    await peer.send('outlet', encodePortalMessage({ type: 'ping' }));
    const worker = (await peer.receive()).returnRoute;
    // The outlet offers flow control after its Pong; this peer, like an Ockam inlet, ignores it.
    expect(decodePortalMessage((await peer.receive()).payload).type).toBe('offer');
    const opts = { counterField: true };
    await peer.send(worker, encodePayload(Buffer.from('a'), 0, opts));
    await peer.send(worker, encodePayload(Buffer.from('b'), 1, opts));
    await peer.send(worker, encodePayload(Buffer.from('c'), undefined, opts));
    await waitFor(() => Buffer.concat(received).toString() === 'abc');
    await peer.send(worker, encodePayload(Buffer.from('d'), 5, opts));
    const disconnect = await peer.receive();
    expect(decodePortalMessage(disconnect.payload).type).toBe('disconnect');
    await waitFor(() => targetSockets[0]!.destroyed || targetSockets[0]!.readableEnded);
    expect(Buffer.concat(received).toString()).toBe('abc');
  });

  it('sends packet counters when asked, and they check out on the other side', async () => {
    const target = await echoServer();
    const { inlet } = await localPortal(target.port, {
      inlet: { packetCounter: true },
      outlet: { packetCounter: true },
    });
    const client = await connect(inlet.address);
    const data = randomBytes(3_000_000); // ~180 counted messages each way (the u16 wrap is unit-tested)
    const got = readN(client, data.length);
    client.write(data);
    expect((await got).equals(data)).toBe(true);
  });

  it('stops reading the target while the client does not read, and catches up afterwards', async () => {
    const total = 48 * 1024 * 1024;
    let written = 0;
    const hash = createHash('sha256');
    const server = createServer((s) => {
      s.on('error', () => undefined);
      const chunk = randomBytes(64 * 1024);
      const pump = () => {
        while (written < total) {
          written += chunk.length;
          hash.update(chunk);
          if (!s.write(chunk)) {
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    });
    const port = await listen(server);
    const { inlet, outlet } = await localPortal(port);
    const client = await connect(inlet.address);
    client.pause();
    // Let the pipeline fill up until the outlet stops reading the target (the inlet cannot write
    // to the client any more, so the outlet's window stays full).
    let last = -1;
    await waitFor(() => {
      const stalled = outlet.connections()[0]?.paused === true && outlet.stats.bytesSent === last;
      last = outlet.stats.bytesSent;
      return stalled;
    }, 30_000);
    const inPortal = outlet.stats.bytesSent - inlet.stats.bytesReceived;
    // What the outlet took from the target but the inlet could not hand on yet: one window
    // (512 KiB) plus one socket write buffer (256 KiB) and a message or two.
    expect(inPortal).toBeLessThan(1024 * 1024);
    expect(written).toBeLessThan(total);
    expect(outlet.connections()[0]).toMatchObject({ paused: true });
    const clientHash = createHash('sha256');
    let got = 0;
    client.on('data', (c: Buffer) => {
      got += c.length;
      clientHash.update(c);
    });
    client.resume();
    await once(client, 'end');
    expect(got).toBe(total);
    expect(clientHash.digest('hex')).toBe(hash.digest('hex'));
  });

  it('close() on the inlet and on the outlet closes their sockets', async () => {
    const target = await echoServer();
    const { inlet, outlet } = await localPortal(target.port);
    const c1 = await connect(inlet.address);
    c1.write('1');
    await readN(c1, 1);
    const targetClosed = once(target.sockets[0]!, 'close');
    await outlet.close();
    await once(c1, 'close');
    await targetClosed;
    expect(outlet.stats.connections).toBe(0);

    const target2 = await echoServer();
    const router = newRouter();
    await TcpOutlet.create(router, { target: `127.0.0.1:${target2.port}` });
    const inlet2 = await TcpInlet.create(router, { bind: '127.0.0.1:0', outletRoute: 'outlet' });
    const c2 = await connect(inlet2.address);
    c2.write('2');
    await readN(c2, 1);
    const target2Closed = once(target2.sockets[0]!, 'close');
    await inlet2.close();
    await once(c2, 'close');
    await target2Closed; // the outlet got the inlet's Disconnect
    await expect(connect(inlet2.address)).rejects.toThrow();
    await inlet.close();
  });

  it('router shutdown closes the inlet listener', async () => {
    const router = new Router();
    const inlet = await TcpInlet.create(router, { bind: '127.0.0.1:0', outletRoute: 'outlet' });
    await router.shutdown();
    await expect(connect(inlet.address)).rejects.toThrow();
  });

  it('validates its options', async () => {
    const router = newRouter();
    await expect(TcpInlet.create(router, { bind: 'nope', outletRoute: 'outlet' })).rejects.toMatchObject({
      code: 'ADDRESS_INVALID',
    });
    await expect(TcpOutlet.create(router, { target: '127.0.0.1:0' })).rejects.toMatchObject({
      code: 'ADDRESS_INVALID',
    });
    const inlet = await TcpInlet.create(router, { bind: '127.0.0.1:0', outletRoute: 'outlet' });
    await expect(
      TcpInlet.create(router, { bind: inlet.address, outletRoute: 'outlet' }),
    ).rejects.toMatchObject({ code: 'LISTEN_FAILED' });
    await TcpOutlet.create(router, { target: '127.0.0.1:1' });
    await expect(TcpOutlet.create(router, { target: '127.0.0.1:1' })).rejects.toMatchObject({
      code: 'ADDRESS_IN_USE',
    });
  });
});

/** The next message `ctx` receives, decoded. */
async function next(ctx: { receive(): Promise<Message> }): Promise<{ m: PortalMessage; message: Message }> {
  const message = await ctx.receive();
  return { m: decodePortalMessage(message.payload), message };
}

/** A target that records what it receives and can push `push` bytes when connected. */
async function recordingTarget(
  push = 0,
): Promise<{ port: number; received: () => number; sockets: Socket[] }> {
  let received = 0;
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('data', (c: Buffer) => {
      received += c.length;
    });
    if (push > 0) s.write(randomBytes(push));
  });
  const port = await listen(server);
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
  });
  return { port, received: () => received, sockets };
}

describe('TCP portal flow control (keyhop extension)', () => {
  it('is negotiated between keyhop ends, and carries bytes both ways', async () => {
    const target = await echoServer();
    const { inlet, outlet } = await localPortal(target.port, {
      inlet: { receiveWindowBytes: 64 * 1024 },
      outlet: { receiveWindowBytes: 64 * 1024 },
    });
    const client = await connect(inlet.address);
    const data = randomBytes(2_000_000); // ~30 windows each way
    const got = readN(client, data.length);
    client.write(data);
    expect((await got).equals(data)).toBe(true);
    expect(inlet.stats).toMatchObject({ flowControlled: 1, flowViolations: 0, bytesSent: 2_000_000 });
    expect(outlet.stats).toMatchObject({ flowControlled: 1, flowViolations: 0, bytesReceived: 2_000_000 });
    expect(inlet.connections()[0]).toMatchObject({ flowControl: 'on' });
    expect(outlet.connections()[0]).toMatchObject({ flowControl: 'on' });
  });

  it('falls back to Ockam behaviour when either end does not take part', async () => {
    for (const [inletFlow, outletFlow] of [
      [true, false],
      [false, true],
    ]) {
      const target = await echoServer();
      const { inlet, outlet } = await localPortal(target.port, {
        inlet: { flowControl: inletFlow, receiveWindowBytes: 4096 },
        outlet: { flowControl: outletFlow, receiveWindowBytes: 4096 },
      });
      const client = await connect(inlet.address);
      const data = randomBytes(1_000_000);
      const got = readN(client, data.length);
      client.write(data);
      expect((await got).equals(data)).toBe(true);
      expect(inlet.stats.flowControlled + outlet.stats.flowControlled).toBe(0);
      expect(inlet.connections()[0]).toMatchObject({ flowControl: 'off', credit: null });
    }
  });

  it('an outlet facing an Ockam inlet offers once and then works without credit', async () => {
    const target = await recordingTarget(2 * 1024 * 1024);
    const router = newRouter();
    const outlet = await TcpOutlet.create(router, {
      target: `127.0.0.1:${target.port}`,
      receiveWindowBytes: 4096,
    });
    const peer = await router.context('ockam_inlet');
    await peer.send('outlet', encodePortalMessage({ type: 'ping' }));
    const pong = await next(peer);
    expect(pong.m.type).toBe('pong');
    expect((await next(peer)).m).toEqual({ type: 'offer', window: 4096 });
    // Far more than the outlet's window, and never a Credit: all of it arrives both ways.
    for (let i = 0; i < 8; i++)
      await peer.send(pong.message.returnRoute, encodePayload(new Uint8Array(16_384)));
    let down = 0;
    while (down < 2 * 1024 * 1024) {
      const { m } = await next(peer);
      if (m.type !== 'payload') throw new Error(`unexpected ${m.type}`);
      down += m.data.length;
    }
    await waitFor(() => target.received() === 8 * 16_384);
    expect(outlet.stats).toMatchObject({ flowControlled: 0, flowViolations: 0 });
    expect(outlet.connections()[0]).toMatchObject({ flowControl: 'offered' });
  });

  it('an inlet sends no more than the outlet granted, more as Credit comes, and refuses credit for bytes it never sent', async () => {
    const router = newRouter();
    const fake = await router.context('fake_outlet');
    const inlet = await TcpInlet.create(router, { bind: '127.0.0.1:0', outletRoute: 'fake_outlet' });
    const client = await connect(inlet.address);
    client.write(randomBytes(1024 * 1024));
    const ping = await next(fake);
    expect(ping.m.type).toBe('ping');
    const worker = await router.context('fake_outlet_worker');
    const toInlet = ping.message.returnRoute;
    await worker.send(toInlet, encodePortalMessage({ type: 'pong' }));
    await worker.send(toInlet, encodeFlowMessage({ type: 'offer', window: 64 * 1024 }));
    expect((await next(worker)).m).toEqual({ type: 'accept', window: 1024 * 1024 });
    const take = async (bytes: number) => {
      let got = 0;
      while (got < bytes) {
        const { m } = await next(worker);
        if (m.type !== 'payload') throw new Error(`unexpected ${m.type}`);
        got += m.data.length;
      }
      return got;
    };
    expect(await take(64 * 1024)).toBe(64 * 1024);
    // The client's next read waits for credit, its socket paused.
    await waitFor(
      () => inlet.connections()[0]?.credit === 0 && (inlet.connections()[0]?.pending as number) > 0,
    );
    expect(inlet.stats.bytesSent).toBe(64 * 1024);
    expect(inlet.connections()[0]).toMatchObject({ flowControl: 'on', paused: true });

    await worker.send(toInlet, encodeFlowMessage({ type: 'credit', bytes: 20_000 }));
    expect(await take(20_000)).toBe(20_000);
    await waitFor(() => inlet.connections()[0]?.credit === 0);
    expect(inlet.stats.bytesSent).toBe(64 * 1024 + 20_000);

    await worker.send(toInlet, encodeFlowMessage({ type: 'credit', bytes: 1024 * 1024 }));
    expect((await next(worker)).m.type).toBe('disconnect');
    if (!client.destroyed) await new Promise((r) => client.once('close', r));
    expect(inlet.stats).toMatchObject({ flowControlled: 1, flowViolations: 1 });
  });

  it("a client's FIN waits behind the bytes that wait for credit", async () => {
    const router = newRouter();
    const fake = await router.context('fake_outlet');
    const inlet = await TcpInlet.create(router, { bind: '127.0.0.1:0', outletRoute: 'fake_outlet' });
    const client = await connect(inlet.address, true);
    client.end(randomBytes(100_000));
    const ping = await next(fake);
    const worker = await router.context('fake_outlet_worker');
    const toInlet = ping.message.returnRoute;
    await worker.send(toInlet, encodePortalMessage({ type: 'pong' }));
    await worker.send(toInlet, encodeFlowMessage({ type: 'offer', window: 30_000 }));
    expect((await next(worker)).m.type).toBe('accept');
    let got = 0;
    const take = async (bytes: number) => {
      for (let n = 0; n < bytes; ) {
        const { m } = await next(worker);
        if (m.type !== 'payload') throw new Error(`${m.type} before the data`);
        n += m.data.length;
        got += m.data.length;
      }
    };
    await take(30_000);
    while (got < 100_000) {
      await worker.send(toInlet, encodeFlowMessage({ type: 'credit', bytes: 30_000 }));
      await take(Math.min(30_000, 100_000 - got));
    }
    expect(got).toBe(100_000);
    expect((await next(worker)).m.type).toBe('disconnect');
    expect(inlet.stats.flowViolations).toBe(0);
  });

  it('an outlet closes a stream whose inlet sends beyond its credit, or speaks out of turn', async () => {
    const target = await recordingTarget();
    const router = newRouter();
    const outlet = await TcpOutlet.create(router, {
      target: `127.0.0.1:${target.port}`,
      receiveWindowBytes: 4096,
    });
    const peer = await router.context('peer');
    const open = async () => {
      await peer.send('outlet', encodePortalMessage({ type: 'ping' }));
      const pong = await next(peer);
      expect(pong.m.type).toBe('pong');
      expect((await next(peer)).m.type).toBe('offer');
      return pong.message.returnRoute;
    };

    const worker = await open();
    await peer.send(worker, encodeFlowMessage({ type: 'accept', window: 1024 * 1024 }));
    expect((await next(peer)).m.type).toBe('start');
    await peer.send(worker, encodePayload(new Uint8Array(4096 + 1)));
    expect((await next(peer)).m.type).toBe('disconnect');
    expect(outlet.stats.flowViolations).toBe(1);
    expect(target.received()).toBe(0);

    const second = await open();
    await peer.send(second, encodeFlowMessage({ type: 'credit', bytes: 10 }));
    expect((await next(peer)).m.type).toBe('disconnect');
    expect(outlet.stats).toMatchObject({ flowViolations: 2, flowControlled: 1 });
    await waitFor(() => outlet.stats.connections === 0);
    await waitFor(
      () => target.sockets.length === 2 && target.sockets.every((s) => s.destroyed || s.readableEnded),
    );
  });

  it('tells its owner when the route to the outlet looks broken', async () => {
    const router = newRouter();
    await router.startWorker('blackhole', { handleMessage: () => undefined });
    const reports: { route: string; reason: string }[] = [];
    const onRouteFailure = ({ route, reason }: { route: Route; reason: string }) => {
      reports.push({ route: route.toString(), reason });
    };
    const silent = await TcpInlet.create(router, {
      bind: '127.0.0.1:0',
      outletRoute: 'blackhole',
      pongTimeoutMs: 50,
      onRouteFailure,
    });
    await readAll(await connect(silent.address));
    const nobody = await TcpInlet.create(router, {
      bind: '127.0.0.1:0',
      outletRoute: 'nobody',
      onRouteFailure,
    });
    await readAll(await connect(nobody.address));
    await waitFor(() => reports.length === 2);
    expect(reports[0]).toEqual({ route: '0#blackhole', reason: 'no Pong within 50 ms' });
    expect(reports[1]!.route).toBe('0#nobody');
    expect(reports[1]!.reason).toMatch(/^Ping not routed: /);
  });
});
