import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SecureChannelEnd } from '../../runtime/channel/secure-channel.js';
import { trustIdentifiers } from '../../runtime/identity/trust.js';
import { Route } from '../../runtime/routing/route.js';
import { TcpInlet, TcpOutlet } from '../../runtime/services/portal/index.js';
import { type TestNode, testNode } from '../support/nodes.js';

/**
 * Two nodes in this process, one TCP connection, one secure channel; every portal stream here
 * shares all three (keyhop flow control on both ends):
 *
 *   clients -> inlet (A) -> channel -> outlet (B) -> sink
 */

const MiB = 1024 * 1024;
/** Each end's receive window: small, so that its bound means something next to kernel buffers. */
const WINDOW = 256 * 1024;
/** One socket read (Node reads 64 KiB at a time): what a sender may hold while it waits for credit. */
const READ = 64 * 1024;

/** 16 distinct 64 KiB blocks: a writer cycles through them, so writing allocates nothing. */
const BLOCKS = Array.from({ length: 16 }, () => randomBytes(READ));

function hashOf(total: number): string {
  const h = createHash('sha256');
  for (let i = 0, n = 0; n < total; i++, n += READ) h.update(BLOCKS[i % BLOCKS.length]!);
  return h.digest('hex');
}

/** Writes `total` bytes of BLOCKS (a multiple of 64 KiB) respecting back-pressure, then ends. */
function pump(s: Socket, total: number): Promise<void> {
  let written = 0;
  let i = 0;
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    const go = () => {
      while (written < total) {
        const b = BLOCKS[i++ % BLOCKS.length]!;
        written += b.length;
        if (!s.write(b)) {
          s.once('drain', go);
          return;
        }
      }
      s.end(() => resolve());
    };
    go();
  });
}

interface SinkStream {
  socket: Socket;
  bytes: number;
  hash: ReturnType<typeof createHash>;
  /** Resolves with the SHA-256 of everything received, at the client's FIN. */
  ended: Promise<string>;
  /** Runs after every chunk (for measuring one stream against another). */
  onData?: () => void;
}

describe('portal streams sharing one secure channel (flow control)', () => {
  let a: TestNode;
  let b: TestNode;
  let channel: SecureChannelEnd;
  let sink: Server;
  let inlet: TcpInlet;
  let outlet: TcpOutlet;
  let streams: SinkStream[] = [];
  const clients: Socket[] = [];

  beforeAll(async () => {
    sink = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      const hash = createHash('sha256');
      const stream: SinkStream = {
        socket,
        bytes: 0,
        hash,
        ended: new Promise((resolve) =>
          socket.once('end', () => {
            socket.end();
            resolve(hash.digest('hex'));
          }),
        ),
      };
      socket.on('data', (c: Buffer) => {
        stream.bytes += c.length;
        hash.update(c);
        stream.onData?.();
      });
      streams.push(stream);
    });
    sink.listen(0, '127.0.0.1');
    await once(sink, 'listening');
    const sinkPort = (sink.address() as { port: number }).port;

    a = await testNode('a');
    b = await testNode('b');
    await b.channels.createListener('api', { expose: ['outlet'] });
    const listener = await b.tcp.listen('127.0.0.1:0', { expose: ['api'] });
    channel = await a.channels.create(`1#${listener.address} => api`, {
      trustPolicy: trustIdentifiers([b.local.identity.identifier]),
    });
    outlet = await TcpOutlet.create(b.router, {
      target: `127.0.0.1:${sinkPort}`,
      receiveWindowBytes: WINDOW,
    });
    inlet = await TcpInlet.create(a.router, {
      bind: '127.0.0.1:0',
      outletRoute: Route.of(channel.encryptor, 'outlet'),
      receiveWindowBytes: WINDOW,
    });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    for (const s of streams) s.socket.destroy();
    streams = [];
    await waitFor(() => inlet.stats.connections === 0 && outlet.stats.connections === 0);
  });

  afterAll(async () => {
    await inlet?.close();
    await a?.router.shutdown();
    await b?.router.shutdown();
    await new Promise((r) => sink?.close(r));
  });

  /** Connects `n` clients and waits until each stream has reached the sink with flow control on. */
  async function openStreams(n: number): Promise<Socket[]> {
    const opened: Socket[] = [];
    for (let i = 0; i < n; i++) {
      const [host, port] = inlet.address.split(':') as [string, string];
      const s = createConnection({ host, port: Number(port) });
      s.on('error', () => undefined);
      clients.push(s);
      opened.push(s);
      await once(s, 'connect');
    }
    await waitFor(
      () =>
        streams.length === n &&
        inlet.connections().filter((c) => c.flowControl === 'on').length === n &&
        outlet.connections().filter((c) => c.flowControl === 'on').length === n,
    );
    return opened;
  }

  it('gives two concurrent streams about their half each: neither is starved', async () => {
    const total = 32 * MiB;
    const [c1, c2] = (await openStreams(2)) as [Socket, Socket];
    // The other stream's bytes at the moment the first one has all of its own.
    let otherAtFirst: number | undefined;
    for (const s of streams) {
      s.onData = () => {
        if (otherAtFirst === undefined && s.bytes === total) {
          otherAtFirst = streams.find((o) => o !== s)!.bytes;
        }
      };
    }
    await Promise.all([pump(c1, total), pump(c2, total)]);
    const hashes = await Promise.all(streams.map((s) => s.ended));
    expect(hashes).toEqual([hashOf(total), hashOf(total)]);
    console.log(
      `two streams on one channel: when the first had ${total / MiB} MiB the other had ${((otherAtFirst ?? 0) / MiB).toFixed(1)} MiB`,
    );
    expect(otherAtFirst).toBeGreaterThanOrEqual(total / 4);
    expect(inlet.stats.flowViolations + outlet.stats.flowViolations).toBe(0);
  });

  it('a stalled reader stalls only its own stream, which holds at most its window', async () => {
    const total = 48 * MiB;
    const [c1, c2] = (await openStreams(2)) as [Socket, Socket];
    const [stalled, flowing] = streams as [SinkStream, SinkStream];
    stalled.socket.pause();
    // Both clients push; the stream whose sink does not read cannot finish, the other does.
    const pushes = [pump(c1, total), pump(c2, total)];
    expect(await flowing.ended).toBe(hashOf(total));
    expect(flowing.bytes).toBe(total);
    expect(stalled.bytes).toBeLessThan(total);

    // The stalled stream's sender has used up its credit and waits, its client socket paused...
    await waitFor(() =>
      inlet.connections().some((c) => c.credit === 0 && (c.pending as number) > 0 && c.inFlight === 0),
    );
    const waiting = inlet.connections().find((c) => c.credit === 0)!;
    expect(waiting).toMatchObject({ paused: true, flowControl: 'on' });
    // ...holding at most one socket read, while the outlet holds at most the window for it.
    expect(waiting.pending as number).toBeLessThanOrEqual(READ);
    const held = outlet.connections().map((c) => c.buffered as number);
    console.log(
      `stalled stream: ${(Math.max(...held) / 1024).toFixed(0)} KiB buffered at the outlet (window ${WINDOW / 1024} KiB), ` +
        `${((waiting.pending as number) / 1024).toFixed(0)} KiB waiting for credit at the inlet, ` +
        `${(stalled.bytes / MiB).toFixed(1)} MiB read by the paused sink`,
    );
    expect(Math.max(...held)).toBeLessThanOrEqual(WINDOW);

    // Once its reader reads, the stalled stream delivers everything.
    stalled.socket.resume();
    expect(await stalled.ended).toBe(hashOf(total));
    await Promise.all(pushes);
    expect(inlet.stats.flowViolations + outlet.stats.flowViolations).toBe(0);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
