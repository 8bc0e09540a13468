/**
 * Soak (issue 13): an hour of a gateway's life compressed into a bounded run, in one process over
 * loopback TCP. Node B is the gateway (secure-channel listener, echo service, TCP outlet to a sink
 * server); node A0 is a client that lives for the whole run and carries the long-lived traffic
 * (portal streams checked byte for byte, sequence-numbered echo); `devices` client nodes churn:
 * each opens and closes secure channels all the time, keeps a short portal stream going, and is
 * killed at random (its TCP connections destroyed, its router shut down, no Close sent) and
 * started again with the same identity, as a device that loses power and reboots.
 *
 * Timeline: setup, warm-up, checkpoint C0 (churn paused, every device stopped cleanly, counts
 * settle, forced GC, snapshot), measured phase, checkpoint C1 (same), then the long-lived streams
 * end and are checked, and everything is shut down. Leaks are C1 − C0 (the same configuration at
 * both: only A0's traffic open); RSS is sampled every second (the curve) and fitted over the
 * measured phase.
 *
 * `npm run bench -- soak [--key=value…]`; every option has a default (DEFAULTS):
 *   --duration-s=240        warm-up + measured phase (checkpoints, setup and teardown come on top)
 *   --warmup-s=             default duration/8, between 5 and 30
 *   --devices=8 --churn-per-s=25 --channels-per-device=8 --channel-life-min-ms=200
 *   --channel-life-max-ms=3000 --echo-per-channel=2
 *   --kill-every-s=6        mean time between device kills (0: no kills); --restart-delay-ms=500
 *   --streams=4 --stream-kib-per-s=256                       A0's long-lived portal streams
 *   --device-stream-kib-per-s=32 (0: no device portals) --device-stream-min-kib=64 --device-stream-max-kib=256
 *   --echo-channels=4 --echo-per-s=100 --echo-window=16 --echo-bytes=256   A0's echo
 *   --fleet-devices=1000 --fleet-channels-per-device-hour=6  the fleet the compression refers to
 *   --settle-s=10 --seed=   (random choices: devices, kills, lifetimes, stream lengths)
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import {
  createHistogram,
  type IntervalHistogram,
  monitorEventLoopDelay,
  type RecordableHistogram,
} from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { OckamChannelIdentity } from '../runtime/channel/ockam-identity.js';
import type { SecureChannelEnd } from '../runtime/channel/secure-channel.js';
import { SecureChannels } from '../runtime/channel/secure-channels.js';
import { describeError } from '../runtime/errors.js';
import { systemClock } from '../runtime/identity/clock.js';
import { createIdentity } from '../runtime/identity/identity.js';
import { Address } from '../runtime/routing/address.js';
import type { Context } from '../runtime/routing/context.js';
import type { Message } from '../runtime/routing/message.js';
import { Route } from '../runtime/routing/route.js';
import { Router } from '../runtime/routing/router.js';
import { EchoService } from '../runtime/services/echo.js';
import { TcpInlet, type TcpInletOptions, TcpOutlet } from '../runtime/services/portal/index.js';
import { TcpTransport } from '../runtime/transports/tcp/tcp-transport.js';
import { nativeAeadUnavailable } from '../vaults/software/native-aead.js';
import { nodeCrypto } from '../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../vaults/software/software-vault.js';
import type { BenchFlags, Benchmark, BenchReport, BenchTable } from './harness.js';
import { gcFunction, type IdentityNode, identityNode, listenOn, openTcpHandles, round } from './support.js';

const HOST = '127.0.0.1';
const MiB = 2 ** 20;
const OUTLET = 'outlet';
const ECHO = 'echo';
/** Every wait of setup, checkpoints and teardown gives up after this (the run then fails or reports it). */
const WAIT_MS = 15_000;
/** A churn channel's handshake, a device echo reply. */
const CHANNEL_TIMEOUT_MS = 5_000;
const TICK_MS = 50;
const SAMPLE_MS = 1_000;
/** The event-loop delay histogram samples every this many ms; Node counts the interval in each value. */
const ELD_RESOLUTION_MS = 10;
/** Portal stream writes: at most this per socket write; no writing while this much is queued. */
const CHUNK = 16 * 1024;
const MAX_QUEUED = 256 * 1024;

const DEFAULTS = {
  durationS: 240,
  devices: 8,
  churnPerS: 25,
  channelsPerDevice: 8,
  channelLifeMinMs: 200,
  channelLifeMaxMs: 3_000,
  echoPerChannel: 2,
  killEveryS: 6,
  restartDelayMs: 500,
  streams: 4,
  streamKibPerS: 256,
  deviceStreamKibPerS: 32,
  deviceStreamMinKib: 64,
  deviceStreamMaxKib: 256,
  echoChannels: 4,
  echoPerS: 100,
  echoWindow: 16,
  echoBytes: 256,
  fleetDevices: 1_000,
  fleetChannelsPerDeviceHour: 6,
  settleS: 10,
} as const;

const TARGET = {
  description:
    'RSS flat (end within max(10%, 16 MiB) of the post-warm-up level, fitted slope over one compressed hour within the same), ' +
    'no leaked handles (C1 - C0 <= 0 for TCP handles, channel ends, portal connections, workers, flows; all TCP handles gone after teardown), ' +
    'nothing lost (echo: every answer once and in order; portal streams: bytes and SHA-256 equal at sender, sink and echo), ' +
    'no churn errors (every channel open, echo, stream and device start on a device that was not killed succeeded)',
  rssTolerance: { fraction: 0.1, minBytes: 16 * MiB },
} as const;

// ---------------------------------------------------------------------------------------------
// small helpers

function numFlag(flags: BenchFlags, name: string, fallback: number, min = 0): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got "${raw}"`);
  return n;
}

function withTimeout<T>(p: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`soak: ${what}: not done after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** mulberry32: a seeded generator, so a run's random choices can be repeated (--seed). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function portOf(hostPort: string): number {
  return Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
}

/** Active libuv resources of this process, counted by type (TCPSocketWrap, Timeout, …). */
function resourceCounts(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Least-squares slope of y over x (units of y per unit of x); 0 with fewer than two points. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i]!;
    sy += ys[i]!;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const mib = (bytes: number) => round(bytes / MiB, 2);
const ms = (ns: number) => round(ns / 1e6, 2);

/** Byte count and running SHA-256 of a byte stream. */
class Hasher {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private digestHex: string | undefined;

  update(b: Uint8Array): void {
    this.bytes += b.length;
    this.hash.update(b);
  }

  digest(): string {
    this.digestHex ??= this.hash.digest('hex');
    return this.digestHex;
  }
}

/** A stream names itself in its first bytes: 'SOAK', u16 length, key (hashed with the rest). */
function streamHeader(key: string): Buffer {
  const k = Buffer.from(key, 'utf8');
  const h = Buffer.alloc(6 + k.length);
  h.write('SOAK', 0, 'latin1');
  h.writeUInt16BE(k.length, 4);
  k.copy(h, 6);
  return h;
}

// ---------------------------------------------------------------------------------------------
// the sink: the outlet's target. It hashes what each connection sends and echoes it back.

interface SinkRecord {
  received: Hasher;
  ended: boolean;
}

class Sink {
  readonly sockets = new Set<Socket>();
  readonly records = new Map<string, SinkRecord>();
  /** Connections whose first bytes were no stream header. */
  badHeaders = 0;
  port = 0;
  private readonly server: Server;

  constructor() {
    this.server = createServer({ allowHalfOpen: true }, (s) => this.accept(s));
  }

  async start(): Promise<void> {
    this.port = await listenOn(this.server);
  }

  private accept(s: Socket): void {
    this.sockets.add(s);
    s.setNoDelay(true);
    s.on('error', () => undefined);
    let head: Buffer = Buffer.alloc(0);
    let record: SinkRecord | undefined;
    let key = '';
    let early: Hasher | undefined = new Hasher();
    s.on('data', (chunk: Buffer) => {
      if (record === undefined) {
        early!.update(chunk);
        head = Buffer.concat([head, chunk]);
        if (head.length >= 6) {
          const len = head.readUInt16BE(4);
          if (head.toString('latin1', 0, 4) !== 'SOAK') {
            this.badHeaders++;
            s.destroy();
            return;
          }
          if (head.length >= 6 + len) {
            key = head.toString('utf8', 6, 6 + len);
            record = { received: early!, ended: false };
            this.records.set(key, record);
            early = undefined;
          }
        }
      } else {
        record.received.update(chunk);
      }
      if (!s.write(chunk)) {
        s.pause();
        s.once('drain', () => s.resume());
      }
    });
    s.once('end', () => {
      if (record) record.ended = true;
      s.end();
    });
    s.once('close', () => {
      this.sockets.delete(s);
      // A stream cut off before its end (a killed device's) is never checked: forget it.
      if (record && !record.ended && this.records.get(key) === record) this.records.delete(key);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------
// a portal stream: a TCP client of an inlet writing at a steady rate, hashing both directions

class PortalStream {
  readonly sent = new Hasher();
  readonly echoed = new Hasher();
  readonly socket: Socket;
  readonly startedAt = performance.now();
  error: string | undefined;
  echoEnded = false;
  closed = false;
  /** Ticks on which the socket had MAX_QUEUED or more waiting (the portal was slower than the rate). */
  throttledTicks = 0;
  private connected = false;
  private writing = true;
  private allowance = 0;
  private poolOffset: number;
  private readonly stopped = deferred<void>();
  private readonly finished = deferred<void>();

  constructor(
    readonly key: string,
    port: number,
    private readonly bytesPerSec: number,
    /** Bytes to write (header included), then stop; undefined: until stop(). */
    private readonly total: number | undefined,
    private readonly pool: Buffer,
    sockets: Set<Socket>,
    offset: number,
  ) {
    this.poolOffset = offset % pool.length;
    const s = createConnection({ host: HOST, port, allowHalfOpen: true });
    this.socket = s;
    sockets.add(s);
    s.setNoDelay(true);
    s.once('connect', () => {
      this.connected = true;
      this.write(streamHeader(key));
    });
    s.on('data', (c: Buffer) => this.echoed.update(c));
    s.once('end', () => {
      this.echoEnded = true;
      this.finished.resolve();
    });
    s.on('error', (e) => {
      this.error ??= e.message;
    });
    s.once('close', () => {
      sockets.delete(s);
      this.closed = true;
      this.stop();
      this.finished.resolve();
    });
  }

  /** Resolves once writing stopped: total written, stop(), or the socket closed. */
  get writtenAll(): Promise<void> {
    return this.stopped.promise;
  }

  tick(dt: number): void {
    if (!this.connected || !this.writing) return;
    this.allowance = Math.min(this.allowance + this.bytesPerSec * dt, this.bytesPerSec);
    if (this.socket.writableLength >= MAX_QUEUED) {
      this.throttledTicks++;
      return;
    }
    while (this.allowance >= 1 && this.socket.writableLength < MAX_QUEUED) {
      let n = Math.min(Math.floor(this.allowance), CHUNK);
      if (this.total !== undefined) n = Math.min(n, this.total - this.sent.bytes);
      if (n <= 0) break;
      this.write(this.chunk(n));
      this.allowance -= n;
    }
    if (this.total !== undefined && this.sent.bytes >= this.total) this.stop();
  }

  private write(b: Buffer): void {
    this.sent.update(b);
    this.socket.write(b);
  }

  /** `n` bytes from the random pool, stamped with the stream offset (no two chunks alike). */
  private chunk(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let k = 0;
    while (k < n) {
      const m = Math.min(n - k, this.pool.length - this.poolOffset);
      this.pool.copy(out, k, this.poolOffset, this.poolOffset + m);
      k += m;
      this.poolOffset = (this.poolOffset + m) % this.pool.length;
    }
    if (n >= 8) out.writeDoubleBE(this.sent.bytes, 0);
    return out;
  }

  stop(): void {
    this.writing = false;
    this.stopped.resolve();
  }

  /** Stops writing, half-closes, and waits for the echo's end (all bytes came back) or the close. */
  async finish(timeoutMs = WAIT_MS): Promise<void> {
    this.stop();
    if (!this.closed) this.socket.end();
    try {
      await withTimeout(this.finished.promise, `portal stream ${this.key} end`, timeoutMs);
    } catch (e) {
      this.socket.destroy();
      throw e;
    }
  }

  destroy(): void {
    this.stop();
    this.socket.destroy();
  }
}

interface StreamCheck {
  key: string;
  sentBytes: number;
  sinkBytes: number | null;
  echoedBytes: number;
  sentSha256: string;
  sinkSha256: string | null;
  echoedSha256: string;
  sinkEnded: boolean;
  echoEnded: boolean;
  ok: boolean;
  seconds: number;
  kibPerSec: number;
  throttledTicks: number;
  error: string | null;
}

function checkStream(s: PortalStream, sink: Sink): StreamCheck {
  const r = sink.records.get(s.key);
  const sentSha256 = s.sent.digest();
  const echoedSha256 = s.echoed.digest();
  const sinkSha256 = r ? r.received.digest() : null;
  const ok =
    r?.ended === true &&
    s.echoEnded &&
    r.received.bytes === s.sent.bytes &&
    s.echoed.bytes === s.sent.bytes &&
    sinkSha256 === sentSha256 &&
    echoedSha256 === sentSha256;
  const seconds = (performance.now() - s.startedAt) / 1000;
  return {
    key: s.key,
    sentBytes: s.sent.bytes,
    sinkBytes: r ? r.received.bytes : null,
    echoedBytes: s.echoed.bytes,
    sentSha256,
    sinkSha256,
    echoedSha256,
    sinkEnded: r?.ended ?? false,
    echoEnded: s.echoEnded,
    ok,
    seconds: round(seconds, 1),
    kibPerSec: round(s.sent.bytes / 1024 / seconds, 1),
    throttledTicks: s.throttledTicks,
    error: s.error ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// sequence-numbered echo over one long-lived channel of A0

class EchoStream {
  sent = 0;
  received = 0;
  outOfOrder = 0;
  /** Answers for a sequence number already answered (or never sent). */
  duplicates = 0;
  corrupted = 0;
  sendErrors = 0;
  ctx!: Context;
  private last = -1;
  private inFlight = 0;
  private allowance = 0;
  private stopping = false;
  private readonly sentAt = new Map<number, number>();
  private idle: (() => void) | undefined;

  constructor(
    readonly index: number,
    private readonly route: Route,
    private readonly perSec: number,
    private readonly window: number,
    private readonly size: number,
    private readonly rtt: readonly RecordableHistogram[],
  ) {}

  /** Requests sent and not answered (after drain: lost). */
  get unanswered(): number {
    return this.sentAt.size;
  }

  tick(dt: number): void {
    if (this.stopping) return;
    this.allowance = Math.min(this.allowance + this.perSec * dt, this.perSec);
    while (this.allowance >= 1 && this.inFlight < this.window) {
      this.allowance--;
      this.sendOne();
    }
  }

  private sendOne(): void {
    const seq = this.sent++;
    const p = Buffer.allocUnsafe(this.size);
    p.writeUIntBE(seq, 0, 6);
    for (let i = 6; i < this.size; i++) p[i] = (seq + i) & 0xff;
    this.inFlight++;
    this.sentAt.set(seq, performance.now());
    this.ctx.send(this.route, p).catch(() => {
      this.sendErrors++;
      this.sentAt.delete(seq);
      this.release();
    });
  }

  onReply(m: Message): void {
    const b = Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
    if (b.length !== this.size) {
      this.corrupted++;
      return;
    }
    const seq = b.readUIntBE(0, 6);
    if (b[6] !== ((seq + 6) & 0xff) || b[this.size - 1] !== ((seq + this.size - 1) & 0xff)) {
      this.corrupted++;
      return;
    }
    const t = this.sentAt.get(seq);
    if (t === undefined) {
      this.duplicates++;
      return;
    }
    this.sentAt.delete(seq);
    if (seq < this.last) this.outOfOrder++;
    this.last = Math.max(this.last, seq);
    this.received++;
    const ns = Math.max(1, Math.round((performance.now() - t) * 1e6));
    for (const h of this.rtt) h.record(ns);
    this.release();
  }

  private release(): void {
    this.inFlight--;
    if (this.stopping && this.inFlight === 0) this.idle?.();
  }

  /** Stops sending; resolves once every request is answered, or after `timeoutMs` (the rest is lost). */
  async drain(timeoutMs: number): Promise<void> {
    this.stopping = true;
    if (this.inFlight === 0) return;
    await withTimeout(
      new Promise<void>((resolve) => {
        this.idle = resolve;
      }),
      `echo channel ${this.index}: ${this.inFlight} answers`,
      timeoutMs,
    ).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// nodes

async function makeIdentity(): Promise<OckamChannelIdentity> {
  const vault = SoftwareVault.inMemory({ provider: nodeCrypto });
  const verifier = new SoftwareVerifier(nodeCrypto);
  const local = await createIdentity({ vault, verifier, clock: systemClock, keyType: 'Ed25519' });
  return OckamChannelIdentity.create({
    local,
    secureChannelVault: vault,
    verifier,
    clock: systemClock,
    credentials: [],
    authorities: [],
  });
}

/** TcpInlet options for a portal through `ch` (its peer was checked when the channel opened). */
function inletOptions(outletRoute: Route): TcpInletOptions {
  return { bind: `${HOST}:0`, outletRoute };
}

/** Only the gateway may answer: every channel the soak opens authenticates it. */
function gatewayOnly(identifier: string): { trustPolicy: (p: { identifier: string }) => boolean } {
  return { trustPolicy: (p) => p.identifier === identifier };
}

interface Counters {
  channelOpenAttempts: number;
  channelsOpened: number;
  channelsClosed: number;
  /** Open when their device was killed: never closed, the gateway was not told. */
  channelsAbandoned: number;
  /** Handshakes under way when their device was killed. */
  handshakesInterrupted: number;
  channelOpenFailures: number;
  portalChannelsOpened: number;
  portalChannelsClosed: number;
  portalChannelsAbandoned: number;
  opensSkipped: number;
  kills: number;
  deviceStarts: number;
  deviceStartFailures: number;
  deviceEchoes: number;
  deviceEchoFailures: number;
  deviceEchoUnexpected: number;
  deviceStreamsStarted: number;
  deviceStreamsVerified: number;
  deviceStreamsMismatched: number;
  deviceStreamsAbandoned: number;
  deviceStreamErrors: number;
  gatewayDisconnects: number;
}

interface Incarnation {
  gen: number;
  router: Router;
  tcp: TcpTransport;
  channels: SecureChannels;
  app: Context | undefined;
  state: 'starting' | 'up' | 'stopping' | 'dead';
  abort: AbortController;
  /** Churn channels open (echoing or holding). */
  live: Set<SecureChannelEnd>;
  opening: number;
  pending: Map<string, { resolve(): void; reject(e: Error): void }>;
  tasks: Set<Promise<void>>;
  portalChannel: SecureChannelEnd | undefined;
  inlet: TcpInlet | undefined;
  stream: PortalStream | undefined;
  streamNo: number;
  nextTag: number;
}

/** A function, not a comparison: the state changes across awaits (a kill), which narrowing cannot see. */
function isDead(inc: Incarnation): boolean {
  return inc.state === 'dead';
}

/** One device slot: a client node with a fixed identity, started, killed and started again. */
class Device {
  current: Incarnation | undefined;
  restartAt: number | undefined;
  private gen = 0;
  private starting: Promise<void> | undefined;

  constructor(
    readonly slot: number,
    private readonly identity: OckamChannelIdentity,
    private readonly soak: Soak,
  ) {}

  get up(): boolean {
    return this.current?.state === 'up';
  }

  get openOrOpening(): number {
    const inc = this.current;
    return inc ? inc.live.size + inc.opening : 0;
  }

  start(): Promise<void> {
    this.restartAt = undefined;
    this.starting ??= this.startNow().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startNow(): Promise<void> {
    const soak = this.soak;
    const router = new Router({ name: `dev${this.slot}` });
    const tcp = TcpTransport.create(router);
    const channels = new SecureChannels(router, { identity: this.identity, provider: nodeCrypto });
    const inc: Incarnation = {
      gen: ++this.gen,
      router,
      tcp,
      channels,
      app: undefined,
      state: 'starting',
      abort: new AbortController(),
      live: new Set(),
      opening: 0,
      pending: new Map(),
      tasks: new Set(),
      portalChannel: undefined,
      inlet: undefined,
      stream: undefined,
      streamNo: 0,
      nextTag: 0,
    };
    soak.deviceRouters.add(router);
    this.current = inc;
    try {
      inc.app = await router.startWorker(Address.random('app_'), {
        handleMessage: (_ctx, m) => this.onReply(inc, m),
      });
      if (soak.p.deviceStreamBps > 0) {
        const ch = await channels.create(soak.bRoute, {
          timeoutMs: CHANNEL_TIMEOUT_MS,
          ...gatewayOnly(soak.bIdentifier),
        });
        soak.c.portalChannelsOpened++;
        inc.portalChannel = ch;
        inc.inlet = await TcpInlet.create(router, inletOptions(Route.of(ch.encryptor, OUTLET)));
      }
      soak.c.deviceStarts++;
      inc.state = 'up';
    } catch (e) {
      soak.c.deviceStartFailures++;
      soak.problem(`device ${this.slot} start: ${describeError(e)}`);
      inc.state = 'dead';
      this.current = undefined;
      if (inc.portalChannel?.state === 'open') {
        await withTimeout(inc.portalChannel.close(), `device ${this.slot} portal channel close`).catch(
          (err: unknown) => soak.failure(describeError(err)),
        );
        soak.c.portalChannelsClosed++;
      }
      await this.shutdownRouter(inc);
      if (soak.churning) this.restartAt = performance.now() + 1000;
      return;
    }
    if (inc.inlet) this.track(inc, this.streamLoop(inc, inc.inlet));
  }

  private track(inc: Incarnation, task: Promise<void>): void {
    inc.tasks.add(task);
    this.soak.allTasks.add(task);
    void task.finally(() => {
      inc.tasks.delete(task);
      this.soak.allTasks.delete(task);
    });
  }

  /** One portal stream after another, each checked at its end, while the device is up. */
  private async streamLoop(inc: Incarnation, inlet: TcpInlet): Promise<void> {
    const soak = this.soak;
    const p = soak.p;
    while (inc.state === 'up') {
      const kib =
        p.deviceStreamMinKib + Math.floor(soak.random() * (p.deviceStreamMaxKib - p.deviceStreamMinKib + 1));
      const s = new PortalStream(
        `d${this.slot}.${inc.gen}.${inc.streamNo++}`,
        portOf(inlet.address),
        p.deviceStreamBps,
        kib * 1024,
        soak.pool,
        soak.sockets,
        Math.floor(soak.random() * soak.pool.length),
      );
      inc.stream = s;
      soak.c.deviceStreamsStarted++;
      soak.portalStreams.add(s);
      try {
        await s.writtenAll;
        if (isDead(inc)) return;
        await s.finish();
        if (isDead(inc)) return;
        const check = checkStream(s, soak.sink);
        soak.sink.records.delete(s.key); // checked: the sink keeps only what is still to check
        if (check.ok) soak.c.deviceStreamsVerified++;
        else {
          soak.c.deviceStreamsMismatched++;
          soak.problem(`device stream ${s.key} mismatch: ${JSON.stringify(check)}`);
        }
      } catch (e) {
        if (isDead(inc)) return;
        soak.c.deviceStreamErrors++;
        soak.problem(`device stream ${s.key}: ${describeError(e)}`);
      } finally {
        soak.portalStreams.delete(s);
        if (inc.stream === s) inc.stream = undefined;
      }
    }
  }

  /** Opens one churn channel: handshake, a few echoes, a random hold, then a clean close. */
  spawnChurn(): void {
    const inc = this.current;
    if (inc?.state !== 'up') return;
    this.track(inc, this.churnOne(inc));
  }

  private async churnOne(inc: Incarnation): Promise<void> {
    const soak = this.soak;
    const p = soak.p;
    const signal = inc.abort.signal;
    let end: SecureChannelEnd | undefined;
    inc.opening++;
    soak.c.channelOpenAttempts++;
    try {
      end = await inc.channels.create(soak.bRoute, {
        timeoutMs: CHANNEL_TIMEOUT_MS,
        ...gatewayOnly(soak.bIdentifier),
      });
    } catch (e) {
      if (!isDead(inc)) {
        soak.c.channelOpenFailures++;
        soak.problem(`channel open: ${describeError(e)}`);
      }
      return;
    } finally {
      inc.opening--;
    }
    soak.c.channelsOpened++;
    // Opened after its device was killed (counted as an interrupted handshake then): nothing to do.
    if (isDead(inc)) return;
    inc.live.add(end);
    try {
      const tag = inc.nextTag++;
      for (let i = 0; i < p.echoPerChannel && !signal.aborted; i++) {
        await this.echoOnce(inc, end, tag, i);
        soak.c.deviceEchoes++;
      }
      const life = p.channelLifeMinMs + soak.random() * (p.channelLifeMaxMs - p.channelLifeMinMs);
      await sleep(life, undefined, { signal }).catch(() => undefined);
    } catch (e) {
      if (isDead(inc)) return;
      soak.c.deviceEchoFailures++;
      soak.problem(`device echo: ${describeError(e)}`);
    }
    if (isDead(inc)) return;
    inc.live.delete(end);
    try {
      await withTimeout(end.close(), 'churn channel close');
      soak.c.channelsClosed++;
    } catch (e) {
      if (!isDead(inc)) soak.problem(`channel close: ${describeError(e)}`);
    }
  }

  private echoOnce(inc: Incarnation, end: SecureChannelEnd, tag: number, seq: number): Promise<void> {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(tag, 0);
    payload.writeUInt32BE(seq, 4);
    const key = `${tag}.${seq}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        inc.pending.delete(key);
        reject(new Error(`device ${this.slot} echo ${key}: no answer within ${CHANNEL_TIMEOUT_MS} ms`));
      }, CHANNEL_TIMEOUT_MS);
      inc.pending.set(key, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      inc.app!.send(Route.of(end.encryptor, ECHO), payload).catch((e: unknown) => {
        const w = inc.pending.get(key);
        inc.pending.delete(key);
        w?.reject(new Error(describeError(e)));
      });
    });
  }

  private onReply(inc: Incarnation, m: Message): void {
    const b = m.payload;
    if (b.length !== 8) {
      this.soak.c.deviceEchoUnexpected++;
      return;
    }
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const key = `${v.getUint32(0)}.${v.getUint32(4)}`;
    const w = inc.pending.get(key);
    if (!w) {
      this.soak.c.deviceEchoUnexpected++;
      return;
    }
    inc.pending.delete(key);
    w.resolve();
  }

  /**
   * Power cut: the TCP connections are destroyed (nothing queued leaves, no Close for any channel,
   * no Disconnect for the portal), the router is shut down, and the device's own TCP client of
   * its inlet goes too. The gateway only sees the TCP connection drop.
   */
  async kill(): Promise<void> {
    const inc = this.current;
    if (inc?.state !== 'up') return;
    const soak = this.soak;
    inc.state = 'dead';
    this.current = undefined;
    soak.c.kills++;
    for (const e of inc.live) if (e.state === 'open') soak.c.channelsAbandoned++;
    soak.c.handshakesInterrupted += inc.opening;
    if (inc.portalChannel?.state === 'open') soak.c.portalChannelsAbandoned++;
    // The network first: whatever the device's workers do from here on cannot reach the gateway.
    for (const c of inc.tcp.connections()) c.close('device killed');
    if (inc.stream) {
      soak.c.deviceStreamsAbandoned++;
      inc.stream.destroy();
    }
    inc.abort.abort();
    for (const w of inc.pending.values()) w.reject(new Error('device killed'));
    inc.pending.clear();
    await this.shutdownRouter(inc);
    if (soak.churning) this.restartAt = performance.now() + soak.p.restartDelayMs;
  }

  private async shutdownRouter(inc: Incarnation): Promise<void> {
    try {
      await withTimeout(inc.router.shutdown(), `device ${this.slot} router shutdown`);
    } catch (e) {
      this.soak.failure(describeError(e));
    }
    this.soak.deviceRouters.delete(inc.router);
  }

  /** Clean stop: churn channels closed, the stream finished and checked, inlet and channel closed. */
  async drain(): Promise<void> {
    this.restartAt = undefined;
    if (this.starting) await this.starting;
    const inc = this.current;
    if (inc?.state !== 'up') return;
    const soak = this.soak;
    inc.state = 'stopping';
    inc.abort.abort();
    inc.stream?.stop();
    try {
      await withTimeout(
        Promise.allSettled([...inc.tasks]).then(() => undefined),
        `device ${this.slot} drain`,
      );
    } catch (e) {
      soak.failure(describeError(e));
    }
    try {
      await withTimeout(inc.inlet?.close() ?? Promise.resolve(), `device ${this.slot} inlet close`);
      if (inc.portalChannel?.state === 'open') {
        await withTimeout(inc.portalChannel.close(), `device ${this.slot} portal channel close`);
        soak.c.portalChannelsClosed++;
      }
    } catch (e) {
      soak.failure(describeError(e));
    }
    inc.state = 'dead';
    this.current = undefined;
    await this.shutdownRouter(inc);
  }
}

// ---------------------------------------------------------------------------------------------
// the run

interface Params {
  durationS: number;
  warmupS: number;
  measuredS: number;
  devices: number;
  churnPerS: number;
  channelsPerDevice: number;
  channelLifeMinMs: number;
  channelLifeMaxMs: number;
  echoPerChannel: number;
  killEveryS: number;
  restartDelayMs: number;
  streams: number;
  streamBps: number;
  deviceStreamBps: number;
  deviceStreamMinKib: number;
  deviceStreamMaxKib: number;
  echoChannels: number;
  echoPerS: number;
  echoWindow: number;
  echoBytes: number;
  fleetDevices: number;
  fleetChannelsPerDeviceHour: number;
  settleS: number;
  seed: number;
}

interface Snapshot {
  name: string;
  atS: number;
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
  tcpHandles: number;
  resources: Record<string, number>;
  b: {
    channelEnds: number;
    /** Of those, ends still in their handshake (B gives up on them after its 30 s handshake timeout). */
    handshakeEnds: number;
    tcpConnections: number;
    workers: number;
    flows: number;
    outletConnections: number;
  };
  a0: { channelEnds: number; workers: number; flows: number; inletConnections: number };
  sinkSockets: number;
  deviceRouters: number;
  /** Time the counts took to settle (or the settle limit, when they did not reach the expected ones). */
  settleSeconds: number;
  settled: boolean;
  /** The run's counters at this point (to attribute what leaked between two checkpoints). */
  counters: Counters;
}

/** The curve: one entry per second in every array. */
interface Curve {
  tS: number[];
  rssMiB: number[];
  heapUsedMiB: number[];
  heapTotalMiB: number[];
  externalMiB: number[];
  arrayBuffersMiB: number[];
  cpuPercent: number[];
  eventLoopP50Ms: number[];
  eventLoopP99Ms: number[];
  eventLoopMaxMs: number[];
  channelEndsB: number[];
  channelEndsA0: number[];
  channelEndsDevices: number[];
  devicesUp: number[];
  tcpConnectionsB: number[];
  tcpHandles: number[];
  workersB: number[];
  flowsB: number[];
  outletConnectionsB: number[];
  sinkSockets: number[];
  echoAnswersPerS: number[];
  echoRttP50Ms: number[];
  echoRttP99Ms: number[];
  portalKiBPerS: number[];
  channelsOpened: number[];
  kills: number[];
  resources: Record<string, number[]>;
}

class Soak {
  readonly c: Counters = {
    channelOpenAttempts: 0,
    channelsOpened: 0,
    channelsClosed: 0,
    channelsAbandoned: 0,
    handshakesInterrupted: 0,
    channelOpenFailures: 0,
    portalChannelsOpened: 0,
    portalChannelsClosed: 0,
    portalChannelsAbandoned: 0,
    opensSkipped: 0,
    kills: 0,
    deviceStarts: 0,
    deviceStartFailures: 0,
    deviceEchoes: 0,
    deviceEchoFailures: 0,
    deviceEchoUnexpected: 0,
    deviceStreamsStarted: 0,
    deviceStreamsVerified: 0,
    deviceStreamsMismatched: 0,
    deviceStreamsAbandoned: 0,
    deviceStreamErrors: 0,
    gatewayDisconnects: 0,
  };
  readonly random: () => number;
  readonly pool = randomBytes(MiB);
  readonly sink = new Sink();
  readonly sockets = new Set<Socket>();
  readonly deviceRouters = new Set<Router>();
  readonly allTasks = new Set<Promise<void>>();
  readonly portalStreams = new Set<PortalStream>();
  readonly devices: Device[] = [];
  readonly echoStreams: EchoStream[] = [];
  readonly stableStreams: PortalStream[] = [];
  /** Problems seen (first 50 kept, counted by kind); failures make the target NOT MET. */
  readonly problems: string[] = [];
  problemCount = 0;
  readonly failures: string[] = [];
  readonly curve: Curve;
  readonly phases: { name: string; startS: number; endS: number | null }[] = [];
  churning = false;
  bRoute = '';
  bIdentifier = '';
  private readonly routers: Router[] = [];
  private b: IdentityNode | undefined;
  private a0: IdentityNode | undefined;
  private outlet: TcpOutlet | undefined;
  private inlet: TcpInlet | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private sampler: NodeJS.Timeout | undefined;
  private readonly eld: IntervalHistogram = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  readonly rttInterval = createHistogram();
  readonly rttTotal = createHistogram();
  private t0 = performance.now();
  private lastTick = 0;
  private churnAllowance = 0;
  private nextKillAt = Number.POSITIVE_INFINITY;
  private lastCpu = process.cpuUsage();
  private lastSampleAt = 0;
  private lastEchoAnswers = 0;
  private lastPortalBytes = 0;
  tcpHandlesBefore = 0;

  constructor(readonly p: Params) {
    this.random = rng(p.seed);
    this.curve = {
      tS: [],
      rssMiB: [],
      heapUsedMiB: [],
      heapTotalMiB: [],
      externalMiB: [],
      arrayBuffersMiB: [],
      cpuPercent: [],
      eventLoopP50Ms: [],
      eventLoopP99Ms: [],
      eventLoopMaxMs: [],
      channelEndsB: [],
      channelEndsA0: [],
      channelEndsDevices: [],
      devicesUp: [],
      tcpConnectionsB: [],
      tcpHandles: [],
      workersB: [],
      flowsB: [],
      outletConnectionsB: [],
      sinkSockets: [],
      echoAnswersPerS: [],
      echoRttP50Ms: [],
      echoRttP99Ms: [],
      portalKiBPerS: [],
      channelsOpened: [],
      kills: [],
      resources: {},
    };
  }

  problem(what: string): void {
    this.problemCount++;
    if (this.problems.length < 50) this.problems.push(what);
  }

  failure(what: string): void {
    this.failures.push(what);
  }

  now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  phase(name: string): void {
    const at = round(this.now(), 1);
    const last = this.phases.at(-1);
    if (last && last.endS === null) last.endS = at;
    this.phases.push({ name, startS: at, endS: null });
  }

  // --- setup

  async setup(): Promise<void> {
    const p = this.p;
    this.tcpHandlesBefore = openTcpHandles();
    await this.sink.start();
    const b = await identityNode('gateway', this.routers);
    this.b = b;
    this.bIdentifier = b.identifier;
    b.tcp.on('disconnect', (e) => {
      if (e.direction === 'incoming') this.c.gatewayDisconnects++;
    });
    await b.channels.createListener('api', { expose: [ECHO, OUTLET] });
    await b.router.startWorker(ECHO, new EchoService());
    this.outlet = await TcpOutlet.create(b.router, { address: OUTLET, target: `${HOST}:${this.sink.port}` });
    const listener = await b.tcp.listen(`${HOST}:0`, { expose: ['api'] });
    this.bRoute = `1#${listener.address} => api`;

    const a0 = await identityNode('a0', this.routers);
    this.a0 = a0;
    for (let i = 0; i < p.echoChannels; i++) {
      const ch = await withTimeout(
        a0.channels.create(this.bRoute, gatewayOnly(this.bIdentifier)),
        'A0 echo channel',
      );
      const e = new EchoStream(i, Route.of(ch.encryptor, ECHO), p.echoPerS, p.echoWindow, p.echoBytes, [
        this.rttInterval,
        this.rttTotal,
      ]);
      e.ctx = await a0.router.startWorker(Address.random('echo_client_'), {
        handleMessage: (_ctx, m) => e.onReply(m),
      });
      this.echoStreams.push(e);
    }
    if (p.streams > 0) {
      const ch = await withTimeout(
        a0.channels.create(this.bRoute, gatewayOnly(this.bIdentifier)),
        'A0 portal channel',
      );
      this.inlet = await TcpInlet.create(a0.router, inletOptions(Route.of(ch.encryptor, OUTLET)));
      for (let i = 0; i < p.streams; i++) {
        const s = new PortalStream(
          `s${i}`,
          portOf(this.inlet.address),
          p.streamBps,
          undefined,
          this.pool,
          this.sockets,
          Math.floor(this.random() * this.pool.length),
        );
        this.stableStreams.push(s);
        this.portalStreams.add(s);
      }
    }
    for (let i = 0; i < p.devices; i++) this.devices.push(new Device(i, await makeIdentity(), this));
    this.eld.enable();
    this.t0 = performance.now();
    this.lastTick = performance.now();
    this.lastSampleAt = performance.now();
    this.lastCpu = process.cpuUsage();
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
  }

  // --- load

  private tick(): void {
    try {
      const now = performance.now();
      const dt = Math.min((now - this.lastTick) / 1000, 1);
      this.lastTick = now;
      for (const s of this.portalStreams) s.tick(dt);
      for (const e of this.echoStreams) e.tick(dt);
      if (!this.churning) return;
      const p = this.p;
      this.churnAllowance = Math.min(this.churnAllowance + p.churnPerS * dt, p.churnPerS);
      while (this.churnAllowance >= 1) {
        this.churnAllowance--;
        const free = this.devices.filter((d) => d.up && d.openOrOpening < p.channelsPerDevice);
        const d = free[Math.floor(this.random() * free.length)];
        if (d) d.spawnChurn();
        else this.c.opensSkipped++;
      }
      if (p.killEveryS > 0 && now >= this.nextKillAt) {
        this.nextKillAt = now + p.killEveryS * 1000 * (0.5 + this.random());
        const up = this.devices.filter((d) => d.up);
        const victim = up[Math.floor(this.random() * up.length)];
        if (victim) this.background(victim.kill());
      }
      for (const d of this.devices) {
        if (d.restartAt !== undefined && now >= d.restartAt && d.current === undefined) {
          this.background(d.start());
        }
      }
    } catch (e) {
      this.failure(`tick: ${describeError(e)}`);
    }
  }

  private background(task: Promise<void>): void {
    this.allTasks.add(task);
    void task.catch((e: unknown) => this.failure(describeError(e))).finally(() => this.allTasks.delete(task));
  }

  startChurn(): void {
    this.churning = true;
    this.churnAllowance = 0;
    const now = performance.now();
    this.nextKillAt = now + this.p.killEveryS * 1000 * (0.5 + this.random());
    for (const d of this.devices) d.restartAt = now;
  }

  async stopChurn(): Promise<void> {
    this.churning = false;
    this.nextKillAt = Number.POSITIVE_INFINITY;
    await withTimeout(
      Promise.all(this.devices.map((d) => d.drain())).then(() => undefined),
      'stopping every device',
      WAIT_MS * 2,
    );
  }

  // --- measuring

  private counts() {
    const b = this.b!;
    const a0 = this.a0!;
    return {
      b: {
        channelEnds: b.channels.list().length,
        handshakeEnds: b.channels.list().filter((e) => e.state === 'handshake').length,
        tcpConnections: b.tcp.connections().length,
        workers: b.router.workers().length,
        flows: b.router.flowControls.size,
        outletConnections: this.outlet?.connections().length ?? 0,
      },
      a0: {
        channelEnds: a0.channels.list().length,
        workers: a0.router.workers().length,
        flows: a0.router.flowControls.size,
        inletConnections: this.inlet?.connections().length ?? 0,
      },
      sinkSockets: this.sink.sockets.size,
      deviceRouters: this.deviceRouters.size,
    };
  }

  private sample(): void {
    try {
      const now = performance.now();
      const secs = (now - this.lastSampleAt) / 1000;
      this.lastSampleAt = now;
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage(this.lastCpu);
      this.lastCpu = process.cpuUsage();
      const k = this.counts();
      const res = resourceCounts();
      const cv = this.curve;
      const n = cv.tS.length;
      cv.tS.push(round(this.now(), 1));
      cv.rssMiB.push(mib(mem.rss));
      cv.heapUsedMiB.push(mib(mem.heapUsed));
      cv.heapTotalMiB.push(mib(mem.heapTotal));
      cv.externalMiB.push(mib(mem.external));
      cv.arrayBuffersMiB.push(mib(mem.arrayBuffers));
      cv.cpuPercent.push(round(((cpu.user + cpu.system) / 1e6 / secs) * 100, 1));
      const eld = this.eld;
      const late = (ns: number) => (eld.count > 0 ? Math.max(0, round(ns / 1e6 - ELD_RESOLUTION_MS, 2)) : 0);
      cv.eventLoopP50Ms.push(late(eld.percentile(50)));
      cv.eventLoopP99Ms.push(late(eld.percentile(99)));
      cv.eventLoopMaxMs.push(late(eld.max));
      eld.reset();
      cv.channelEndsB.push(k.b.channelEnds);
      cv.channelEndsA0.push(k.a0.channelEnds);
      cv.channelEndsDevices.push(
        this.devices.reduce((s, d) => s + (d.current?.channels.list().length ?? 0), 0),
      );
      cv.devicesUp.push(this.devices.filter((d) => d.up).length);
      cv.tcpConnectionsB.push(k.b.tcpConnections);
      cv.tcpHandles.push((res.TCPSocketWrap ?? 0) + (res.TCPServerWrap ?? 0));
      cv.workersB.push(k.b.workers);
      cv.flowsB.push(k.b.flows);
      cv.outletConnectionsB.push(k.b.outletConnections);
      cv.sinkSockets.push(k.sinkSockets);
      const answers = this.echoStreams.reduce((s, e) => s + e.received, 0);
      cv.echoAnswersPerS.push(round((answers - this.lastEchoAnswers) / secs, 1));
      this.lastEchoAnswers = answers;
      const rtt = this.rttInterval;
      cv.echoRttP50Ms.push(rtt.count > 0 ? ms(rtt.percentile(50)) : 0);
      cv.echoRttP99Ms.push(rtt.count > 0 ? ms(rtt.percentile(99)) : 0);
      rtt.reset();
      const portal = this.stableStreams.reduce((s, x) => s + x.echoed.bytes, 0);
      cv.portalKiBPerS.push(round((portal - this.lastPortalBytes) / 1024 / secs, 1));
      this.lastPortalBytes = portal;
      cv.channelsOpened.push(this.c.channelsOpened);
      cv.kills.push(this.c.kills);
      for (const type of Object.keys(res)) cv.resources[type] ??= new Array<number>(n).fill(0);
      for (const [type, list] of Object.entries(cv.resources)) list.push(res[type] ?? 0);
    } catch (e) {
      this.failure(`sample: ${describeError(e)}`);
    }
  }

  /**
   * Churn stopped and every device stopped cleanly; waits until the counts are the expected ones
   * (only A0's traffic open) or stop changing; forced GC; snapshot.
   */
  async checkpoint(name: string): Promise<Snapshot> {
    this.phase(`checkpoint ${name}`);
    await this.stopChurn();
    const p = this.p;
    const expected = JSON.stringify({
      channelEnds: p.echoChannels + (p.streams > 0 ? 1 : 0),
      tcpConnections: 1,
      outletConnections: p.streams,
    });
    const started = performance.now();
    let last = '';
    let sameSince = performance.now();
    let settled = false;
    while (performance.now() - started < p.settleS * 1000) {
      const k = this.counts();
      const key = JSON.stringify({
        channelEnds: k.b.channelEnds,
        tcpConnections: k.b.tcpConnections,
        outletConnections: k.b.outletConnections,
      });
      const all = JSON.stringify({ k, tcp: openTcpHandles() });
      if (key === expected && k.sinkSockets === p.streams && k.deviceRouters === 0) {
        settled = true;
        break;
      }
      if (all !== last) {
        last = all;
        sameSince = performance.now();
      } else if (performance.now() - sameSince > 2000) break;
      await sleep(100);
    }
    const settleSeconds = round((performance.now() - started) / 1000, 1);
    const gc = gcFunction();
    for (let i = 0; i < 3; i++) {
      await sleep(20);
      gc();
    }
    const mem = process.memoryUsage();
    const k = this.counts();
    const snap: Snapshot = {
      name,
      atS: round(this.now(), 1),
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      externalBytes: mem.external,
      arrayBuffersBytes: mem.arrayBuffers,
      tcpHandles: openTcpHandles(),
      resources: resourceCounts(),
      ...k,
      settleSeconds,
      settled,
      counters: { ...this.c },
    };
    return snap;
  }

  // --- the end

  async finishStable(): Promise<{
    streams: StreamCheck[];
    echo: ReturnType<Soak['echoResults']>;
    routerMetrics: Record<string, Router['metrics']>;
  }> {
    this.phase('final: long-lived streams end');
    await Promise.all(this.echoStreams.map((e) => e.drain(WAIT_MS)));
    const results = await Promise.all(
      this.stableStreams.map(async (s) => {
        try {
          await s.finish();
        } catch (e) {
          this.failure(describeError(e));
        }
        this.portalStreams.delete(s);
        return checkStream(s, this.sink);
      }),
    );
    const routerMetrics = Object.fromEntries(this.routers.map((r) => [r.name, structuredClone(r.metrics)]));
    return { streams: results, echo: this.echoResults(), routerMetrics };
  }

  echoResults() {
    const per = this.echoStreams.map((e) => ({
      channel: e.index,
      sent: e.sent,
      answered: e.received,
      lost: e.unanswered + e.sendErrors,
      sendErrors: e.sendErrors,
      duplicates: e.duplicates,
      outOfOrder: e.outOfOrder,
      corrupted: e.corrupted,
    }));
    const sum = (k: keyof (typeof per)[number]) => per.reduce((s, x) => s + x[k], 0);
    return {
      sent: sum('sent'),
      answered: sum('answered'),
      lost: sum('lost'),
      sendErrors: sum('sendErrors'),
      duplicates: sum('duplicates'),
      outOfOrder: sum('outOfOrder'),
      corrupted: sum('corrupted'),
      rttP50Ms: this.rttTotal.count > 0 ? ms(this.rttTotal.percentile(50)) : null,
      rttP99Ms: this.rttTotal.count > 0 ? ms(this.rttTotal.percentile(99)) : null,
      rttMaxMs: this.rttTotal.count > 0 ? ms(this.rttTotal.max) : null,
      perChannel: per,
    };
  }

  /** Stops timers, shuts every router down, closes the sink; safe to call more than once. */
  async teardown(): Promise<{ tcpHandlesAfter: number; leftTasks: number }> {
    this.phase('teardown');
    this.churning = false;
    clearInterval(this.ticker);
    clearInterval(this.sampler);
    this.ticker = undefined;
    this.sampler = undefined;
    this.eld.disable();
    for (const s of this.portalStreams) s.destroy();
    this.portalStreams.clear();
    const shut = async (r: Router) => {
      try {
        await withTimeout(r.shutdown(), `router ${r.name} shutdown`);
      } catch (e) {
        this.failure(describeError(e));
      }
    };
    await Promise.all([...this.deviceRouters].map(shut));
    this.deviceRouters.clear();
    try {
      await withTimeout(this.inlet?.close() ?? Promise.resolve(), 'A0 inlet close');
    } catch (e) {
      this.failure(describeError(e));
    }
    for (const r of this.routers) await shut(r);
    for (const s of this.sockets) s.destroy();
    try {
      await withTimeout(this.sink.close(), 'sink close');
    } catch (e) {
      this.failure(describeError(e));
    }
    // Tasks of killed devices end by their own timeouts (handshake, echo): at most CHANNEL_TIMEOUT_MS.
    await withTimeout(
      Promise.allSettled([...this.allTasks]).then(() => undefined),
      'device tasks',
      CHANNEL_TIMEOUT_MS * 2,
    ).catch((e: unknown) => this.failure(describeError(e)));
    const until = performance.now() + 3000;
    while (openTcpHandles() > this.tcpHandlesBefore && performance.now() < until) await sleep(20);
    const last = this.phases.at(-1);
    if (last && last.endS === null) last.endS = round(this.now(), 1);
    return { tcpHandlesAfter: openTcpHandles(), leftTasks: this.allTasks.size };
  }
}

// ---------------------------------------------------------------------------------------------
// runner

function diff(a: Snapshot, b: Snapshot) {
  const types = new Set([...Object.keys(a.resources), ...Object.keys(b.resources)]);
  const resources: Record<string, number> = {};
  for (const t of types) resources[t] = (b.resources[t] ?? 0) - (a.resources[t] ?? 0);
  return {
    tcpHandles: b.tcpHandles - a.tcpHandles,
    heapUsedBytes: b.heapUsedBytes - a.heapUsedBytes,
    rssBytes: b.rssBytes - a.rssBytes,
    arrayBuffersBytes: b.arrayBuffersBytes - a.arrayBuffersBytes,
    resources,
    b: {
      channelEnds: b.b.channelEnds - a.b.channelEnds,
      handshakeEnds: b.b.handshakeEnds - a.b.handshakeEnds,
      tcpConnections: b.b.tcpConnections - a.b.tcpConnections,
      workers: b.b.workers - a.b.workers,
      flows: b.b.flows - a.b.flows,
      outletConnections: b.b.outletConnections - a.b.outletConnections,
    },
    a0: {
      channelEnds: b.a0.channelEnds - a.a0.channelEnds,
      workers: b.a0.workers - a.a0.workers,
      flows: b.a0.flows - a.a0.flows,
      inletConnections: b.a0.inletConnections - a.a0.inletConnections,
    },
    sinkSockets: b.sinkSockets - a.sinkSockets,
  };
}

function params(flags: BenchFlags): Params {
  const durationS = numFlag(flags, 'duration-s', DEFAULTS.durationS, 10);
  const warmupS = numFlag(flags, 'warmup-s', Math.min(30, Math.max(5, Math.round(durationS / 8))), 1);
  if (warmupS >= durationS) throw new Error('--warmup-s must be shorter than --duration-s');
  const int = (name: string, fallback: number, min = 0) => {
    const n = numFlag(flags, name, fallback, min);
    if (!Number.isInteger(n)) throw new Error(`--${name} must be a whole number, got ${n}`);
    return n;
  };
  const p: Params = {
    durationS,
    warmupS,
    measuredS: durationS - warmupS,
    devices: int('devices', DEFAULTS.devices, 1),
    churnPerS: numFlag(flags, 'churn-per-s', DEFAULTS.churnPerS, 0.1),
    channelsPerDevice: int('channels-per-device', DEFAULTS.channelsPerDevice, 1),
    channelLifeMinMs: int('channel-life-min-ms', DEFAULTS.channelLifeMinMs),
    channelLifeMaxMs: int('channel-life-max-ms', DEFAULTS.channelLifeMaxMs),
    echoPerChannel: int('echo-per-channel', DEFAULTS.echoPerChannel),
    killEveryS: numFlag(flags, 'kill-every-s', DEFAULTS.killEveryS),
    restartDelayMs: int('restart-delay-ms', DEFAULTS.restartDelayMs),
    streams: int('streams', DEFAULTS.streams),
    streamBps: numFlag(flags, 'stream-kib-per-s', DEFAULTS.streamKibPerS, 1) * 1024,
    deviceStreamBps: numFlag(flags, 'device-stream-kib-per-s', DEFAULTS.deviceStreamKibPerS) * 1024,
    deviceStreamMinKib: int('device-stream-min-kib', DEFAULTS.deviceStreamMinKib, 1),
    deviceStreamMaxKib: int('device-stream-max-kib', DEFAULTS.deviceStreamMaxKib, 1),
    echoChannels: int('echo-channels', DEFAULTS.echoChannels),
    echoPerS: numFlag(flags, 'echo-per-s', DEFAULTS.echoPerS, 1),
    echoWindow: int('echo-window', DEFAULTS.echoWindow, 1),
    echoBytes: int('echo-bytes', DEFAULTS.echoBytes, 16),
    fleetDevices: int('fleet-devices', DEFAULTS.fleetDevices, 1),
    fleetChannelsPerDeviceHour: numFlag(
      flags,
      'fleet-channels-per-device-hour',
      DEFAULTS.fleetChannelsPerDeviceHour,
      0.001,
    ),
    settleS: numFlag(flags, 'settle-s', DEFAULTS.settleS, 1),
    seed: int('seed', Math.floor(Math.random() * 2 ** 31)),
  };
  if (p.channelLifeMaxMs < p.channelLifeMinMs)
    throw new Error('--channel-life-max-ms < --channel-life-min-ms');
  if (p.deviceStreamMaxKib < p.deviceStreamMinKib) throw new Error('--device-stream-max-kib < min');
  return p;
}

async function run(flags: BenchFlags): Promise<BenchReport> {
  const p = params(flags);
  const log = (line: string) => process.stderr.write(`soak: ${line}\n`);
  const loadBefore = loadavg();
  // The compression: a fleet of `fleetDevices` devices, each opening `fleetChannelsPerDeviceHour`
  // secure channels an hour to the gateway; the soak opens `churnPerS` a second.
  const fleetOpensPerS = (p.fleetDevices * p.fleetChannelsPerDeviceHour) / 3600;
  const compression = p.churnPerS / fleetOpensPerS;
  const compressedHourS = 3600 / compression;
  const comp = {
    factor: round(compression, 2),
    model:
      `a gateway serving ${p.fleetDevices} devices, each opening ${p.fleetChannelsPerDeviceHour} secure channels an hour ` +
      `(${round(fleetOpensPerS, 3)}/s); the soak opens ${p.churnPerS}/s, so one fleet hour takes ${round(compressedHourS, 1)} s here`,
    compressedHourSeconds: round(compressedHourS, 1),
    fleetHoursSimulated: round(p.durationS / compressedHourS, 3),
    killsPerFleetHour: p.killEveryS > 0 ? round(compressedHourS / p.killEveryS, 1) : 0,
    killsPerFleetHourMeaning:
      'device power cuts per simulated fleet hour (each kill takes down every channel, portal and stream of one device)',
  };
  log(
    `${p.durationS} s (${p.warmupS} s warm-up), ${p.devices} devices, ${p.churnPerS} channels/s, kill every ~${p.killEveryS} s, ` +
      `${p.streams} portal streams at ${p.streamBps / 1024} KiB/s, ${p.echoChannels} echo channels at ${p.echoPerS}/s; ` +
      `compression ${comp.factor}x (${comp.fleetHoursSimulated} fleet hours), seed ${p.seed}`,
  );

  const soak = new Soak(p);
  let c0: Snapshot | undefined;
  let c1: Snapshot | undefined;
  let stable: Awaited<ReturnType<Soak['finishStable']>> | undefined;
  let end: Awaited<ReturnType<Soak['teardown']>> | undefined;
  let measuredFrom = 0;
  let measuredTo = 0;
  const started = performance.now();
  try {
    await soak.setup();
    soak.phase('warm-up');
    soak.startChurn();
    log(`warm-up ${p.warmupS} s`);
    await sleep(p.warmupS * 1000);
    log('checkpoint C0');
    c0 = await soak.checkpoint('C0');
    soak.phase('measured');
    measuredFrom = soak.now();
    soak.startChurn();
    log(`measured ${p.measuredS} s`);
    const step = Math.max(10, Math.round(p.measuredS / 8));
    for (let left = p.measuredS; left > 0; left -= step) {
      await sleep(Math.min(step, left) * 1000);
      const cv = soak.curve;
      log(
        `t=${soak.now().toFixed(0)} s rss ${cv.rssMiB.at(-1)} MiB, heap ${cv.heapUsedMiB.at(-1)} MiB, ` +
          `B channel ends ${cv.channelEndsB.at(-1)}, opened ${soak.c.channelsOpened}, kills ${soak.c.kills}, ` +
          `cpu ${cv.cpuPercent.at(-1)}%`,
      );
    }
    measuredTo = soak.now();
    log('checkpoint C1');
    c1 = await soak.checkpoint('C1');
    stable = await soak.finishStable();
  } catch (e) {
    soak.failure(describeError(e));
  } finally {
    end = await soak.teardown();
  }
  if (!c0 || !c1 || !stable) {
    throw new Error(`soak did not complete: ${soak.failures.join('; ')}`);
  }
  const totalSeconds = (performance.now() - started) / 1000;
  const loadAfter = loadavg();

  // --- RSS over the measured phase
  const cv = soak.curve;
  const idx = cv.tS.flatMap((t, i) => (t >= measuredFrom && t <= measuredTo ? [i] : []));
  const xs = idx.map((i) => cv.tS[i]!);
  const rss = idx.map((i) => cv.rssMiB[i]!);
  const heap = idx.map((i) => cv.heapUsedMiB[i]!);
  const rssSlopePerS = slope(xs, rss);
  const heapSlopePerS = slope(xs, heap);
  const tenth = Math.max(3, Math.floor(idx.length / 10));
  const tolBytes = Math.max(TARGET.rssTolerance.fraction * c0.rssBytes, TARGET.rssTolerance.minBytes);
  const rssGrowth = c1.rssBytes - c0.rssBytes;
  const rssRisePerHour = rssSlopePerS * compressedHourS * MiB;
  const rssFlat = rssGrowth <= tolBytes && rssRisePerHour <= tolBytes;
  const rssSummary = {
    afterWarmupBytes: c0.rssBytes,
    endBytes: c1.rssBytes,
    /** Highest sample of the measured phase (maxOverRunBytes: of the whole run, warm-up included). */
    maxBytes: Math.round(Math.max(...rss) * MiB),
    maxOverRunBytes: Math.round(Math.max(...cv.rssMiB) * MiB),
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    growthBytes: rssGrowth,
    toleranceBytes: Math.round(tolBytes),
    loadedFirstTenthMiB: round(mean(rss.slice(0, tenth)), 2),
    loadedLastTenthMiB: round(mean(rss.slice(-tenth)), 2),
    slopeMiBPerS: round(rssSlopePerS, 5),
    slopeMiBPerCompressedHour: round(rssSlopePerS * compressedHourS, 2),
    heapUsedAfterGc: {
      c0Bytes: c0.heapUsedBytes,
      c1Bytes: c1.heapUsedBytes,
      growthBytes: c1.heapUsedBytes - c0.heapUsedBytes,
    },
    heapSlopeMiBPerCompressedHour: round(heapSlopePerS * compressedHourS, 2),
    flat: rssFlat,
  };

  // --- leaks
  const leaked = diff(c0, c1);
  const leakedKeyhop = {
    gatewayChannelEnds: leaked.b.channelEnds,
    gatewayTcpConnections: leaked.b.tcpConnections,
    gatewayWorkers: leaked.b.workers,
    gatewayFlows: leaked.b.flows,
    outletConnections: leaked.b.outletConnections,
    a0ChannelEnds: leaked.a0.channelEnds,
    a0Workers: leaked.a0.workers,
    a0Flows: leaked.a0.flows,
    a0InletConnections: leaked.a0.inletConnections,
    sinkSockets: leaked.sinkSockets,
    tcpHandles: leaked.tcpHandles,
    timers: leaked.resources.Timeout ?? 0,
  };
  const teardownLeakedTcp = Math.max(0, end.tcpHandlesAfter - soak.tcpHandlesBefore);
  // What the kills of the measured phase left behind, by construction: the gateway end of every
  // channel open on a killed device, and per cut portal stream the outlet's portal worker with its
  // target socket (two TCP handles here: the outlet's and the sink's side).
  const during = (k: keyof Counters) => c1.counters[k] - c0.counters[k];
  const abandonedMeasured = during('channelsAbandoned') + during('portalChannelsAbandoned');
  const cutMeasured = during('deviceStreamsAbandoned');
  const attribution = {
    killsMeasured: during('kills'),
    channelsAbandonedMeasured: abandonedMeasured,
    handshakesInterruptedMeasured: during('handshakesInterrupted'),
    streamsCutMeasured: cutMeasured,
    gatewayChannelEndsUnexplained: leaked.b.channelEnds - abandonedMeasured - leaked.b.handshakeEnds,
    gatewayHandshakeEnds: leaked.b.handshakeEnds,
    outletConnectionsUnexplained: leaked.b.outletConnections - cutMeasured,
    tcpHandlesUnexplained: leaked.tcpHandles - 2 * cutMeasured,
    gatewayWorkersUnexplained: leaked.b.workers - leaked.b.channelEnds - leaked.b.outletConnections,
    gatewayFlowsUnexplained: leaked.b.flows - leaked.b.channelEnds,
  };
  const noLeaks = Object.values(leakedKeyhop).every((n) => n <= 0) && teardownLeakedTcp === 0;

  // --- nothing lost
  const echo = stable.echo;
  const streamMismatches = stable.streams.filter((s) => !s.ok).length;
  const nothingLost =
    echo.lost === 0 &&
    echo.duplicates === 0 &&
    echo.outOfOrder === 0 &&
    echo.corrupted === 0 &&
    streamMismatches === 0 &&
    soak.c.deviceStreamsMismatched === 0;
  const churnErrors =
    soak.c.channelOpenFailures +
    soak.c.deviceStartFailures +
    soak.c.deviceEchoFailures +
    soak.c.deviceEchoUnexpected +
    soak.c.deviceStreamErrors;
  const met = rssFlat && noLeaks && nothingLost && churnErrors === 0 && soak.failures.length === 0;
  const target = {
    description: TARGET.description,
    rssFlat,
    noLeakedHandles: noLeaks,
    nothingLost,
    churnErrors,
    failures: soak.failures.length,
    met,
  };

  // --- table and notes
  const m = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
  const c = soak.c;
  const portalBytes = stable.streams.reduce((s, x) => s + x.sentBytes, 0);
  const eldMax = Math.max(0, ...cv.eventLoopMaxMs);
  const eldP99 = [...cv.eventLoopP99Ms].sort((a, b) => a - b);
  const table: BenchTable = {
    columns: ['measure', 'value'],
    rows: [
      ['run', `${p.warmupS} s warm-up + ${p.measuredS} s measured (${totalSeconds.toFixed(0)} s in all)`],
      ['compression', `${comp.factor}x: ${comp.fleetHoursSimulated} h of a ${p.fleetDevices}-device gateway`],
      ['channels opened / closed', `${c.channelsOpened} / ${c.channelsClosed}`],
      ['abandoned (device killed)', `${c.channelsAbandoned} open + ${c.handshakesInterrupted} in handshake`],
      ['devices killed / restarted', `${c.kills} / ${c.deviceStarts}`],
      [
        'churn errors',
        `${churnErrors} (opens ${c.channelOpenFailures}, device starts ${c.deviceStartFailures}, echoes ${c.deviceEchoFailures + c.deviceEchoUnexpected}, streams ${c.deviceStreamErrors})`,
      ],
      [
        'device portal streams',
        `${c.deviceStreamsVerified} verified, ${c.deviceStreamsAbandoned} cut by kills`,
      ],
      ['RSS after warm-up / max / end', `${m(c0.rssBytes)} / ${m(rssSummary.maxBytes)} / ${m(c1.rssBytes)}`],
      ['RSS slope', `${rssSummary.slopeMiBPerCompressedHour} MiB per compressed hour`],
      ['heap after GC C0 -> C1', `${m(c0.heapUsedBytes)} -> ${m(c1.heapUsedBytes)}`],
      ['gateway channel ends C0 -> C1', `${c0.b.channelEnds} -> ${c1.b.channelEnds}`],
      ['outlet connections C0 -> C1', `${c0.b.outletConnections} -> ${c1.b.outletConnections}`],
      ['TCP handles C0 -> C1', `${c0.tcpHandles} -> ${c1.tcpHandles}`],
      [
        'leaks not explained by kills',
        `channel ends ${attribution.gatewayChannelEndsUnexplained}, outlet ${attribution.outletConnectionsUnexplained}, TCP ${attribution.tcpHandlesUnexplained}, workers ${attribution.gatewayWorkersUnexplained}, flows ${attribution.gatewayFlowsUnexplained}`,
      ],
      ['TCP handles left after teardown', teardownLeakedTcp],
      [
        'echo sent / answered',
        `${echo.sent} / ${echo.answered} (lost ${echo.lost}, dup ${echo.duplicates}, out of order ${echo.outOfOrder})`,
      ],
      ['echo RTT p50 / p99', `${echo.rttP50Ms} / ${echo.rttP99Ms} ms`],
      [
        'portal streams',
        `${stable.streams.length - streamMismatches}/${stable.streams.length} exact, ${m(portalBytes)} each way`,
      ],
      ['event loop delay p99 (median s) / max', `${eldP99[eldP99.length >> 1] ?? 0} / ${eldMax} ms`],
    ],
  };
  const leakLines = Object.entries(leakedKeyhop)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} +${n}`);
  const notes = [
    `Compression: ${comp.model}; ` +
      (p.killEveryS > 0
        ? `a kill every ~${p.killEveryS} s = ${comp.killsPerFleetHour} device power cuts per fleet hour.`
        : 'no kills (--kill-every-s=0).'),
    `RSS: C0 ${m(c0.rssBytes)} -> C1 ${m(c1.rssBytes)} (tolerance ${m(tolBytes)}), fitted ${rssSummary.slopeMiBPerCompressedHour} MiB per compressed hour -> ${rssFlat ? 'flat' : 'NOT flat'}.`,
    ...(p.measuredS < compressedHourS / 2
      ? [
          `(The slope is extrapolated from ${p.measuredS} s measured to a ${round(compressedHourS, 0)} s compressed hour: short runs mostly see the heap settling; judge RSS on a full-length run.)`,
        ]
      : []),
    `Leaks C1 - C0: ${leakLines.length > 0 ? leakLines.join(', ') : 'none'}; after teardown ${teardownLeakedTcp} TCP handles left.`,
    `Measured phase: ${attribution.killsMeasured} kills abandoned ${abandonedMeasured} channels (${attribution.handshakesInterruptedMeasured} handshakes cut, ${attribution.gatewayHandshakeEnds} gateway ends still in handshake) and cut ${cutMeasured} portal streams;` +
      ` growth beyond what they explain (C1 - C0 minus one per abandoned channel / cut stream; negative = the gateway cleaned them up): ${attribution.gatewayChannelEndsUnexplained} gateway channel ends, ${attribution.outletConnectionsUnexplained} outlet connections, ${attribution.tcpHandlesUnexplained} TCP handles.`,
    ...(c.channelsAbandoned + c.portalChannelsAbandoned > 0
      ? [
          `Killed devices abandoned ${c.channelsAbandoned} churn channels and ${c.portalChannelsAbandoned} portal channels over the whole run (warm-up included);` +
            ' a gateway end that is still open at C1 counts as a leak above (keyhop closes them with their connection).',
        ]
      : []),
    `Target "${TARGET.description}": ${met ? 'MET' : 'NOT MET'} (RSS flat ${rssFlat}, no leaks ${noLeaks}, nothing lost ${nothingLost}, churn errors ${churnErrors}, failures ${soak.failures.length}).`,
    ...soak.failures.map((f) => `FAILURE: ${f}`),
    ...(soak.problemCount > 0
      ? [`${soak.problemCount} problems on churned devices (first: ${soak.problems[0]})`]
      : []),
  ];

  return {
    parameters: {
      host: HOST,
      ...p,
      streamKibPerS: p.streamBps / 1024,
      deviceStreamKibPerS: p.deviceStreamBps / 1024,
      compression: comp,
      nodes: {
        gateway:
          'B: secure-channel listener `api` (exposes echo and outlet), echo service, TCP outlet to the sink, TCP listener',
        a0: 'A0: lives for the whole run; echo channels (one worker each, sequence numbers) and one portal channel + TCP inlet for the long-lived streams',
        devices: `${p.devices} device slots, each a router + TCP + secure channels with a fixed identity; killed devices restart with the same identity after restartDelayMs`,
        sink: 'a TCP server: SHA-256 and byte count per connection (keyed by the stream header), echoes every byte back',
      },
      kill: 'TcpConnection.close() on every connection of the device (socket destroyed, nothing queued leaves), then Router.shutdown(); no channel Close, no portal Disconnect; the device-side TCP client of its inlet destroyed',
      churnChannel:
        'SecureChannels.create(route) with a 5 s handshake timeout, echoPerChannel echoes (each awaited), hold uniform channelLifeMinMs..channelLifeMaxMs, close() (Close to the gateway)',
      checkpoint:
        'churn stopped; every device drained (churn channels closed, its stream finished and checked, inlet and portal channel closed, router shut down); counts polled until they are the expected ones (only A0 traffic) or unchanged for 2 s (at most settleS); 3 forced GCs; snapshot',
      outletAuthenticated:
        "every channel (echo, portal) is opened with a trust policy that accepts only the gateway's identifier; inlets ride on those channels",
      nativeAead: nativeAeadUnavailable() ?? 'in use',
      loadAverage1m: { before: loadBefore[0], after: loadAfter[0] },
    },
    results: {
      phases: soak.phases,
      counters: soak.c,
      rss: rssSummary,
      checkpoints: { c0, c1 },
      leaked: {
        ...leaked,
        keyhop: leakedKeyhop,
        attribution,
        teardownTcpHandles: teardownLeakedTcp,
        tasksLeft: end.leftTasks,
      },
      echo,
      portalStreams: stable.streams,
      routerMetrics: stable.routerMetrics,
      eventLoop: {
        p99MedianMs: eldP99[eldP99.length >> 1] ?? 0,
        maxMs: eldMax,
      },
      problems: { count: soak.problemCount, first: soak.problems },
      failures: soak.failures,
      totalSeconds: round(totalSeconds, 1),
      curve: cv,
    },
    summary: { target, targetMet: met },
    table,
    notes,
  };
}

export const soakBenchmark: Benchmark = {
  description:
    'soak: an hour of gateway churn compressed (channels opened/closed, devices killed, portal streams, echo); RSS curve, leaks, losses',
  run,
};
