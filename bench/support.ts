/** Pieces shared by the benchmarks: request pipelining, plain frame parsing, socket and number helpers. */

import { randomBytes } from 'node:crypto';
import type { Server as NetServer, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ChannelStore } from '../runtime/channel/channel-store.js';
import { OckamChannelIdentity } from '../runtime/channel/ockam-identity.js';
import { SecureChannels } from '../runtime/channel/secure-channels.js';
import { describeError } from '../runtime/errors.js';
import { systemClock } from '../runtime/identity/clock.js';
import { createIdentity } from '../runtime/identity/identity.js';
import { Router } from '../runtime/routing/router.js';
import { TcpTransport } from '../runtime/transports/tcp/tcp-transport.js';
import { nodeCrypto } from '../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../vaults/software/software-vault.js';
import type { RssSampler } from './harness.js';

export const PLAIN_MAX_FRAME = 16 * 1024 * 1024;
export const round = (x: number, digits: number): number => Number(x.toFixed(digits));
export const fixed = (x: number | null, digits: number): number | null =>
  x === null ? null : round(x, digits);

/**
 * Keeps a fixed number of requests outstanding: each reply (or failure) frees a slot that is
 * refilled at once, until `drain()` stops the refilling.
 */
export class Pipeline {
  completed = 0;
  inFlight = 0;
  private stopping = false;
  private onIdle: (() => void) | undefined;

  constructor(private readonly sendOne: () => void) {}

  fill(window: number): void {
    for (let i = 0; i < window; i++) this.issue();
  }

  replied(): void {
    this.completed++;
    this.release();
  }

  failedOne(): void {
    this.release();
  }

  get finished(): boolean {
    return this.stopping && this.inFlight === 0;
  }

  /** Stops refilling; resolves once every outstanding request is answered. */
  drain(timeoutMs: number): Promise<void> {
    this.stopping = true;
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.inFlight} requests still unanswered after ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.onIdle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private issue(): void {
    this.inFlight++;
    this.sendOne();
  }

  private release(): void {
    this.inFlight--;
    if (!this.stopping) this.issue();
    else if (this.inFlight === 0) this.onIdle?.();
  }
}

/** u32-BE length + body frames out of a byte stream; whole frames inside a chunk are not copied. */
export class PlainFrameSplitter {
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    const n = chunk.length;
    let off = 0;
    while (off < n) {
      if (this.body === undefined) {
        let len: number;
        if (this.headerFill === 0 && n - off >= 4) {
          len = chunk.readUInt32BE(off);
          off += 4;
          if (len > PLAIN_MAX_FRAME) throw new Error(`frame of ${len} bytes is too large`);
          if (n - off >= len) {
            this.onFrame(chunk.subarray(off, off + len));
            off += len;
            continue;
          }
        } else {
          const k = Math.min(4 - this.headerFill, n - off);
          chunk.copy(this.header, this.headerFill, off, off + k);
          this.headerFill += k;
          off += k;
          if (this.headerFill < 4) return;
          this.headerFill = 0;
          len = this.header.readUInt32BE(0);
          if (len > PLAIN_MAX_FRAME) throw new Error(`frame of ${len} bytes is too large`);
        }
        this.body = Buffer.allocUnsafe(len);
        this.bodyFill = 0;
      }
      const body = this.body;
      const k = Math.min(body.length - this.bodyFill, n - off);
      chunk.copy(body, this.bodyFill, off, off + k);
      this.bodyFill += k;
      off += k;
      if (this.bodyFill === body.length) {
        this.body = undefined;
        this.onFrame(body);
      }
    }
  }
}

export function closeSocket(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.destroy();
  });
}

/** Open TCP handles of this process (sockets and servers). */
export function openTcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

export async function waitForTcpHandles(max: number, timeoutMs = 2000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const n = openTcpHandles();
    if (n <= max || Date.now() > until) return n;
    await sleep(10);
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function sizeLabel(bytes: number): string {
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** One benchmark setup, connected and ready to run. */
export interface Rig {
  pipeline: Pipeline;
  /** Starts the reply handling and puts `window` requests in flight. */
  start(window: number): void;
  /** Drops, worker errors and other signs the run was not clean. */
  problems(): Record<string, number>;
  /** Closes every socket and server of the setup. */
  close(): Promise<void>;
}

/**
 * The client half of a framed echo setup (plain TCP or TLS): sends one prebuilt u32-BE frame of
 * `size` random bytes per free slot and counts a reply when a frame of that size comes back.
 * `serverProblems` reports the server side's protocol errors; `closeServer` closes it.
 */
export function framedEchoClient(
  client: Socket,
  size: number,
  serverProblems: () => number,
  closeServer: () => Promise<void>,
): Rig {
  client.setNoDelay(true);
  client.on('error', () => undefined);
  const frame = Buffer.allocUnsafe(4 + size);
  frame.writeUInt32BE(size, 0);
  randomBytes(size).copy(frame, 4);
  let badReplies = 0;
  let clientErrors = 0;
  const pipeline = new Pipeline(() => {
    client.write(frame);
  });
  const splitter = new PlainFrameSplitter((reply) => {
    if (reply.length === size) pipeline.replied();
    else {
      badReplies++;
      pipeline.failedOne();
    }
  });
  return {
    pipeline,
    start(window) {
      client.on('data', (chunk: Buffer) => {
        try {
          splitter.push(chunk);
        } catch {
          clientErrors++;
          client.destroy();
        }
      });
      pipeline.fill(window);
    },
    problems: () => ({ protocolErrors: serverProblems() + clientErrors, badReplies }),
    async close() {
      await closeSocket(client);
      await closeServer();
    },
  };
}

/** What one timed run of a Rig measured. */
export interface RigSample {
  /** Round trips completed during the measured phase (each = one message each way). */
  roundTrips: number;
  warmupRoundTrips: number;
  seconds: number;
  /** Round trips per second. */
  msgsPerSec: number;
  /** Process CPU time (user + system) over wall time during the measured phase, in percent. */
  cpuPercent: number;
  /** Process CPU time per round trip, in microseconds: insensitive to other load on the machine. */
  cpuUsPerRoundTrip: number;
  /** Peak `process.memoryUsage().rss` sampled during this run, in bytes. */
  rssPeakBytes: number;
  problems: Record<string, number>;
  /** TCP handles still open after the setup was closed (should be 0). */
  leakedTcpHandles: number;
}

/**
 * Runs a connected rig: warm-up, a measured phase (round trips, CPU, peak RSS), then drains the
 * window, closes the rig and checks that no TCP handle is left open.
 */
export async function measureRig(
  rig: Rig,
  p: { window: number; warmupMs: number; durationMs: number },
  rss: RssSampler,
  handlesBefore: number,
  replyTimeoutMs: number,
): Promise<RigSample> {
  const { pipeline } = rig;
  rss.reset();
  rig.start(p.window);
  await sleep(p.warmupMs);
  const c0 = pipeline.completed;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(p.durationMs);
  const c1 = pipeline.completed;
  const t1 = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  const rssPeakBytes = rss.reset();
  let drainError: string | undefined;
  await pipeline.drain(replyTimeoutMs).catch((e: unknown) => {
    drainError = describeError(e);
  });
  const problems = rig.problems();
  if (drainError !== undefined) problems.unansweredAtEnd = pipeline.inFlight;
  await rig.close();
  const leakedTcpHandles = Math.max(0, (await waitForTcpHandles(handlesBefore)) - handlesBefore);
  (globalThis as { gc?: () => void }).gc?.();
  const seconds = Number(t1 - t0) / 1e9;
  const roundTrips = c1 - c0;
  const cpuUs = cpu.user + cpu.system;
  return {
    roundTrips,
    warmupRoundTrips: c0,
    seconds,
    msgsPerSec: roundTrips / seconds,
    cpuPercent: (cpuUs / 1e6 / seconds) * 100,
    cpuUsPerRoundTrip: roundTrips > 0 ? cpuUs / roundTrips : 0,
    rssPeakBytes,
    problems,
    leakedTcpHandles,
  };
}

export interface IdentityNode {
  router: Router;
  tcp: TcpTransport;
  channels: SecureChannels;
  identifier: string;
}

/** Router + TCP + in-memory software vault + Ed25519 Ockam identity + secure channels (node:crypto). */
export async function identityNode(
  name: string,
  routers: Router[],
  options: { store?: ChannelStore; localAddress?: string } = {},
): Promise<IdentityNode> {
  const router = new Router({ name });
  routers.push(router);
  const tcp = TcpTransport.create(
    router,
    options.localAddress !== undefined ? { localAddress: options.localAddress } : {},
  );
  const vault = SoftwareVault.inMemory({ provider: nodeCrypto });
  const verifier = new SoftwareVerifier(nodeCrypto);
  const local = await createIdentity({ vault, verifier, clock: systemClock, keyType: 'Ed25519' });
  const identity = await OckamChannelIdentity.create({
    local,
    secureChannelVault: vault,
    verifier,
    clock: systemClock,
    credentials: [],
    authorities: [],
  });
  const channels = new SecureChannels(router, {
    identity,
    provider: nodeCrypto,
    ...(options.store ? { store: options.store } : {}),
  });
  return { router, tcp, channels, identifier: identity.identifier };
}

/** A forced full GC: `--expose-gc`'s gc, or one obtained at run time through V8 flags. */
export function gcFunction(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Listens on a free port of `host` and resolves to it. */
export function listenOn(server: NetServer, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      const a = server.address();
      if (a === null || typeof a === 'string') reject(new Error('server has no TCP address'));
      else resolve(a.port);
    });
  });
}
