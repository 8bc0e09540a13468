import { type IdentityNode, identityNode } from './support.js';
/**
 * keyhop nodes for the attack benchmark (bench/attack.ts): well-behaved clients that keep doing
 * complete handshakes with the victim from their own loopback sources and record each one, quiet
 * channels doing echo round trips, and the attacker's own nodes (bench/attack-child.ts).
 */

import { OckamChannelIdentity } from '../runtime/channel/ockam-identity.js';
import type { SecureChannelEnd } from '../runtime/channel/secure-channel.js';
import { SecureChannels } from '../runtime/channel/secure-channels.js';
import { describeError, isKeyhopError } from '../runtime/errors.js';
import { systemClock } from '../runtime/identity/clock.js';
import { createIdentity } from '../runtime/identity/identity.js';
import type { Context } from '../runtime/routing/context.js';
import { Route } from '../runtime/routing/route.js';
import { Router } from '../runtime/routing/router.js';
import { TcpTransport } from '../runtime/transports/tcp/tcp-transport.js';
import { nodeCrypto } from '../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../vaults/software/software-vault.js';

/** A keyhop node as an application would build it, connecting from its own loopback source. */
export type ClientNode = IdentityNode;

/** bench/support.ts's identityNode, its outgoing connections made from `localAddress`. */
export function clientNode(name: string, localAddress: string): Promise<ClientNode> {
  return identityNode(name, [], { localAddress });
}

/** The error code of a failed operation (a KeyhopError's code, else its class). */
export function failureCode(e: unknown): string {
  if (isKeyhopError(e)) return e.code;
  return e instanceof Error ? e.name : 'unknown';
}

/** Resolves after `ms`, or at once when `signal` fires. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

function withResolvers(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** The outcome of operations started in one phase (idle, attack, after). */
export interface PhaseRecord {
  attempted: number;
  completed: number;
  failed: number;
  /** Failures by error code. */
  failures: Record<string, number>;
  /** Latency of each completed operation, in ms. */
  latencies: number[];
  /** The first few failure messages, for the report. */
  examples: string[];
}

function emptyRecord(): PhaseRecord {
  return { attempted: 0, completed: 0, failed: 0, failures: {}, latencies: [], examples: [] };
}

/**
 * Keeps records per phase: an operation counts in the phase during which it started, however
 * long it takes. `settled()` resolves once every operation started so far has finished.
 */
class PhasedLog {
  private phase = 'idle';
  readonly records = new Map<string, PhaseRecord>();
  private pending = new Set<Promise<unknown>>();

  setPhase(phase: string): void {
    this.phase = phase;
  }

  record(phase: string): PhaseRecord {
    let r = this.records.get(phase);
    if (!r) {
      r = emptyRecord();
      this.records.set(phase, r);
    }
    return r;
  }

  /** Runs `op`, timing it and counting it in the current phase. */
  async track(op: () => Promise<void>): Promise<void> {
    const r = this.record(this.phase);
    r.attempted++;
    const t0 = performance.now();
    const p = op().then(
      () => {
        r.completed++;
        r.latencies.push(performance.now() - t0);
      },
      (e: unknown) => {
        r.failed++;
        const code = failureCode(e);
        r.failures[code] = (r.failures[code] ?? 0) + 1;
        if (r.examples.length < 3) r.examples.push(describeError(e));
      },
    );
    this.pending.add(p);
    try {
      await p;
    } finally {
      this.pending.delete(p);
    }
  }

  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}

/**
 * Loops of operations, one per node, each counted in the phase it started in; they can be paused
 * (no new operation starts; `pause()` resolves once the ones under way finished), resumed, and
 * stopped.
 */
abstract class OperationLoops {
  private readonly log = new PhasedLog();
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private paused: { promise: Promise<void>; resume: () => void } | undefined;

  protected constructor(
    readonly nodes: ClientNode[],
    protected readonly intervalMs: number,
    protected readonly timeoutMs: number,
  ) {}

  /** One operation of loop `i` (the `k`th of that loop). */
  protected abstract operation(i: number, k: number): Promise<void>;

  start(): void {
    this.loops = this.nodes.map((_, i) => this.loop(i));
  }

  setPhase(phase: string): void {
    this.log.setPhase(phase);
  }

  record(phase: string): PhaseRecord {
    return this.log.record(phase);
  }

  /** Completed operations so far in `phase`, all loops together. */
  completed(phase: string): number {
    return this.log.record(phase).completed;
  }

  /** No new operation starts until `resume()`; resolves once those under way finished. */
  async pause(): Promise<void> {
    if (!this.paused) {
      const { promise, resolve } = withResolvers();
      this.paused = { promise, resume: resolve };
    }
    await this.log.settled();
  }

  resume(): void {
    const p = this.paused;
    this.paused = undefined;
    p?.resume();
  }

  /** Stops starting operations and waits for the ones under way. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.resume();
    await Promise.all(this.loops);
    await this.log.settled();
  }

  async close(): Promise<void> {
    await this.stop();
    for (const n of this.nodes) await n.router.shutdown();
  }

  private async loop(i: number): Promise<void> {
    // Spread the loops' operations over the interval rather than starting them together.
    await pause((this.intervalMs * i) / Math.max(1, this.nodes.length), this.abort.signal);
    for (let k = 0; !this.abort.signal.aborted; k++) {
      if (this.paused) {
        await this.paused.promise;
        if (this.abort.signal.aborted) break;
      }
      const t0 = performance.now();
      await this.log.track(() => this.operation(i, k));
      await pause(this.intervalMs - (performance.now() - t0), this.abort.signal);
    }
  }
}

/**
 * Clients, client i connecting from `sources[i]`, each repeating: open a secure channel to
 * `route` (confirm on: counted once the victim accepted it), close it, wait until `intervalMs`
 * after the start of that handshake. One handshake at a time per client.
 */
export class HandshakeClients extends OperationLoops {
  private constructor(
    nodes: ClientNode[],
    private readonly route: string,
    intervalMs: number,
    timeoutMs: number,
  ) {
    super(nodes, intervalMs, timeoutMs);
  }

  static async create(
    sources: readonly string[],
    route: string,
    options: { intervalMs: number; timeoutMs: number },
  ): Promise<HandshakeClients> {
    const nodes: ClientNode[] = [];
    try {
      for (const [i, s] of sources.entries()) nodes.push(await clientNode(`client-${i}`, s));
    } catch (e) {
      for (const n of nodes) await n.router.shutdown();
      throw e;
    }
    return new HandshakeClients(nodes, route, options.intervalMs, options.timeoutMs);
  }

  protected async operation(i: number): Promise<void> {
    const end = await this.nodes[i]!.channels.create(this.route, { timeoutMs: this.timeoutMs });
    await end.close();
  }
}

/**
 * Quiet channels, one per node and source, each doing echo round trips: send to the victim's
 * echo through the channel, wait for the answer, pause until `intervalMs` after the send.
 */
export class QuietChannels extends OperationLoops {
  /** Answers that came after their round trip had timed out (skipped). */
  lateAnswers = 0;
  private readonly enc = new TextEncoder();
  private readonly dec = new TextDecoder();

  private constructor(
    nodes: ClientNode[],
    private readonly ends: SecureChannelEnd[],
    private readonly contexts: Context[],
    intervalMs: number,
    timeoutMs: number,
  ) {
    super(nodes, intervalMs, timeoutMs);
  }

  static async create(
    sources: readonly string[],
    route: string,
    options: { intervalMs: number; timeoutMs: number },
  ): Promise<QuietChannels> {
    const nodes: ClientNode[] = [];
    const ends: SecureChannelEnd[] = [];
    const contexts: Context[] = [];
    try {
      for (const [i, s] of sources.entries()) {
        const n = await clientNode(`quiet-${i}`, s);
        nodes.push(n);
        ends.push(await n.channels.create(route, { timeoutMs: options.timeoutMs }));
        contexts.push(await n.router.context());
      }
    } catch (e) {
      for (const n of nodes) await n.router.shutdown();
      throw e;
    }
    return new QuietChannels(nodes, ends, contexts, options.intervalMs, options.timeoutMs);
  }

  protected async operation(i: number, k: number): Promise<void> {
    const ctx = this.contexts[i]!;
    const t0 = performance.now();
    const text = `quiet ${i} ${k}`;
    await ctx.send(Route.of(this.ends[i]!.encryptor, 'echo'), this.enc.encode(text));
    // An answer to an earlier round trip that timed out may still come in first: skip it.
    for (;;) {
      const left = this.timeoutMs - (performance.now() - t0);
      const answer = await ctx.receive(Math.max(1, left));
      if (this.dec.decode(answer.payload) === text) return;
      this.lateAnswers++;
    }
  }
}

/** Percentile `p` (0..100) of `xs` (nearest rank), or null for none. */
export function percentile(xs: readonly number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1]!;
}
