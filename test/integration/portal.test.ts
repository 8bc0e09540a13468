import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Router } from '../../runtime/routing/router.js';
import { TcpInlet, TcpOutlet } from '../../runtime/services/portal/index.js';
import { RelayService } from '../../runtime/services/relay/relay-service.js';
import { createRemoteRelay } from '../../runtime/services/relay/remote-relay.js';
import { TcpTransport } from '../../runtime/transports/tcp/tcp-transport.js';

/**
 * Real sockets on loopback, three nodes in this process:
 *
 *   client -> inlet (A) -> 1#R => forward_to_b => outlet -> (B) -> HTTP server
 *
 * B registers the static relay `forward_to_b` at R; A only knows R.
 */

const MiB = 1024 * 1024;

function port(server: Server | HttpServer): number {
  const a = server.address();
  if (typeof a !== 'object' || !a) throw new Error('not listening');
  return a.port;
}

async function listen<S extends Server | HttpServer>(server: S): Promise<S> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function connect(address: string): Promise<Socket> {
  const [host, p] = address.split(':') as [string, string];
  const s = createConnection({ host, port: Number(p) });
  s.on('error', () => undefined);
  return once(s, 'connect').then(() => s);
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until `value()` has not changed for `quietMs`. */
async function settle(value: () => number, quietMs = 300, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = value();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > end) throw new Error('value kept changing');
    await new Promise((r) => setTimeout(r, 20));
    const v = value();
    if (v !== last) {
      last = v;
      since = Date.now();
    }
  }
}

/** A full garbage collection (test instrumentation: `--expose-gc` switched on at run time). */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
async function collect(): Promise<void> {
  gc();
  await new Promise((r) => setTimeout(r, 50)); // array buffers are released after a tick
  gc();
}

/**
 * Memory above a baseline taken after a full GC: the peak RSS (sampled every 10 ms, garbage
 * included: what the OS sees) and what is still live after a full GC when asked (`retained`).
 */
async function memoryProbe() {
  await collect();
  const base = process.memoryUsage();
  const live = (m: NodeJS.MemoryUsage) => m.heapUsed + m.arrayBuffers - (base.heapUsed + base.arrayBuffers);
  const peak = { rss: 0 };
  const sample = () => {
    peak.rss = Math.max(peak.rss, process.memoryUsage().rss - base.rss);
  };
  const timer = setInterval(sample, 10);
  return {
    peak,
    retained: async () => {
      sample();
      await collect();
      return live(process.memoryUsage());
    },
    stop: () => {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

/** 16 distinct 64 KiB blocks: a writer cycles through them, so writing allocates nothing. */
const BLOCKS = Array.from({ length: 16 }, () => randomBytes(64 * 1024));

/** Writes `total` bytes of BLOCKS to `s` respecting back-pressure; resolves with their SHA-256. */
function pump(s: Socket, total: number): Promise<string> {
  const hash = createHash('sha256');
  let written = 0;
  let i = 0;
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    const go = () => {
      while (written < total) {
        const b = BLOCKS[i++ % BLOCKS.length]!;
        written += b.length;
        hash.update(b);
        if (!s.write(b)) {
          s.once('drain', go);
          return;
        }
      }
      s.end(() => resolve(hash.digest('hex')));
    };
    go();
  });
}

/** Reads `s` to its end; resolves with the byte count and SHA-256. */
function drain(s: Socket): Promise<{ bytes: number; hash: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  s.on('data', (c: Buffer) => {
    bytes += c.length;
    hash.update(c);
  });
  return new Promise((resolve) => s.once('end', () => resolve({ bytes, hash: hash.digest('hex') })));
}

describe('TCP portal through a relay: fetch -> inlet (A) -> R -> outlet (B) -> HTTP', () => {
  const routers: Router[] = [];
  const servers: (Server | HttpServer)[] = [];
  let inlet: TcpInlet;
  let deadInlet: TcpInlet;
  let bulkInlet: TcpInlet;
  let outlet: TcpOutlet;
  let deadOutlet: TcpOutlet;
  let bulkOutlet: TcpOutlet;
  let http: HttpServer;
  const httpSockets: Socket[] = [];
  const bigBlock = randomBytes(MiB);
  const bigHash = (() => {
    const h = createHash('sha256');
    for (let i = 0; i < 64; i++) h.update(bigBlock);
    return h.digest('hex');
  })();
  /** Sockets a failed test must not leave stalled (a stalled portal holds up the shared links). */
  const cleanup: Socket[] = [];
  afterEach(() => {
    for (const s of cleanup.splice(0)) s.destroy();
  });
  /** What the bulk target does with each connection. */
  let bulkHandler: (s: Socket) => void = (s) => s.destroy();

  beforeAll(async () => {
    // The HTTP target on B's side.
    http = createHttpServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname.startsWith('/echo/')) {
        const i = Number(url.pathname.slice('/echo/'.length));
        const body = JSON.stringify({ i, pad: 'x'.repeat(i * 100) });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      } else if (url.pathname === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 64 * MiB });
        let sent = 0;
        const go = () => {
          while (sent < 64) {
            sent++;
            if (!res.write(bigBlock)) {
              res.once('drain', go);
              return;
            }
          }
          res.end();
        };
        go();
      } else if (url.pathname === '/close') {
        req.socket.destroy();
      } else {
        res.writeHead(404).end();
      }
    });
    http.on('connection', (s: Socket) => {
      s.on('error', () => undefined);
      httpSockets.push(s);
    });
    http.on('clientError', (_e, s) => s.destroy());
    await listen(http);
    servers.push(http);
    const dead = await listen(createServer());
    const deadPort = port(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    const bulk = await listen(createServer((s) => bulkHandler(s)));
    servers.push(bulk);

    // R: relay node.
    const r = new Router({ name: 'r' });
    routers.push(r);
    const rTcp = TcpTransport.create(r);
    await RelayService.start(r);
    const rListener = await rTcp.listen('127.0.0.1:0', {
      expose: ['forwarding_service', 'static_forwarding_service'],
    });

    // B: outlets, reachable only through its relay at R.
    const b = new Router({ name: 'b' });
    routers.push(b);
    const bTcp = TcpTransport.create(b);
    outlet = await TcpOutlet.create(b, { target: `127.0.0.1:${port(http)}` });
    deadOutlet = await TcpOutlet.create(b, {
      address: 'outlet_dead',
      target: `127.0.0.1:${deadPort}`,
    });
    bulkOutlet = await TcpOutlet.create(b, { address: 'outlet_bulk', target: `127.0.0.1:${port(bulk)}` });
    await bTcp.connect(rListener.address, { expose: ['outlet', 'outlet_dead', 'outlet_bulk'] });
    const relay = await createRemoteRelay(b, `1#${rListener.address}`, { alias: 'b' });
    expect(relay.name).toBe('forward_to_b');

    // A: inlets.
    const a = new Router({ name: 'a' });
    routers.push(a);
    TcpTransport.create(a);
    const via = `1#${rListener.address} => forward_to_b`;
    inlet = await TcpInlet.create(a, { bind: '127.0.0.1:0', outletRoute: `${via} => outlet` });
    deadInlet = await TcpInlet.create(a, { bind: '127.0.0.1:0', outletRoute: `${via} => outlet_dead` });
    bulkInlet = await TcpInlet.create(a, { bind: '127.0.0.1:0', outletRoute: `${via} => outlet_bulk` });
  });

  afterAll(async () => {
    for (const i of [inlet, deadInlet, bulkInlet]) await i?.close();
    for (const r of routers) await r.shutdown();
    for (const s of httpSockets) s.destroy();
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  });

  it('warms up: 64 MiB each way through the bulk portal at full speed', async () => {
    // So that the memory tests below measure what a slow reader costs, not the heap growing to
    // its working size on the first large transfer.
    let pushed: Promise<string> | undefined;
    bulkHandler = (s) => {
      s.on('error', () => undefined);
      pushed = pump(s, 64 * MiB);
    };
    const down = await drain(await connect(bulkInlet.address));
    expect(down.hash).toBe(await pushed);

    let received: Promise<{ bytes: number; hash: string }> | undefined;
    bulkHandler = (s) => {
      s.on('error', () => undefined);
      received = drain(s);
    };
    const client = await connect(bulkInlet.address);
    client.resume();
    const sent = await pump(client, 64 * MiB);
    await waitFor(() => received !== undefined);
    expect((await received!).hash).toBe(sent);
  });

  const fmt = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

  it('bounds memory while the client does not read 200 MiB the target pushes, then delivers it all', async () => {
    const total = 200 * MiB;
    let targetHash: Promise<string> | undefined;
    bulkHandler = (s) => {
      s.on('error', () => undefined);
      targetHash = pump(s, total);
    };
    const sentBefore = bulkOutlet.stats.bytesSent;
    const receivedBefore = bulkInlet.stats.bytesReceived;
    const probe = await memoryProbe();
    const client = await connect(bulkInlet.address);
    cleanup.push(client);
    client.pause();
    await waitFor(() => bulkOutlet.stats.bytesSent > sentBefore);
    // Everything that can fill up has: the target is blocked on its socket.
    await settle(() => bulkOutlet.stats.bytesSent);
    const retained = await probe.retained();
    const fromTarget = bulkOutlet.stats.bytesSent - sentBefore;
    const toClient = bulkInlet.stats.bytesReceived - receivedBefore;
    const started = Date.now();
    const received = drain(client);
    client.resume();
    const got = await received;
    const seconds = (Date.now() - started) / 1000;
    const peak = probe.stop();
    expect(got.bytes).toBe(total);
    expect(got.hash).toBe(await targetHash);
    console.log(
      `portal slow reader, target -> client, 200 MiB via relay: stalled after ${fmt(fromTarget)} read from the ` +
        `target (${fmt(toClient)} of it written to the client socket), ${fmt(retained)} live in the heap; ` +
        `peak RSS growth ${fmt(peak.rss)}; drained at ${(total / MiB / seconds).toFixed(0)} MiB/s`,
    );
    // The writer was stopped long before 200 MiB (what was read sits mostly in kernel socket buffers).
    expect(fromTarget).toBeLessThan(total / 2);
    expect(retained).toBeLessThan(32 * MiB);
    expect(peak.rss).toBeLessThan(64 * MiB);
  });

  it('bounds memory while the target does not read 200 MiB the client pushes, then delivers it all', async () => {
    const total = 200 * MiB;
    let target: Socket | undefined;
    bulkHandler = (s) => {
      s.on('error', () => undefined);
      s.pause();
      cleanup.push(s);
      target = s;
    };
    const sentBefore = bulkInlet.stats.bytesSent;
    const probe = await memoryProbe();
    const client = await connect(bulkInlet.address);
    cleanup.push(client);
    client.on('data', () => undefined);
    const sent = pump(client, total);
    await waitFor(() => target !== undefined && bulkInlet.stats.bytesSent > sentBefore);
    await settle(() => bulkInlet.stats.bytesSent);
    const retained = await probe.retained();
    const fromClient = bulkInlet.stats.bytesSent - sentBefore;
    const started = Date.now();
    const received = drain(target!);
    target!.resume();
    const got = await received;
    const seconds = (Date.now() - started) / 1000;
    const peak = probe.stop();
    expect(got.bytes).toBe(total);
    expect(got.hash).toBe(await sent);
    console.log(
      `portal slow reader, client -> target, 200 MiB via relay: stalled after ${fmt(fromClient)} read from the ` +
        `client, ${fmt(retained)} live in the heap; peak RSS growth ${fmt(peak.rss)}; ` +
        `drained at ${(total / MiB / seconds).toFixed(0)} MiB/s`,
    );
    expect(fromClient).toBeLessThan(total / 2);
    expect(retained).toBeLessThan(32 * MiB);
    expect(peak.rss).toBeLessThan(64 * MiB);
  });

  it('answers 50 concurrent fetches correctly', async () => {
    const base = `http://${inlet.address}`;
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const res = await fetch(`${base}/echo/${i}`);
        return { status: res.status, body: (await res.json()) as { i: number; pad: string } };
      }),
    );
    results.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.body.i).toBe(i);
      expect(r.body.pad.length).toBe(i * 100);
    });
    expect(inlet.stats.opened).toBeGreaterThan(1);
    expect(outlet.stats.opened).toBe(inlet.stats.opened);
  });

  it('downloads 64 MiB whose SHA-256 matches', async () => {
    const started = Date.now();
    const res = await fetch(`http://${inlet.address}/big`);
    expect(res.status).toBe(200);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      hash.update(chunk);
    }
    const seconds = (Date.now() - started) / 1000;
    expect(bytes).toBe(64 * MiB);
    expect(hash.digest('hex')).toBe(bigHash);
    console.log(`portal HTTP download (64 MiB via relay): ${(64 / seconds).toFixed(0)} MiB/s`);
  });

  it('a server close reaches the client', async () => {
    const client = await connect(inlet.address);
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    const closed = once(client, 'close');
    client.write('GET /close HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    expect(Buffer.concat(chunks).length).toBe(0);
  });

  it('a client close reaches the server (FIN and reset)', async () => {
    for (const how of ['end', 'destroy'] as const) {
      const before = httpSockets.length;
      const client = await connect(inlet.address);
      client.write('GET /echo/1 HTTP/1.1\r\nHost: x\r\n'); // headers never finish
      await waitFor(() => httpSockets.length === before + 1);
      const serverSide = httpSockets[before]!;
      const closed = once(serverSide, 'close');
      client[how]();
      await closed;
    }
  });

  it('closes the client when the target is unreachable', async () => {
    const failedBefore = deadOutlet.stats.failed;
    const client = await connect(deadInlet.address);
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    await once(client, 'close');
    expect(chunks.length).toBe(0);
    expect(deadOutlet.stats.failed).toBe(failedBefore + 1);
    await waitFor(() => deadInlet.stats.failed === 1);
    await expect(fetch(`http://${deadInlet.address}/echo/1`)).rejects.toThrow();
  });

  it('leaves no portal connection behind', async () => {
    await inlet.close();
    await waitFor(() => outlet.stats.connections === 0 && inlet.stats.connections === 0);
    await waitFor(() => bulkOutlet.stats.connections === 0 && bulkInlet.stats.connections === 0);
    expect(outlet.stats.bytesReceived).toBe(inlet.stats.bytesSent);
    expect(inlet.stats.bytesReceived).toBe(outlet.stats.bytesSent);
  });
});
