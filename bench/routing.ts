import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import type { Context } from '../runtime/routing/context.js';
import { Route } from '../runtime/routing/route.js';
import { Router } from '../runtime/routing/router.js';
import { EchoService } from '../runtime/services/echo.js';
import {
  FORWARDING_SERVICE,
  RelayService,
  STATIC_FORWARDING_SERVICE,
} from '../runtime/services/relay/relay-service.js';
import { createRemoteRelay } from '../runtime/services/relay/remote-relay.js';
import { TcpTransport } from '../runtime/transports/tcp/tcp-transport.js';
import {
  type BenchFlags,
  type Benchmark,
  type BenchReport,
  intFlag,
  intListFlag,
  RssSampler,
} from './harness.js';
import {
  closeSocket,
  fixed,
  framedEchoClient,
  measureRig,
  median,
  openTcpHandles,
  Pipeline,
  PlainFrameSplitter,
  type Rig,
  type RigSample,
  round,
  sizeLabel,
} from './support.js';

const HOST = '127.0.0.1';
const DEFAULT_SIZES = [64, 1024, 16 * 1024];
const DEFAULT_WINDOW = 64;
const DEFAULT_ROUNDS = 5;
const DEFAULT_WARMUP_MS = 400;
const DEFAULT_DURATION_MS = 1100;
/** A reply that takes this long means messages were lost: the run fails instead of hanging. */
const REPLY_TIMEOUT_MS = 10_000;
/** Largest frame the plain baseline accepts (keyhop's own limit is 16 MiB + 64 KiB). */

const TARGET = {
  description: 'keyhop one hop >= 0.7x plain framed TCP at 16 KiB',
  setup: 'onehop',
  payloadBytes: 16 * 1024,
  minRatio: 0.7,
} as const;

/** Issue 13: a relay hop against a plain TCP forwarder in the same place. */
const RELAY_TARGET = {
  description: 'keyhop relay >= 0.6x plain framed TCP through a plain TCP forwarder at 16 KiB',
  payloadBytes: 16 * 1024,
  minRatio: 0.6,
} as const;

const SETUPS = {
  plain: 'plain length-prefixed TCP: node:net client and echo server, u32-BE length + payload frames',
  onehop:
    'keyhop one hop: router A --TCP--> router B, route [1#host:port, echo], replies to a detached context',
  relay:
    'keyhop through a relay: A --TCP--> R (static relay forward_to_b) --TCP--> B, route [1#R, forward_to_b, echo]',
  'plain-relay':
    "plain's client and echo server through a plain TCP forwarder (node:net, each accepted socket piped to its own connection to the server and back): what a relay hop costs without keyhop",
} as const;
type SetupName = keyof typeof SETUPS;
const SETUP_NAMES = Object.keys(SETUPS) as SetupName[];

// ---------------------------------------------------------------------------------------------
// (a) plain length-prefixed TCP, no keyhop code

/** A TCP forwarder with no protocol: every accepted socket is piped to a new connection to `port`. */
async function plainForwarder(port: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = createConnection({ host: HOST, port });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      s.setNoDelay(true);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const bound = server.address();
  if (bound === null || typeof bound === 'string') throw new Error('forwarder has no TCP address');
  return {
    port: bound.port,
    async close() {
      await Promise.all([...sockets].map(closeSocket));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function plainRig(size: number, viaForwarder = false): Promise<Rig> {
  const serverSockets = new Set<Socket>();
  let protocolErrors = 0;
  const server = createServer((socket) => {
    serverSockets.add(socket);
    socket.once('close', () => serverSockets.delete(socket));
    socket.setNoDelay(true);
    const splitter = new PlainFrameSplitter((frame) => {
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(frame.length, 0);
      socket.cork();
      socket.write(header);
      socket.write(frame);
      socket.uncork();
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        splitter.push(chunk);
      } catch {
        protocolErrors++;
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const bound = server.address();
  if (bound === null || typeof bound === 'string') throw new Error('plain server has no TCP address');
  const forwarder = viaForwarder ? await plainForwarder(bound.port) : undefined;

  const client = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ host: HOST, port: forwarder?.port ?? bound.port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  }).catch(async (e: unknown) => {
    await forwarder?.close();
    server.close();
    throw e;
  });
  return framedEchoClient(
    client,
    size,
    () => protocolErrors,
    async () => {
      await forwarder?.close();
      await Promise.all([...serverSockets].map(closeSocket));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  );
}

// ---------------------------------------------------------------------------------------------
// (b), (c) keyhop

function keyhopNode(name: string, routers: Router[]): { router: Router; tcp: TcpTransport } {
  const router = new Router({ name });
  routers.push(router);
  return { router, tcp: TcpTransport.create(router) };
}

/** Runs `build`; if it fails, shuts down the routers it created so no socket outlives it. */
async function building<T>(build: (routers: Router[]) => Promise<T>): Promise<T> {
  const routers: Router[] = [];
  try {
    return await build(routers);
  } catch (e) {
    for (const r of routers) await r.shutdown();
    throw e;
  }
}

/** Drives a detached context on A that sends to `route`, where an echo service answers. */
function keyhopRig(size: number, client: Context, route: Route, routers: Router[]): Rig {
  const payload = new Uint8Array(randomBytes(size));
  let badReplies = 0;
  let sendErrors = 0;
  let loopError: unknown;
  let loop: Promise<void> = Promise.resolve();
  const pipeline = new Pipeline(() => {
    client.send(route, payload).catch(() => {
      sendErrors++;
      pipeline.failedOne();
    });
  });

  return {
    pipeline,
    start(window) {
      loop = (async () => {
        while (!pipeline.finished) {
          const reply = await client.receive(REPLY_TIMEOUT_MS);
          if (reply.payload.length === size) pipeline.replied();
          else {
            badReplies++;
            pipeline.failedOne();
          }
        }
      })().catch((e: unknown) => {
        loopError = e;
      });
      pipeline.fill(window);
    },
    problems() {
      const out: Record<string, number> = { badReplies, sendErrors, receiveFailed: loopError ? 1 : 0 };
      let workerErrors = 0;
      for (const r of routers) {
        workerErrors += r.metrics.workerErrors;
        for (const [reason, n] of Object.entries(r.metrics.dropped)) {
          out[`dropped_${reason}`] = (out[`dropped_${reason}`] ?? 0) + n;
        }
      }
      out.workerErrors = workerErrors;
      return out;
    },
    async close() {
      await loop;
      await client.stop();
      for (const r of routers) await r.shutdown();
    },
  };
}

function oneHopRig(size: number): Promise<Rig> {
  return building(async (routers) => {
    const b = keyhopNode('b', routers);
    await b.router.startWorker('echo', new EchoService());
    const listener = await b.tcp.listen(`${HOST}:0`, { expose: ['echo'] });

    const a = keyhopNode('a', routers);
    await a.tcp.connect(listener.address);
    const ctx = await a.router.context();
    const route = Route.from([`1#${listener.address}`, 'echo']);
    return keyhopRig(size, ctx, route, routers);
  });
}

function relayRig(size: number): Promise<Rig> {
  return building(async (routers) => {
    const r = keyhopNode('relay', routers);
    await RelayService.start(r.router);
    const listener = await r.tcp.listen(`${HOST}:0`, {
      expose: [FORWARDING_SERVICE, STATIC_FORWARDING_SERVICE],
    });

    const b = keyhopNode('b', routers);
    await b.router.startWorker('echo', new EchoService());
    await b.tcp.connect(listener.address, { expose: ['echo'] });
    const relay = await createRemoteRelay(b.router, `1#${listener.address}`, { alias: 'b' });

    const a = keyhopNode('a', routers);
    await a.tcp.connect(listener.address);
    const ctx = await a.router.context();
    return keyhopRig(size, ctx, relay.route.append('echo'), routers);
  });
}

const RIGS: Record<SetupName, (size: number) => Promise<Rig>> = {
  plain: (size) => plainRig(size),
  onehop: oneHopRig,
  relay: relayRig,
  'plain-relay': (size) => plainRig(size, true),
};

// ---------------------------------------------------------------------------------------------
// measurement

/** One measured run of one setup at one payload size. */
export type RunSample = RigSample;

export interface RoutingRow {
  setup: SetupName;
  payloadBytes: number;
  /** Median over the rounds of round trips per second. */
  msgsPerSec: number;
  msgsPerSecMin: number;
  msgsPerSecMax: number;
  /** Payload bytes per second in one direction, in MB (10^6 bytes), from the median msgs/s. */
  mbPerSec: number;
  /** Median over the rounds of (this setup's msgs/s / plain msgs/s of the same round and size). */
  ratioToPlain: number | null;
  /** Median CPU microseconds per round trip. */
  cpuUsPerRoundTrip: number;
  /** Plain CPU us per round trip / this setup's: the throughput ratio if both were CPU-bound alone. */
  cpuRatioToPlain: number | null;
  /** Window / median rate (Little's law), in microseconds. */
  meanRoundTripUs: number;
  cpuPercent: number;
  /** Peak RSS over the rounds, in bytes. */
  rssPeakBytes: number;
  /** Summed over the rounds; all should be 0. */
  problems: Record<string, number>;
  leakedTcpHandles: number;
  samples: RunSample[];
}

interface RunParams {
  window: number;
  warmupMs: number;
  durationMs: number;
}

async function measureOnce(
  setup: SetupName,
  size: number,
  params: RunParams,
  rss: RssSampler,
): Promise<RunSample> {
  const handlesBefore = openTcpHandles();
  const rig = await RIGS[setup](size);
  return measureRig(rig, params, rss, handlesBefore, REPLY_TIMEOUT_MS);
}

function sumProblems(samples: readonly RunSample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) for (const [k, n] of Object.entries(s.problems)) out[k] = (out[k] ?? 0) + n;
  return out;
}

function summarize(
  setup: SetupName,
  size: number,
  samples: RunSample[],
  plain: RunSample[] | undefined,
  window: number,
): RoutingRow {
  const rates = samples.map((s) => s.msgsPerSec);
  const msgsPerSec = median(rates);
  const cpuUsPerRoundTrip = median(samples.map((s) => s.cpuUsPerRoundTrip));
  const paired = plain
    ? samples.flatMap((s, i) => {
        const p = plain[i];
        return p && p.msgsPerSec > 0 ? [s.msgsPerSec / p.msgsPerSec] : [];
      })
    : [];
  const plainCpu = plain ? median(plain.map((s) => s.cpuUsPerRoundTrip)) : 0;
  return {
    setup,
    payloadBytes: size,
    msgsPerSec,
    msgsPerSecMin: Math.min(...rates),
    msgsPerSecMax: Math.max(...rates),
    mbPerSec: (msgsPerSec * size) / 1e6,
    ratioToPlain: paired.length > 0 ? median(paired) : null,
    cpuUsPerRoundTrip,
    cpuRatioToPlain: plain && cpuUsPerRoundTrip > 0 ? plainCpu / cpuUsPerRoundTrip : null,
    meanRoundTripUs: msgsPerSec > 0 ? (window / msgsPerSec) * 1e6 : 0,
    cpuPercent: median(samples.map((s) => s.cpuPercent)),
    rssPeakBytes: Math.max(...samples.map((s) => s.rssPeakBytes)),
    problems: sumProblems(samples),
    leakedTcpHandles: samples.reduce((n, s) => n + s.leakedTcpHandles, 0),
    samples,
  };
}

/** `--setups=plain,onehop` runs only those (e.g. to profile one of them); default all. */
function setupsFlag(flags: BenchFlags): SetupName[] {
  const raw = flags.setups;
  if (raw === undefined) return [...SETUP_NAMES];
  return raw.split(',').map((s) => {
    const name = s.trim();
    if (!Object.hasOwn(SETUPS, name)) throw new Error(`--setups: unknown setup "${name}" (${SETUP_NAMES})`);
    return name as SetupName;
  });
}

function roundSample(s: RunSample): RunSample {
  return {
    ...s,
    seconds: round(s.seconds, 4),
    msgsPerSec: round(s.msgsPerSec, 1),
    cpuPercent: round(s.cpuPercent, 1),
    cpuUsPerRoundTrip: round(s.cpuUsPerRoundTrip, 2),
  };
}

async function run(flags: BenchFlags): Promise<BenchReport> {
  const sizes = intListFlag(flags, 'sizes', DEFAULT_SIZES);
  const window = intFlag(flags, 'window', DEFAULT_WINDOW);
  const warmupMs = intFlag(flags, 'warmup-ms', DEFAULT_WARMUP_MS);
  const durationMs = intFlag(flags, 'duration-ms', DEFAULT_DURATION_MS);
  const rounds = intFlag(flags, 'rounds', DEFAULT_ROUNDS);
  const setups = setupsFlag(flags);
  const params: RunParams = { window, warmupMs, durationMs };
  const loadBefore = loadavg();

  const rss = new RssSampler();
  rss.start();
  const samples = new Map<string, RunSample[]>();
  const key = (setup: SetupName, size: number) => `${setup}/${size}`;
  try {
    // Rounds outer, then sizes, then setups: the setups compared with each other run back to
    // back, and repeating the whole sequence spreads drift in the machine's speed over all.
    for (let pass = 1; pass <= rounds; pass++) {
      for (const size of sizes) {
        for (const setup of setups) {
          process.stderr.write(`routing: round ${pass}/${rounds} ${setup} ${sizeLabel(size)}\n`);
          const sample = await measureOnce(setup, size, params, rss);
          const list = samples.get(key(setup, size)) ?? [];
          list.push(sample);
          samples.set(key(setup, size), list);
        }
      }
    }
  } finally {
    rss.stop();
  }
  const loadAfter = loadavg();

  const rows: RoutingRow[] = [];
  for (const size of sizes) {
    for (const setup of setups) {
      const own = samples.get(key(setup, size)) ?? [];
      rows.push(summarize(setup, size, own, samples.get(key('plain', size)), window));
    }
  }
  const ratios = sizes.map((size) => {
    const of = (s: SetupName) => rows.find((r) => r.setup === s && r.payloadBytes === size);
    return {
      payloadBytes: size,
      onehop: fixed(of('onehop')?.ratioToPlain ?? null, 4),
      relay: fixed(of('relay')?.ratioToPlain ?? null, 4),
      onehopCpu: fixed(of('onehop')?.cpuRatioToPlain ?? null, 4),
      relayCpu: fixed(of('relay')?.cpuRatioToPlain ?? null, 4),
    };
  });
  // keyhop's relay against the plain forwarder, paired round by round like ratioToPlain.
  const relaySamples = samples.get(key('relay', RELAY_TARGET.payloadBytes)) ?? [];
  const plainRelaySamples = samples.get(key('plain-relay', RELAY_TARGET.payloadBytes)) ?? [];
  const relayPairs = relaySamples.flatMap((x, i) => {
    const y = plainRelaySamples[i];
    return y && y.msgsPerSec > 0 ? [x.msgsPerSec / y.msgsPerSec] : [];
  });
  const relayRatio = relayPairs.length > 0 ? median(relayPairs) : null;
  const relayMet = relayRatio === null ? null : relayRatio >= RELAY_TARGET.minRatio;
  const targetRow = rows.find((r) => r.setup === TARGET.setup && r.payloadBytes === TARGET.payloadBytes);
  const targetRatio = targetRow?.ratioToPlain ?? null;
  const targetMet = targetRatio === null ? null : targetRatio >= TARGET.minRatio;

  const problemRows = rows.filter(
    (r) => r.leakedTcpHandles > 0 || Object.values(r.problems).some((n) => n > 0),
  );
  const notes = [
    `${rounds} round(s); per run: window ${window} round trips in flight, warm-up ${warmupMs} ms, measured ${durationMs} ms.`,
    'All ends of a setup share this one process (one JS thread). msgs/s = round trips per second (one message',
    'each way), median over rounds; MB/s = payload in one direction, 10^6 bytes; x plain = median of per-round',
    'ratios to plain; CPU us/rt = process CPU time per round trip (less sensitive to other load on the machine).',
    targetRatio === null
      ? `Target "${TARGET.description}": not measured (needs plain and onehop at ${TARGET.payloadBytes} B).`
      : `Target "${TARGET.description}": ${targetRatio.toFixed(3)}x -> ${targetMet ? 'MET' : 'NOT MET'}` +
        ` (CPU-cost ratio ${targetRow?.cpuRatioToPlain?.toFixed(3) ?? '-'}x).`,
    relayRatio === null
      ? `Target "${RELAY_TARGET.description}": not measured (needs relay and plain-relay).`
      : `Target "${RELAY_TARGET.description}": ${relayRatio.toFixed(3)}x -> ${relayMet ? 'MET' : 'NOT MET'}.`,
    `Peak RSS over the whole benchmark: ${(rss.peak / 2 ** 20).toFixed(1)} MiB. ` +
      `Load average before/after: ${loadBefore[0]?.toFixed(2)} / ${loadAfter[0]?.toFixed(2)} (1 min).`,
    ...problemRows.map(
      (r) =>
        `WARNING ${r.setup} ${sizeLabel(r.payloadBytes)}: ${JSON.stringify(r.problems)}, leaked TCP handles ${r.leakedTcpHandles}`,
    ),
  ];

  return {
    parameters: {
      host: HOST,
      payloadBytes: sizes,
      setupsRun: setups,
      rounds,
      window,
      warmupMs,
      durationMs,
      replyTimeoutMs: REPLY_TIMEOUT_MS,
      setups: SETUPS,
      order:
        'rounds outer, then payload sizes, then plain, onehop, relay, plain-relay; each run builds its setup, warms up, measures and closes every socket',
      units: {
        msgsPerSec: 'round trips per second (one message each way), median over rounds',
        mbPerSec: 'payload bytes per second in one direction / 10^6, from the median msgs/s',
        ratioToPlain: 'median over rounds of setup msgs/s / plain msgs/s of the same round and payload size',
        cpuUsPerRoundTrip:
          'process CPU time (user + system) per round trip, microseconds, median over rounds',
        cpuRatioToPlain: 'plain cpuUsPerRoundTrip / setup cpuUsPerRoundTrip',
        rssPeakBytes: 'peak of process.memoryUsage().rss, sampled every 50 ms',
      },
      notes: 'client and server(s) of every setup share one Node.js process and event loop',
      loadAverage1m: { before: loadBefore[0], after: loadAfter[0] },
    },
    results: {
      rows: rows.map((r) => ({
        ...r,
        msgsPerSec: round(r.msgsPerSec, 1),
        msgsPerSecMin: round(r.msgsPerSecMin, 1),
        msgsPerSecMax: round(r.msgsPerSecMax, 1),
        mbPerSec: round(r.mbPerSec, 3),
        ratioToPlain: fixed(r.ratioToPlain, 4),
        cpuUsPerRoundTrip: round(r.cpuUsPerRoundTrip, 2),
        cpuRatioToPlain: fixed(r.cpuRatioToPlain, 4),
        meanRoundTripUs: round(r.meanRoundTripUs, 1),
        cpuPercent: round(r.cpuPercent, 1),
        samples: r.samples.map(roundSample),
      })),
      ratios,
      rssPeakBytes: rss.peak,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
    },
    summary: {
      target: { ...TARGET, measuredRatio: fixed(targetRatio, 4) },
      targetMet,
      relayTarget: { ...RELAY_TARGET, measuredRatio: fixed(relayRatio, 4) },
      relayTargetMet: relayMet,
    },
    table: {
      columns: [
        'payload',
        'setup',
        'msgs/s',
        'min..max',
        'MB/s',
        'x plain',
        'CPU us/rt',
        'x plain CPU',
        'RTT us',
        'RSS MiB',
      ],
      rows: rows.map((r) => [
        sizeLabel(r.payloadBytes),
        r.setup,
        Math.round(r.msgsPerSec),
        `${Math.round(r.msgsPerSecMin)}..${Math.round(r.msgsPerSecMax)}`,
        r.mbPerSec.toFixed(2),
        r.ratioToPlain === null ? '-' : r.ratioToPlain.toFixed(3),
        r.cpuUsPerRoundTrip.toFixed(1),
        r.cpuRatioToPlain === null ? '-' : r.cpuRatioToPlain.toFixed(3),
        r.meanRoundTripUs.toFixed(0),
        (r.rssPeakBytes / 2 ** 20).toFixed(1),
      ]),
    },
    notes,
  };
}

export const routingBenchmark: Benchmark = {
  description:
    'messages/s and MB/s over TCP loopback: plain framed TCP vs keyhop one hop vs keyhop via a relay',
  run,
};
