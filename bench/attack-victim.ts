import { setPriority } from 'node:os';
/**
 * The processes of the attack benchmark (bench/attack.ts): the victim, a real keyhop node started
 * with the built CLI (`keyhop node start`), watched from outside (RSS from /proc, its node.log's
 * size, its counters over its control socket: what `keyhop node show --json` prints), and the
 * attacker process (bench/attack-child.ts).
 */

import { type ChildProcess, execFile, fork } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { controlCall } from '../runtime/node/control-client.js';
import type { AttackCounters, AttackJob, ChildMessage } from './attack-child.js';
import { packageRoot } from './harness.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The built CLI and attacker: the victim and the attacker always run from dist/. */
export function builtFile(relative: string): string {
  const file = join(packageRoot(), 'dist', relative);
  if (!existsSync(file)) throw new Error(`${file} is missing: run npm run build first`);
  return file;
}

/** Resident set size of process `pid` in bytes (VmRSS), or undefined once it is gone. */
export function rssOf(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every `intervalMs`, keeping each sample and the peak. */
export class RssWatch {
  readonly samples: { t: number; rss: number }[] = [];
  peak = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pid: number) {}

  start(intervalMs = 200): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  sample(): number | undefined {
    const rss = rssOf(this.pid);
    if (rss !== undefined) {
      this.samples.push({ t: performance.now(), rss });
      if (rss > this.peak) this.peak = rss;
    }
    return rss;
  }

  /** Highest sample taken at or after `t0` (performance.now() time). */
  peakSince(t0: number): number {
    let p = 0;
    for (const s of this.samples) if (s.t >= t0 && s.rss > p) p = s.rss;
    return p;
  }

  /** Median of the samples taken between `t0` and `t1`. */
  medianBetween(t0: number, t1: number): number | undefined {
    const xs = this.samples
      .filter((s) => s.t >= t0 && s.t <= t1)
      .map((s) => s.rss)
      .sort((a, b) => a - b);
    return xs.length === 0 ? undefined : xs[xs.length >> 1];
  }

  /** The sample nearest each `stepMs` from `t0` on, in MiB: how RSS moved over an attack and after it. */
  timeline(t0: number, stepMs: number): { tMs: number; rssMB: number }[] {
    const out: { tMs: number; rssMB: number }[] = [];
    let next = t0;
    for (const s of this.samples) {
      if (s.t < next) continue;
      out.push({ tMs: Math.round(s.t - t0), rssMB: Number((s.rss / 2 ** 20).toFixed(1)) });
      next = s.t + stepMs;
    }
    return out;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** How often each log message appears in a stretch of a node's JSON-lines log. */
export interface LogSummary {
  bytes: number;
  /** Bytes read to count messages (the stretch, up to a bound). */
  bytesRead: number;
  lines: number;
  /** The most frequent `msg` values, with their counts and their level, most frequent first. */
  top: { msg: string; level: number; count: number }[];
}

/** Counts the messages of `path` between byte offsets `from` and `to` (at most `maxRead` bytes read). */
export async function summarizeLog(
  path: string,
  from: number,
  to: number,
  maxRead = 8 * 2 ** 20,
): Promise<LogSummary> {
  const bytes = Math.max(0, to - from);
  const n = Math.min(bytes, maxRead);
  const counts = new Map<string, { level: number; count: number }>();
  let lines = 0;
  if (n > 0) {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(n);
      await fh.read(buf, 0, n, from);
      const text = buf.toString('utf8');
      const parts = text.split('\n');
      if (n < bytes || !text.endsWith('\n')) parts.pop(); // a cut line
      for (const line of parts) {
        if (line.length === 0) continue;
        lines++;
        let msg = '(not JSON)';
        let level = 0;
        try {
          const o = JSON.parse(line) as { msg?: unknown; level?: unknown };
          msg = typeof o.msg === 'string' ? o.msg : '(no msg)';
          level = typeof o.level === 'number' ? o.level : 0;
        } catch {
          // counted as not JSON
        }
        const c = counts.get(msg);
        if (c) c.count++;
        else counts.set(msg, { level, count: 1 });
      }
    } finally {
      await fh.close();
    }
  }
  const top = [...counts.entries()]
    .map(([msg, c]) => ({ msg, level: c.level, count: c.count }))
    .sort((a, b) => b.count - a.count)
    .slice(0, 8);
  return { bytes, bytesRead: n, lines, top };
}

/** What the victim reports (`keyhop node show --json`), the parts the benchmark keeps. */
export interface VictimCounters {
  secureChannelStats: Record<string, number>;
  tcpStats: unknown;
  logSuppressed: unknown;
  routerDropped: Record<string, number>;
  workerErrors: number;
  channelEnds: number;
  channelEndsByState: Record<string, number>;
  tcpConnections: number;
  workers: number;
  /** The node's own memory figures, if its `node show` reports them (process.memoryUsage()). */
  memory: unknown;
}

/** A keyhop node process under attack, in a home directory of its own. */
export class Victim {
  private constructor(
    readonly home: string,
    readonly name: string,
    readonly pid: number,
    /** `host:port` of its TCP listener. */
    readonly address: string,
  ) {}

  /** `1#host:port => api`: its default secure-channel listener over TCP. */
  get route(): string {
    return `1#${this.address} => api`;
  }

  get logPath(): string {
    return join(this.home, 'nodes', this.name, 'node.log');
  }

  get controlPath(): string {
    return join(this.home, 'nodes', this.name, 'control.sock');
  }

  /**
   * `keyhop node start <name> --tcp-listener 127.0.0.1:0` in a fresh KEYHOP_HOME: default
   * identity, echo service, secure-channel listener `api` with the default limits, info log.
   */
  static async start(
    name = 'victim',
    extraArgs: readonly string[] = [],
    cli = builtFile('runtime/cli/main.js'),
    inspectPort?: number,
  ): Promise<Victim> {
    const home = mkdtempSync(join(tmpdir(), 'keyhop-attack-'));
    const env: NodeJS.ProcessEnv = { ...process.env, KEYHOP_HOME: home };
    delete env.KEYHOP_VAULT_PASSPHRASE;
    // Only sets the port the inspector opens on if the node gets SIGUSR1 (bench/attack-inspect.ts).
    if (inspectPort !== undefined) {
      env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --inspect-port=127.0.0.1:${inspectPort}`.trim();
    }
    try {
      const { stdout } = await run(
        process.execPath,
        [cli, 'node', 'start', name, '--tcp-listener', '127.0.0.1:0', ...extraArgs, '--json'],
        { env, timeout: 60_000 },
      );
      const info = JSON.parse(stdout) as { pid: number; tcpListeners: { address: string }[] };
      const address = info.tcpListeners[0]?.address;
      if (!address) throw new Error(`victim started without a TCP listener: ${stdout}`);
      return new Victim(home, name, info.pid, address);
    } catch (e) {
      // A node that started but whose answer we could not read: stop it by its pid file.
      try {
        const pid = Number(readFileSync(join(home, 'nodes', name, 'pid'), 'utf8'));
        if (pid > 0 && isKeyhopNode(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // no pid file: nothing runs
      }
      rmSync(home, { recursive: true, force: true });
      throw e;
    }
  }

  alive(): boolean {
    return isKeyhopNode(this.pid);
  }

  rss(): number | undefined {
    return rssOf(this.pid);
  }

  logBytes(): number {
    try {
      return statSync(this.logPath).size;
    } catch {
      return 0;
    }
  }

  /** Its `node show --json` (the control socket's `node.show`). */
  async show(timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return (await controlCall(this.controlPath, 'node.show', {}, timeoutMs)) as Record<string, unknown>;
  }

  async counters(timeoutMs = 10_000): Promise<VictimCounters> {
    return countersOf(await this.show(timeoutMs));
  }

  /** SIGTERM (a clean shutdown), SIGKILL if it is still there after `graceMs`; then its home goes. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.alive()) {
      process.kill(this.pid, 'SIGTERM');
      const until = Date.now() + graceMs;
      while (this.alive() && Date.now() < until) await sleep(50);
      if (this.alive()) process.kill(this.pid, 'SIGKILL');
      while (this.alive()) await sleep(20);
    }
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** Whether `pid` is a running keyhop node (its command line runs the CLI's main.js). */
function isKeyhopNode(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return cmd.includes('main.js') && state !== 'Z';
  } catch {
    return false;
  }
}

export function countersOf(show: Record<string, unknown>): VictimCounters {
  const channels = (show.secureChannels as { state?: string }[] | undefined) ?? [];
  const byState: Record<string, number> = {};
  for (const c of channels) byState[c.state ?? '?'] = (byState[c.state ?? '?'] ?? 0) + 1;
  const metrics = (show.metrics ?? {}) as { dropped?: Record<string, number>; workerErrors?: number };
  return {
    secureChannelStats: (show.secureChannelStats ?? {}) as Record<string, number>,
    tcpStats: show.tcpStats ?? null,
    logSuppressed: show.logSuppressed ?? null,
    routerDropped: metrics.dropped ?? {},
    workerErrors: metrics.workerErrors ?? 0,
    channelEnds: channels.length,
    channelEndsByState: byState,
    tcpConnections: ((show.tcpConnections as unknown[] | undefined) ?? []).length,
    workers: ((show.workers as unknown[] | undefined) ?? []).length,
    memory: show.memory ?? show.memoryUsage ?? null,
  };
}

/** Attacker processes not yet exited (killed by `killLiveAttackers`). */
const liveAttackers = new Set<AttackerProcess>();

/** SIGKILLs every attacker process still running and waits until they are gone. */
export async function killLiveAttackers(): Promise<void> {
  await Promise.all([...liveAttackers].map((a) => a.kill()));
}

/** The attacker process: one job (bench/attack-child.ts), driven over IPC. */
export class AttackerProcess {
  private readonly child: ChildProcess;
  private readonly waiting: { type: string; resolve: (m: ChildMessage) => void }[] = [];
  private failure: string | undefined;
  private exited = false;
  private readonly exit: Promise<void>;

  constructor(job: AttackJob) {
    this.child = fork(builtFile('bench/attack-child.js'), [JSON.stringify(job)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    liveAttackers.add(this);
    // The attacker would be another machine: on one machine it must not take the CPU that the
    // well-behaved clients measure with (their latency would be the attacker's, not the victim's).
    try {
      if (this.child.pid !== undefined) setPriority(this.child.pid, 19);
    } catch {
      // not allowed here: measured as is
    }
    this.exit = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = true;
        liveAttackers.delete(this);
        if (this.failure === undefined && code !== 0 && signal !== 'SIGKILL') {
          this.failure = `attacker exited with ${code ?? signal}`;
        }
        for (const w of this.waiting.splice(0))
          w.resolve({ type: 'failed', error: this.failure ?? 'attacker exited' });
        resolve();
      });
    });
    this.child.on('message', (m: ChildMessage) => {
      if (m.type === 'failed') this.failure = m.error;
      const i = this.waiting.findIndex((w) => w.type === m.type || m.type === 'failed');
      if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(m);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  private next(type: string, timeoutMs: number): Promise<ChildMessage> {
    if (this.exited) return Promise.resolve({ type: 'failed', error: this.failure ?? 'attacker exited' });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`attacker: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const entry = {
        type,
        resolve: (m: ChildMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.waiting.push(entry);
    });
  }

  private async expect(type: 'started' | 'counters' | 'stopped', timeoutMs: number): Promise<AttackCounters> {
    const m = await this.next(type, timeoutMs);
    if (m.type === 'failed') throw new Error(`attacker failed: ${m.error}`);
    return (m as { counters: AttackCounters }).counters;
  }

  /** Resolves with its counters once the attack runs. */
  started(timeoutMs = 120_000): Promise<AttackCounters> {
    return this.expect('started', timeoutMs);
  }

  async counters(timeoutMs = 10_000): Promise<AttackCounters> {
    const p = this.expect('counters', timeoutMs);
    this.child.send({ type: 'counters' });
    return p;
  }

  /** Stops the attack and waits for the process to exit; its last counters. */
  async stop(timeoutMs = 30_000): Promise<AttackCounters> {
    const p = this.expect('stopped', timeoutMs);
    this.child.send({ type: 'stop' });
    const counters = await p;
    await this.exit;
    return counters;
  }

  /** SIGSTOP: the process is frozen with its sockets open (a peer that went silent). */
  freeze(): void {
    this.child.kill('SIGSTOP');
  }

  /** SIGKILL, and wait until it is gone. Safe to call at any time, also after it exited. */
  async kill(): Promise<void> {
    if (!this.exited) this.child.kill('SIGKILL');
    await this.exit;
  }
}
