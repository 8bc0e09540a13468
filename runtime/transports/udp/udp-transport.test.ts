import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { Address } from '../../routing/address.js';
import { decodeCborFrame, encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import { Message } from '../../routing/message.js';
import { Route } from '../../routing/route.js';
import { Router } from '../../routing/router.js';
import { EchoService } from '../../services/echo.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transport-info.js';
import { Reassembler } from './reassembly.js';
import { decodeDatagram, encodeDatagram, MAX_ON_THE_WIRE_SIZE, segment } from './segmentation.js';
import { UdpTransport, type UdpTransportOptions } from './udp-transport.js';

const routers: Router[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const r of routers.splice(0)) await r.shutdown();
  for (const s of sockets.splice(0)) s.close();
});

async function node(name: string, options: Partial<UdpTransportOptions> = {}) {
  const router = new Router({ name });
  routers.push(router);
  const udp = await UdpTransport.create(router, { bind: '127.0.0.1:0', ...options });
  return { router, udp };
}

async function rawSocket(): Promise<{ socket: Socket; port: number; received: Buffer[] }> {
  const socket = createSocket('udp4');
  sockets.push(socket);
  const received: Buffer[] = [];
  socket.on('message', (m) => received.push(m));
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { socket, port: socket.address().port, received };
}

function sendRaw(socket: Socket, bytes: Uint8Array, address: string): Promise<void> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve, reject) =>
    socket.send(bytes, Number(port), host, (e) => (e ? reject(e) : resolve())),
  );
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function payload(size: number, seed: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + seed * 13) & 0xff;
  return b;
}

describe('UdpTransport between two routers', () => {
  it('carries 200 request/replies of varied sizes, segmented where needed', async () => {
    const b = await node('b', { expose: ['echo'] });
    await b.router.startWorker('echo', new EchoService());
    const a = await node('a');
    const ctx = await a.router.context();
    const route = Route.of(`2#${b.udp.address}`, 'echo');

    const sizes: number[] = [];
    for (let i = 0; i < 200; i++) sizes.push([0, 1, 100, 480, 493, 494, 1000, 4000, 20_000][i % 9]! + i);
    sizes[100] = 64 * 1024;
    let segmented = 0;
    for (let i = 0; i < sizes.length; i++) {
      const p = payload(sizes[i]!, i);
      await ctx.send(route, p);
      const reply = await ctx.receive(5000);
      expect(reply.payload.length).toBe(p.length);
      expect(Buffer.from(reply.payload).equals(Buffer.from(p))).toBe(true);
      // The reply came back through A's sender for B.
      expect(reply.returnRoute.length).toBe(2);
      expect(reply.returnRoute.last!.text).toBe('echo');
      if (p.length > 493) segmented++;
    }
    expect(segmented).toBeGreaterThan(100);

    const sa = a.udp.stats();
    const sb = b.udp.stats();
    expect(sa.messagesOut).toBe(200);
    expect(sa.messagesIn).toBe(200);
    expect(sb.messagesIn).toBe(200);
    expect(sb.messagesOut).toBe(200);
    expect(sa.datagramsOut).toBe(sb.datagramsIn);
    expect(sb.datagramsOut).toBe(sa.datagramsIn);
    expect(sa.datagramsOut).toBeGreaterThan(400);
    expect(Object.values(sa.drops).every((n) => n === 0)).toBe(true);
    expect(Object.values(sb.drops).every((n) => n === 0)).toBe(true);
    expect(sa.peers).toBe(1);
    expect(sb.peers).toBe(1);
    expect(sa.bufferedBytes).toBe(0);
  });

  it('does not starve its own process: a burst of 20 × 64 KiB, sent at once, all comes back', async () => {
    const b = await node('b', { expose: ['echo'] });
    await b.router.startWorker('echo', new EchoService());
    const a = await node('a');
    const ctx = await a.router.context();
    const sent = Array.from({ length: 20 }, (_, i) => payload(64 * 1024, i));
    await Promise.all(sent.map((p) => ctx.send([`2#${b.udp.address}`, 'echo'], p)));
    const got = new Set<number>();
    for (let i = 0; i < sent.length; i++) got.add((await ctx.receive(5000)).payload[1]!);
    expect(got).toEqual(new Set(sent.map((p) => p[1]!)));
    expect(b.udp.stats().drops.out_of_order).toBe(0);
  });

  it('reuses one sender per peer, also for a host name', async () => {
    const b = await node('b');
    const a = await node('a');
    const port = b.udp.address.split(':')[1];
    const s1 = await a.udp.resolve(Address.parse(`2#${b.udp.address}`));
    const s2 = await a.udp.resolve(Address.parse(`2#${b.udp.address}`));
    const s3 = await a.udp.resolve(Address.parse(`2#localhost:${port}`));
    expect(s1.equals(s2)).toBe(true);
    expect(s1.equals(s3)).toBe(true);
    expect(a.router.isRegistered(s1)).toBe(true);
    expect(a.udp.peerList()).toEqual([
      { peer: b.udp.address, sender: s1.toString(), flow: expect.any(String), proven: true },
    ]);
  });

  it('attaches transport info and only reaches exposed workers', async () => {
    const b = await node('b');
    const seen: Message[] = [];
    await b.router.startWorker('inbox', { handleMessage: (_c, m) => void seen.push(m) });
    await b.router.startWorker('secret', { handleMessage: (_c, m) => void seen.push(m) });
    const a = await node('a');
    const ctx = await a.router.context();

    // Nothing exposed yet: dropped before any peer state exists.
    await ctx.send([`2#${b.udp.address}`, 'inbox'], Uint8Array.of(1));
    await waitFor(() => b.udp.stats().drops.not_exposed === 1);
    expect(b.udp.stats().peers).toBe(0);

    b.udp.expose('inbox');
    await ctx.send([`2#${b.udp.address}`, 'inbox'], Uint8Array.of(2));
    await waitFor(() => seen.length === 1);
    const info = seen[0]!.info<TransportInfo>(TRANSPORT_INFO)!;
    expect(info.transport).toBe('udp');
    expect(info.peer).toBe(a.udp.address);
    expect(seen[0]!.returnRoute.next!.toString()).toBe(info.sender);
    expect(seen[0]!.returnRoute.last!.equals(ctx.address)).toBe(true);

    // A known peer reaches only the flow's consumers: the router drops the rest.
    await ctx.send([`2#${b.udp.address}`, 'secret'], Uint8Array.of(3));
    await waitFor(() => b.router.metrics.dropped.outgoing_denied === 1);
    expect(seen).toHaveLength(1);
  });

  it('sends Ockam datagrams: routing numbers count up per peer, byte offsets, ≤ 508 bytes', async () => {
    const a = await node('a');
    const raw = await rawSocket();
    const ctx = await a.router.context();
    const big = payload(1500, 1);
    await ctx.send([`2#127.0.0.1:${raw.port}`, 'far'], Uint8Array.of(1));
    await ctx.send([`2#127.0.0.1:${raw.port}`, 'far'], big);
    await waitFor(() => raw.received.length === 5);
    const ds = raw.received.map((b) => decodeDatagram(b));
    expect(raw.received.every((b) => b.length <= MAX_ON_THE_WIRE_SIZE)).toBe(true);
    const rn0 = ds[0]!.routingNumber;
    expect(ds.map((d) => [d.routingNumber, d.offset, d.isLast])).toEqual([
      [rn0, 0, true],
      [(rn0 + 1) & 0xffff, 0, false],
      [(rn0 + 1) & 0xffff, 493, false],
      [(rn0 + 1) & 0xffff, 986, false],
      [(rn0 + 1) & 0xffff, 1479, true],
    ]);
    const r = new Reassembler();
    const frames = raw.received.map((b) => r.pushBytes('x', b)).filter((m) => m !== undefined);
    const second = decodeCborFrame(frames[1]!);
    expect(second.onward.toString()).toBe('0#far');
    expect(second.returnRoute.equals(Route.of(ctx.address))).toBe(true);
    expect(Buffer.from(second.payload).equals(Buffer.from(big))).toBe(true);
  });

  it('answers a hand-made Ockam client', async () => {
    const b = await node('b', { expose: ['echo'] });
    await b.router.startWorker('echo', new EchoService());
    const raw = await rawSocket();
    const body = payload(1200, 5);
    const frame = encodeCborFrame(Message.create(Route.of('echo'), body, Route.of('client_inbox')));
    for (const d of segment(frame, 65535)) await sendRaw(raw.socket, d, b.udp.address);
    await waitFor(() => raw.received.length === 3);
    const r = new Reassembler();
    const out = raw.received.map((m) => r.pushBytes('b', m)).filter((m) => m !== undefined);
    expect(out).toHaveLength(1);
    const reply = decodeCborFrame(out[0]!);
    expect(reply.onward.toString()).toBe('0#client_inbox');
    expect(reply.returnRoute.toString()).toBe('0#echo');
    expect(Buffer.from(reply.payload).equals(Buffer.from(body))).toBe(true);
  });

  it('drops, counts and logs garbage datagrams while valid traffic keeps working', async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
    const b = await node('b', { expose: ['echo'], log });
    await b.router.startWorker('echo', new EchoService());
    const a = await node('a');
    const ctx = await a.router.context();
    const route = Route.of(`2#${b.udp.address}`, 'echo');
    const raw = await rawSocket();

    const roundTrip = async (size: number, seed: number) => {
      const p = payload(size, seed);
      await ctx.send(route, p);
      const reply = await ctx.receive(5000);
      expect(Buffer.from(reply.payload).equals(Buffer.from(p))).toBe(true);
    };
    await roundTrip(2000, 1);

    const dgram = (rn: number, offset: number, isLast: boolean, bytes: Uint8Array, version?: number) =>
      encodeDatagram({ routingNumber: rn, offset, isLast, payload: bytes, ...(version ? { version } : {}) });
    const garbage: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.of(0xff),
      randomBytes(508),
      randomBytes(1400), // too long for a datagram
      dgram(1, 0, true, Uint8Array.of(1, 2, 3), 2), // unknown version
      dgram(1, 0, false, new Uint8Array(0)), // empty non-final piece
    ];
    for (let i = 0; i < 40; i++) garbage.push(randomBytes(1 + ((i * 37) % 500)));
    for (const g of garbage) await sendRaw(raw.socket, g, b.udp.address);
    // Well-formed datagrams carrying nonsense: undecodable frame, empty onward, then a stale one.
    await sendRaw(raw.socket, dgram(10, 0, true, Uint8Array.of(0x83, 0x80)), b.udp.address);
    await sendRaw(
      raw.socket,
      dgram(11, 0, true, encodeCborFrame(Message.create(Route.EMPTY, Uint8Array.of(1)))),
      b.udp.address,
    );
    await sendRaw(raw.socket, dgram(5, 0, true, Uint8Array.of(1)), b.udp.address);
    await sendRaw(raw.socket, dgram(12, 493, true, Uint8Array.of(1)), b.udp.address);

    // 5 datagrams of the first request, the garbage, the 4 crafted ones.
    await waitFor(() => b.udp.stats().datagramsIn === 5 + garbage.length + 4);
    const drops = b.udp.stats().drops;
    expect(drops.malformed).toBeGreaterThanOrEqual(6);
    expect(drops.malformed).toBeLessThanOrEqual(garbage.length);
    expect(drops.undecodable).toBeGreaterThanOrEqual(1);
    expect(drops.empty_onward).toBe(1);
    expect(drops.stale).toBeGreaterThanOrEqual(1);
    expect(drops.out_of_order).toBeGreaterThanOrEqual(1);
    expect(b.udp.stats().peers).toBe(1); // the raw socket never reached anything: no peer for it

    for (let i = 0; i < 10; i++) await roundTrip(100 + i * 700, i);
    expect(a.udp.stats().messagesIn).toBe(11);

    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string });
    const dropLines = logged.filter(
      (l) => l.msg === 'UDP datagram dropped' || l.msg === 'UDP message dropped',
    );
    expect(dropLines.every((l) => l.level === 20)).toBe(true); // debug
    // A log flood guard may hold some lines back; none is ever written for a drop not counted.
    const malformedLines = dropLines.filter((l) => l.reason === 'malformed').length;
    expect(malformedLines).toBeGreaterThan(0);
    expect(malformedLines).toBeLessThanOrEqual(drops.malformed);
    expect(dropLines.some((l) => l.reason === 'undecodable')).toBe(true);
  });
});

describe('UdpTransport lifecycle and limits', () => {
  it('binds port 0 to a real port and registers for type 2', async () => {
    const { router, udp } = await node('a');
    expect(udp.type).toBe(2);
    expect(udp.name).toBe('udp');
    expect(udp.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(udp.address.endsWith(':0')).toBe(false);
    expect(router.transport(2)).toBe(udp);
  });

  it('accepts socket buffer sizes', async () => {
    const b = await node('b', { expose: ['echo'], recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
    await b.router.startWorker('echo', new EchoService());
    const a = await node('a');
    const ctx = await a.router.context();
    await ctx.send([`2#${b.udp.address}`, 'echo'], payload(10_000, 1));
    expect((await ctx.receive(5000)).payload.length).toBe(10_000);
  });

  it('binds IPv6', async () => {
    const a = await node('a6', { bind: '[::1]:0' });
    expect(a.udp.address).toMatch(/^\[::1\]:\d+$/);
    const b = await node('b6', { bind: '[::1]:0', expose: ['echo'] });
    await b.router.startWorker('echo', new EchoService());
    const ctx = await a.router.context();
    await ctx.send([`2#${b.udp.address}`, 'echo'], payload(3000, 1));
    expect((await ctx.receive(5000)).payload.length).toBe(3000);
    expect(b.udp.peerList()[0]!.peer).toBe(a.udp.address);
  });

  it('refuses a port in use, a bad bind address, bad limits and a second UDP transport', async () => {
    const { udp } = await node('a');
    const other = new Router({ name: 'x' });
    routers.push(other);
    await expect(UdpTransport.create(other, { bind: udp.address })).rejects.toMatchObject({
      code: ErrorCodes.LISTEN_FAILED,
    });
    await expect(UdpTransport.create(other, { bind: 'nonsense' })).rejects.toMatchObject({
      code: ErrorCodes.ADDRESS_INVALID,
    });
    await expect(UdpTransport.create(other, { bind: '127.0.0.1:0', maxPeers: 0 })).rejects.toMatchObject({
      code: ErrorCodes.CONFIG_INVALID,
    });
    await expect(UdpTransport.create(other, { bind: '127.0.0.1:0', maxInFlight: 0 })).rejects.toMatchObject({
      code: ErrorCodes.CONFIG_INVALID,
    });
    await expect(
      UdpTransport.create(other, { bind: '127.0.0.1:0', recvBufferSize: -1 }),
    ).rejects.toMatchObject({
      code: ErrorCodes.CONFIG_INVALID,
    });
    // A second UDP transport on the same router is refused and its socket closed.
    await expect(UdpTransport.create(routers[0]!, { bind: '127.0.0.1:0' })).rejects.toMatchObject({
      code: ErrorCodes.ADDRESS_IN_USE,
    });
  });

  it('rejects bad peer addresses', async () => {
    const { udp } = await node('a');
    await expect(udp.resolve(Address.parse('2#127.0.0.1:0'))).rejects.toMatchObject({
      code: ErrorCodes.ADDRESS_INVALID,
    });
    await expect(udp.resolve(Address.parse('2#[::1]:4000'))).rejects.toMatchObject({
      code: ErrorCodes.ADDRESS_INVALID,
    });
    await expect(udp.resolve(Address.parse('1#127.0.0.1:4000'))).rejects.toMatchObject({
      code: ErrorCodes.ADDRESS_INVALID,
    });
    await expect(udp.resolve(Address.parse('2#no-such-host.invalid:4000'))).rejects.toBeInstanceOf(
      KeyhopError,
    );
  });

  it('refuses to send a message larger than maxMessageBytes', async () => {
    const b = await node('b', { expose: ['echo'] });
    await b.router.startWorker('echo', new EchoService());
    const a = await node('a', { maxMessageBytes: 10_000 });
    const ctx = await a.router.context();
    await ctx.send([`2#${b.udp.address}`, 'echo'], payload(20_000, 1));
    await waitFor(() => a.router.metrics.workerErrors === 1);
    expect(a.udp.stats().datagramsOut).toBe(0);
    await ctx.send([`2#${b.udp.address}`, 'echo'], payload(5000, 1));
    expect((await ctx.receive(5000)).payload.length).toBe(5000);
  });

  it('drops messages beyond maxInFlight', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const b = await node('b', { expose: ['slow'], maxInFlight: 2 });
    let handled = 0;
    await b.router.startWorker('slow', {
      handleMessage: async () => {
        await gate;
        handled++;
      },
    });
    const a = await node('a');
    await b.udp.resolve(Address.parse(`2#${a.udp.address}`)); // b talks to a: a is proven there
    const ctx = await a.router.context();
    for (let i = 0; i < 5; i++) await ctx.send([`2#${b.udp.address}`, 'slow'], Uint8Array.of(i));
    await waitFor(() => b.udp.stats().datagramsIn === 5);
    expect(b.udp.stats().drops.overloaded).toBe(3);
    expect(b.udp.stats().inFlight).toBe(2);
    release();
    await waitFor(() => handled === 2);
    await waitFor(() => b.udp.stats().inFlight === 0);
  });

  it('forgets the least recently used proven peer beyond maxPeers', async () => {
    const b = await node('b', { expose: ['echo'], maxPeers: 2 });
    await b.router.startWorker('echo', new EchoService());
    const clients = [await node('c1'), await node('c2'), await node('c3')];
    const stopped: string[] = [];
    b.router.onWorkerStopped((as) => stopped.push(...as.map((x) => x.toString())));
    const senders: Address[] = [];
    for (const c of clients) senders.push(await b.udp.resolve(Address.parse(`2#${c.udp.address}`)));
    expect(b.udp.stats()).toMatchObject({ peers: 2, provenPeers: 2, unprovenPeers: 0 });
    expect(b.udp.peerList().map((p) => p.peer)).toEqual([clients[1]!.udp.address, clients[2]!.udp.address]);
    await waitFor(() => stopped.includes(senders[0]!.toString()));
    // c1 talks again: it is a new, unproven peer, which evicts no proven one.
    const ctx = await clients[0]!.router.context();
    await ctx.send([`2#${b.udp.address}`, 'echo'], Uint8Array.of(1));
    await ctx.receive(5000);
    expect(b.udp.stats()).toMatchObject({ peers: 3, provenPeers: 2, unprovenPeers: 1 });
    expect(b.udp.peerList().map((p) => [p.peer, p.proven])).toEqual([
      [clients[1]!.udp.address, true],
      [clients[2]!.udp.address, true],
      [clients[0]!.udp.address, false],
    ]);
  });

  it('shuts down: stops peer workers, refuses new work, is idempotent', async () => {
    const b = await node('b');
    const a = await node('a');
    const sender = await a.udp.resolve(Address.parse(`2#${b.udp.address}`));
    expect(a.router.isRegistered(sender)).toBe(true);
    await a.udp.shutdown();
    await a.udp.shutdown();
    expect(a.router.isRegistered(sender)).toBe(false);
    expect(a.udp.stats().peers).toBe(0);
    await expect(a.udp.resolve(Address.parse(`2#${b.udp.address}`))).rejects.toMatchObject({
      code: ErrorCodes.ROUTER_STOPPED,
    });
  });

  it('forgets a peer whose sender worker is stopped, and makes a new one on demand', async () => {
    const b = await node('b');
    const a = await node('a');
    const s1 = await a.udp.resolve(Address.parse(`2#${b.udp.address}`));
    await a.router.stopWorker(s1);
    expect(a.udp.stats().peers).toBe(0);
    const s2 = await a.udp.resolve(Address.parse(`2#${b.udp.address}`));
    expect(s2.equals(s1)).toBe(false);
    expect(a.router.isRegistered(s2)).toBe(true);
  });
});

/** A routing message for local worker `to`, CBOR-encoded as it travels. */
function frame(to: string, body: Uint8Array = Uint8Array.of(1)): Uint8Array {
  return encodeCborFrame(Message.create(Route.of(to), body, Route.of('back')));
}

/**
 * Sends `datagrams` from a fresh socket on 127.0.0.(2 + i mod 199), port picked by the kernel, then
 * closes it: a distinct source as a forger would make one. Returns its `host:port`.
 */
async function sendFrom(i: number, datagrams: Uint8Array[], to: string): Promise<string> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, `127.0.0.${2 + (i % 199)}`, () => resolve());
  });
  const { address, port } = socket.address();
  for (const d of datagrams) await sendRaw(socket, d, to);
  socket.close();
  return `${address}:${port}`;
}

describe('UdpTransport: proven and unproven sources', () => {
  it('a flood from 2,000 unproven sources evicts no proven peer and stays within the unproven budget', async () => {
    const lines: { level: number; msg: string }[] = [];
    const log = createLogger({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const b = await node('b', {
      expose: ['inbox', 'sink'],
      maxPeers: 4,
      maxUnprovenPeers: 32,
      maxUnprovenBufferedBytes: 4096,
      timeoutMs: 600_000,
      log,
    });
    const inbox: Message[] = [];
    let sunk = 0;
    await b.router.startWorker('inbox', { handleMessage: (_c, m) => void inbox.push(m) });
    await b.router.startWorker('sink', { handleMessage: () => void sunk++ });
    const stopped = new Set<string>();
    b.router.onWorkerStopped((as) => {
      for (const x of as) stopped.add(x.toString());
    });
    const to = b.udp.address;

    // A real peer says hello; a layer above (here the test) finds that it receives what b sends.
    const friend = await rawSocket();
    await sendRaw(friend.socket, segment(frame('inbox'), 1)[0]!, to);
    await waitFor(() => inbox.length === 1);
    const info = inbox[0]!.info<TransportInfo>(TRANSPORT_INFO)!;
    expect(b.udp.stats()).toMatchObject({ provenPeers: 0, unprovenPeers: 1 });
    info.reachable!();
    expect(b.udp.stats()).toMatchObject({ provenPeers: 1, unprovenPeers: 0 });
    // It starts a 3-piece message, to finish after the flood.
    const big = payload(1200, 3);
    const bigPieces = segment(frame('inbox', big), 2);
    expect(bigPieces).toHaveLength(3);
    await sendRaw(friend.socket, bigPieces[0]!, to);
    await waitFor(() => b.udp.stats().bufferedBytes === 493);

    // Each forged source sends a one-piece message to an exposed worker (making it a peer) and
    // the first piece of a longer one (making it hold reassembly bytes).
    const N = 2000;
    const BATCH = 25;
    const sources = new Set<string>();
    let sent = b.udp.stats().datagramsIn;
    for (let i = 0; i < N; i += BATCH) {
      const batch: Promise<string>[] = [];
      for (let j = i; j < i + BATCH; j++) {
        const small = segment(frame('sink'), (2 * j) & 0xffff)[0]!;
        const first = segment(frame('sink', payload(1000, j)), (2 * j + 1) & 0xffff)[0]!;
        batch.push(sendFrom(j, [small, first], to));
      }
      for (const s of await Promise.all(batch)) sources.add(s);
      sent += 2 * BATCH;
      // Paced so that nothing is lost in the socket's receive buffer.
      await waitFor(() => b.udp.stats().datagramsIn === sent);
      const st = b.udp.stats();
      expect(st.unprovenPeers).toBeLessThanOrEqual(32);
      expect(st.unprovenBufferedBytes).toBeLessThanOrEqual(4096);
      expect(st.provenPeers).toBe(1);
    }
    expect(sources.size).toBeGreaterThan(1800); // the kernel may hand out a port twice
    // Every one-piece message was handled, or refused for the unproven in-flight budget.
    await waitFor(() => sunk + b.udp.stats().drops.unproven_overloaded === N);

    const st = b.udp.stats();
    expect(st).toMatchObject({ peers: 33, provenPeers: 1, unprovenPeers: 32 });
    // 8 pieces of 493 bytes fit in 4096: the last 8 sources' partials, and the friend's.
    expect(st.unprovenBufferedBytes).toBe(8 * 493);
    expect(st.bufferedBytes).toBe(9 * 493);
    expect(st.pendingMessages).toBe(9);
    // Every other forged partial was given up, counted once: to the budget, or for a newer
    // message from a source whose host:port came round again.
    expect(st.drops.unproven_budget + st.drops.abandoned).toBe(N - 8);
    expect(st.drops.unproven_budget).toBeGreaterThan(N / 2);
    expect(st.drops.evicted).toBe(0);
    expect(st.drops.overloaded).toBe(0);

    // The friend's workers never stopped, and its message completes.
    expect(stopped.has(info.sender)).toBe(false);
    expect(stopped.size).toBeGreaterThan(0); // forged peers' workers were
    expect(b.router.isRegistered(Address.parse(info.sender))).toBe(true);
    for (const d of bigPieces.slice(1)) await sendRaw(friend.socket, d, to);
    await waitFor(() => inbox.length === 2);
    expect(Buffer.from(inbox[1]!.payload).equals(Buffer.from(big))).toBe(true);
    expect(inbox[1]!.info<TransportInfo>(TRANSPORT_INFO)!.sender).toBe(info.sender);
    const ctx = await b.router.context();
    await ctx.send([info.sender, 'far'], Uint8Array.of(9));
    await waitFor(() => friend.received.length === 1);

    // Nothing a remote source did was logged above debug.
    const loud = lines.filter((l) => l.level > 20 && l.msg !== 'UDP transport bound');
    expect(loud).toEqual([]);
  });

  it('messages of unproven peers in flight have their own budget, a quarter of maxInFlight by default', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const b = await node('b', { expose: ['slow'], maxInFlight: 8 });
    let handled = 0;
    await b.router.startWorker('slow', {
      handleMessage: async () => {
        await gate;
        handled++;
      },
    });
    const a = await node('a');
    await b.udp.resolve(Address.parse(`2#${a.udp.address}`));

    for (let i = 0; i < 5; i++) await sendFrom(i, [segment(frame('slow'), i)[0]!], b.udp.address);
    await waitFor(() => b.udp.stats().datagramsIn === 5);
    expect(b.udp.stats()).toMatchObject({ unprovenInFlight: 2, inFlight: 0, unprovenPeers: 2 });
    expect(b.udp.stats().drops.unproven_overloaded).toBe(3); // and no peer state for those

    // The proven peer still has all of maxInFlight.
    const ctx = await a.router.context();
    for (let i = 0; i < 9; i++) await ctx.send([`2#${b.udp.address}`, 'slow'], Uint8Array.of(i));
    await waitFor(() => b.udp.stats().datagramsIn === 14);
    expect(b.udp.stats()).toMatchObject({ unprovenInFlight: 2, inFlight: 8 });
    expect(b.udp.stats().drops.overloaded).toBe(1);
    expect(b.udp.stats().drops.unproven_overloaded).toBe(3);
    release();
    await waitFor(() => handled === 10);
    await waitFor(() => b.udp.stats().inFlight === 0 && b.udp.stats().unprovenInFlight === 0);
  });

  it('reachable() proves a peer; a peer this node resolved is proven from the start', async () => {
    const b = await node('b', { expose: ['inbox'], maxPeers: 1 });
    const inbox: Message[] = [];
    await b.router.startWorker('inbox', { handleMessage: (_c, m) => void inbox.push(m) });
    const a = await node('a');
    const ctx = await a.router.context();
    await ctx.send([`2#${b.udp.address}`, 'inbox'], Uint8Array.of(1));
    await waitFor(() => inbox.length === 1);
    expect(a.udp.stats()).toMatchObject({ peers: 1, provenPeers: 1, unprovenPeers: 0 });
    expect(b.udp.stats()).toMatchObject({ peers: 1, provenPeers: 0, unprovenPeers: 1 });

    // b already talks to c: promoting a takes c's place (proven peers keep their LRU of maxPeers).
    const c = await node('c');
    const toC = await b.udp.resolve(Address.parse(`2#${c.udp.address}`));
    expect(b.udp.stats()).toMatchObject({ peers: 2, provenPeers: 1, unprovenPeers: 1 });

    const info = inbox[0]!.info<TransportInfo>(TRANSPORT_INFO)!;
    info.reachable!();
    info.reachable!(); // idempotent
    expect(b.udp.stats()).toMatchObject({ peers: 1, provenPeers: 1, unprovenPeers: 0 });
    expect(b.udp.peerList()).toEqual([
      { peer: a.udp.address, sender: info.sender, flow: expect.any(String), proven: true },
    ]);
    await waitFor(() => !b.router.isRegistered(toC));

    // Same workers as before: a reply through its sender reaches a, and a's next message is proven.
    const bctx = await b.router.context();
    await bctx.send(inbox[0]!.returnRoute, Uint8Array.of(2));
    expect([...(await ctx.receive(5000)).payload]).toEqual([2]);
    await ctx.send([`2#${b.udp.address}`, 'inbox'], Uint8Array.of(3));
    await waitFor(() => inbox.length === 2);
    expect(inbox[1]!.info<TransportInfo>(TRANSPORT_INFO)!.sender).toBe(info.sender);
    expect(b.udp.stats().unprovenPeers).toBe(0);
  });

  it('refuses bad unproven budgets with CONFIG_INVALID', async () => {
    const r = new Router({ name: 'x' });
    routers.push(r);
    const bad: Partial<UdpTransportOptions>[] = [
      { maxUnprovenPeers: 0 },
      { maxUnprovenPeers: 1.5 },
      { maxUnprovenBufferedBytes: -1 },
      { maxUnprovenBufferedBytes: Number.NaN },
      { maxUnprovenInFlight: 0 },
      { maxUnprovenInFlight: 2.5 },
    ];
    for (const options of bad) {
      const e = await UdpTransport.create(r, { bind: '127.0.0.1:0', ...options }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(KeyhopError);
      expect((e as KeyhopError).code).toBe(ErrorCodes.CONFIG_INVALID);
      expect((e as KeyhopError).message).toContain(Object.keys(options)[0]);
    }
    expect(r.transport(2)).toBeUndefined();
  });
});
