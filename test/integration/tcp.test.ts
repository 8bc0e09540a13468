import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cborEncode } from '../../runtime/codec/cbor.js';
import { isKeyhopError } from '../../runtime/errors.js';
import { encodeCborFrame } from '../../runtime/routing/codec/cbor-frame.js';
import { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import { Router } from '../../runtime/routing/router.js';
import { EchoService } from '../../runtime/services/echo.js';
import { type DisconnectEvent, TcpTransport } from '../../runtime/transports/tcp/tcp-transport.js';
import { sleep, until } from '../support/wait.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('TCP transport on loopback', () => {
  const routers: Router[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const r of routers.splice(0)) await r.shutdown();
  });

  async function node(name: string) {
    const router = new Router({ name });
    routers.push(router);
    return { router, tcp: TcpTransport.create(router) };
  }

  async function echoServer(expose = ['echo']) {
    const b = await node('b');
    await b.router.startWorker('echo', new EchoService());
    const listener = await b.tcp.listen('127.0.0.1:0', { expose });
    return { ...b, listener };
  }

  function rawClient(address: string): Promise<Socket> {
    const [host, port] = address.split(':') as [string, string];
    return new Promise((resolve, reject) => {
      const s = connect({ host, port: Number(port) }, () => resolve(s));
      s.on('error', reject);
      sockets.push(s);
    });
  }

  function frame(body: Uint8Array): Buffer {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length);
    return Buffer.concat([h, body]);
  }

  function closedBy(s: Socket): Promise<void> {
    return new Promise((resolve) => {
      if (s.destroyed || s.readableEnded) resolve();
      s.on('close', () => resolve());
      s.on('end', () => resolve());
      s.resume();
    });
  }

  it('carries 1,000 messages in order without loss and reuses one connection', async () => {
    const b = await echoServer();
    const a = await node('a');
    const ctx = await a.router.context();
    const route = Route.parse(`1#${b.listener.address} => echo`);
    const n = 1000;
    for (let i = 0; i < n; i++) await ctx.send(route, enc.encode(`message ${i}`));
    for (let i = 0; i < n; i++) {
      const reply = await ctx.receive(5000);
      expect(dec.decode(reply.payload)).toBe(`message ${i}`);
    }
    expect(a.tcp.connections()).toHaveLength(1);
    expect(b.tcp.connections()).toHaveLength(1);
    expect(a.tcp.connections()[0]!.stats.framesOut).toBe(n);
  });

  it('exchanges the protocol-version byte 0x01 before any frame', async () => {
    const b = await echoServer();
    const s = await rawClient(b.listener.address);
    const first = await new Promise<Buffer>((resolve) => s.once('data', resolve));
    expect(first[0]).toBe(0x01);
  });

  it('lets a raw client that speaks the wire format reach an exposed worker and get the answer', async () => {
    const b = await echoServer();
    const s = await rawClient(b.listener.address);
    const replies: Buffer[] = [];
    s.on('data', (d: Buffer) => replies.push(d));
    const body = encodeCborFrame(
      Message.create(Route.of('echo'), enc.encode('raw hello'), Route.of('client')),
    );
    s.write(Buffer.concat([Buffer.of(1), frame(body)]));
    await until(() => Buffer.concat(replies).length > 5);
    const all = Buffer.concat(replies);
    expect(all[0]).toBe(1);
    const len = all.readUInt32BE(1);
    await until(() => Buffer.concat(replies).length >= 5 + len);
    // The reply travels to the return route we gave ("client"), with the receiver's pop applied.
    const decoded = Buffer.concat(replies).subarray(5, 5 + len);
    expect(decoded.includes(Buffer.from('raw hello'))).toBe(true);
    expect(decoded.includes(Buffer.from('client'))).toBe(true);
  });

  it.each([
    ['a bad protocol version', () => Buffer.of(0x02)],
    ['an oversized frame header', () => Buffer.concat([Buffer.of(1), Buffer.from([0x01, 0x10, 0x00, 0x01])])],
    ['an undecodable frame', () => Buffer.concat([Buffer.of(1), frame(Buffer.from('not cbor at all'))])],
    ['a frame of the wrong CBOR shape', () => Buffer.concat([Buffer.of(1), frame(cborEncode({ a: 1 }))])],
  ])('disconnects a peer that sends %s and keeps serving the others', async (_name, bytes) => {
    const b = await echoServer();
    const a = await node('a');
    const ctx = await a.router.context();
    const route = Route.parse(`1#${b.listener.address} => echo`);
    await ctx.send(route, enc.encode('before'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('before');

    const bad = await rawClient(b.listener.address);
    const closed = closedBy(bad);
    bad.write(bytes());
    await closed;
    await until(() => b.tcp.connections().length === 1);

    await ctx.send(route, enc.encode('after'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('after');
  });

  it('drops messages from a connection to workers that were not exposed to it, and counts them', async () => {
    const b = await echoServer(['echo']);
    const secret: string[] = [];
    await b.router.startWorker('secret', {
      handleMessage: (_c, m) => void secret.push(dec.decode(m.payload)),
    });
    const a = await node('a');
    const ctx = await a.router.context();
    await ctx.send(Route.parse(`1#${b.listener.address} => secret`), enc.encode('let me in'));
    await ctx.send(Route.parse(`1#${b.listener.address} => echo`), enc.encode('ping'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('ping');
    expect(secret).toEqual([]);
    expect(b.router.metrics.dropped.outgoing_denied).toBe(1);
  });

  it('does not let a peer make the node dial a third party', async () => {
    const b = await echoServer();
    let dialled = 0;
    const victim = createNetServer((s) => {
      dialled++;
      s.destroy();
    });
    await new Promise<void>((resolve) => victim.listen(0, '127.0.0.1', resolve));
    const victimPort = (victim.address() as { port: number }).port;
    try {
      const s = await rawClient(b.listener.address);
      const body = encodeCborFrame(
        Message.create(Route.parse(`1#127.0.0.1:${victimPort} => x`), enc.encode('go')),
      );
      s.write(Buffer.concat([Buffer.of(1), frame(body)]));
      await until(() => b.router.metrics.dropped.outgoing_denied === 1);
      await sleep(50);
      expect(dialled).toBe(0);
      expect(b.tcp.connections()).toHaveLength(1);
    } finally {
      victim.close();
    }
  });

  it('counts messages to unknown addresses on the receiving node without dropping the connection', async () => {
    const b = await echoServer();
    const a = await node('a');
    const ctx = await a.router.context();
    await ctx.send(Route.parse(`1#${b.listener.address} => nobody`), enc.encode('x'));
    await ctx.send(Route.parse(`1#${b.listener.address} => echo`), enc.encode('still here'));
    expect(dec.decode((await ctx.receive()).payload)).toBe('still here');
    expect(b.router.metrics.dropped.unknown_address).toBe(1);
  });

  it('reports a local send to an unknown address to the sender', async () => {
    const a = await node('a');
    const ctx = await a.router.context();
    const err = await ctx.send(Route.of('nowhere'), enc.encode('x')).catch((e: unknown) => e);
    expect(isKeyhopError(err, 'ADDRESS_UNKNOWN')).toBe(true);
  });

  it('reports a peer killed mid-stream and reconnects on the next send', async () => {
    const b = await echoServer();
    const port = Number(b.listener.address.split(':')[1]);
    const a = await node('a');
    const disconnects: DisconnectEvent[] = [];
    a.tcp.on('disconnect', (e) => disconnects.push(e));
    const ctx = await a.router.context();
    const route = Route.parse(`1#${b.listener.address} => echo`);
    for (let i = 0; i < 50; i++) await ctx.send(route, new Uint8Array(16 * 1024));
    await ctx.receive();
    // Kill B while replies are still in flight.
    await b.router.shutdown();
    await until(() => disconnects.length === 1);
    expect(disconnects[0]!.peer).toBe(b.listener.address);
    expect(a.tcp.connections()).toHaveLength(0);

    // A new B on the same port: the next send dials again.
    const b2 = await node('b2');
    await b2.router.startWorker('echo', new EchoService());
    await b2.tcp.listen(`127.0.0.1:${port}`, { expose: ['echo'] });
    await ctx.send(route, enc.encode('again'));
    // Replies from the first B that arrived before it died come first: skip them.
    let reply = await ctx.receive();
    while (reply.payload.length === 16 * 1024) reply = await ctx.receive();
    expect(dec.decode(reply.payload)).toBe('again');
    expect(a.tcp.connections()).toHaveLength(1);
  });

  it('fails a send to a port nobody listens on with CONNECT_FAILED', async () => {
    const a = await node('a');
    const ctx = await a.router.context();
    const err = await ctx
      .send(Route.parse('1#127.0.0.1:1 => echo'), enc.encode('x'))
      .catch((e: unknown) => e);
    expect(isKeyhopError(err, 'CONNECT_FAILED')).toBe(true);
  });

  it('carries a 1 MiB message', async () => {
    const b = await echoServer();
    const a = await node('a');
    const ctx = await a.router.context();
    const big = new Uint8Array(1024 * 1024).map((_, i) => i & 0xff);
    await ctx.send(Route.parse(`1#${b.listener.address} => echo`), big);
    const reply = await ctx.receive();
    expect(Buffer.from(reply.payload).equals(Buffer.from(big))).toBe(true);
  });
});
