/**
 * Serial goodput: 1 KiB routing messages one way over a line paced at 115 200 baud (two socat PTY
 * pairs and a relay that lets bytes through at baud / 10 bytes/s, test/rig/serial-fault-relay.ts),
 * with reliability off and on, against the line's payload capacity. Flags (all optional):
 * --serial-baud=115200 --serial-size=1024 --serial-duration-ms=10000 --serial-warmup-ms=1000
 * --serial-in-flight=16 (messages sent and not yet received); --duration-ms / --warmup-ms apply
 * when the serial-specific ones are absent.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeCborFrame } from '../runtime/routing/codec/cbor-frame.js';
import { Message } from '../runtime/routing/message.js';
import { Route } from '../runtime/routing/route.js';
import { Router } from '../runtime/routing/router.js';
import { encodeFrame, FrameType } from '../runtime/transports/serial/frame.js';
import { type SerialLinkStats, SerialTransport } from '../runtime/transports/serial/serial-transport.js';
import { type RelayCounts, startFaultRelay } from '../test/rig/serial-fault-relay.js';
import { socatSkipReason } from '../test/rig/socat.js';
import { type BenchFlags, type Benchmark, type BenchReport, intFlag } from './harness.js';
import { round } from './support.js';

const TARGETS = { off: 0.9, on: 0.8 } as const;

export interface SerialGoodputRow {
  link: 'serial';
  reliable: boolean;
  baud: number;
  payloadBytes: number;
  seconds: number;
  messages: number;
  /** Application payload bytes delivered per second. */
  goodputBytesPerSec: number;
  /** baud / 10 (8N1). */
  lineCapacityBytesPerSec: number;
  /** goodput / line capacity. */
  ratio: number;
  target: number;
  targetMet: boolean;
  /** Bytes on the line per message, frame and routing message included (sender's counters). */
  wireBytesPerMessage: number;
  overheadBytesPerMessage: number;
  /** Of that overhead: the CBOR routing message around the payload (its routes). */
  routingOverheadBytes: number;
  /** And the serial frame around the routing message: header, CRC, COBS, two delimiters. */
  framingOverheadBytes: number;
  /** payload / wire bytes: the ratio a line busy all the time would give. */
  ceilingRatio: number;
  /** Bytes the relay let through in the measured window / what the line could carry. */
  lineUtilization: number;
  /** Bytes the receiver sent back per message (ACKs; 0 with reliability off). */
  reverseBytesPerMessage: number;
  retransmitted: number;
  frameDrops: number;
}

export interface SerialLinksReport extends BenchReport {
  rows: SerialGoodputRow[];
}

interface RunParams {
  baud: number;
  size: number;
  durationMs: number;
  warmupMs: number;
  inFlight: number;
}

const sum = (d: Record<string, number>): number => Object.values(d).reduce((x, y) => x + y, 0);

async function measure(reliable: boolean, p: RunParams): Promise<SerialGoodputRow> {
  const relay = await startFaultRelay({ baudRate: p.baud });
  const a = new Router({ name: 'serial-a' });
  const b = new Router({ name: 'serial-b' });
  try {
    let received = 0;
    let arrivals: { t: number; bytes: number }[] = [];
    let wake: (() => void) | undefined;
    await b.startWorker('sink', {
      handleMessage: (_ctx, m) => {
        received++;
        arrivals.push({ t: performance.now(), bytes: m.payload.length });
        wake?.();
      },
    });
    const serialA = SerialTransport.create(a);
    const serialB = SerialTransport.create(b);
    const linkB = await serialB.open(relay.b, { baudRate: p.baud, reliable, expose: ['sink'] });
    const linkA = await serialA.open(relay.a, { baudRate: p.baud, reliable });
    const ctx = await a.context();
    const route = Route.of(linkA.sender, 'sink');
    const payload = new Uint8Array(randomBytes(p.size));

    let sent = 0;
    let stopping = false;
    let sendError: unknown;
    // Closed loop: at most `inFlight` messages sent and not yet received keep the line busy
    // without piling up seconds of data in front of it.
    const sender = (async () => {
      while (!stopping) {
        while (sent - received < p.inFlight && !stopping) {
          sent++;
          await ctx.send(route, payload);
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 1000).unref();
        });
        wake = undefined;
      }
    })().catch((e: unknown) => {
      sendError = e;
    });

    const firstBy = performance.now() + 10_000;
    while (received === 0 && performance.now() < firstBy && sendError === undefined) await sleep(5);
    if (received === 0) throw new Error(`serial bench: nothing arrived (${String(sendError ?? 'timeout')})`);
    await sleep(p.warmupMs);
    const t0 = performance.now();
    arrivals = [];
    const relay0 = relay.stats().aToB;
    const a0 = linkA.stats();
    const b0 = linkB.stats();
    await sleep(p.durationMs);
    const t1 = performance.now();
    const relay1 = relay.stats().aToB;
    const a1 = linkA.stats();
    const b1 = linkB.stats();
    stopping = true;
    wake?.();
    await sender;
    if (sendError !== undefined) throw sendError;

    const seconds = (t1 - t0) / 1000;
    const inWindow = arrivals.filter((x) => x.t <= t1);
    if (inWindow.length < 2) throw new Error(`serial bench: ${inWindow.length} messages in ${seconds} s`);
    // From the first arrival in the window to the last: whole messages, no rounding at the edges.
    const span = (inWindow.at(-1)!.t - inWindow[0]!.t) / 1000;
    const goodput = inWindow.slice(1).reduce((n, x) => n + x.bytes, 0) / span;
    const capacity = p.baud / 10;
    const messages = inWindow.length;
    const delta = (k: keyof SerialLinkStats, s1: SerialLinkStats, s0: SerialLinkStats) =>
      (s1[k] as number) - (s0[k] as number);
    const wirePerMessage = delta('bytesOut', a1, a0) / Math.max(1, delta('messagesOut', a1, a0));
    const ratio = goodput / capacity;
    // The same message as the sender worker encodes it: onward [sink], return route [ctx].
    const routing = encodeCborFrame(new Message(Route.of('sink'), Route.of(ctx.address), payload).forWire());
    const frame = encodeFrame({
      type: reliable ? FrameType.RDATA : FrameType.DATA,
      seq: 1,
      payload: routing,
    });
    const target = reliable ? TARGETS.on : TARGETS.off;
    return {
      link: 'serial',
      reliable,
      baud: p.baud,
      payloadBytes: p.size,
      seconds: round(seconds, 3),
      messages,
      goodputBytesPerSec: round(goodput, 1),
      lineCapacityBytesPerSec: capacity,
      ratio: round(ratio, 4),
      target,
      targetMet: ratio >= target,
      wireBytesPerMessage: round(wirePerMessage, 1),
      overheadBytesPerMessage: round(wirePerMessage - p.size, 1),
      routingOverheadBytes: routing.length - p.size,
      framingOverheadBytes: frame.length - routing.length,
      ceilingRatio: round(p.size / wirePerMessage, 4),
      lineUtilization: round(lineBytes(relay0, relay1) / (capacity * seconds), 4),
      reverseBytesPerMessage: round(delta('bytesOut', b1, b0) / Math.max(1, messages), 1),
      retransmitted: a1.linkCounters.retransmitted,
      frameDrops: sum(b1.frameDrops),
    };
  } finally {
    await a.shutdown();
    await b.shutdown();
    await relay.stop();
  }
}

function lineBytes(r0: RelayCounts, r1: RelayCounts): number {
  return r1.bytesOut - r0.bytesOut;
}

/** The serial rows of `npm run bench -- links`. */
export async function serialLinksBench(flags: BenchFlags): Promise<SerialLinksReport> {
  const skip = socatSkipReason();
  const params: RunParams = {
    baud: intFlag(flags, 'serial-baud', 115_200),
    size: intFlag(flags, 'serial-size', 1024),
    durationMs: intFlag(flags, 'serial-duration-ms', intFlag(flags, 'duration-ms', 10_000)),
    warmupMs: intFlag(flags, 'serial-warmup-ms', intFlag(flags, 'warmup-ms', 1000)),
    inFlight: intFlag(flags, 'serial-in-flight', 16),
  };
  const parameters = {
    ...params,
    setup:
      'routers A and B in one process; A --serial--> B through socat PTY pair -> relay -> socat PTY pair, ' +
      'the relay pacing each direction at baud / 10 bytes/s (8N1); no faults; one-way 1 KiB messages to a sink',
    units: {
      goodputBytesPerSec: 'application payload bytes delivered per second in the measured window',
      lineCapacityBytesPerSec: 'baud / 10',
      ratio: 'goodput / line capacity',
      wireBytesPerMessage:
        'bytes the sender wrote per message: frame (COBS, CRC, delimiters) and CBOR routing message',
      lineUtilization: 'bytes the relay put on the line in the window / (capacity x seconds)',
    },
  };
  if (skip !== undefined) {
    return {
      rows: [],
      parameters,
      results: { skipped: skip, rows: [] },
      table: { columns: ['link', 'note'], rows: [['serial', skip]] },
      notes: [skip],
    };
  }
  const rows: SerialGoodputRow[] = [];
  for (const reliable of [false, true]) {
    process.stderr.write(`links: serial ${params.baud} baud, reliability ${reliable ? 'on' : 'off'}\n`);
    rows.push(await measure(reliable, params));
  }
  return {
    rows,
    parameters,
    results: { rows },
    summary: {
      serialTargets: rows.map((r) => ({
        reliable: r.reliable,
        target: r.target,
        ratio: r.ratio,
        met: r.targetMet,
      })),
    },
    table: {
      columns: [
        'link',
        'reliability',
        'baud',
        'payload',
        'goodput B/s',
        'capacity B/s',
        'ratio',
        'target',
        'wire B/msg',
        'routing+frame',
        'ceiling',
        'line use',
        'retx',
      ],
      rows: rows.map((r) => [
        'serial',
        r.reliable ? 'on' : 'off',
        r.baud,
        r.payloadBytes,
        r.goodputBytesPerSec.toFixed(0),
        r.lineCapacityBytesPerSec,
        r.ratio.toFixed(3),
        `${r.target} ${r.targetMet ? 'MET' : 'NOT MET'}`,
        r.wireBytesPerMessage.toFixed(1),
        `${r.routingOverheadBytes}+${r.framingOverheadBytes}`,
        r.ceilingRatio.toFixed(3),
        r.lineUtilization.toFixed(3),
        r.retransmitted,
      ]),
    },
    notes: [
      `Serial: ${params.durationMs} ms measured after ${params.warmupMs} ms warm-up per mode; ratio = payload bytes/s ÷ (baud / 10).`,
      'ceiling = payload ÷ wire bytes per message: what a line busy all the time gives; line use = how busy it was.',
    ],
  };
}

/** The same as a stand-alone Benchmark, should the runner want it under its own name. */
export const serialLinksBenchmark: Benchmark = {
  description: 'serial goodput of 1 KiB messages at 115 200 baud over PTYs, reliability off and on',
  run: serialLinksBench,
};
