/**
 * BLE on the virtual rig (test/rig/ble.ts: btvirt LE controllers behind socat PTYs, a noble
 * central and a bleno peripheral in this process), once per ATT MTU cap of the peripheral (23 and
 * 247). Each part measures keyhop and its comparison in the same run:
 * - goodput of one-way routing messages to a sink worker, against the raw GATT value throughput
 *   of a second, unframed link (full-size writes without response, counted at the peripheral);
 * - round-trip latency of a small message to an echo worker, against a raw write + notify echo;
 * - secure-channel handshake time over BLE, against the same handshake over TCP on loopback;
 * - framing efficiency of the messages sent for goodput, against Ockam's BLE framing.
 * Flags (all optional): --ble-mtus=23,247 --ble-sizes=1024,65536 --ble-rounds=3 (each round: a
 * raw window, then a keyhop window per size) --ble-duration-ms=5000 --ble-warmup-ms=1000 (per
 * window) --ble-in-flight-bytes=65536 (messages sent and not yet received, at least 2)
 * --ble-window=32 (credits each side grants) --ble-raw-window=64 (raw values in flight)
 * --ble-raw-value-bytes (a raw value size below mtu − 3) --ble-latency-rounds=200
 * --ble-latency-size=16 --ble-handshakes=20.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../runtime/errors.js';
import { encodeCborFrame } from '../runtime/routing/codec/cbor-frame.js';
import { Message } from '../runtime/routing/message.js';
import { Route } from '../runtime/routing/route.js';
import type { Router } from '../runtime/routing/router.js';
import { EchoService } from '../runtime/services/echo.js';
import { type BlePeer, BleTransport } from '../runtime/transports/ble/ble-transport.js';
import { fragmentCount, ockamBleValueSizes } from '../runtime/transports/ble/framing.js';
import {
  type BleCentral,
  type BlePeripheral,
  type GattLink,
  KEYHOP_PROFILE,
} from '../runtime/transports/ble/gatt-link.js';
import { createCentral, createPeripheral } from '../runtime/transports/ble/hci/index.js';
import { loadBleno, loadNoble } from '../runtime/transports/ble/hci/load.js';
import { bleRigSkipReason, ensureBtvirt, startController, stopBtvirt } from '../test/rig/ble.js';
import { type BenchFlags, type BenchReport, formatTable, intFlag, intListFlag } from './harness.js';
import { type IdentityNode, identityNode, median, round, sizeLabel } from './support.js';

/** ATT opcode + handle (3) and L2CAP length + channel id (4) around every value on the air. */
const AIR_HEADER_BYTES = 7;
/** Ockam's BLE transport writes one value per 100 ms (ockam_transport_ble). */
const OCKAM_VALUE_INTERVAL_S = 0.1;
const STEP_TIMEOUT_MS = 15_000;
/** An echo not back by then is counted lost (a sample is a few ms). */
const ECHO_TIMEOUT_MS = 2000;
/** A handshake is tens of ms here; one not done by then lost a message. */
const HANDSHAKE_TIMEOUT_MS = 5000;

export interface BleParams {
  /** Peripheral ATT MTU caps (bleno's maxMtu); noble asks for 256. */
  mtus: number[];
  sizes: number[];
  /** Measured time of each goodput window; every round has one raw and one per size. */
  durationMs: number;
  warmupMs: number;
  rounds: number;
  inFlightBytes: number;
  window: number;
  rawWindow: number;
  /** Raw value size cap; 0 = mtu − 3. */
  rawValueBytes: number;
  latencyRounds: number;
  latencyWarmup: number;
  latencySize: number;
  handshakes: number;
  handshakeWarmup: number;
}

export interface Spread {
  medianMs: number;
  p95Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
  samples: number;
}

export interface CpuShare {
  /** This process (both stacks, routers): CPU time / wall time, percent of one CPU. */
  processPercent: number;
  /** The rig's socat bridges of this link and btvirt, the same way. */
  rigPercent: number;
}

export interface BleRawWindow {
  seconds: number;
  values: number;
  valuesPerSec: number;
  bytesPerSec: number;
  cpu: CpuShare;
}

export interface BleRawThroughput {
  /** Value size used: negotiated MTU − 3. */
  valueBytes: number;
  window: number;
  /** Means over the rounds' windows. */
  valuesPerSec: number;
  bytesPerSec: number;
  rounds: BleRawWindow[];
  /** Values written and never seen at the peripheral (should be 0). */
  lost: number;
}

export interface BleFraming {
  /** CBOR routing message (routes + payload), what both framings carry. */
  routingMessageBytes: number;
  keyhopValuesPerMessage: number;
  /** Value bytes per message from the sender's counters over every round. */
  keyhopValueBytesPerMessage: number;
  /** The same from the byte layouts (fragmentCount): equal unless something else was sent. */
  keyhopExpectedValueBytesPerMessage: number;
  ockamValuesPerMessage: number;
  ockamValueBytesPerMessage: number;
  /** routing message bytes / value bytes. */
  keyhopEfficiency: number;
  ockamEfficiency: number;
  ratio: number;
  /** The same counting 7 bytes of ATT + L2CAP header per value. */
  keyhopAirEfficiency: number;
  ockamAirEfficiency: number;
  airRatio: number;
  /** payload / (value bytes + air headers): the application's share of what went on the air. */
  keyhopPayloadAirEfficiency: number;
  /** CREDIT value bytes the receiver sent back per message. */
  reverseValueBytesPerMessage: number;
}

export interface BleGoodputRound {
  seconds: number;
  /** Messages that arrived in the measured window. */
  messages: number;
  goodputBytesPerSec: number;
  /** The raw window of the same round. */
  rawValueBytesPerSec: number;
  ratio: number;
  cpu: CpuShare;
}

export interface BleGoodputRow {
  link: 'ble';
  maxMtu: number;
  mtu: number;
  payloadBytes: number;
  window: number;
  inFlightMessages: number;
  /** Mean over the rounds (equal windows). */
  goodputBytesPerSec: number;
  /** Data fragments per second the keyhop link carried (messages/s × values per message). */
  valuesPerSec: number;
  /** The unframed link's value bytes/s at the same MTU, mean of the same rounds. */
  rawValueBytesPerSec: number;
  /** goodput / raw value throughput. */
  ratio: number;
  rounds: BleGoodputRound[];
  /** Ockam's transport: payload of this message per (its values × 100 ms), MTU 23 whatever the link. */
  ockamGoodputCeilingBytesPerSec: number;
  vsOckamCeiling: number;
  framing: BleFraming;
  problems: Record<string, number>;
}

export interface BleLatencyRow {
  maxMtu: number;
  mtu: number;
  payloadBytes: number;
  keyhop: Spread;
  /** The echo request as a CBOR routing message, and the values it takes at this MTU. */
  keyhopRoutingMessageBytes: number;
  keyhopValuesPerMessage: number;
  /** Echoes with no reply within 2 s (not in the samples). */
  keyhopLost: number;
  /** Raw value of min(payloadBytes, mtu − 3) bytes written, notified back by the peripheral. */
  raw: Spread & { valueBytes: number };
  /** keyhop median / raw median. */
  ratio: number;
}

export interface BleHandshakeRow {
  maxMtu: number;
  mtu: number;
  /** From create() until both ends are open (initiator resolved, responder verified it). */
  ble: Spread;
  /** GATT value bytes per handshake each way (channel Close and CREDIT values included). */
  bleValueBytesPerHandshake: { toPeripheral: number; toCentral: number };
  /** Handshakes not complete within 5 s (not in the samples). */
  bleFailed: number;
  tcp: Spread;
  tcpFailed: number;
  /** BLE median / TCP median. */
  ratio: number;
}

export interface BleMtuSection {
  maxMtu: number;
  /** Negotiated ATT MTU as each end's link reports it. */
  mtu: { central: number; peripheral: number; rawCentral: number; rawPeripheral: number };
  raw: BleRawThroughput;
  goodput: BleGoodputRow[];
  latency: BleLatencyRow;
  handshake: BleHandshakeRow;
  /** keyhop link drops during the whole setting ("side: reason" → count). */
  linkDowns: Record<string, number>;
}

export interface BleLinksReport extends BenchReport {
  sections: BleMtuSection[];
}

// ---------------------------------------------------------------------------------------------
// helpers

type Cleanup = () => Promise<unknown>;

async function runCleanups(cleanups: Cleanup[]): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
}

function spread(samples: readonly number[]): Spread {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) throw new Error('no samples');
  return {
    medianMs: round(median(s), 3),
    // Nearest rank.
    p95Ms: round(s[Math.max(0, Math.ceil(0.95 * n) - 1)]!, 3),
    meanMs: round(s.reduce((x, y) => x + y, 0) / n, 3),
    minMs: round(s[0]!, 3),
    maxMs: round(s[n - 1]!, 3),
    samples: n,
  };
}

function withTimeout<T>(p: Promise<T>, what: string, ms = STEP_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`BLE bench: ${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const until = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > until) return false;
    await sleep(5);
  }
  return true;
}

/** Waits until `done()`, giving up once `progress()` has not changed for `stallMs`. */
async function waitWhileProgressing(
  done: () => boolean,
  progress: () => number,
  stallMs: number,
): Promise<boolean> {
  let last = progress();
  let lastChange = performance.now();
  while (!done()) {
    await sleep(10);
    const now = progress();
    if (now !== last) {
      last = now;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > stallMs) {
      return false;
    }
  }
  return true;
}

const f = (x: number, digits: number): string => x.toFixed(digits);
const uniqueName = (): string => `khb${randomBytes(3).toString('hex')}`;
const sum = (xs: readonly number[]): number => xs.reduce((x, y) => x + y, 0);

/** CPU time of other processes (utime + stime from /proc, clock ticks of 10 ms), in ms. */
function cpuMsOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields 14 and 15 (utime, stime); the text after "comm)" starts at field 3.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return ticks * 10;
}

/** Starts measuring; the returned function ends the measurement. */
function cpuMeter(rigPids: readonly number[]): () => CpuShare {
  const p0 = process.cpuUsage();
  const r0 = cpuMsOf(rigPids);
  const t0 = performance.now();
  return () => {
    const wall = performance.now() - t0;
    const p = process.cpuUsage(p0);
    return {
      processPercent: round(((p.user + p.system) / 1e3 / wall) * 100, 1),
      rigPercent: round(((cpuMsOf(rigPids) - r0) / wall) * 100, 1),
    };
  };
}

async function stacksSkipReason(): Promise<string | undefined> {
  try {
    await Promise.all([loadNoble(), loadBleno()]);
    return undefined;
  } catch (e) {
    return `BLE stacks unavailable (${describeError(e)}): BLE links skipped`;
  }
}

/** Two fresh controllers, a peripheral capped at `maxMtu` on one and a started central on the other. */
async function startStacks(
  label: string,
  maxMtu: number,
  cleanups: Cleanup[],
  btvirtPid: number | undefined,
): Promise<{ central: BleCentral; peripheral: BlePeripheral; rigPids: number[] }> {
  const [pc, cc] = await Promise.all([startController(`${label}-p`), startController(`${label}-c`)]);
  cleanups.push(
    () => pc.stop(),
    () => cc.stop(),
  );
  const peripheral = createPeripheral({ uartPath: pc.path, maxMtu });
  const central = createCentral({ uartPath: cc.path });
  cleanups.push(
    () => peripheral.stop(),
    () => central.stop(),
  );
  await central.start();
  return { central, peripheral, rigPids: [pc.pid, cc.pid, ...(btvirtPid === undefined ? [] : [btvirtPid])] };
}

// ---------------------------------------------------------------------------------------------
// the raw GATT link (no framing)

interface RawPair {
  rigPids: number[];
  central: GattLink;
  peripheral: GattLink;
  /** Replaceable handlers: a GattLink's listeners cannot be removed. */
  onCentralValue: (v: Uint8Array) => void;
  onPeripheralValue: (v: Uint8Array) => void;
}

async function connectRaw(
  maxMtu: number,
  cleanups: Cleanup[],
  btvirtPid: number | undefined,
): Promise<RawPair> {
  const { central, peripheral, rigPids } = await startStacks(`raw${maxMtu}`, maxMtu, cleanups, btvirtPid);
  const name = uniqueName();
  let deliver!: (l: GattLink) => void;
  const delivered = new Promise<GattLink>((resolve) => {
    deliver = resolve;
  });
  await peripheral.start({ name, profile: KEYHOP_PROFILE }, (l) => deliver(l));
  const ads = await central.scan({
    services: [KEYHOP_PROFILE.service],
    durationMs: 5000,
    until: (ad) => ad.name === name,
  });
  const ad = ads.find((a) => a.name === name);
  if (ad === undefined) throw new Error(`BLE bench: peripheral ${name} not found`);
  const c = await central.connect(ad.id, KEYHOP_PROFILE, { timeoutMs: 10_000 });
  const p = await withTimeout(delivered, 'peripheral link');
  const pair: RawPair = {
    rigPids,
    central: c,
    peripheral: p,
    onCentralValue: () => undefined,
    onPeripheralValue: () => undefined,
  };
  c.onValue((v) => pair.onCentralValue(v));
  p.onValue((v) => pair.onPeripheralValue(v));
  return pair;
}

/**
 * One window of full-size values written back to back, at most `rawWindow` not yet seen at the
 * peripheral. Resolves once every value written arrived (or with how many did not).
 */
const rawValueSize = (pair: RawPair, p: BleParams): number =>
  p.rawValueBytes > 0 ? Math.min(p.rawValueBytes, pair.central.mtu - 3) : pair.central.mtu - 3;

async function rawWindow(pair: RawPair, p: BleParams): Promise<BleRawWindow & { lost: number }> {
  const value = new Uint8Array(randomBytes(rawValueSize(pair, p)));
  let values = 0;
  let bytes = 0;
  let wake: (() => void) | undefined;
  pair.onPeripheralValue = (v) => {
    values++;
    bytes += v.length;
    wake?.();
  };
  let sent = 0;
  let stopping = false;
  let sendError: unknown;
  const sender = (async () => {
    while (!stopping) {
      while (sent - values < p.rawWindow && !stopping) {
        sent++;
        pair.central.send(value).catch((e: unknown) => {
          sendError ??= e;
          stopping = true;
        });
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  })();
  let measured: BleRawWindow;
  try {
    await waitUntil(() => values > 0 || sendError !== undefined, 10_000);
    if (values === 0) throw new Error(`BLE bench: no raw value arrived (${String(sendError ?? 'timeout')})`);
    await sleep(p.warmupMs);
    const v0 = values;
    const b0 = bytes;
    const cpu = cpuMeter(pair.rigPids);
    const t0 = performance.now();
    await sleep(p.durationMs);
    const t1 = performance.now();
    const v1 = values;
    const b1 = bytes;
    const seconds = (t1 - t0) / 1000;
    measured = {
      seconds: round(seconds, 3),
      values: v1 - v0,
      valuesPerSec: round((v1 - v0) / seconds, 1),
      bytesPerSec: round((b1 - b0) / seconds, 1),
      cpu: cpu(),
    };
  } finally {
    stopping = true;
    wake?.();
    await sender;
  }
  if (sendError !== undefined) throw sendError;
  // Writes without response are not acknowledged: what never arrives was lost in the stacks.
  await waitUntil(() => values >= sent, 5000);
  return { ...measured, lost: sent - values };
}

/** Sequential write + notify echoes of one small value. */
async function rawLatency(pair: RawPair, p: BleParams): Promise<Spread & { valueBytes: number }> {
  const size = Math.min(p.latencySize, pair.central.mtu - 3);
  const value = new Uint8Array(randomBytes(size));
  pair.onPeripheralValue = (v) => void pair.peripheral.send(v).catch(() => undefined);
  let waiter: ((v: Uint8Array) => void) | undefined;
  pair.onCentralValue = (v) => {
    const w = waiter;
    waiter = undefined;
    w?.(v);
  };
  const samples: number[] = [];
  for (let i = 0; i < p.latencyWarmup + p.latencyRounds; i++) {
    const echoed = new Promise<Uint8Array>((resolve) => {
      waiter = resolve;
    });
    const t = performance.now();
    await pair.central.send(value);
    const back = await withTimeout(echoed, 'raw echo', 5000);
    const dt = performance.now() - t;
    if (back.length !== size) throw new Error(`BLE bench: raw echo of ${back.length} bytes, sent ${size}`);
    if (i >= p.latencyWarmup) samples.push(dt);
  }
  return { ...spread(samples), valueBytes: size };
}

// ---------------------------------------------------------------------------------------------
// keyhop over BLE

interface Sink {
  received: number;
  arrivals: { t: number; bytes: number }[];
  wake: (() => void) | undefined;
}

interface KeyhopRig {
  /** The gateway: BLE central, secure-channel initiator. */
  a: IdentityNode;
  /** The device: BLE peripheral with `sink`, `echo` and the `api` listener. */
  b: IdentityNode;
  /** A's peer for the device (its sender address routes over BLE). */
  peer: BlePeer;
  /** B's peer for the central. */
  incoming: () => BlePeer | undefined;
  sink: Sink;
  /** Responder verifications so far (B's trust policy). */
  verified: { count: number; waiters: (() => void)[] };
  tcpRoute: string;
  rigPids: number[];
  /** Links that went down (either side, with the reason), since the rig started. */
  linkDowns: string[];
  /** Both peers' counters, for error messages. */
  describe(): string;
}

async function keyhopRig(
  maxMtu: number,
  window: number,
  cleanups: Cleanup[],
  btvirtPid: number | undefined,
): Promise<KeyhopRig> {
  const { central, peripheral, rigPids } = await startStacks(`kh${maxMtu}`, maxMtu, cleanups, btvirtPid);
  const b = await identityNode('ble-device', []);
  cleanups.push(() => b.router.shutdown());
  const a = await identityNode('ble-gateway', []);
  cleanups.push(() => a.router.shutdown());
  const sink: Sink = { received: 0, arrivals: [], wake: undefined };
  await b.router.startWorker('sink', {
    handleMessage: (_ctx, m) => {
      sink.received++;
      sink.arrivals.push({ t: performance.now(), bytes: m.payload.length });
      sink.wake?.();
    },
  });
  await b.router.startWorker('echo', new EchoService());
  const verified: KeyhopRig['verified'] = { count: 0, waiters: [] };
  await b.channels.createListener('api', {
    trustPolicy: () => {
      verified.count++;
      for (const w of verified.waiters.splice(0)) w();
      return true;
    },
  });
  const listener = await b.tcp.listen('127.0.0.1:0', { expose: ['api'] });
  await a.tcp.connect(listener.address);
  const name = uniqueName();
  const deviceBle = BleTransport.create(b.router, { window });
  await deviceBle.listen(peripheral, { name, profile: KEYHOP_PROFILE, expose: ['sink', 'echo', 'api'] });
  const gatewayBle = BleTransport.create(a.router, { central, window });
  const linkDowns: string[] = [];
  let closing = false;
  // Runs first: links going down while the rig is taken apart are not news.
  cleanups.push(async () => {
    closing = true;
  });
  for (const [side, t] of [
    ['device', deviceBle],
    ['gateway', gatewayBle],
  ] as const) {
    t.on('link_down', (e) => {
      if (closing) return;
      linkDowns.push(`${side}: ${e.reason}`);
      process.stderr.write(`links: BLE link down (${side}): ${e.reason}\n`);
    });
  }
  const peer = await gatewayBle.dial(name);
  return {
    linkDowns,
    describe: () =>
      JSON.stringify({ gateway: peer.stats(), device: deviceBle.peers()[0]?.stats(), linkDowns }),
    a,
    b,
    peer,
    incoming: () => deviceBle.peers()[0],
    sink,
    verified,
    tcpRoute: `1#${listener.address} => api`,
    rigPids,
  };
}

function routerProblems(routers: readonly Router[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of routers) {
    out.workerErrors = (out.workerErrors ?? 0) + r.metrics.workerErrors;
    for (const [reason, n] of Object.entries(r.metrics.dropped)) {
      out[`dropped_${reason}`] = (out[`dropped_${reason}`] ?? 0) + n;
    }
  }
  return out;
}

interface GoodputWindow {
  seconds: number;
  messages: number;
  goodputBytesPerSec: number;
  messagesPerSec: number;
  cpu: CpuShare;
  /** Messages sent in the whole run (warm-up and drain included), all of which arrived. */
  sent: number;
  valueBytesOut: number;
  reverseValueBytes: number;
  routingMessageBytes: number;
  problems: Record<string, number>;
}

/**
 * One window of one-way messages of `size` bytes to the sink, at most `inFlight` sent and not
 * yet received (closed loop, as for serial: the link stays busy without seconds of backlog).
 */
async function keyhopWindow(
  rig: KeyhopRig,
  size: number,
  inFlight: number,
  p: BleParams,
): Promise<GoodputWindow> {
  const { a, peer, sink } = rig;
  const ctx = await a.router.context();
  try {
    const route = Route.of(peer.sender, 'sink');
    const payload = new Uint8Array(randomBytes(size));
    const out0 = peer.stats();
    const back0 = rig.incoming()?.stats();
    const problems0 = routerProblems([rig.a.router, rig.b.router]);
    const linkDowns0 = rig.linkDowns.length;
    sink.received = 0;
    sink.arrivals = [];
    let sent = 0;
    let stopping = false;
    let sendError: unknown;
    // A link that drops loses the messages it had fully handed to the stack (no end-to-end
    // acknowledgement in this layer): after 2 s without an arrival, what is outstanding counts as
    // lost so the window opens again instead of waiting forever.
    let assumedLost = 0;
    let lastProgress = performance.now();
    let seen = 0;
    const tick = setInterval(() => sink.wake?.(), 500);
    const sender = (async () => {
      while (!stopping) {
        while (sent - sink.received - assumedLost < inFlight && !stopping) {
          sent++;
          await ctx.send(route, payload);
        }
        await new Promise<void>((resolve) => {
          sink.wake = resolve;
        });
        sink.wake = undefined;
        if (sink.received !== seen) {
          seen = sink.received;
          lastProgress = performance.now();
        } else if (performance.now() - lastProgress > 2000) {
          assumedLost = sent - sink.received;
        }
      }
    })()
      .catch((e: unknown) => {
        sendError = e;
      })
      .finally(() => clearInterval(tick));
    let t0 = 0;
    let t1 = 0;
    let cpu: CpuShare = { processPercent: 0, rigPercent: 0 };
    try {
      await waitUntil(() => sink.received > 0 || sendError !== undefined, 20_000);
      if (sink.received === 0) {
        throw new Error(
          `BLE bench: no ${sizeLabel(size)} message arrived (${String(sendError ?? 'timeout')})`,
        );
      }
      await sleep(p.warmupMs);
      t0 = performance.now();
      sink.arrivals = [];
      const meter = cpuMeter(rig.rigPids);
      await sleep(p.durationMs);
      // A slow spell may leave too few whole messages to time: wait for a third (bounded).
      await waitUntil(() => sink.arrivals.length >= 3 || sendError !== undefined, 30_000);
      t1 = performance.now();
      cpu = meter();
    } finally {
      stopping = true;
      sink.wake?.();
      await sender;
    }
    if (sendError !== undefined) throw sendError;
    // Once everything sent arrived, the sender's value counters cover exactly `sent` messages.
    const drained = await waitWhileProgressing(
      () => sink.received >= sent,
      () => sink.received,
      3000,
    );
    if (!drained) {
      process.stderr.write(
        `links: ${sent - sink.received} ${sizeLabel(size)} messages undelivered; ${rig.describe()}\n`,
      );
    }
    const out1 = peer.stats();
    const back1 = rig.incoming()?.stats();

    const seconds = (t1 - t0) / 1000;
    const inWindow = sink.arrivals.filter((x) => x.t <= t1);
    if (inWindow.length < 2) {
      throw new Error(`BLE bench: ${inWindow.length} ${sizeLabel(size)} messages in ${round(seconds, 1)} s`);
    }
    // First to last arrival in the window: whole messages, no rounding at the edges.
    const span = (inWindow.at(-1)!.t - inWindow[0]!.t) / 1000;
    const problems: Record<string, number> = {};
    for (const [k, v] of Object.entries(routerProblems([rig.a.router, rig.b.router]))) {
      const d = v - (problems0[k] ?? 0);
      if (d > 0) problems[k] = d;
    }
    if (!drained) problems.undelivered = sent - sink.received;
    if (rig.linkDowns.length > linkDowns0) problems.linkDowns = rig.linkDowns.length - linkDowns0;
    const reconnects = out1.links - out0.links + (back1?.links ?? 0) - (back0?.links ?? 0);
    if (reconnects > 0) problems.reconnects = reconnects;
    const undecodable = out1.undecodable + (back1?.undecodable ?? 0);
    if (undecodable > 0) problems.undecodable = undecodable;
    return {
      seconds,
      messages: inWindow.length,
      goodputBytesPerSec: sum(inWindow.slice(1).map((x) => x.bytes)) / span,
      messagesPerSec: (inWindow.length - 1) / span,
      cpu,
      sent,
      valueBytesOut: out1.valueBytesOut - out0.valueBytesOut,
      reverseValueBytes: (back1?.valueBytesOut ?? 0) - (back0?.valueBytesOut ?? 0),
      // The message as BlePeer encodes it: onward [sink], return route [ctx].
      routingMessageBytes: encodeCborFrame(
        new Message(Route.of('sink'), Route.of(ctx.address), payload).forWire(),
      ).length,
      problems,
    };
  } finally {
    await a.router.stopWorker(ctx.address).catch(() => undefined);
  }
}

function framingOf(
  routingLength: number,
  payloadBytes: number,
  mtu: number,
  counted: { sent: number; valueBytes: number; reverseBytes: number },
): BleFraming {
  const values = fragmentCount(routingLength, mtu - 3);
  // One kind byte per value, and a 4-byte total in FIRST when the message takes several.
  const expected = routingLength + values + (values > 1 ? 4 : 0);
  const perMessage = counted.valueBytes / Math.max(1, counted.sent);
  const ockam = ockamBleValueSizes(routingLength);
  const ockamBytes = sum(ockam);
  const keyhopEff = routingLength / perMessage;
  const ockamEff = routingLength / ockamBytes;
  const keyhopAir = routingLength / (perMessage + AIR_HEADER_BYTES * values);
  const ockamAir = routingLength / (ockamBytes + AIR_HEADER_BYTES * ockam.length);
  return {
    routingMessageBytes: routingLength,
    keyhopValuesPerMessage: values,
    keyhopValueBytesPerMessage: round(perMessage, 2),
    keyhopExpectedValueBytesPerMessage: expected,
    ockamValuesPerMessage: ockam.length,
    ockamValueBytesPerMessage: ockamBytes,
    keyhopEfficiency: round(keyhopEff, 4),
    ockamEfficiency: round(ockamEff, 4),
    ratio: round(keyhopEff / ockamEff, 4),
    keyhopAirEfficiency: round(keyhopAir, 4),
    ockamAirEfficiency: round(ockamAir, 4),
    airRatio: round(keyhopAir / ockamAir, 4),
    keyhopPayloadAirEfficiency: round(payloadBytes / (perMessage + AIR_HEADER_BYTES * values), 4),
    reverseValueBytesPerMessage: round(counted.reverseBytes / Math.max(1, counted.sent), 2),
  };
}

function goodputRow(
  maxMtu: number,
  mtu: number,
  size: number,
  inFlight: number,
  windows: readonly GoodputWindow[],
  raws: readonly BleRawWindow[],
  p: BleParams,
): BleGoodputRow {
  const mean = (xs: readonly number[]) => sum(xs) / xs.length;
  const goodput = mean(windows.map((w) => w.goodputBytesPerSec));
  const raw = mean(raws.map((r) => r.bytesPerSec));
  const routingLength = windows[0]!.routingMessageBytes;
  const framing = framingOf(routingLength, size, mtu, {
    sent: sum(windows.map((w) => w.sent)),
    valueBytes: sum(windows.map((w) => w.valueBytesOut)),
    reverseBytes: sum(windows.map((w) => w.reverseValueBytes)),
  });
  const ockamCeiling = size / (framing.ockamValuesPerMessage * OCKAM_VALUE_INTERVAL_S);
  const problems: Record<string, number> = {};
  for (const w of windows)
    for (const [k, v] of Object.entries(w.problems)) problems[k] = (problems[k] ?? 0) + v;
  if (framing.keyhopValueBytesPerMessage !== framing.keyhopExpectedValueBytesPerMessage) {
    problems.valueBytesMismatch = 1;
  }
  return {
    link: 'ble',
    maxMtu,
    mtu,
    payloadBytes: size,
    window: p.window,
    inFlightMessages: inFlight,
    goodputBytesPerSec: round(goodput, 1),
    valuesPerSec: round(mean(windows.map((w) => w.messagesPerSec)) * framing.keyhopValuesPerMessage, 1),
    rawValueBytesPerSec: round(raw, 1),
    ratio: round(goodput / raw, 4),
    rounds: windows.map((w, i) => ({
      seconds: round(w.seconds, 3),
      messages: w.messages,
      goodputBytesPerSec: round(w.goodputBytesPerSec, 1),
      rawValueBytesPerSec: raws[i]!.bytesPerSec,
      ratio: round(w.goodputBytesPerSec / raws[i]!.bytesPerSec, 4),
      cpu: w.cpu,
    })),
    ockamGoodputCeilingBytesPerSec: round(ockamCeiling, 1),
    vsOckamCeiling: round(goodput / ockamCeiling, 1),
    framing,
    problems,
  };
}

async function keyhopLatency(
  rig: KeyhopRig,
  p: BleParams,
): Promise<{ spread: Spread; routingMessageBytes: number; lost: number }> {
  const ctx = await rig.a.router.context();
  try {
    const route = Route.of(rig.peer.sender, 'echo');
    const payload = new Uint8Array(randomBytes(Math.max(4, p.latencySize)));
    const seq = new DataView(payload.buffer);
    const samples: number[] = [];
    let lost = 0;
    for (let i = 0; i < p.latencyWarmup + p.latencyRounds; i++) {
      // Numbered, so a late reply to a lost round is not taken for this round's.
      seq.setUint32(0, i);
      const t = performance.now();
      await ctx.send(route, payload);
      let dt: number | undefined;
      while (dt === undefined) {
        const left = t + ECHO_TIMEOUT_MS - performance.now();
        const reply = left > 0 ? await ctx.receive(left).catch(() => undefined) : undefined;
        if (reply === undefined) break;
        const r = reply.payload;
        if (r.length === payload.length && new DataView(r.buffer, r.byteOffset, 4).getUint32(0) === i) {
          dt = performance.now() - t;
        }
      }
      if (dt === undefined) {
        lost++;
        process.stderr.write(`links: echo ${i} got no reply in ${ECHO_TIMEOUT_MS} ms; ${rig.describe()}\n`);
        if (lost > 10) throw new Error('BLE bench: more than 10 echoes lost');
      } else if (i >= p.latencyWarmup) {
        samples.push(dt);
      }
    }
    const routingMessageBytes = encodeCborFrame(
      new Message(Route.of('echo'), Route.of(ctx.address), payload).forWire(),
    ).length;
    return { spread: spread(samples), routingMessageBytes, lost };
  } finally {
    await rig.a.router.stopWorker(ctx.address).catch(() => undefined);
  }
}

/** Sequential handshakes along `route`, each timed until both ends are open, then closed. */
async function handshakes(
  rig: KeyhopRig,
  route: Route | string,
  p: BleParams,
): Promise<{ spread: Spread; toPeripheral: number; toCentral: number; failed: number }> {
  const samples: number[] = [];
  let failed = 0;
  const s0 = rig.peer.stats();
  for (let i = 0; i < p.handshakeWarmup + p.handshakes; i++) {
    const before = rig.verified.count;
    let waiter: (() => void) | undefined;
    const responder = new Promise<void>((resolve) => {
      waiter = resolve;
      rig.verified.waiters.push(resolve);
    });
    const t = performance.now();
    let gaveUp = false;
    const creating = rig.a.channels.create(route);
    try {
      const end = await withTimeout(creating, 'handshake', HANDSHAKE_TIMEOUT_MS);
      if (rig.verified.count === before)
        await withTimeout(responder, 'responder verification', HANDSHAKE_TIMEOUT_MS);
      const dt = performance.now() - t;
      await end.close();
      if (i >= p.handshakeWarmup) samples.push(dt);
    } catch (e) {
      // A message of the handshake lost with a dropped link: count it, close what comes late.
      gaveUp = true;
      failed++;
      process.stderr.write(`links: handshake ${i} failed: ${describeError(e)}; ${rig.describe()}\n`);
      if (failed > 5) throw new Error('BLE bench: more than 5 handshakes failed');
    } finally {
      const w = rig.verified.waiters.indexOf(waiter!);
      if (w >= 0) rig.verified.waiters.splice(w, 1);
    }
    if (gaveUp)
      creating.then(
        (end) => end.close(),
        () => undefined,
      );
  }
  // The responder ends close on the Close messages; none should be left.
  await waitUntil(() => rig.b.channels.list().length === 0, 5000);
  const s1 = rig.peer.stats();
  const n = p.handshakeWarmup + p.handshakes;
  return {
    spread: spread(samples),
    toPeripheral: round((s1.valueBytesOut - s0.valueBytesOut) / n, 1),
    toCentral: round((s1.valueBytesIn - s0.valueBytesIn) / n, 1),
    failed,
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Both links (raw and keyhop) stay up for the whole MTU setting; each round measures the raw link
 * and then keyhop at every size, so drift in the machine's load hits both sides of a ratio alike.
 */
async function measureMtu(
  maxMtu: number,
  p: BleParams,
  btvirtPid: number | undefined,
): Promise<BleMtuSection> {
  const log = (s: string) => process.stderr.write(`links: ble MTU ${maxMtu}: ${s}\n`);
  const cleanups: Cleanup[] = [];
  try {
    log('connecting the raw GATT link and the keyhop link');
    const pair = await connectRaw(maxMtu, cleanups, btvirtPid);
    const rig = await keyhopRig(maxMtu, p.window, cleanups, btvirtPid);
    const mtu = rig.peer.stats().mtu ?? 0;
    const raws: BleRawWindow[] = [];
    let lost = 0;
    const windows = new Map<number, GoodputWindow[]>(p.sizes.map((s) => [s, []]));
    const inFlight = (size: number) => Math.max(2, Math.ceil(p.inFlightBytes / size));
    for (let r = 1; r <= p.rounds; r++) {
      log(`round ${r}/${p.rounds}: raw values`);
      const w = await rawWindow(pair, p);
      log(`round ${r}/${p.rounds}: raw ${f(w.bytesPerSec, 0)} B/s${w.lost > 0 ? `, ${w.lost} lost` : ''}`);
      lost += w.lost;
      raws.push({
        seconds: w.seconds,
        values: w.values,
        valuesPerSec: w.valuesPerSec,
        bytesPerSec: w.bytesPerSec,
        cpu: w.cpu,
      });
      for (const size of p.sizes) {
        const started = performance.now();
        const g = await keyhopWindow(rig, size, inFlight(size), p);
        windows.get(size)!.push(g);
        log(
          `round ${r}/${p.rounds}: goodput ${sizeLabel(size)} ${f(g.goodputBytesPerSec, 0)} B/s, ` +
            `${g.messages} messages (${f((performance.now() - started) / 1000, 1)} s)`,
        );
      }
    }
    log('latency');
    const rawLat = await rawLatency(pair, p);
    const lat = await keyhopLatency(rig, p);
    log('handshakes over BLE and TCP');
    const ble = await handshakes(rig, Route.of(rig.peer.sender, 'api'), p);
    const tcp = await handshakes(rig, rig.tcpRoute, p);
    const mean = (xs: readonly number[]) => sum(xs) / xs.length;
    return {
      maxMtu,
      mtu: {
        central: mtu,
        peripheral: rig.incoming()?.stats().mtu ?? 0,
        rawCentral: pair.central.mtu,
        rawPeripheral: pair.peripheral.mtu,
      },
      raw: {
        valueBytes: rawValueSize(pair, p),
        window: p.rawWindow,
        valuesPerSec: round(mean(raws.map((x) => x.valuesPerSec)), 1),
        bytesPerSec: round(mean(raws.map((x) => x.bytesPerSec)), 1),
        rounds: raws,
        lost,
      },
      goodput: p.sizes.map((size) =>
        goodputRow(maxMtu, mtu, size, inFlight(size), windows.get(size)!, raws, p),
      ),
      latency: {
        maxMtu,
        mtu,
        payloadBytes: p.latencySize,
        keyhop: lat.spread,
        keyhopRoutingMessageBytes: lat.routingMessageBytes,
        keyhopValuesPerMessage: fragmentCount(lat.routingMessageBytes, mtu - 3),
        keyhopLost: lat.lost,
        raw: rawLat,
        ratio: round(lat.spread.medianMs / rawLat.medianMs, 3),
      },
      linkDowns: Object.fromEntries(
        [...new Set(rig.linkDowns)].map((d) => [d, rig.linkDowns.filter((x) => x === d).length]),
      ),
      handshake: {
        maxMtu,
        mtu,
        ble: ble.spread,
        bleValueBytesPerHandshake: { toPeripheral: ble.toPeripheral, toCentral: ble.toCentral },
        bleFailed: ble.failed,
        tcp: tcp.spread,
        tcpFailed: tcp.failed,
        ratio: round(ble.spread.medianMs / tcp.spread.medianMs, 3),
      },
    };
  } finally {
    await runCleanups(cleanups);
  }
}

export const SUMMARY_COLUMNS = [
  'link',
  'setting',
  'measure',
  'keyhop',
  'comparison',
  'compared with',
  'ratio',
  'target',
];

function summaryRows(sections: readonly BleMtuSection[]): (string | number)[][] {
  const rows: (string | number)[][] = [];
  for (const s of sections) {
    const setting =
      s.mtu.central === s.maxMtu ? `MTU ${s.mtu.central}` : `MTU ${s.mtu.central} (cap ${s.maxMtu})`;
    const row = (measure: string, keyhop: string, comparison: string, vs: string, ratio: string) =>
      rows.push(['ble', setting, measure, keyhop, comparison, vs, ratio, '']);
    for (const g of s.goodput) {
      row(
        `goodput ${sizeLabel(g.payloadBytes)} B/s`,
        f(g.goodputBytesPerSec, 0),
        f(g.rawValueBytesPerSec, 0),
        `raw GATT values (${s.raw.valueBytes} B, unframed)`,
        f(g.ratio, 3),
      );
    }
    for (const g of s.goodput) {
      row(
        `goodput ${sizeLabel(g.payloadBytes)} B/s`,
        f(g.goodputBytesPerSec, 0),
        f(g.ockamGoodputCeilingBytesPerSec, 0),
        'Ockam BLE ceiling (MTU 23, 1 value/100 ms)',
        `${f(g.vsOckamCeiling, 0)}x`,
      );
    }
    const l = s.latency;
    row(
      `RTT ${l.payloadBytes} B median ms`,
      f(l.keyhop.medianMs, 2),
      f(l.raw.medianMs, 2),
      'raw write + notify echo',
      f(l.ratio, 2),
    );
    row(
      `RTT ${l.payloadBytes} B p95 ms`,
      f(l.keyhop.p95Ms, 2),
      f(l.raw.p95Ms, 2),
      'raw write + notify echo',
      f(l.keyhop.p95Ms / l.raw.p95Ms, 2),
    );
    const h = s.handshake;
    row(
      'handshake median ms',
      f(h.ble.medianMs, 1),
      f(h.tcp.medianMs, 1),
      'same handshake over TCP loopback',
      f(h.ratio, 2),
    );
    row(
      'handshake p95 ms',
      f(h.ble.p95Ms, 1),
      f(h.tcp.p95Ms, 1),
      'same handshake over TCP loopback',
      f(h.ble.p95Ms / h.tcp.p95Ms, 2),
    );
    for (const g of s.goodput) {
      const fr = g.framing;
      row(
        `framing eff. ${sizeLabel(g.payloadBytes)} (values)`,
        f(fr.keyhopEfficiency, 4),
        f(fr.ockamEfficiency, 4),
        'Ockam BLE framing, same messages',
        f(fr.ratio, 3),
      );
      row(
        `framing eff. ${sizeLabel(g.payloadBytes)} (air)`,
        f(fr.keyhopAirEfficiency, 4),
        f(fr.ockamAirEfficiency, 4),
        'Ockam, +7 B ATT/L2CAP per value',
        f(fr.airRatio, 3),
      );
    }
  }
  return rows;
}

/** Mean CPU shares of some windows: "process (rig)". */
function cpuText(shares: readonly CpuShare[]): string {
  const mean = (xs: readonly number[]) => sum(xs) / Math.max(1, xs.length);
  return `${f(mean(shares.map((c) => c.processPercent)), 0)} (${f(mean(shares.map((c) => c.rigPercent)), 0)})`;
}

function detailTable(sections: readonly BleMtuSection[]): string {
  return formatTable({
    columns: [
      'MTU',
      'payload',
      'routing msg',
      'values/msg',
      'value B/msg',
      'credit B/msg',
      'keyhop values/s',
      'raw values/s',
      'in flight',
      'window',
      'msgs',
      'cpu % (rig)',
      'raw cpu % (rig)',
      'ratio per round',
      'problems',
    ],
    rows: sections.flatMap((s) =>
      s.goodput.map((g) => [
        g.mtu,
        sizeLabel(g.payloadBytes),
        g.framing.routingMessageBytes,
        g.framing.keyhopValuesPerMessage,
        g.framing.keyhopValueBytesPerMessage,
        g.framing.reverseValueBytesPerMessage,
        f(g.valuesPerSec, 0),
        f(s.raw.valuesPerSec, 0),
        g.inFlightMessages,
        g.window,
        sum(g.rounds.map((r) => r.messages)),
        cpuText(g.rounds.map((r) => r.cpu)),
        cpuText(s.raw.rounds.map((r) => r.cpu)),
        g.rounds.map((r) => f(r.ratio, 3)).join(' '),
        Object.keys(g.problems).length === 0 ? 'none' : JSON.stringify(g.problems),
      ]),
    ),
  });
}

function smallMessagesTable(sections: readonly BleMtuSection[]): string {
  return formatTable({
    columns: [
      'MTU',
      'echo msg B',
      'values each way',
      'RTT median ms',
      'raw RTT ms',
      'handshake B ->',
      'handshake B <-',
      'handshake ms',
      'TCP ms',
      'echoes lost',
      'handshakes failed',
    ],
    rows: sections.map((s) => [
      s.latency.mtu,
      s.latency.keyhopRoutingMessageBytes,
      s.latency.keyhopValuesPerMessage,
      f(s.latency.keyhop.medianMs, 2),
      f(s.latency.raw.medianMs, 2),
      f(s.handshake.bleValueBytesPerHandshake.toPeripheral, 0),
      f(s.handshake.bleValueBytesPerHandshake.toCentral, 0),
      f(s.handshake.ble.medianMs, 1),
      f(s.handshake.tcp.medianMs, 1),
      s.latency.keyhopLost,
      `${s.handshake.bleFailed} (TCP ${s.handshake.tcpFailed})`,
    ]),
  });
}

/** The BLE rows of `npm run bench -- links`. */
export async function bleLinksBench(flags: BenchFlags): Promise<BleLinksReport> {
  const params: BleParams = {
    mtus: intListFlag(flags, 'ble-mtus', [23, 247]),
    sizes: intListFlag(flags, 'ble-sizes', [1024, 64 * 1024]),
    durationMs: intFlag(flags, 'ble-duration-ms', intFlag(flags, 'duration-ms', 5000)),
    warmupMs: intFlag(flags, 'ble-warmup-ms', intFlag(flags, 'warmup-ms', 1000)),
    rounds: intFlag(flags, 'ble-rounds', 3),
    inFlightBytes: intFlag(flags, 'ble-in-flight-bytes', 64 * 1024),
    window: intFlag(flags, 'ble-window', 32),
    rawWindow: intFlag(flags, 'ble-raw-window', 64),
    rawValueBytes: flags['ble-raw-value-bytes'] === undefined ? 0 : intFlag(flags, 'ble-raw-value-bytes', 1),
    latencyRounds: intFlag(flags, 'ble-latency-rounds', 200),
    latencyWarmup: 20,
    latencySize: intFlag(flags, 'ble-latency-size', 16),
    handshakes: intFlag(flags, 'ble-handshakes', 20),
    handshakeWarmup: 2,
  };
  const parameters = {
    ...params,
    setup:
      'btvirt LE controllers (one per stack) behind socat PTYs; noble central (router A, gateway) and bleno ' +
      'peripheral (router B, device) in this one process; keyhop: A --BleTransport--> B (sink, echo, secure-channel ' +
      'listener api); raw: a second controller pair, GattLink directly, no framing; TCP: A --> B on 127.0.0.1',
    units: {
      goodputBytesPerSec:
        'application payload bytes delivered per second (first to last arrival in the window)',
      rawValueBytesPerSec:
        'value bytes/s of back-to-back (mtu - 3)-byte writes without response, unframed link',
      ratio:
        'keyhop / comparison (goodput, efficiency: higher is better; latency, handshake: lower is better)',
      framingEfficiency: 'routing message bytes / GATT value bytes (air: + 7 B ATT/L2CAP header per value)',
      latency: 'sequential round trips, ms',
      handshake: 'secure-channel create() until both ends are open, sequential, ms',
    },
  };
  const skip = bleRigSkipReason() ?? (await stacksSkipReason());
  if (skip !== undefined) {
    return {
      sections: [],
      parameters,
      results: { skipped: skip, sections: [] },
      table: { columns: SUMMARY_COLUMNS, rows: [['ble', '', skip, '', '', '', '', '']] },
      notes: [skip],
    };
  }
  const sections: BleMtuSection[] = [];
  const btvirt = await ensureBtvirt();
  try {
    for (const maxMtu of params.mtus) sections.push(await measureMtu(maxMtu, params, btvirt.pid));
  } finally {
    await stopBtvirt();
  }
  const first = sections[0]?.goodput[0];
  return {
    sections,
    parameters,
    results: { sections },
    table: { columns: SUMMARY_COLUMNS, rows: summaryRows(sections) },
    notes: [
      `BLE: ${params.rounds} rounds of (raw window, then keyhop at each size), each window ${params.durationMs} ms ` +
        `measured after ${params.warmupMs} ms warm-up; goodput and raw figures are means over the rounds; ` +
        'ratio = keyhop ÷ comparison.',
      'Raw GATT: the same kind of virtual link without keyhop (a second controller pair), (mtu − 3)-byte writes ' +
        'without response. btvirt gives each controller one 192-byte LE ACL buffer, so the host sends one ACL packet ' +
        'and waits for its completion event: the link is stop-and-wait through two socat PTY bridges and btvirt, its ' +
        'rate set by wake-up latency, not by a radio or by CPU. A value over 185 bytes takes two ACL packets, so ' +
        "MTU 247's values go at about half MTU 23's value rate (--ble-raw-value-bytes=185 shows the difference).",
      "Ockam's BLE transport is fixed at ATT MTU 23 and writes one value every 100 ms: at most 180 B/s (18 bytes per " +
        '100 ms) whatever the link could carry; the ceiling above also charges its 8-byte length value per message. ' +
        'It caps a message at 1 KiB, so ' +
        (first
          ? `the ${first.framing.routingMessageBytes}-byte routing message of a ${sizeLabel(first.payloadBytes)} payload `
          : 'a 1 KiB payload ') +
        'and larger do not fit it at all: its efficiency is computed as if they did.',
      'Framing efficiency = routing message bytes / GATT value bytes for the messages of the goodput run (sender ' +
        "counters); credit B/msg = the receiver's CREDIT values back per message, not included.",
      `Goodput runs (cpu % = this process, of one CPU; (rig) = the link's two socat bridges + btvirt; ${cpus().length} CPUs):`,
      detailTable(sections),
      'Small messages: the echo request as a routing message and the values it takes; bytes per handshake each ' +
        'way (Close and credits included):',
      smallMessagesTable(sections),
      ...linkDownNotes(sections),
    ],
  };
}

function linkDownNotes(sections: readonly BleMtuSection[]): string[] {
  const out: string[] = [];
  for (const s of sections) {
    const total = sum(Object.values(s.linkDowns));
    if (total === 0) continue;
    const reasons = Object.entries(s.linkDowns)
      .map(([r, n]) => `${n} x ${r}`)
      .join('; ');
    out.push(
      `WARNING: the keyhop BLE link went down ${total} times at MTU ${s.mtu.central} (${reasons}); the figures ` +
        'above include the reconnections and what they lost.',
    );
  }
  return out;
}
