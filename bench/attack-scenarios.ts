/**
 * The attacks of the attack benchmark (bench/attack.ts, docs/performance.md "Attack benchmark"),
 * shared with its short form in CI (test/integration/attack.test.ts). Each attack gets a fresh
 * victim node process, measures the well-behaved clients' handshakes before (idle), during and
 * after it, the victim's RSS, log growth and counters, and hands back figures and target flags.
 * A failed target is a figure, not an exception: every attack runs to the end and cleans up.
 */

import { type AddressInfo, createServer } from 'node:net';
import type { SecureChannelEnd } from '../runtime/channel/secure-channel.js';
import { describeError } from '../runtime/errors.js';
import type { Context } from '../runtime/routing/context.js';
import { Route } from '../runtime/routing/route.js';
import type { AttackCounters, AttackJob } from './attack-child.js';
import {
  type ClientNode,
  clientNode,
  HandshakeClients,
  type PhaseRecord,
  percentile,
  QuietChannels,
} from './attack-clients.js';
import { Inspector } from './attack-inspect.js';
import {
  AttackerProcess,
  killLiveAttackers,
  type LogSummary,
  RssWatch,
  summarizeLog,
  Victim,
  type VictimCounters,
} from './attack-victim.js';
import { FrameProxy, flipPayloadBit, frameTarget, readdress } from './attack-wire.js';

const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** The one source of every single-source attack. */
export const ATTACK_SOURCE = '127.0.0.250';
/** Where the replay proxy connects to the victim from. */
const PROXY_SOURCE = '127.0.0.240';
/** Well-behaved clients: 127.0.0.2, 127.0.0.3, … (one source each), then the quiet channels. */
const clientSource = (i: number) => `127.0.0.${2 + i}`;
/** The many sources of the distributed half-open attack: 127.1.x.y, away from the clients'. */
const manySource = (i: number) => `127.1.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

export const ATTACKS = {
  n: {
    name: 'no attack (control)',
    description:
      'nothing but the well-behaved clients for the same duration: how the victim RSS and log move under ' +
      'their handshakes alone, the reference for the other rows',
    singleSource: true,
  },
  a: {
    name: 'first-message flood',
    description:
      'one source, N TCP connections writing framed Noise message 1s as fast as the sockets take them ' +
      '(a pool of pre-encoded frames, each a fresh ephemeral key and a distinct return address, cycled), ' +
      'reading and discarding the answers',
    singleSource: true,
  },
  b: {
    name: 'half-open, one source',
    description:
      'one source sends message 1s (distinct ephemerals and return routes) over 4 connections once, ' +
      'reads and ignores the answers, and keeps the connections open and silent for the duration',
    singleSource: true,
  },
  c: {
    name: 'half-open, many sources',
    description:
      'the same message 1s spread over many loopback sources (127.1.x.y), one connection each: a ' +
      'distributed attack, a different threat from one source (informational)',
    singleSource: false,
  },
  d: {
    name: 'channel flood, then killed',
    description:
      'one client process opens complete channels under several identities (the victim allows 256 per ' +
      'peer identity), holds them, then is SIGKILLed: how much each channel costs, and how long until ' +
      'the victim has none open',
    singleSource: true,
  },
  e: {
    name: 'flooding channel vs quiet ones',
    description:
      "one channel sends payloads to the victim's echo as fast as its sends complete (a window of " +
      'sends that wait for the next hop); quiet channels from other sources do echo round trips, each ' +
      'waiting for its answer',
    singleSource: true,
  },
  f: {
    name: 'replay, bit flips, misaddressing',
    description:
      "a TCP proxy between a client and the victim copies the channel's frames: replays each, sends " +
      'copies with a payload bit flipped ahead of the genuine frames, and re-addresses copies to the ' +
      "client's second channel; counts what the victim's echo answered",
    singleSource: true,
  },
  g: {
    name: 'channel flood, then silent',
    description:
      'as d, but the client process is frozen (SIGSTOP) instead of killed: its TCP connections stay ' +
      'open and nothing more arrives, as from a peer cut off without a FIN',
    singleSource: true,
  },
} as const;

export type AttackId = keyof typeof ATTACKS;
export const ATTACK_IDS = Object.keys(ATTACKS) as AttackId[];

export interface AttackParams {
  /** a, b, c, e: how long the attack runs, ms. */
  durationMs: number;
  /** Idle baseline of the clients' handshakes before each attack, ms (at least 2 handshakes per client). */
  baselineMs: number;
  /** Then the clients pause and the victim sits idle this long: its idle RSS is the median of the second half. */
  settleMs: number;
  /** RSS samples after the attack ends, ms after its end. */
  afterMs: readonly number[];
  /** Well-behaved clients (sources 127.0.0.2…). */
  clients: number;
  /** Each client starts a handshake every this many ms (or right after the last one if that took longer). */
  clientIntervalMs: number;
  /** Handshake (and echo) timeout of the clients. */
  handshakeTimeoutMs: number;
  /** a: connections of the flood and distinct frames in its pool. */
  floodConnections: number;
  poolSize: number;
  /** b, c: message 1s sent; c: over this many sources. */
  halfOpen: number;
  halfOpenSources: number;
  /** d, g: channels opened, under this many identities, this many handshakes in flight. */
  channels: number;
  identities: number;
  channelConcurrency: number;
  /** d, g: how long to wait, after the client leaves, for the victim to have no channel open. */
  leaveWaitMs: number;
  /** e: quiet channels and their round-trip interval; the flood's payload and window. */
  quietChannels: number;
  quietIntervalMs: number;
  floodPayloadBytes: number;
  floodWindow: number;
  /** f: genuine echoes captured, copies of each replayed. */
  genuine: number;
  replays: number;
  /**
   * Open the victim's V8 inspector (SIGUSR1) to read its heap at idle and after the attack, and
   * its RSS after a forced full GC (bench/attack-inspect.ts).
   */
  inspect: boolean;
  /** The CLI the victim runs (default: this checkout's dist/runtime/cli/main.js): to attack another build. */
  victimCli?: string;
  /** Progress lines (the benchmark prints them). */
  progress?: (line: string) => void;
}

/** The full run (`npm run bench -- attack`). */
export const FULL_PARAMS: AttackParams = {
  durationMs: 60_000,
  baselineMs: 6000,
  settleMs: 4000,
  afterMs: [10_000, 30_000],
  clients: 8,
  clientIntervalMs: 250,
  handshakeTimeoutMs: 10_000,
  floodConnections: 8,
  poolSize: 20_000,
  halfOpen: 2000,
  halfOpenSources: 250,
  channels: 2000,
  identities: 8,
  channelConcurrency: 24,
  leaveWaitMs: 90_000,
  quietChannels: 10,
  quietIntervalMs: 50,
  floodPayloadBytes: 256,
  floodWindow: 64,
  genuine: 50,
  replays: 3,
  inspect: true,
};

/** The short form (CI): a few seconds per attack. */
export const SHORT_PARAMS: AttackParams = {
  ...FULL_PARAMS,
  durationMs: 2500,
  baselineMs: 1000,
  settleMs: 1000,
  afterMs: [1000],
  clients: 3,
  clientIntervalMs: 200,
  poolSize: 2000,
  channels: 1000,
  identities: 4,
  leaveWaitMs: 20_000,
  quietChannels: 3,
  genuine: 20,
  replays: 2,
  inspect: false,
};

/** Handshakes (or round trips) of one phase, summarized. */
export interface PhaseFigures {
  attempted: number;
  completed: number;
  failed: number;
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  failures: Record<string, number>;
  examples: string[];
}

export interface Target {
  description: string;
  value: number | boolean | null;
  limit: number | boolean;
  /** null: not measured (no clients, the victim gone before it could be read…). */
  met: boolean | null;
}

export interface AttackResult {
  id: AttackId;
  name: string;
  description: string;
  /** The distributed attack (c) is reported against the same targets, but is not one they are set for. */
  informational: boolean;
  /** The harness itself failed (not a target): what happened. */
  error: string | null;
  victimSurvived: boolean;
  attackMs: number;
  idleRssMB: number | null;
  peakRssMB: number | null;
  rssDeltaMB: number | null;
  rssAfter: { afterMs: number; rssMB: number | null }[];
  rssAfterMB: number | null;
  rssAfterRatio: number | null;
  /** Victim RSS from the start of the attack to the last sample after it, every `timelineStepMs`. */
  rssTimeline: { tMs: number; rssMB: number }[];
  /** Log bytes written from the start of the attack to its end, and to the last after-sample. */
  logBytes: number;
  logBytesWithAfter: number;
  logTop: LogSummary['top'];
  logLines: number;
  /** Clients' handshakes by phase (null: this attack runs no clients). */
  handshakes: { idle: PhaseFigures; attack: PhaseFigures } | null;
  p99RatioToIdle: number | null;
  attacker: AttackCounters;
  victimBefore: VictimCounters | null;
  victimAtEnd: VictimCounters | null;
  victimAfter: VictimCounters | null;
  /** Counter changes over the attack (secureChannelStats, router drops). */
  victimDelta: Record<string, number>;
  /** What only this attack measures. */
  extra: Record<string, unknown>;
  /**
   * With `inspect`: the victim's heap (process.memoryUsage(), MiB) at idle and at the last sample
   * after the attack, then its RSS and heap after a forced full GC: what it still holds.
   */
  inside: Inside | null;
  targets: Record<string, Target>;
  /** Every target measured is met. */
  met: boolean;
}

const mb = (bytes: number | undefined | null): number | null =>
  bytes === undefined || bytes === null ? null : Number((bytes / MiB).toFixed(1));

export function figures(r: PhaseRecord): PhaseFigures {
  const p = (q: number) => {
    const v = percentile(r.latencies, q);
    return v === null ? null : Number(v.toFixed(1));
  };
  return {
    attempted: r.attempted,
    completed: r.completed,
    failed: r.failed,
    successRate: r.attempted === 0 ? null : Number((r.completed / r.attempted).toFixed(4)),
    p50Ms: p(50),
    p99Ms: p(99),
    maxMs: p(100),
    failures: r.failures,
    examples: r.examples,
  };
}

function delta(before: VictimCounters | null, after: VictimCounters | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (!before || !after) return out;
  for (const [k, v] of Object.entries(after.secureChannelStats)) {
    if (typeof v === 'number') out[k] = v - (before.secureChannelStats[k] ?? 0);
  }
  for (const [k, v] of Object.entries(after.routerDropped)) {
    const d = v - (before.routerDropped[k] ?? 0);
    if (d !== 0) out[`dropped_${k}`] = d;
  }
  out.workerErrors = after.workerErrors - before.workerErrors;
  return out;
}

/** What an attack function gets: the victim, the clients, and `begin()` to call when the attack really starts. */
interface AttackContext {
  victim: Victim;
  watch: RssWatch;
  p: AttackParams;
  idleRss: number;
  /** The attack is under way from now (the clients' handshakes count as "during the attack"). */
  begin(): void;
  /** Something to undo however the attack ends (run in reverse order). */
  defer(f: () => Promise<void>): void;
  quiet: QuietChannels | undefined;
  say(line: string): void;
}

interface AttackOutcome {
  attacker: AttackCounters;
  extra: Record<string, unknown>;
  targets?: Record<string, Target>;
}

/** Resolves once `cond()` holds (polled every `everyMs`) or `timeoutMs` passed; whether it held. */
async function poll(
  cond: () => Promise<boolean> | boolean,
  timeoutMs: number,
  everyMs = 100,
): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    try {
      if (await cond()) return true;
    } catch {
      // a victim too busy to answer this time: ask again
    }
    if (performance.now() > until) return false;
    await sleep(everyMs);
  }
}

async function attackerRun(
  ctx: AttackContext,
  job: AttackJob,
  hold: (atk: AttackerProcess, started: AttackCounters) => Promise<Record<string, unknown>>,
): Promise<AttackOutcome> {
  const atk = new AttackerProcess(job);
  ctx.defer(() => atk.kill());
  const started = await atk.started();
  ctx.begin();
  const extra = await hold(atk, started);
  const attacker = await atk.stop();
  return { attacker, extra };
}

const ATTACK_FNS: Record<AttackId, (ctx: AttackContext) => Promise<AttackOutcome>> = {
  async n(ctx) {
    ctx.begin();
    await sleep(ctx.p.durationMs);
    return { attacker: {}, extra: {} };
  },

  async a(ctx) {
    const { p, victim } = ctx;
    return attackerRun(
      ctx,
      {
        kind: 'first-message-flood',
        victim: victim.address,
        source: ATTACK_SOURCE,
        connections: p.floodConnections,
        poolSize: p.poolSize,
      },
      async () => {
        await sleep(p.durationMs);
        return {};
      },
    );
  },

  async b(ctx) {
    const { p, victim } = ctx;
    return attackerRun(
      ctx,
      {
        kind: 'half-open',
        victim: victim.address,
        sources: [ATTACK_SOURCE],
        count: p.halfOpen,
        connectionsPerSource: 4,
      },
      async () => {
        await sleep(p.durationMs);
        return {};
      },
    );
  },

  async c(ctx) {
    const { p, victim } = ctx;
    const sources = Array.from({ length: p.halfOpenSources }, (_, i) => manySource(i));
    return attackerRun(
      ctx,
      { kind: 'half-open', victim: victim.address, sources, count: p.halfOpen, connectionsPerSource: 1 },
      async () => {
        await sleep(p.durationMs);
        return {};
      },
    );
  },

  d: (ctx) => channelFloodAttack(ctx, 'kill'),
  g: (ctx) => channelFloodAttack(ctx, 'freeze'),

  async e(ctx) {
    const { p, victim } = ctx;
    return attackerRun(
      ctx,
      {
        kind: 'flooding-channel',
        victim: victim.address,
        source: ATTACK_SOURCE,
        payloadBytes: p.floodPayloadBytes,
        window: p.floodWindow,
        timeoutMs: p.handshakeTimeoutMs,
      },
      async () => {
        await sleep(p.durationMs);
        return {};
      },
    );
  },

  f: replayAttack,
};

/** d and g: open many channels from one process, then kill it (d) or freeze it (g). */
async function channelFloodAttack(ctx: AttackContext, leave: 'kill' | 'freeze'): Promise<AttackOutcome> {
  const { p, victim } = ctx;
  const identities = Math.max(1, p.identities);
  const atk = new AttackerProcess({
    kind: 'channel-flood',
    victim: victim.address,
    source: ATTACK_SOURCE,
    identities,
    perIdentity: Math.ceil(p.channels / identities),
    concurrency: p.channelConcurrency,
    timeoutMs: p.handshakeTimeoutMs,
  });
  ctx.defer(() => atk.kill());
  ctx.begin();
  const attacker = await atk.started(300_000);
  const opened = Number(attacker.opened ?? 0);
  ctx.say(`${opened} channels open (${JSON.stringify(attacker.failures)} failed)`);
  // The victim counts a channel once it accepted it: wait until it has them all.
  let open = 0;
  await poll(
    async () => {
      open = Number((await victim.counters()).secureChannelStats.channelsOpen ?? 0);
      return open >= opened;
    },
    30_000,
    250,
  );
  const rssOpen = victim.rss() ?? null;
  const perChannel = rssOpen === null || open === 0 ? null : (rssOpen - ctx.idleRss) / open;
  const t0 = performance.now();
  if (leave === 'kill') await atk.kill();
  else atk.freeze();
  let left = open;
  const closed = await poll(
    async () => {
      left = Number((await victim.counters()).secureChannelStats.channelsOpen ?? -1);
      return left === 0;
    },
    p.leaveWaitMs,
    250,
  );
  const closeMs = closed ? Math.round(performance.now() - t0) : null;
  ctx.say(
    closed
      ? `victim closed them all ${closeMs} ms after the client ${leave === 'kill' ? 'was killed' : 'went silent'}`
      : `victim still had ${left} channels open ${p.leaveWaitMs} ms after the client ${leave === 'kill' ? 'was killed' : 'went silent'}`,
  );
  if (leave === 'freeze') await atk.kill();
  const limitMs = 60_000;
  return {
    attacker,
    extra: {
      leave,
      channelsOpenAtVictim: open,
      rssWithChannelsMB: mb(rssOpen),
      rssPerChannelKB: perChannel === null ? null : Number((perChannel / 1024).toFixed(2)),
      channelsLeftAtEnd: left,
      closedAllAfterMs: closeMs,
      waitedMs: p.leaveWaitMs,
    },
    targets: {
      abandonedClosed: {
        description: `every channel of a client that ${leave === 'kill' ? 'was killed' : 'went silent'} is closed at the victim within 1 minute`,
        value: closeMs,
        limit: limitMs,
        // Not seen within a wait shorter than a minute: not measured rather than failed.
        met: closed ? closeMs! <= limitMs : p.leaveWaitMs >= limitMs ? false : null,
      },
    },
  };
}

/** Options of the victim's `node start` for an attack (the defaults otherwise). */
const VICTIM_ARGS: Partial<Record<string, string[]>> = { g: ['--channel-idle-timeout', '30s'] };

/** f: replayed, bit-flipped and misaddressed copies of a channel's frames, through a proxy. */
async function replayAttack(ctx: AttackContext): Promise<AttackOutcome> {
  const { p, victim } = ctx;
  const proxy = new FrameProxy(victim.address, PROXY_SOURCE);
  await proxy.listen();
  ctx.defer(() => proxy.close());
  const client: ClientNode = await clientNode('replay-client', '127.0.0.1');
  ctx.defer(() => client.router.shutdown());
  const route = `1#${proxy.address} => api`;
  const a = await client.channels.create(route, { timeoutMs: p.handshakeTimeoutMs });
  const b = await client.channels.create(route, { timeoutMs: p.handshakeTimeoutMs });
  // Their ends at the victim: the last address of each route to the peer.
  const aRemote = a.remoteRoute.last!.toString();
  const bRemote = b.remoteRoute.last!.toString();
  const ctxA = await client.router.context();
  const ctxB = await client.router.context();

  const sent = new Set<string>();
  const answers = new Map<string, number>();
  let corrupted = 0;
  const dec = new TextDecoder();
  const enc = new TextEncoder();
  /** Sends one echo through `end` and waits for its answer; other answers that arrive are counted too. */
  async function echo(c: Context, end: SecureChannelEnd, text: string): Promise<boolean> {
    sent.add(text);
    await c.send(Route.of(end.encryptor, 'echo'), enc.encode(text));
    const until = performance.now() + p.handshakeTimeoutMs;
    for (;;) {
      const left = until - performance.now();
      if (left <= 0) return false;
      let got: string;
      try {
        got = dec.decode((await c.receive(left)).payload);
      } catch {
        return false;
      }
      if (!sent.has(got)) corrupted++;
      answers.set(got, (answers.get(got) ?? 0) + 1);
      if (got === text) return true;
    }
  }
  /** Takes every answer that arrives within `ms` (late duplicates). */
  async function drainAnswers(c: Context, ms: number): Promise<void> {
    const until = performance.now() + ms;
    for (;;) {
      const left = until - performance.now();
      if (left <= 0) return;
      try {
        const got = dec.decode((await c.receive(left)).payload);
        if (!sent.has(got)) corrupted++;
        answers.set(got, (answers.get(got) ?? 0) + 1);
      } catch {
        return;
      }
    }
  }

  ctx.begin();
  // 1. Genuine echoes through a, every frame towards a's end at the victim copied.
  const captured: Buffer[] = [];
  proxy.onFrame = (dir, body) => {
    if (dir === 'toVictim' && frameTarget(body) === aRemote) captured.push(body);
    return 'forward';
  };
  let genuineOk = 0;
  for (let i = 0; i < p.genuine; i++) if (await echo(ctxA, a, `genuine ${i}`)) genuineOk++;
  proxy.onFrame = () => 'forward';

  // 2. Replays: every captured frame again, `replays` times, towards a.
  const replayed = captured.flatMap((f) => Array.from({ length: p.replays }, () => f));
  proxy.inject(replayed);
  // 3. Misaddressed: a's frames sent to b's end instead.
  const misaddressed = captured.map((f) => readdress(f, bRemote));
  proxy.inject(misaddressed);
  // 4. Bit flips: each new frame towards a is preceded by a copy with one payload bit flipped
  //    (same nonce, so only the authentication tag can tell them apart), and followed by a
  //    flipped copy of itself too.
  let flips = 0;
  proxy.onFrame = (dir, body) => {
    if (dir !== 'toVictim' || frameTarget(body) !== aRemote) return 'forward';
    flips += 2;
    return [flipPayloadBit(body, flips * 37), body, flipPayloadBit(body, flips * 53 + 11)];
  };
  let flippedOk = 0;
  for (let i = 0; i < p.genuine; i++) if (await echo(ctxA, a, `flipped ${i}`)) flippedOk++;
  proxy.onFrame = () => 'forward';

  // What the victim counted: wait until its end of a (and of b) dropped all it was sent.
  const injected = replayed.length + flips;
  let dropsA: Record<string, number> = {};
  let dropsB: Record<string, number> = {};
  // Messages each end at the victim authenticated (`received`): a's genuine ones, none for b.
  let receivedA = -1;
  let receivedB = -1;
  const endOf = (show: Record<string, unknown>, remote: string) =>
    (show.secureChannels as { remote: string; received?: number; dropped?: Record<string, number> }[]).find(
      (c) => c.remote === remote,
    );
  const sum = (d: Record<string, number>) => Object.values(d).reduce((x, y) => x + y, 0);
  const counted = await poll(
    async () => {
      const show = await victim.show();
      const endA = endOf(show, aRemote);
      const endB = endOf(show, bRemote);
      dropsA = endA?.dropped ?? {};
      dropsB = endB?.dropped ?? {};
      receivedA = endA?.received ?? -1;
      receivedB = endB?.received ?? -1;
      return sum(dropsA) >= injected && sum(dropsB) >= misaddressed.length;
    },
    10_000,
    100,
  );
  // Late duplicates (a replay that got through would be answered after its original).
  await drainAnswers(ctxA, 200);

  // 5. Both channels still work.
  let afterOk = 0;
  for (let i = 0; i < 5; i++) if (await echo(ctxA, a, `after ${i}`)) afterOk++;
  const bWorks = await echo(ctxB, b, 'b after');
  const duplicates = [...answers.values()].filter((n) => n > 1).length;
  const extraAnswers = [...answers.values()].reduce((x, n) => x + n - 1, 0);

  return {
    attacker: {
      framesCaptured: captured.length,
      replaysSent: replayed.length,
      bitFlipsSent: flips,
      misaddressedSent: misaddressed.length,
    },
    extra: {
      genuineSent: p.genuine,
      genuineAnswered: genuineOk,
      flippedRoundSent: p.genuine,
      flippedRoundAnswered: flippedOk,
      answersDuplicated: duplicates,
      extraAnswers,
      answersCorrupted: corrupted,
      channelWorksAfter: afterOk === 5,
      secondChannelWorksAfter: bWorks,
      victimDropsA: dropsA,
      victimDropsB: dropsB,
      victimAuthenticatedA: receivedA,
      victimAuthenticatedAExpected: 2 * p.genuine,
      victimAuthenticatedB: receivedB,
      victimCountedEveryDrop: counted,
    },
    targets: {
      noReplayDelivered: {
        description:
          'no replayed or misaddressed frame is delivered: no echo answered twice, and the victim ' +
          "authenticated exactly the genuine frames of a and none of a's frames sent to b",
        value: extraAnswers + Math.abs(receivedA - 2 * p.genuine) + Math.abs(receivedB),
        limit: 0,
        met: extraAnswers === 0 && receivedA === 2 * p.genuine && receivedB === 0,
      },
      noCorruptDelivered: {
        description: 'no bit-flipped frame is delivered (every answer is one that was sent)',
        value: corrupted,
        limit: 0,
        met: corrupted === 0,
      },
      channelWorksAfter: {
        description:
          'the attacked channels still work afterwards (genuine frames among the flipped ones too)',
        value: afterOk === 5 && bWorks && flippedOk === p.genuine && genuineOk === p.genuine,
        limit: true,
        met: afterOk === 5 && bWorks && flippedOk === p.genuine && genuineOk === p.genuine,
      },
    },
  };
}

function commonTargets(r: AttackResult, quiet: { idle: PhaseFigures; attack: PhaseFigures } | undefined) {
  const t: Record<string, Target> = {};
  t.rssDelta = {
    description: 'victim RSS stays within 64 MB of idle during the attack',
    value: r.rssDeltaMB,
    limit: 64,
    met: r.rssDeltaMB === null ? null : r.rssDeltaMB <= 64,
  };
  t.rssAfter = {
    description: 'victim RSS returns to within 10% of idle afterwards (last sample)',
    value: r.rssAfterRatio,
    limit: 1.1,
    met: r.rssAfterRatio === null ? null : r.rssAfterRatio <= 1.1,
  };
  t.log = {
    description: 'under 1 MB of log written from the start of the attack to the last sample after it',
    value: r.logBytesWithAfter,
    limit: MiB,
    met: r.logBytesWithAfter < MiB,
  };
  if (r.handshakes) {
    const s = r.handshakes.attack.successRate;
    t.success = {
      description: 'clients from other sources complete >= 99% of their handshakes during the attack',
      value: s,
      limit: 0.99,
      met: s === null ? null : s >= 0.99,
    };
    t.p99 = {
      description: "clients' handshake p99 during the attack <= 10x idle p99",
      value: r.p99RatioToIdle,
      limit: 10,
      met: r.p99RatioToIdle === null ? (s === 0 ? false : null) : r.p99RatioToIdle <= 10,
    };
  }
  if (quiet) {
    const ratio =
      quiet.attack.p99Ms !== null && quiet.idle.p99Ms
        ? Number((quiet.attack.p99Ms / quiet.idle.p99Ms).toFixed(2))
        : null;
    t.quietSuccess = {
      description: "quiet channels' echo round trips all complete (>= 99%) during the flood",
      value: quiet.attack.successRate,
      limit: 0.99,
      met: quiet.attack.successRate === null ? null : quiet.attack.successRate >= 0.99,
    };
    t.quietP99 = {
      description: "quiet channels' echo p99 during the flood <= 10x idle p99",
      value: ratio,
      limit: 10,
      met: ratio === null ? null : ratio <= 10,
    };
  }
  return t;
}

export interface Inside {
  idleHeap: Record<string, number> | null;
  afterHeap: Record<string, number> | null;
  afterGcHeap: Record<string, number> | null;
  afterGcRssMB: number | null;
  afterGcRssRatio: number | null;
  error: string | null;
}

const heapMB = (m: Record<string, number> | undefined): Record<string, number> | null =>
  m === undefined
    ? null
    : Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number((v / MiB).toFixed(1))]));

async function lookInside(
  inspector: Inspector,
  v: Victim,
  idle: Record<string, number> | undefined,
): Promise<Inside> {
  const out: Inside = {
    idleHeap: heapMB(idle),
    afterHeap: null,
    afterGcHeap: null,
    afterGcRssMB: null,
    afterGcRssRatio: null,
    error: null,
  };
  try {
    out.afterHeap = heapMB(await inspector.memoryUsage());
    await inspector.collectGarbage();
    await inspector.collectGarbage();
    // V8 hands freed pages back from a background task: give it a moment.
    await sleep(1000);
    out.afterGcHeap = heapMB(await inspector.memoryUsage());
    out.afterGcRssMB = mb(v.rss());
  } catch (e) {
    out.error = describeError(e);
  }
  return out;
}

async function freePort(): Promise<number> {
  const server = createServer();
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
  await new Promise((r) => server.close(r));
  return port;
}

/** Live victims, killed if this process exits before their attack cleaned up. */
const live = new Set<Victim>();
process.on('exit', () => {
  for (const v of live) {
    try {
      if (v.alive()) process.kill(v.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** Kills what an attack left running (one that was abandoned half-way, e.g. by a test timeout). */
export async function stopLiveVictims(): Promise<void> {
  await killLiveAttackers();
  for (const v of [...live]) {
    await v.stop(2000);
    live.delete(v);
  }
}

/** Runs one attack against a fresh victim and measures it; never throws (a harness failure is `error`). */
export async function runAttack(id: AttackId, params: AttackParams): Promise<AttackResult> {
  const info = ATTACKS[id];
  // The replay attack sends a few hundred frames: no clients, a short baseline, one sample after.
  const p: AttackParams =
    id === 'f'
      ? { ...params, baselineMs: Math.min(params.baselineMs, 2000), afterMs: params.afterMs.slice(0, 1) }
      : params;
  const say = (line: string) => p.progress?.(`[${id}] ${line}`);
  const result: AttackResult = {
    id,
    name: info.name,
    description: info.description,
    informational: !info.singleSource,
    error: null,
    victimSurvived: true,
    attackMs: 0,
    idleRssMB: null,
    peakRssMB: null,
    rssDeltaMB: null,
    rssAfter: [],
    rssAfterMB: null,
    rssAfterRatio: null,
    rssTimeline: [],
    logBytes: 0,
    logBytesWithAfter: 0,
    logTop: [],
    logLines: 0,
    handshakes: null,
    p99RatioToIdle: null,
    attacker: {},
    victimBefore: null,
    victimAtEnd: null,
    victimAfter: null,
    victimDelta: {},
    extra: {},
    inside: null,
    targets: {},
    met: false,
  };
  const deferred: (() => Promise<void>)[] = [];
  const undo = async () => {
    for (const f of deferred.splice(0).reverse()) {
      try {
        await f();
      } catch (e) {
        say(`cleanup: ${describeError(e)}`);
      }
    }
  };
  let victim: Victim | undefined;
  let clients: HandshakeClients | undefined;
  let quiet: QuietChannels | undefined;
  let quietFigures: { idle: PhaseFigures; attack: PhaseFigures } | undefined;
  let attackTargets: Record<string, Target> = {};
  try {
    const inspectPort = p.inspect ? await freePort() : undefined;
    // g measures the channel idle timeout: 30 s here (the default is 10 minutes, docs/security.md).
    victim = await Victim.start('victim', VICTIM_ARGS[id] ?? [], p.victimCli, inspectPort);
    const v = victim;
    live.add(v);
    deferred.push(async () => {
      await v.stop();
      live.delete(v);
    });
    say(`victim pid ${v.pid} listening on ${v.address}`);
    let inspector: Inspector | undefined;
    if (inspectPort !== undefined) {
      try {
        inspector = await Inspector.open(v.pid, inspectPort);
        const ins = inspector;
        deferred.push(async () => ins.close());
      } catch (e) {
        say(`no look inside the victim: ${describeError(e)}`);
      }
    }
    const watch = new RssWatch(v.pid);
    watch.start(200);
    deferred.push(async () => watch.stop());

    const withClients = id !== 'f' && p.clients > 0;
    if (withClients) {
      clients = await HandshakeClients.create(
        Array.from({ length: p.clients }, (_, i) => clientSource(i)),
        v.route,
        { intervalMs: p.clientIntervalMs, timeoutMs: p.handshakeTimeoutMs },
      );
      const c = clients;
      deferred.push(() => c.close());
    }
    if (id === 'e') {
      quiet = await QuietChannels.create(
        Array.from({ length: p.quietChannels }, (_, i) => clientSource(p.clients + i)),
        v.route,
        { intervalMs: p.quietIntervalMs, timeoutMs: p.handshakeTimeoutMs },
      );
      const q = quiet;
      deferred.push(() => q.close());
    }

    // Warm-up (not counted: the victim's first handshakes run cold code), then the idle baseline:
    // the clients' handshakes (and quiet round trips) on an unattacked victim.
    clients?.setPhase('warmup');
    quiet?.setPhase('warmup');
    clients?.start();
    quiet?.start();
    const tWarm = performance.now();
    await poll(
      () =>
        performance.now() - tWarm >= Math.min(1000, p.baselineMs / 3) &&
        (clients?.completed('warmup') ?? Number.POSITIVE_INFINITY) >= 2 * p.clients,
      30_000,
      50,
    );
    clients?.setPhase('idle');
    quiet?.setPhase('idle');
    const tIdle0 = performance.now();
    await poll(
      () =>
        performance.now() - tIdle0 >= p.baselineMs &&
        (clients?.completed('idle') ?? Number.POSITIVE_INFINITY) >= 2 * p.clients,
      Math.max(p.baselineMs, 30_000),
      50,
    );
    // Then nothing: the victim's idle RSS, after start-up and warm-up, with no traffic at all.
    await clients?.pause();
    await quiet?.pause();
    const tSettle0 = performance.now();
    await sleep(p.settleMs);
    const tSettle1 = performance.now();
    const idleRss = watch.medianBetween(tSettle0 + (tSettle1 - tSettle0) / 2, tSettle1) ?? v.rss() ?? 0;
    result.idleRssMB = mb(idleRss);
    const idleHeap = await inspector?.memoryUsage().catch(() => undefined);
    result.victimBefore = await v.counters().catch(() => null);
    say(`idle RSS ${result.idleRssMB} MB; attacking`);

    let tA0 = performance.now();
    let log0 = v.logBytes();
    const ctx: AttackContext = {
      victim: v,
      watch,
      p,
      idleRss,
      quiet,
      say,
      defer: (f) => deferred.push(f),
      begin() {
        tA0 = performance.now();
        log0 = v.logBytes();
        watch.sample();
        clients?.setPhase('attack');
        quiet?.setPhase('attack');
        clients?.resume();
        quiet?.resume();
      },
    };
    const outcome = await ATTACK_FNS[id](ctx);
    const tA1 = performance.now();
    watch.sample();
    const log1 = v.logBytes();
    result.attackMs = Math.round(tA1 - tA0);
    result.attacker = outcome.attacker;
    result.extra = outcome.extra;
    attackTargets = outcome.targets ?? {};
    result.peakRssMB = mb(watch.peakSince(tA0));
    result.rssDeltaMB = mb(watch.peakSince(tA0) - idleRss);
    // The clients stop too: RSS after the attack is read with the victim idle again, as idle RSS was.
    clients?.setPhase('after');
    quiet?.setPhase('after');
    const clientsDone = Promise.all([clients?.pause(), quiet?.pause()]);
    result.victimAtEnd = await v.counters().catch(() => null);
    say(
      `attack over after ${result.attackMs} ms: peak RSS ${result.peakRssMB} MB, log +${log1 - log0} bytes`,
    );

    for (const ms of p.afterMs) {
      await sleep(tA1 + ms - performance.now());
      const rss = v.rss();
      result.rssAfter.push({ afterMs: ms, rssMB: mb(rss) });
    }
    const last = result.rssAfter[result.rssAfter.length - 1]?.rssMB ?? null;
    result.rssAfterMB = last;
    result.rssAfterRatio =
      last === null || !result.idleRssMB ? null : Number((last / result.idleRssMB).toFixed(3));
    await clientsDone;
    result.rssTimeline = watch.timeline(
      tA0,
      Math.max(200, Math.round((tA1 - tA0 + (p.afterMs.at(-1) ?? 0)) / 50)),
    );
    await clients?.stop();
    await quiet?.stop();
    const log2 = v.logBytes();
    result.victimAfter = await v.counters().catch(() => null);
    result.victimDelta = delta(result.victimBefore, result.victimAfter ?? result.victimAtEnd);
    result.logBytes = log1 - log0;
    result.logBytesWithAfter = log2 - log0;
    if (inspector) {
      const inside = await lookInside(inspector, v, idleHeap);
      if (inside.afterGcRssMB !== null && result.idleRssMB) {
        inside.afterGcRssRatio = Number((inside.afterGcRssMB / result.idleRssMB).toFixed(3));
      }
      result.inside = inside;
    }
    const summary = await summarizeLog(v.logPath, log0, log2);
    result.logTop = summary.top;
    result.logLines = summary.lines;
    result.victimSurvived = v.alive();
  } catch (e) {
    result.error = describeError(e);
    say(`failed: ${result.error}`);
    if (victim) result.victimSurvived = victim.alive();
  } finally {
    if (clients) {
      result.handshakes = {
        idle: figures(clients.record('idle')),
        attack: figures(clients.record('attack')),
      };
      const idle = result.handshakes.idle.p99Ms;
      const attack = result.handshakes.attack.p99Ms;
      result.p99RatioToIdle = idle && attack !== null ? Number((attack / idle).toFixed(2)) : null;
    }
    if (quiet) {
      quietFigures = {
        idle: figures(quiet.record('idle')),
        attack: figures(quiet.record('attack')),
      };
      result.extra = { ...result.extra, quiet: { ...quietFigures, lateAnswers: quiet.lateAnswers } };
    }
    await undo();
  }
  result.targets = { ...commonTargets(result, quietFigures), ...attackTargets };
  if (result.error !== null) {
    for (const t of Object.values(result.targets)) if (t.met === true) t.met = null;
  }
  result.met = result.error === null && Object.values(result.targets).every((t) => t.met !== false);
  return result;
}
