import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createSecureContext,
  createServer as createTlsServer,
  type SecureContext,
  type TLSSocket,
  type Server as TlsServer,
  connect as tlsConnect,
} from 'node:tls';
import { noise } from '@chainsafe/libp2p-noise';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { ConnectionEncrypter, Logger as Libp2pLogger, Upgrader } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import type { SecureChannelEnd } from '../runtime/channel/secure-channel.js';
import type { Context } from '../runtime/routing/context.js';
import { Route } from '../runtime/routing/route.js';
import type { Router } from '../runtime/routing/router.js';
import { EchoService } from '../runtime/services/echo.js';
import { TcpInlet, TcpOutlet } from '../runtime/services/portal/index.js';
import {
  type BenchFlags,
  type Benchmark,
  type BenchReport,
  type BenchTable,
  intFlag,
  intListFlag,
  RssSampler,
} from './harness.js';
import {
  closeSocket,
  fixed,
  framedEchoClient,
  gcFunction,
  type IdentityNode,
  identityNode,
  listenOn,
  measureRig,
  median,
  openTcpHandles,
  Pipeline,
  PlainFrameSplitter,
  type Rig,
  type RigSample,
  round,
  sizeLabel,
  waitForTcpHandles,
} from './support.js';
import { createTlsCredentials, type TlsCredentials } from './tls-certs.js';

const HOST = '127.0.0.1';
/** A reply or handshake that takes this long means something was lost: the run fails instead of hanging. */
const TIMEOUT_MS = 10_000;

const PARTS = ['handshake', 'throughput', 'oneway', 'memory', 'portal'] as const;

const DEFAULTS = {
  hsRounds: 5,
  hsWarmupMs: 300,
  hsDurationMs: 1200,
  sizes: [64, 1024, 16 * 1024],
  rounds: 5,
  window: 64,
  warmupMs: 400,
  durationMs: 1100,
  channels: 10_000,
  batch: 200,
  portalMib: 256,
  portalWarmupMib: 32,
  portalRounds: 3,
  onewaySizes: [64],
  onewayWindow: 256,
} as const;

const TARGETS = {
  handshakeVsTls: {
    description: 'keyhop handshakes/s >= 2.3x Node TLS 1.3 mutual-auth full handshakes/s (2x with margin)',
    minRatio: 2.3,
  },
  handshakeVsNoise: {
    description: 'keyhop handshakes/s >= 1.5x @chainsafe/libp2p-noise XX handshakes/s',
    minRatio: 1.5,
  },
  throughputVsTls: {
    description: 'keyhop secure channel MB/s >= 0.6x Node TLS 1.3 at 16 KiB',
    payloadBytes: 16 * 1024,
    minRatio: 0.6,
  },
  throughput1KiBVsTls: {
    description: 'keyhop secure channel MB/s >= 0.3x Node TLS 1.3 at 1 KiB',
    payloadBytes: 1024,
    minRatio: 0.3,
  },
  oneWay64: {
    description: 'keyhop 64 B messages one way on one channel >= 100,000/s (each its own AEAD record)',
    payloadBytes: 64,
    minPerSec: 100_000,
  },
  heapPerChannel: {
    description: 'heap per open channel (both ends) <= 6 KiB at 10,000 channels',
    maxBytes: 6 * 1024,
  },
  portalVsDirect: {
    description: 'portal MB/s >= 0.5x a direct TCP connection (256 MiB)',
    minRatio: 0.5,
  },
} as const;

const PORTAL_SETUPS = {
  direct: 'a node:net client writes to the sink directly over loopback TCP',
  portal:
    "the client writes to a keyhop TCP inlet on A; A -> secure channel over TCP -> B; B's TCP outlet " +
    'connects to the sink (inlet -> channel -> outlet, default portal tuning: 16 KiB payloads, 256 KiB window)',
} as const;
type PortalSetup = keyof typeof PORTAL_SETUPS;
const PORTAL_SETUP_NAMES = Object.keys(PORTAL_SETUPS) as PortalSetup[];

const HANDSHAKE_SETUPS = {
  keyhop:
    'keyhop Ockam XX secure channel (X25519, AES-256-GCM, SHA-256) with Ed25519 Ockam identities, node:crypto ' +
    'provider, over one TCP connection opened beforehand: SecureChannels.create([1#B, api]), counted once the ' +
    "initiator is open and the responder has verified the initiator's identity (its trust policy ran), then " +
    'close() (Close message to the peer), so no state piles up',
  tls:
    'node:tls TLS 1.3, mutual auth (P-256 ECDSA certificates from one CA; client and server both verify), a ' +
    'new TCP connection per handshake (connect included), no session offered (every handshake full, checked ' +
    'with isSessionReused()); counted once the client has secureConnect and the server secureConnection, then destroyed',
  'tls-resumed':
    'as tls, but the client offers the session ticket of an earlier connection (PSK resumption, no ' +
    'certificates exchanged): for reference only, not a target comparison',
  noise:
    '@chainsafe/libp2p-noise 17 XX (X25519, ChaChaPoly, SHA-256) with Ed25519 libp2p identities (each side ' +
    "signs its static key and verifies the peer's signature), over one TCP connection opened beforehand " +
    '(a MessageStream adapter per handshake on the same sockets), default crypto (node:crypto + WASM)',
  'tcp-connect':
    'plain TCP connect + accept + destroy on loopback, no security: the part of a tls handshake that keyhop and noise do not pay here',
} as const;
type HandshakeSetup = keyof typeof HANDSHAKE_SETUPS;
const HANDSHAKE_SETUP_NAMES = Object.keys(HANDSHAKE_SETUPS) as HandshakeSetup[];

const THROUGHPUT_SETUPS = {
  keyhop:
    'keyhop secure channel A -> B over TCP: a context on A sends to [channel encryptor, echo], B echoes ' +
    'through the channel; both routers and both channel ends in this process',
  tls:
    'node:tls TLS 1.3 (TLS_AES_256_GCM_SHA384, mutual auth) client and echo server, u32-BE length + payload ' +
    'frames, same window; no keyhop code',
} as const;
type ThroughputSetup = keyof typeof THROUGHPUT_SETUPS;
const THROUGHPUT_SETUP_NAMES = Object.keys(THROUGHPUT_SETUPS) as ThroughputSetup[];

// ---------------------------------------------------------------------------------------------
// shared helpers

/** Feeds what `socket` reads to `splitter`; a bad frame counts (`onBad`) and closes the socket. */
function splitFrames(socket: Socket, splitter: PlainFrameSplitter, onBad: () => void): void {
  socket.on('data', (chunk: Buffer) => {
    try {
      splitter.push(chunk);
    } catch {
      onBad();
      socket.destroy();
    }
  });
}

function withTimeout<T>(p: Promise<T>, what: string, ms = TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function sumProblems(list: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of list) for (const [k, n] of Object.entries(p)) out[k] = (out[k] ?? 0) + n;
  return out;
}

const hasProblems = (p: Record<string, number>) => Object.values(p).some((n) => n > 0);

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Hands out server-side events in order to whoever waits for them (one per client connection). */
class Arrivals<T> {
  private readonly ready: T[] = [];
  private readonly waiting: { resolve: (v: T) => void; reject: (e: Error) => void }[] = [];

  push(v: T): void {
    const w = this.waiting.shift();
    if (w) w.resolve(v);
    else this.ready.push(v);
  }

  fail(e: Error): void {
    const w = this.waiting.shift();
    w?.reject(e);
  }

  next(): Promise<T> {
    const v = this.ready.shift();
    if (v !== undefined) return Promise.resolve(v);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }
}

// ---------------------------------------------------------------------------------------------
// keyhop nodes

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

function routerProblems(routers: readonly Router[]): Record<string, number> {
  const out: Record<string, number> = {};
  let workerErrors = 0;
  for (const r of routers) {
    workerErrors += r.metrics.workerErrors;
    for (const [reason, n] of Object.entries(r.metrics.dropped)) {
      out[`dropped_${reason}`] = (out[`dropped_${reason}`] ?? 0) + n;
    }
  }
  out.workerErrors = workerErrors;
  return out;
}

function channelDrops(ends: readonly SecureChannelEnd[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of ends) {
    for (const [reason, n] of Object.entries(e.stats.dropped)) {
      out[`channel_${reason}`] = (out[`channel_${reason}`] ?? 0) + n;
    }
  }
  return out;
}

/**
 * A (initiator) and B (listener `api`, TCP listener exposing it), A already connected to B.
 * `onResponderVerified` runs each time B has verified an initiator's identity (B's trust policy).
 */
async function keyhopPair(
  routers: Router[],
  onResponderVerified: () => void = () => undefined,
  expose: string[] = [],
): Promise<{ a: IdentityNode; b: IdentityNode; route: string }> {
  const b = await identityNode('b', routers);
  await b.channels.createListener('api', {
    expose,
    // The benchmark opens hundreds of channels at once from one address and identity, which the
    // default per-source and per-peer limits (docs/security.md) are there to refuse.
    maxHandshakesPerSource: 1024,
    maxChannels: 100_000,
    maxChannelsPerPeer: 100_000,
    trustPolicy: () => {
      onResponderVerified();
      return true;
    },
  });
  const listener = await b.tcp.listen(`${HOST}:0`, { expose: ['api'] });
  const a = await identityNode('a', routers);
  await a.tcp.connect(listener.address);
  return { a, b, route: `1#${listener.address} => api` };
}

// ---------------------------------------------------------------------------------------------
// 1. handshakes

interface HandshakeRig {
  /** One complete, mutually verified handshake, then teardown of what it created. */
  once(): Promise<void>;
  problems(): Record<string, number>;
  close(): Promise<void>;
}

function keyhopHandshakeRig(): Promise<HandshakeRig> {
  return building(async (routers) => {
    const verified = new Arrivals<true>();
    const { a, b, route } = await keyhopPair(routers, () => verified.push(true));
    let wrongPeer = 0;
    return {
      async once() {
        const responderVerified = verified.next();
        const end = await a.channels.create(route);
        await withTimeout(responderVerified, 'keyhop responder verification');
        if (end.peer?.identifier !== b.identifier) wrongPeer++;
        await end.close();
      },
      problems() {
        return {
          wrongPeer,
          initiatorEndsLeft: a.channels.list().length,
          ...routerProblems(routers),
        };
      },
      async close() {
        // Wait (briefly) until B has processed the last Close.
        const until = Date.now() + 2000;
        while (b.channels.list().length > 0 && Date.now() < until) await sleep(5);
        const left = b.channels.list().length;
        for (const r of routers) await r.shutdown();
        if (left > 0) throw new Error(`${left} responder ends still open after their Close`);
      },
    };
  });
}

interface TlsServerSide {
  server: TlsServer;
  port: number;
  sockets: Set<TLSSocket>;
  secured: Arrivals<TLSSocket>;
  clientErrors: () => number;
}

async function tlsServer(creds: TlsCredentials, onSecure?: (s: TLSSocket) => void): Promise<TlsServerSide> {
  const sockets = new Set<TLSSocket>();
  const secured = new Arrivals<TLSSocket>();
  let clientErrors = 0;
  const server = createTlsServer({
    key: creds.server.keyPem,
    cert: creds.server.certPem,
    ca: creds.ca.certPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  });
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onSecure?.(s);
    secured.push(s);
  });
  server.on('tlsClientError', (e) => {
    clientErrors++;
    secured.fail(e);
  });
  const port = await listenOn(server);
  return { server, port, sockets, secured, clientErrors: () => clientErrors };
}

const clientContexts = new WeakMap<TlsCredentials, SecureContext>();

/**
 * A TLS client connection. The client's SecureContext (CA, certificate, key) is built once and
 * reused, as a real client would: rebuilding it per connection parses PEM every time and would
 * slow the baseline down.
 */
function tlsClient(creds: TlsCredentials, port: number, session?: Buffer): TLSSocket {
  let secureContext = clientContexts.get(creds);
  if (!secureContext) {
    secureContext = createSecureContext({
      ca: creds.ca.certPem,
      cert: creds.client.certPem,
      key: creds.client.keyPem,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
    });
    clientContexts.set(creds, secureContext);
  }
  return tlsConnect({
    host: HOST,
    port,
    secureContext,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ...(session ? { session } : {}),
  });
}

function secureConnected(s: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('secureConnect', () => {
      s.off('error', reject);
      resolve();
    });
    s.once('error', reject);
  });
}

async function tlsHandshakeRig(creds: TlsCredentials, resumed: boolean): Promise<HandshakeRig> {
  const side = await tlsServer(creds);
  let unauthorized = 0;
  let unexpectedResumption = 0;
  let notResumed = 0;
  let session: Buffer | undefined;
  const connectOnce = async (offer: Buffer | undefined): Promise<TLSSocket> => {
    const serverSide = side.secured.next();
    const s = tlsClient(creds, side.port, offer);
    s.on('session', (t: Buffer) => {
      session ??= t;
    });
    try {
      await withTimeout(secureConnected(s), 'TLS client handshake');
      const srv = await withTimeout(serverSide, 'TLS server handshake');
      if (!s.authorized || !srv.authorized) unauthorized++;
      if (offer === undefined && s.isSessionReused()) unexpectedResumption++;
      if (offer !== undefined && !s.isSessionReused()) notResumed++;
    } catch (e) {
      s.destroy();
      throw e;
    }
    return s;
  };
  if (resumed) {
    // One full handshake to obtain a ticket (TLS 1.3 tickets arrive after the handshake).
    const first = await connectOnce(undefined);
    const until = Date.now() + TIMEOUT_MS;
    while (session === undefined && Date.now() < until) await sleep(1);
    await closeSocket(first);
    if (session === undefined) throw new Error('TLS server issued no session ticket');
  }
  const offer = resumed ? session : undefined;
  return {
    async once() {
      const s = await connectOnce(offer);
      s.destroy();
    },
    problems: () => ({
      unauthorized,
      unexpectedResumption,
      notResumed,
      tlsClientErrors: side.clientErrors(),
    }),
    async close() {
      await Promise.all([...side.sockets].map(closeSocket));
      await closeServer(side.server);
    },
  };
}

async function tcpConnectRig(): Promise<HandshakeRig> {
  const accepted = new Arrivals<Socket>();
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    accepted.push(s);
  });
  const port = await listenOn(server);
  return {
    async once() {
      const serverSide = accepted.next();
      const s = createConnection({ host: HOST, port });
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          s.once('connect', () => {
            s.off('error', reject);
            resolve();
          });
          s.once('error', reject);
        }),
        'TCP connect',
      );
      await withTimeout(serverSide, 'TCP accept');
      s.destroy();
    },
    problems: () => ({}),
    async close() {
      await Promise.all([...sockets].map(closeSocket));
      await closeServer(server);
    },
  };
}

// --- libp2p-noise ----------------------------------------------------------------------------

function silentLibp2pLogger(): Libp2pLogger {
  const log = (() => undefined) as unknown as Libp2pLogger;
  log.error = () => undefined;
  log.trace = () => undefined;
  log.enabled = false;
  log.newScope = () => log;
  return log;
}

type SendData = Parameters<AbstractMessageStream['sendData']>[0];

/**
 * A libp2p MessageStream over a node:net socket, attached for one handshake only: `detach()`
 * lets the next handshake run over the same TCP connection with a fresh stream.
 */
class SocketMessageStream extends AbstractMessageStream {
  private readonly onSocketData = (chunk: Buffer) => this.onData(chunk);
  private readonly onSocketDrain = () => this.safeDispatchEvent('drain');

  constructor(
    private readonly socket: Socket,
    direction: 'inbound' | 'outbound',
    log: Libp2pLogger,
  ) {
    super({ log, direction });
    socket.on('data', this.onSocketData);
    socket.on('drain', this.onSocketDrain);
  }

  sendData(data: SendData): SendResult {
    let canSendMore = true;
    for (const chunk of data) canSendMore = this.socket.write(chunk);
    return { sentBytes: data.byteLength, canSendMore };
  }

  sendReset(): void {
    this.detach();
  }

  sendPause(): void {
    this.socket.pause();
  }

  sendResume(): void {
    this.socket.resume();
  }

  async close(): Promise<void> {
    this.detach();
  }

  detach(): void {
    this.socket.off('data', this.onSocketData);
    this.socket.off('drain', this.onSocketDrain);
  }
}

/**
 * libp2p 3 (@libp2p/utils stream-utils, abstract-message-stream) calls Promise.withResolvers, which
 * arrived in Node 22; on Node 20 the noise comparison needs this spec-equivalent stand-in. keyhop
 * code never calls it.
 */
function ensurePromiseWithResolvers(): boolean {
  const P = Promise as unknown as { withResolvers?: unknown };
  if (typeof P.withResolvers === 'function') return false;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value<T>() {
      let resolve!: (v: T | PromiseLike<T>) => void;
      let reject!: (e?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
  return true;
}

async function noiseEncrypter(log: Libp2pLogger) {
  const privateKey = await generateKeyPair('Ed25519');
  const peerId = peerIdFromPrivateKey(privateKey);
  const upgrader = { getStreamMuxers: () => new Map() } as unknown as Upgrader;
  const encrypter: ConnectionEncrypter = noise()({
    peerId,
    privateKey,
    logger: { forComponent: () => log },
    upgrader,
  });
  return { peerId, encrypter };
}

async function noiseHandshakeRig(): Promise<HandshakeRig> {
  ensurePromiseWithResolvers();
  const log = silentLibp2pLogger();
  const accepted = new Arrivals<Socket>();
  const server = createServer((s) => accepted.push(s));
  const port = await listenOn(server);
  const client = createConnection({ host: HOST, port });
  client.on('error', () => undefined);
  const serverSocket = await withTimeout(accepted.next(), 'TCP accept');
  serverSocket.on('error', () => undefined);
  client.setNoDelay(true);
  serverSocket.setNoDelay(true);
  const initiator = await noiseEncrypter(log);
  const responder = await noiseEncrypter(log);
  let wrongPeer = 0;
  const options = { skipStreamMuxerNegotiation: true };
  return {
    async once() {
      const out = new SocketMessageStream(client, 'outbound', log);
      const inb = new SocketMessageStream(serverSocket, 'inbound', log);
      try {
        const [o, i] = await withTimeout(
          Promise.all([
            initiator.encrypter.secureOutbound(out, options),
            responder.encrypter.secureInbound(inb, options),
          ]),
          'noise handshake',
        );
        if (!o.remotePeer.equals(responder.peerId) || !i.remotePeer.equals(initiator.peerId)) wrongPeer++;
      } finally {
        out.detach();
        inb.detach();
      }
    },
    problems: () => ({ wrongPeer }),
    async close() {
      await closeSocket(client);
      await closeSocket(serverSocket);
      await closeServer(server);
    },
  };
}

// --- handshake measurement -------------------------------------------------------------------

export interface HandshakeSample {
  handshakes: number;
  warmupHandshakes: number;
  seconds: number;
  perSec: number;
  cpuPercent: number;
  /** Process CPU time per handshake (both ends), microseconds. */
  cpuUsPerHandshake: number;
  rssPeakBytes: number;
  problems: Record<string, number>;
  leakedTcpHandles: number;
}

async function measureHandshakes(
  setup: HandshakeSetup,
  creds: TlsCredentials,
  warmupMs: number,
  durationMs: number,
  rss: RssSampler,
): Promise<HandshakeSample> {
  const handlesBefore = openTcpHandles();
  const rig = await (setup === 'keyhop'
    ? keyhopHandshakeRig()
    : setup === 'tls'
      ? tlsHandshakeRig(creds, false)
      : setup === 'tls-resumed'
        ? tlsHandshakeRig(creds, true)
        : setup === 'noise'
          ? noiseHandshakeRig()
          : tcpConnectRig());
  rss.reset();
  let warmup = 0;
  let count = 0;
  let seconds = 0;
  let cpuUs = 0;
  try {
    const warmEnd = performance.now() + warmupMs;
    while (performance.now() < warmEnd) {
      await rig.once();
      warmup++;
    }
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const end = t0 + durationMs;
    let now = t0;
    while (now < end) {
      await rig.once();
      count++;
      now = performance.now();
    }
    const cpu = process.cpuUsage(cpu0);
    seconds = (now - t0) / 1000;
    cpuUs = cpu.user + cpu.system;
  } catch (e) {
    await rig.close().catch(() => undefined);
    throw e;
  }
  const rssPeakBytes = rss.reset();
  const problems = rig.problems();
  await rig.close();
  const leakedTcpHandles = Math.max(0, (await waitForTcpHandles(handlesBefore)) - handlesBefore);
  (globalThis as { gc?: () => void }).gc?.();
  return {
    handshakes: count,
    warmupHandshakes: warmup,
    seconds,
    perSec: count / seconds,
    cpuPercent: (cpuUs / 1e6 / seconds) * 100,
    cpuUsPerHandshake: count > 0 ? cpuUs / count : 0,
    rssPeakBytes,
    problems,
    leakedTcpHandles,
  };
}

export interface HandshakeRow {
  setup: HandshakeSetup;
  /** Median over the rounds. */
  perSec: number;
  perSecMin: number;
  perSecMax: number;
  cpuUsPerHandshake: number;
  /** Median over rounds of keyhop handshakes/s / this setup's, same round. */
  keyhopRatio: number | null;
  /** This setup's CPU us per handshake / keyhop's. */
  keyhopCpuRatio: number | null;
  rssPeakBytes: number;
  problems: Record<string, number>;
  leakedTcpHandles: number;
  samples: HandshakeSample[];
}

function summarizeHandshakes(
  setup: HandshakeSetup,
  samples: HandshakeSample[],
  keyhop: HandshakeSample[] | undefined,
): HandshakeRow {
  const rates = samples.map((s) => s.perSec);
  const cpu = median(samples.map((s) => s.cpuUsPerHandshake));
  const paired = keyhop
    ? samples.flatMap((s, i) => {
        const k = keyhop[i];
        return k && s.perSec > 0 ? [k.perSec / s.perSec] : [];
      })
    : [];
  const keyhopCpu = keyhop ? median(keyhop.map((s) => s.cpuUsPerHandshake)) : 0;
  return {
    setup,
    perSec: median(rates),
    perSecMin: Math.min(...rates),
    perSecMax: Math.max(...rates),
    cpuUsPerHandshake: cpu,
    keyhopRatio: paired.length > 0 ? median(paired) : null,
    keyhopCpuRatio: keyhop && keyhopCpu > 0 ? cpu / keyhopCpu : null,
    rssPeakBytes: Math.max(...samples.map((s) => s.rssPeakBytes)),
    problems: sumProblems(samples.map((s) => s.problems)),
    leakedTcpHandles: samples.reduce((n, s) => n + s.leakedTcpHandles, 0),
    samples,
  };
}

// ---------------------------------------------------------------------------------------------
// 2. throughput

function keyhopThroughputRig(size: number): Promise<Rig> {
  return building(async (routers) => {
    const { a, b, route } = await keyhopPair(routers, undefined, ['echo']);
    await b.router.startWorker('echo', new EchoService());
    const channel = await a.channels.create(route);
    const client: Context = await a.router.context();
    const to = Route.of(channel.encryptor, 'echo');
    const payload = new Uint8Array(randomBytes(size));
    let badReplies = 0;
    let sendErrors = 0;
    let loopError: unknown;
    let loop: Promise<void> = Promise.resolve();
    const pipeline = new Pipeline(() => {
      client.send(to, payload).catch(() => {
        sendErrors++;
        pipeline.failedOne();
      });
    });
    return {
      pipeline,
      start(window) {
        loop = (async () => {
          while (!pipeline.finished) {
            const reply = await client.receive(TIMEOUT_MS);
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
      problems: () => ({
        badReplies,
        sendErrors,
        receiveFailed: loopError ? 1 : 0,
        ...routerProblems(routers),
        ...channelDrops([...a.channels.list(), ...b.channels.list()]),
      }),
      async close() {
        await loop;
        await client.stop();
        for (const r of routers) await r.shutdown();
      },
    };
  });
}

async function tlsThroughputRig(size: number, creds: TlsCredentials): Promise<Rig> {
  let protocolErrors = 0;
  const side = await tlsServer(creds, (socket) => {
    socket.setNoDelay(true);
    const splitter = new PlainFrameSplitter((frame) => {
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(frame.length, 0);
      socket.cork();
      socket.write(header);
      socket.write(frame);
      socket.uncork();
    });
    splitFrames(socket, splitter, () => protocolErrors++);
  });
  const serverSide = side.secured.next();
  const client = tlsClient(creds, side.port);
  try {
    await withTimeout(secureConnected(client), 'TLS client handshake');
    await withTimeout(serverSide, 'TLS server handshake');
  } catch (e) {
    client.destroy();
    await closeServer(side.server);
    throw e;
  }
  return framedEchoClient(
    client,
    size,
    () => protocolErrors,
    async () => {
      await Promise.all([...side.sockets].map(closeSocket));
      await closeServer(side.server);
    },
  );
}

export type ThroughputSample = RigSample;

async function measureThroughput(
  setup: ThroughputSetup,
  size: number,
  creds: TlsCredentials,
  p: { window: number; warmupMs: number; durationMs: number },
  rss: RssSampler,
): Promise<ThroughputSample> {
  const handlesBefore = openTcpHandles();
  const rig = await (setup === 'keyhop' ? keyhopThroughputRig(size) : tlsThroughputRig(size, creds));
  return measureRig(rig, p, rss, handlesBefore, TIMEOUT_MS);
}

export interface ThroughputRow {
  setup: ThroughputSetup;
  payloadBytes: number;
  msgsPerSec: number;
  msgsPerSecMin: number;
  msgsPerSecMax: number;
  /** Payload bytes per second in one direction / 10^6, from the median msgs/s. */
  mbPerSec: number;
  /** Median over rounds of this setup's msgs/s / TLS msgs/s (same round and size). */
  ratioToTls: number | null;
  cpuUsPerRoundTrip: number;
  /** TLS CPU us per round trip / this setup's. */
  cpuRatioToTls: number | null;
  cpuPercent: number;
  rssPeakBytes: number;
  problems: Record<string, number>;
  leakedTcpHandles: number;
  samples: ThroughputSample[];
}

function summarizeThroughput(
  setup: ThroughputSetup,
  size: number,
  samples: ThroughputSample[],
  tls: ThroughputSample[] | undefined,
): ThroughputRow {
  const rates = samples.map((s) => s.msgsPerSec);
  const msgsPerSec = median(rates);
  const cpu = median(samples.map((s) => s.cpuUsPerRoundTrip));
  const paired = tls
    ? samples.flatMap((s, i) => {
        const t = tls[i];
        return t && t.msgsPerSec > 0 ? [s.msgsPerSec / t.msgsPerSec] : [];
      })
    : [];
  const tlsCpu = tls ? median(tls.map((s) => s.cpuUsPerRoundTrip)) : 0;
  return {
    setup,
    payloadBytes: size,
    msgsPerSec,
    msgsPerSecMin: Math.min(...rates),
    msgsPerSecMax: Math.max(...rates),
    mbPerSec: (msgsPerSec * size) / 1e6,
    ratioToTls: paired.length > 0 ? median(paired) : null,
    cpuUsPerRoundTrip: cpu,
    cpuRatioToTls: tls && cpu > 0 ? tlsCpu / cpu : null,
    cpuPercent: median(samples.map((s) => s.cpuPercent)),
    rssPeakBytes: Math.max(...samples.map((s) => s.rssPeakBytes)),
    problems: sumProblems(samples.map((s) => s.problems)),
    leakedTcpHandles: samples.reduce((n, s) => n + s.leakedTcpHandles, 0),
    samples,
  };
}

// ---------------------------------------------------------------------------------------------
// 2b. one way: messages/s on one channel, each message its own record

const ONEWAY_SETUPS = {
  keyhop:
    'a context on A sends to [channel encryptor, sink] over TCP; a worker on B counts; at most `window` ' +
    'messages sent and not yet counted (the sender waits for the count to fall to half)',
  tls:
    'node:tls TLS 1.3 client writes u32-BE length + payload frames, the server counts whole frames; the ' +
    'same window (TLS packs the frames of one write burst into shared records: for reference, not a target)',
} as const;
type OneWaySetup = keyof typeof ONEWAY_SETUPS;
const ONEWAY_SETUP_NAMES = Object.keys(ONEWAY_SETUPS) as OneWaySetup[];

interface OneWayRig {
  send(): void;
  readonly sent: number;
  readonly received: number;
  /** Resolves once fewer than `below` messages are outstanding. */
  drained(below: number): Promise<void>;
  problems(): Record<string, number>;
  close(): Promise<void>;
}

/** Counts arrivals and wakes the sender when the outstanding count falls below its mark. */
class ArrivalCounter {
  received = 0;
  sent = 0;
  private waiter: { below: number; resolve: () => void } | undefined;

  arrived(n = 1): void {
    this.received += n;
    const w = this.waiter;
    if (w && this.sent - this.received < w.below) {
      this.waiter = undefined;
      w.resolve();
    }
  }

  drained(below: number): Promise<void> {
    if (this.sent - this.received < below) return Promise.resolve();
    return withTimeout(
      new Promise((resolve) => {
        this.waiter = { below, resolve };
      }),
      'one-way messages to arrive',
    );
  }
}

function keyhopOneWayRig(size: number): Promise<OneWayRig> {
  return building(async (routers) => {
    const counter = new ArrivalCounter();
    let wrongSize = 0;
    const { a, b, route } = await keyhopPair(routers, undefined, ['sink']);
    await b.router.startWorker('sink', {
      handleMessage: (_ctx, m) => {
        if (m.payload.length !== size) wrongSize++;
        counter.arrived();
      },
    });
    const channel = await a.channels.create(route);
    const client: Context = await a.router.context();
    const to = Route.of(channel.encryptor, 'sink');
    const payload = new Uint8Array(randomBytes(size));
    let sendErrors = 0;
    return {
      send() {
        counter.sent++;
        client.send(to, payload).catch(() => sendErrors++);
      },
      get sent() {
        return counter.sent;
      },
      get received() {
        return counter.received;
      },
      drained: (below) => counter.drained(below),
      problems: () => ({
        wrongSize,
        sendErrors,
        ...routerProblems(routers),
        ...channelDrops([...a.channels.list(), ...b.channels.list()]),
      }),
      async close() {
        await client.stop();
        for (const r of routers) await r.shutdown();
      },
    };
  });
}

async function tlsOneWayRig(size: number, creds: TlsCredentials): Promise<OneWayRig> {
  const counter = new ArrivalCounter();
  let protocolErrors = 0;
  const side = await tlsServer(creds, (socket) => {
    const splitter = new PlainFrameSplitter(() => counter.arrived());
    splitFrames(socket, splitter, () => protocolErrors++);
  });
  const serverSide = side.secured.next();
  const client = tlsClient(creds, side.port);
  client.on('error', () => undefined);
  await withTimeout(secureConnected(client), 'TLS client handshake');
  await withTimeout(serverSide, 'TLS server handshake');
  client.setNoDelay(true);
  const frame = Buffer.allocUnsafe(4 + size);
  frame.writeUInt32BE(size, 0);
  randomBytes(size).copy(frame, 4);
  return {
    send() {
      counter.sent++;
      client.write(frame);
    },
    get sent() {
      return counter.sent;
    },
    get received() {
      return counter.received;
    },
    drained: (below) => counter.drained(below),
    problems: () => ({ protocolErrors }),
    async close() {
      client.destroy();
      await Promise.all([...side.sockets].map(closeSocket));
      await closeServer(side.server);
    },
  };
}

export interface OneWaySample {
  messages: number;
  seconds: number;
  msgsPerSec: number;
  cpuUsPerMessage: number;
  problems: Record<string, number>;
}

async function measureOneWay(
  setup: OneWaySetup,
  size: number,
  creds: TlsCredentials,
  p: { window: number; warmupMs: number; durationMs: number },
): Promise<OneWaySample> {
  const rig = await (setup === 'keyhop' ? keyhopOneWayRig(size) : tlsOneWayRig(size, creds));
  try {
    const runFor = async (ms: number) => {
      const until = performance.now() + ms;
      while (performance.now() < until) {
        // Top the window up, then wait for half of it to arrive (one event per half window).
        while (rig.received + p.window > rig.sent) rig.send();
        await rig.drained(Math.ceil(p.window / 2));
      }
    };
    await runFor(p.warmupMs);
    const from = rig.received;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await runFor(p.durationMs);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const messages = rig.received - from;
    return {
      messages,
      seconds,
      msgsPerSec: messages / seconds,
      cpuUsPerMessage: (cpu.user + cpu.system) / messages,
      problems: rig.problems(),
    };
  } finally {
    await rig.drained(1).catch(() => undefined);
    await rig.close();
  }
}

// ---------------------------------------------------------------------------------------------
// 3. heap per open channel

export interface MemoryResult {
  channels: number;
  batch: number;
  /** Channels opened and closed before the baseline, so code and caches are warm. */
  warmupChannels: number;
  heapUsedBeforeBytes: number;
  heapUsedAfterBytes: number;
  heapDeltaBytes: number;
  /** heap delta / channels (each channel = one initiator end on A + one responder end on B). */
  heapPerChannelBytes: number;
  heapPerEndBytes: number;
  externalDeltaBytes: number;
  arrayBuffersDeltaBytes: number;
  rssDeltaBytes: number;
  /** Wall-clock time to open them all, and the resulting rate with `batch` creates in flight. */
  openSeconds: number;
  concurrentHandshakesPerSec: number;
  openInitiatorEnds: number;
  openResponderEnds: number;
  shutdownSeconds: number;
  problems: Record<string, number>;
}

async function measureMemory(channels: number, batch: number): Promise<MemoryResult> {
  const gc = gcFunction();
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      await sleep(20);
      gc();
    }
    return process.memoryUsage();
  };
  return building(async (routers) => {
    const { a, b, route } = await keyhopPair(routers);
    const openBatch = async (n: number) => {
      const opened = await Promise.all(
        Array.from({ length: n }, () => withTimeout(a.channels.create(route), 'channel open')),
      );
      return opened;
    };
    // Warm-up: one batch opened and closed.
    const warm = await openBatch(batch);
    for (const e of warm) await e.close();
    const until = Date.now() + 2000;
    while (b.channels.list().length > 0 && Date.now() < until) await sleep(5);
    warm.length = 0;

    const before = await settle();
    const t0 = performance.now();
    let left = channels;
    while (left > 0) {
      const n = Math.min(batch, left);
      await openBatch(n);
      left -= n;
    }
    // Every responder end must be open too (the last message 3s may still be in flight).
    const openUntil = Date.now() + TIMEOUT_MS;
    const responderOpen = () => b.channels.list().filter((e) => e.state === 'open').length;
    while (responderOpen() < channels && Date.now() < openUntil) await sleep(5);
    const openSeconds = (performance.now() - t0) / 1000;
    const after = await settle();
    const openInitiatorEnds = a.channels.list().filter((e) => e.state === 'open').length;
    const openResponderEnds = responderOpen();
    const problems = {
      ...routerProblems(routers),
      missingInitiatorEnds: channels - openInitiatorEnds,
      missingResponderEnds: channels - openResponderEnds,
    };
    const s0 = performance.now();
    for (const r of routers) await r.shutdown();
    const shutdownSeconds = (performance.now() - s0) / 1000;
    const heapDelta = after.heapUsed - before.heapUsed;
    return {
      channels,
      batch,
      warmupChannels: batch,
      heapUsedBeforeBytes: before.heapUsed,
      heapUsedAfterBytes: after.heapUsed,
      heapDeltaBytes: heapDelta,
      heapPerChannelBytes: heapDelta / channels,
      heapPerEndBytes: heapDelta / (2 * channels),
      externalDeltaBytes: after.external - before.external,
      arrayBuffersDeltaBytes: after.arrayBuffers - before.arrayBuffers,
      rssDeltaBytes: after.rss - before.rss,
      openSeconds,
      concurrentHandshakesPerSec: channels / openSeconds,
      openInitiatorEnds,
      openResponderEnds,
      shutdownSeconds,
      problems,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// 4. portal bulk transfer

/** 16 distinct 64 KiB blocks: the writer cycles through them, so writing allocates nothing. */
const BLOCKS = Array.from({ length: 16 }, () => randomBytes(64 * 1024));

/** A TCP server that counts what each connection sends until its end. */
async function sink(): Promise<{
  port: number;
  next(): Promise<{ bytes: number; endAt: number }>;
  close(): Promise<void>;
}> {
  const done = new Arrivals<{ bytes: number; endAt: number }>();
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    s.once('end', () => {
      done.push({ bytes, endAt: performance.now() });
      s.end();
    });
  });
  const port = await listenOn(server);
  return {
    port,
    next: () => done.next(),
    async close() {
      await Promise.all([...sockets].map(closeSocket));
      await closeServer(server);
    },
  };
}

/** Connects to `port`, writes `total` bytes respecting back-pressure, ends; resolves when written. */
async function pump(port: number, total: number): Promise<{ startAt: number; socket: Socket }> {
  const s = createConnection({ host: HOST, port });
  s.on('error', () => undefined);
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      s.once('connect', () => resolve());
      s.once('error', reject);
    }),
    'connect',
  );
  s.setNoDelay(true);
  const startAt = performance.now();
  let written = 0;
  let i = 0;
  await new Promise<void>((resolve, reject) => {
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
  return { startAt, socket: s };
}

export interface PortalSample {
  bytes: number;
  received: number;
  seconds: number;
  mbPerSec: number;
  cpuUsPerMiB: number;
  problems: Record<string, number>;
  leakedTcpHandles: number;
}

async function transfer(port: number, total: number, target: Awaited<ReturnType<typeof sink>>) {
  const arrived = target.next();
  const cpu0 = process.cpuUsage();
  const { startAt, socket } = await pump(port, total);
  const { bytes, endAt } = await withTimeout(arrived, 'bulk transfer', 120_000);
  const cpu = process.cpuUsage(cpu0);
  await closeSocket(socket);
  return { received: bytes, seconds: (endAt - startAt) / 1000, cpuUs: cpu.user + cpu.system };
}

async function measurePortal(
  setup: PortalSetup,
  totalBytes: number,
  warmupBytes: number,
): Promise<PortalSample> {
  const handlesBefore = openTcpHandles();
  const target = await sink();
  const routers: Router[] = [];
  const problems: Record<string, number> = {};
  let sample: { received: number; seconds: number; cpuUs: number };
  try {
    let port = target.port;
    if (setup === 'portal') {
      const { a, b, route } = await keyhopPair(routers, undefined, ['outlet']);
      const outlet = await TcpOutlet.create(b.router, { target: `${HOST}:${target.port}` });
      const channel = await a.channels.create(route);
      const inlet = await TcpInlet.create(a.router, {
        bind: `${HOST}:0`,
        outletRoute: Route.of(channel.encryptor, outlet.address),
      });
      port = Number(inlet.address.slice(inlet.address.lastIndexOf(':') + 1));
    }
    const warm = await transfer(port, warmupBytes, target);
    if (warm.received !== warmupBytes) problems.warmupBytesMissing = warmupBytes - warm.received;
    sample = await transfer(port, totalBytes, target);
    if (sample.received !== totalBytes) problems.bytesMissing = totalBytes - sample.received;
    Object.assign(problems, routerProblems(routers));
  } finally {
    for (const r of routers) await r.shutdown();
    await target.close();
  }
  const leakedTcpHandles = Math.max(0, (await waitForTcpHandles(handlesBefore)) - handlesBefore);
  (globalThis as { gc?: () => void }).gc?.();
  return {
    bytes: totalBytes,
    received: sample.received,
    seconds: sample.seconds,
    mbPerSec: sample.received / sample.seconds / 1e6,
    cpuUsPerMiB: sample.cpuUs / (sample.received / 2 ** 20),
    problems,
    leakedTcpHandles,
  };
}

export interface PortalRow {
  setup: PortalSetup;
  mbPerSec: number;
  mbPerSecMin: number;
  mbPerSecMax: number;
  /** Median over rounds of this setup's MB/s / direct MB/s, same round. */
  ratioToDirect: number | null;
  cpuUsPerMiB: number;
  problems: Record<string, number>;
  leakedTcpHandles: number;
  samples: PortalSample[];
}

function summarizePortal(
  setup: PortalSetup,
  samples: PortalSample[],
  direct: PortalSample[] | undefined,
): PortalRow {
  const rates = samples.map((s) => s.mbPerSec);
  const paired = direct
    ? samples.flatMap((s, i) => {
        const d = direct[i];
        return d && d.mbPerSec > 0 ? [s.mbPerSec / d.mbPerSec] : [];
      })
    : [];
  return {
    setup,
    mbPerSec: median(rates),
    mbPerSecMin: Math.min(...rates),
    mbPerSecMax: Math.max(...rates),
    ratioToDirect: paired.length > 0 ? median(paired) : null,
    cpuUsPerMiB: median(samples.map((s) => s.cpuUsPerMiB)),
    problems: sumProblems(samples.map((s) => s.problems)),
    leakedTcpHandles: samples.reduce((n, s) => n + s.leakedTcpHandles, 0),
    samples,
  };
}

// ---------------------------------------------------------------------------------------------
// runner

function listFlag<T extends string>(flags: BenchFlags, name: string, all: readonly T[]): T[] {
  const raw = flags[name];
  if (raw === undefined) return [...all];
  return raw.split(',').map((s) => {
    const v = s.trim();
    if (!(all as readonly string[]).includes(v)) throw new Error(`--${name}: unknown "${v}" (${all})`);
    return v as T;
  });
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(2)} KiB`;
}

async function run(flags: BenchFlags): Promise<BenchReport> {
  const parts = listFlag(flags, 'parts', PARTS);
  const hsSetups = listFlag(flags, 'hs-setups', HANDSHAKE_SETUP_NAMES);
  const tpSetups = listFlag(flags, 'setups', THROUGHPUT_SETUP_NAMES);
  const hsRounds = intFlag(flags, 'hs-rounds', DEFAULTS.hsRounds);
  const hsWarmupMs = intFlag(flags, 'hs-warmup-ms', DEFAULTS.hsWarmupMs);
  const hsDurationMs = intFlag(flags, 'hs-duration-ms', DEFAULTS.hsDurationMs);
  const sizes = intListFlag(flags, 'sizes', DEFAULTS.sizes);
  const rounds = intFlag(flags, 'rounds', DEFAULTS.rounds);
  const window = intFlag(flags, 'window', DEFAULTS.window);
  const warmupMs = intFlag(flags, 'warmup-ms', DEFAULTS.warmupMs);
  const durationMs = intFlag(flags, 'duration-ms', DEFAULTS.durationMs);
  const channelCount = intFlag(flags, 'channels', DEFAULTS.channels);
  const batch = intFlag(flags, 'batch', DEFAULTS.batch);
  const portalMib = intFlag(flags, 'portal-mib', DEFAULTS.portalMib);
  const portalWarmupMib = intFlag(flags, 'portal-warmup-mib', DEFAULTS.portalWarmupMib);
  const portalRounds = intFlag(flags, 'portal-rounds', DEFAULTS.portalRounds);
  const onewaySizes = intListFlag(flags, 'oneway-sizes', DEFAULTS.onewaySizes);
  const onewayWindow = intFlag(flags, 'oneway-window', DEFAULTS.onewayWindow);

  const loadBefore = loadavg();
  const started = performance.now();
  const creds = createTlsCredentials();
  const rss = new RssSampler();
  rss.start();
  const log = (line: string) => process.stderr.write(`channel: ${line}\n`);

  const hsSamples = new Map<HandshakeSetup, HandshakeSample[]>();
  const tpSamples = new Map<string, ThroughputSample[]>();
  const tpKey = (setup: ThroughputSetup, size: number) => `${setup}/${size}`;
  const owSamples = new Map<string, OneWaySample[]>();
  const owKey = (setup: OneWaySetup, size: number) => `${setup}/${size}`;
  let memory: MemoryResult | undefined;
  const portalSamples = new Map<PortalSetup, PortalSample[]>();
  try {
    if (parts.includes('handshake')) {
      for (let pass = 1; pass <= hsRounds; pass++) {
        for (const setup of hsSetups) {
          log(`handshakes round ${pass}/${hsRounds} ${setup}`);
          const s = await measureHandshakes(setup, creds, hsWarmupMs, hsDurationMs, rss);
          hsSamples.set(setup, [...(hsSamples.get(setup) ?? []), s]);
        }
      }
    }
    if (parts.includes('throughput')) {
      for (let pass = 1; pass <= rounds; pass++) {
        for (const size of sizes) {
          for (const setup of tpSetups) {
            log(`throughput round ${pass}/${rounds} ${setup} ${sizeLabel(size)}`);
            const s = await measureThroughput(setup, size, creds, { window, warmupMs, durationMs }, rss);
            tpSamples.set(tpKey(setup, size), [...(tpSamples.get(tpKey(setup, size)) ?? []), s]);
          }
        }
      }
    }
    if (parts.includes('oneway')) {
      for (let pass = 1; pass <= rounds; pass++) {
        for (const size of onewaySizes) {
          for (const setup of ONEWAY_SETUP_NAMES) {
            log(`one way round ${pass}/${rounds} ${setup} ${sizeLabel(size)}`);
            const w = { window: onewayWindow, warmupMs, durationMs };
            const sample = await measureOneWay(setup, size, creds, w);
            owSamples.set(owKey(setup, size), [...(owSamples.get(owKey(setup, size)) ?? []), sample]);
          }
        }
      }
    }
    if (parts.includes('memory')) {
      log(`memory: opening ${channelCount} channels, ${batch} at a time`);
      memory = await measureMemory(channelCount, batch);
    }
    if (parts.includes('portal')) {
      for (let pass = 1; pass <= portalRounds; pass++) {
        for (const setup of PORTAL_SETUP_NAMES) {
          log(`portal round ${pass}/${portalRounds} ${setup} ${portalMib} MiB`);
          const sample = await measurePortal(setup, portalMib * 2 ** 20, portalWarmupMib * 2 ** 20);
          portalSamples.set(setup, [...(portalSamples.get(setup) ?? []), sample]);
        }
      }
    }
  } finally {
    rss.stop();
  }
  const loadAfter = loadavg();
  const totalSeconds = (performance.now() - started) / 1000;

  // --- summaries
  const hsRows = parts.includes('handshake')
    ? hsSetups.map((s) => summarizeHandshakes(s, hsSamples.get(s) ?? [], hsSamples.get('keyhop')))
    : [];
  const tpRows: ThroughputRow[] = [];
  for (const size of parts.includes('throughput') ? sizes : []) {
    for (const setup of tpSetups) {
      tpRows.push(
        summarizeThroughput(
          setup,
          size,
          tpSamples.get(tpKey(setup, size)) ?? [],
          tpSamples.get(tpKey('tls', size)),
        ),
      );
    }
  }
  const portalRows = parts.includes('portal')
    ? PORTAL_SETUP_NAMES.map((s) =>
        summarizePortal(s, portalSamples.get(s) ?? [], portalSamples.get('direct')),
      )
    : [];
  const portalRatio = portalRows.find((r) => r.setup === 'portal')?.ratioToDirect ?? null;
  const owRows = (parts.includes('oneway') ? onewaySizes : []).flatMap((size) =>
    ONEWAY_SETUP_NAMES.map((setup) => {
      const samples = owSamples.get(owKey(setup, size)) ?? [];
      const rates = samples.map((x) => x.msgsPerSec);
      return {
        setup,
        payloadBytes: size,
        msgsPerSec: round(median(rates), 1),
        msgsPerSecMin: round(Math.min(...rates), 1),
        msgsPerSecMax: round(Math.max(...rates), 1),
        cpuUsPerMessage: round(median(samples.map((x) => x.cpuUsPerMessage)), 2),
        problems: sumProblems(samples.map((x) => x.problems)),
        samples: samples.map((x) => ({
          ...x,
          seconds: round(x.seconds, 4),
          msgsPerSec: round(x.msgsPerSec, 1),
          cpuUsPerMessage: round(x.cpuUsPerMessage, 2),
        })),
      };
    }),
  );
  const oneWay64 =
    owRows.find((r) => r.setup === 'keyhop' && r.payloadBytes === TARGETS.oneWay64.payloadBytes)
      ?.msgsPerSec ?? null;
  const tp1KiB =
    tpRows.find((r) => r.setup === 'keyhop' && r.payloadBytes === TARGETS.throughput1KiBVsTls.payloadBytes)
      ?.ratioToTls ?? null;
  const hsRow = (s: HandshakeSetup) => hsRows.find((r) => r.setup === s);
  const vsTls = hsRow('tls')?.keyhopRatio ?? null;
  const vsNoise = hsRow('noise')?.keyhopRatio ?? null;
  const tpTarget = tpRows.find(
    (r) => r.setup === 'keyhop' && r.payloadBytes === TARGETS.throughputVsTls.payloadBytes,
  );
  const tpRatio = tpTarget?.ratioToTls ?? null;
  const heapPerChannel = memory?.heapPerChannelBytes ?? null;
  const verdict = (v: number | null, ok: (v: number) => boolean) => (v === null ? null : ok(v));
  const targets = {
    handshakeVsTls: {
      ...TARGETS.handshakeVsTls,
      measuredRatio: fixed(vsTls, 3),
      cpuRatio: fixed(hsRow('tls')?.keyhopCpuRatio ?? null, 3),
      met: verdict(vsTls, (v) => v >= TARGETS.handshakeVsTls.minRatio),
    },
    handshakeVsNoise: {
      ...TARGETS.handshakeVsNoise,
      measuredRatio: fixed(vsNoise, 3),
      cpuRatio: fixed(hsRow('noise')?.keyhopCpuRatio ?? null, 3),
      met: verdict(vsNoise, (v) => v >= TARGETS.handshakeVsNoise.minRatio),
    },
    throughputVsTls: {
      ...TARGETS.throughputVsTls,
      measuredRatio: fixed(tpRatio, 3),
      cpuRatio: fixed(tpTarget?.cpuRatioToTls ?? null, 3),
      met: verdict(tpRatio, (v) => v >= TARGETS.throughputVsTls.minRatio),
    },
    throughput1KiBVsTls: {
      ...TARGETS.throughput1KiBVsTls,
      measuredRatio: fixed(tp1KiB, 3),
      met: verdict(tp1KiB, (v) => v >= TARGETS.throughput1KiBVsTls.minRatio),
    },
    oneWay64: {
      ...TARGETS.oneWay64,
      measuredPerSec: oneWay64,
      met: verdict(oneWay64, (v) => v >= TARGETS.oneWay64.minPerSec),
    },
    heapPerChannel: {
      ...TARGETS.heapPerChannel,
      measuredBytes: fixed(heapPerChannel, 1),
      met: verdict(heapPerChannel, (v) => v <= TARGETS.heapPerChannel.maxBytes),
    },
    portalVsDirect: {
      ...TARGETS.portalVsDirect,
      measuredRatio: fixed(portalRatio, 3),
      met: verdict(portalRatio, (v) => v >= TARGETS.portalVsDirect.minRatio),
    },
  };
  const targetsMet = Object.fromEntries(Object.entries(targets).map(([k, t]) => [k, t.met]));

  // --- table
  const table: BenchTable = {
    columns: ['measure', 'setup', 'result', 'min..max', 'keyhop / this', 'CPU us/op', 'this CPU / keyhop'],
    rows: [],
  };
  for (const r of hsRows) {
    table.rows.push([
      'handshakes/s',
      r.setup,
      r.perSec.toFixed(0),
      `${r.perSecMin.toFixed(0)}..${r.perSecMax.toFixed(0)}`,
      r.setup === 'keyhop' || r.keyhopRatio === null ? '-' : `${r.keyhopRatio.toFixed(2)}x`,
      r.cpuUsPerHandshake.toFixed(0),
      r.setup === 'keyhop' || r.keyhopCpuRatio === null ? '-' : `${r.keyhopCpuRatio.toFixed(2)}x`,
    ]);
  }
  for (const r of tpRows) {
    const ratio = r.ratioToTls;
    table.rows.push([
      `MB/s ${sizeLabel(r.payloadBytes)}`,
      r.setup,
      r.mbPerSec.toFixed(2),
      `${((r.msgsPerSecMin * r.payloadBytes) / 1e6).toFixed(2)}..${((r.msgsPerSecMax * r.payloadBytes) / 1e6).toFixed(2)}`,
      r.setup === 'tls' ? '-' : ratio === null ? '-' : `${ratio.toFixed(2)}x tls`,
      r.cpuUsPerRoundTrip.toFixed(1),
      r.setup === 'tls' || r.cpuRatioToTls === null ? '-' : `tls/keyhop ${r.cpuRatioToTls.toFixed(2)}x`,
    ]);
  }
  for (const r of owRows) {
    const k = owRows.find((x) => x.setup === 'keyhop' && x.payloadBytes === r.payloadBytes);
    table.rows.push([
      `msgs/s one way ${sizeLabel(r.payloadBytes)}`,
      r.setup,
      r.msgsPerSec.toFixed(0),
      `${r.msgsPerSecMin.toFixed(0)}..${r.msgsPerSecMax.toFixed(0)}`,
      r.setup === 'keyhop' || !k || r.msgsPerSec === 0 ? '-' : `${(k.msgsPerSec / r.msgsPerSec).toFixed(2)}x`,
      r.cpuUsPerMessage.toFixed(2),
      '-',
    ]);
  }
  if (memory) {
    table.rows.push([
      'heap/channel',
      `keyhop x${memory.channels}`,
      kib(memory.heapPerChannelBytes),
      `per end ${kib(memory.heapPerEndBytes)}`,
      '-',
      '-',
      '-',
    ]);
  }
  for (const r of portalRows) {
    table.rows.push([
      `portal MB/s ${portalMib} MiB`,
      r.setup,
      r.mbPerSec.toFixed(1),
      `${r.mbPerSecMin.toFixed(1)}..${r.mbPerSecMax.toFixed(1)}`,
      r.setup === 'direct' || r.ratioToDirect === null ? '-' : `${r.ratioToDirect.toFixed(2)}x direct`,
      `${r.cpuUsPerMiB.toFixed(0)}/MiB`,
      '-',
    ]);
  }

  // --- notes
  const show = (t: { description: string; met: boolean | null }, value: string) =>
    t.met === null
      ? `Target "${t.description}": not measured.`
      : `Target "${t.description}": ${value} -> ${t.met ? 'MET' : 'NOT MET'}.`;
  const problemLines = [
    ...hsRows
      .filter((r) => r.leakedTcpHandles > 0 || hasProblems(r.problems))
      .map(
        (r) =>
          `WARNING handshake ${r.setup}: ${JSON.stringify(r.problems)}, leaked TCP ${r.leakedTcpHandles}`,
      ),
    ...tpRows
      .filter((r) => r.leakedTcpHandles > 0 || hasProblems(r.problems))
      .map(
        (r) =>
          `WARNING throughput ${r.setup} ${sizeLabel(r.payloadBytes)}: ${JSON.stringify(r.problems)}, leaked TCP ${r.leakedTcpHandles}`,
      ),
    ...(memory && hasProblems(memory.problems) ? [`WARNING memory: ${JSON.stringify(memory.problems)}`] : []),
    ...portalRows
      .filter((r) => r.leakedTcpHandles > 0 || hasProblems(r.problems))
      .map(
        (r) => `WARNING portal ${r.setup}: ${JSON.stringify(r.problems)}, leaked TCP ${r.leakedTcpHandles}`,
      ),
  ];
  const notes = [
    'Every setup runs both of its ends in this one process (one JS thread); CPU us/op = process CPU per handshake / round trip.',
    ...(hsRows.length > 0
      ? [
          `Handshakes: ${hsRounds} round(s) of ${hsWarmupMs} ms warm-up + ${hsDurationMs} ms measured per setup, one at a time;`,
          '"keyhop / this" = median of per-round ratios. tls pays a TCP connect per handshake (see tcp-connect),',
          'keyhop and noise reuse one open TCP connection.',
        ]
      : []),
    ...(tpRows.length > 0
      ? [
          `Throughput: ${rounds} round(s), window ${window} round trips in flight, ${warmupMs} ms warm-up + ${durationMs} ms measured;`,
          'MB/s = payload one way (10^6 B).',
        ]
      : []),
    ...(memory
      ? [
          `Heap: ${memory.channels} channels (${2 * memory.channels} ends) opened ${memory.batch} at a time, heapUsed after forced GC:`,
          `+${(memory.heapDeltaBytes / 2 ** 20).toFixed(1)} MiB heap, +${(memory.arrayBuffersDeltaBytes / 2 ** 20).toFixed(1)} MiB ArrayBuffers (off-heap), ` +
            `${memory.concurrentHandshakesPerSec.toFixed(0)} handshakes/s with ${memory.batch} in flight.`,
        ]
      : []),
    show(targets.handshakeVsTls, `${vsTls?.toFixed(2)}x`),
    show(targets.handshakeVsNoise, `${vsNoise?.toFixed(2)}x`),
    show(targets.throughputVsTls, `${tpRatio?.toFixed(2)}x`),
    show(targets.throughput1KiBVsTls, `${tp1KiB?.toFixed(2)}x`),
    show(targets.oneWay64, `${oneWay64?.toFixed(0)}/s`),
    show(targets.heapPerChannel, heapPerChannel === null ? '' : kib(heapPerChannel)),
    show(targets.portalVsDirect, `${portalRatio?.toFixed(2)}x`),
    ...(portalRows.length > 0
      ? [
          `Portal: ${portalRounds} round(s) of one ${portalWarmupMib} MiB warm-up + one ${portalMib} MiB upload, client -> sink, timed from the`,
          `first write to the sink seeing the end of the stream; portal / direct = ${portalRatio?.toFixed(3) ?? '-'}x (median of per-round ratios).`,
        ]
      : ['Portal throughput vs direct TCP: not measured in this run (--parts without portal).']),
    `Peak RSS ${(rss.peak / 2 ** 20).toFixed(1)} MiB; load average before/after ${loadBefore[0]?.toFixed(2)} / ${loadAfter[0]?.toFixed(2)}; ` +
      `whole benchmark ${totalSeconds.toFixed(1)} s.`,
    ...problemLines,
  ];

  const roundHs = (r: HandshakeRow) => ({
    ...r,
    perSec: round(r.perSec, 1),
    perSecMin: round(r.perSecMin, 1),
    perSecMax: round(r.perSecMax, 1),
    cpuUsPerHandshake: round(r.cpuUsPerHandshake, 1),
    keyhopRatio: fixed(r.keyhopRatio, 4),
    keyhopCpuRatio: fixed(r.keyhopCpuRatio, 4),
    samples: r.samples.map((s) => ({
      ...s,
      seconds: round(s.seconds, 4),
      perSec: round(s.perSec, 1),
      cpuPercent: round(s.cpuPercent, 1),
      cpuUsPerHandshake: round(s.cpuUsPerHandshake, 1),
    })),
  });
  const roundTp = (r: ThroughputRow) => ({
    ...r,
    msgsPerSec: round(r.msgsPerSec, 1),
    msgsPerSecMin: round(r.msgsPerSecMin, 1),
    msgsPerSecMax: round(r.msgsPerSecMax, 1),
    mbPerSec: round(r.mbPerSec, 3),
    ratioToTls: fixed(r.ratioToTls, 4),
    cpuUsPerRoundTrip: round(r.cpuUsPerRoundTrip, 2),
    cpuRatioToTls: fixed(r.cpuRatioToTls, 4),
    cpuPercent: round(r.cpuPercent, 1),
    samples: r.samples.map((s) => ({
      ...s,
      seconds: round(s.seconds, 4),
      msgsPerSec: round(s.msgsPerSec, 1),
      cpuPercent: round(s.cpuPercent, 1),
      cpuUsPerRoundTrip: round(s.cpuUsPerRoundTrip, 2),
    })),
  });

  return {
    parameters: {
      host: HOST,
      partsRun: parts,
      handshake: {
        setupsRun: hsSetups,
        rounds: hsRounds,
        warmupMs: hsWarmupMs,
        durationMs: hsDurationMs,
        setups: HANDSHAKE_SETUPS,
        order:
          'rounds outer, then keyhop, tls, tls-resumed, noise, tcp-connect; each run builds its setup, warms up, measures and closes',
        tcpConnection:
          'tls includes a new TCP connection (connect + accept + close) in every handshake; keyhop and noise run every handshake over one TCP connection opened before the run (tcp-connect measures that difference)',
        keyhopChannels:
          'each keyhop channel is closed after its handshake (Close message sent, both ends stopped)',
        tlsClientContext:
          'the TLS client SecureContext (CA, certificate, key) is built once and reused; the server has one context',
        noiseOnNode20:
          'libp2p 3 calls Promise.withResolvers (Node 22); on older Node the benchmark installs a spec-equivalent shim before the noise runs (keyhop never calls it)',
        identities:
          'keyhop: Ed25519 Ockam identities (change history + X25519 purpose key attestation), node:crypto provider; tls: P-256 ECDSA certificates from a P-256 CA generated at start (bench/tls-certs.ts); noise: Ed25519 libp2p keys',
      },
      throughput: {
        setupsRun: tpSetups,
        payloadBytes: sizes,
        rounds,
        window,
        warmupMs,
        durationMs,
        setups: THROUGHPUT_SETUPS,
        framing:
          'TLS is a byte stream: frames written in the same tick share TLS records, so at small payloads one AEAD covers many frames; keyhop, like Ockam, encrypts every routed message on its own (4 AEAD operations per round trip)',
      },
      oneway: {
        payloadBytes: onewaySizes,
        rounds,
        window: onewayWindow,
        warmupMs,
        durationMs,
        setups: ONEWAY_SETUPS,
      },
      memory: { channels: channelCount, batch, gc: 'forced full GC (3x, 20 ms apart) before each reading' },
      portal: {
        rounds: portalRounds,
        bytes: portalMib * 2 ** 20,
        warmupBytes: portalWarmupMib * 2 ** 20,
        setups: PORTAL_SETUPS,
        timing:
          'from the first write of the client to the sink seeing the end of the stream (all bytes received)',
      },
      units: {
        handshakesPerSec: 'completed mutually verified handshakes per second, sequential, median over rounds',
        cpuUsPerHandshake: 'process CPU time (user + system, both ends) per handshake, microseconds',
        keyhopRatio: 'median over rounds of keyhop handshakes/s / this setup handshakes/s',
        mbPerSec: 'payload bytes per second in one direction / 10^6, from the median round trips/s',
        ratioToTls:
          'median over rounds of keyhop round trips/s / TLS round trips/s, same round and payload size',
        heapPerChannelBytes:
          'heapUsed delta after forced GC / channels (each channel = 2 ends in this process)',
        portalMbPerSec: 'bytes delivered to the sink / transfer time / 10^6',
        cpuUsPerMiB: 'process CPU time per MiB transferred (client, keyhop nodes and sink together)',
      },
      notes: 'client and server of every setup share one Node.js process and event loop',
      loadAverage1m: { before: loadBefore[0], after: loadAfter[0] },
    },
    results: {
      handshakes: hsRows.map(roundHs),
      throughput: tpRows.map(roundTp),
      throughputRatios: (parts.includes('throughput') ? sizes : []).map((size) => {
        const k = tpRows.find((r) => r.setup === 'keyhop' && r.payloadBytes === size);
        return {
          payloadBytes: size,
          keyhopToTls: fixed(k?.ratioToTls ?? null, 4),
          keyhopToTlsCpu: fixed(k?.cpuRatioToTls ?? null, 4),
        };
      }),
      oneway: owRows,
      memory: memory
        ? {
            ...memory,
            heapPerChannelBytes: round(memory.heapPerChannelBytes, 1),
            heapPerEndBytes: round(memory.heapPerEndBytes, 1),
          }
        : null,
      portal: portalRows.map((r) => ({
        ...r,
        mbPerSec: round(r.mbPerSec, 2),
        mbPerSecMin: round(r.mbPerSecMin, 2),
        mbPerSecMax: round(r.mbPerSecMax, 2),
        ratioToDirect: fixed(r.ratioToDirect, 4),
        cpuUsPerMiB: round(r.cpuUsPerMiB, 1),
        samples: r.samples.map((x) => ({
          ...x,
          seconds: round(x.seconds, 4),
          mbPerSec: round(x.mbPerSec, 2),
          cpuUsPerMiB: round(x.cpuUsPerMiB, 1),
        })),
      })),
      rssPeakBytes: rss.peak,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      totalSeconds: round(totalSeconds, 1),
    },
    summary: { targets, targetsMet },
    table,
    notes,
  };
}

export const channelBenchmark: Benchmark = {
  description:
    'secure channels: handshakes/s vs TLS 1.3 mutual auth and libp2p-noise, MB/s vs TLS 1.3, heap per open channel',
  run,
};
