/**
 * Attack benchmark (issue 23, docs/performance.md "Attack benchmark"): a real keyhop node process
 * (the victim, `keyhop node start` with a TCP listener and its default secure-channel listener) is
 * attacked over loopback sockets from an attacker process, while well-behaved clients from other
 * loopback sources keep doing complete handshakes with it. Reports, per attack, the victim's RSS
 * (idle, peak, after), its log growth, the clients' success rate and latency against idle, what
 * the attacker sent and got back, and whether each target is met.
 *
 * `npm run bench -- attack [--attacks=a,b,c,d,e,f,g] [--duration-ms=60000] [--clients=8]
 *  [--baseline-ms=6000] [--settle-ms=4000] [--after-ms=10000,30000] [--channels=2000] [--leave-wait-ms=90000] [--short]
 *  [--victim-cli=<another build's dist/runtime/cli/main.js>] [--no-inspect]`
 */

import { loadavg } from 'node:os';
import {
  ATTACK_IDS,
  ATTACKS,
  type AttackId,
  type AttackParams,
  type AttackResult,
  FULL_PARAMS,
  runAttack,
  SHORT_PARAMS,
} from './attack-scenarios.js';
import {
  type BenchFlags,
  type Benchmark,
  type BenchReport,
  type BenchTable,
  intFlag,
  intListFlag,
} from './harness.js';

/**
 * Attacks of a run without --attacks (`--attacks=all` adds g, which waits up to --leave-wait-ms
 * for the victim to drop a silent client's channels: 1.5 more minutes).
 */
const DEFAULT_ATTACKS: readonly AttackId[] = ['a', 'b', 'c', 'd', 'e', 'f'];

function params(flags: BenchFlags): { p: AttackParams; attacks: AttackId[] } {
  const base = flags.short !== undefined ? SHORT_PARAMS : FULL_PARAMS;
  const list = flags.attacks === 'all' ? ATTACK_IDS.join(',') : (flags.attacks ?? DEFAULT_ATTACKS.join(','));
  const attacks = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const unknown = attacks.filter((a) => !(ATTACK_IDS as string[]).includes(a));
  if (unknown.length > 0) {
    throw new Error(`--attacks: unknown ${unknown.join(', ')} (known: ${ATTACK_IDS.join(', ')})`);
  }
  const p: AttackParams = {
    ...base,
    durationMs: intFlag(flags, 'duration-ms', base.durationMs),
    baselineMs: intFlag(flags, 'baseline-ms', base.baselineMs),
    settleMs: intFlag(flags, 'settle-ms', base.settleMs),
    inspect: flags['no-inspect'] === undefined && base.inspect,
    afterMs: intListFlag(flags, 'after-ms', base.afterMs),
    clients: intFlag(flags, 'clients', base.clients),
    clientIntervalMs: intFlag(flags, 'client-interval-ms', base.clientIntervalMs),
    channels: intFlag(flags, 'channels', base.channels),
    identities: intFlag(flags, 'identities', base.identities),
    halfOpen: intFlag(flags, 'half-open', base.halfOpen),
    leaveWaitMs: intFlag(flags, 'leave-wait-ms', base.leaveWaitMs),
    quietChannels: intFlag(flags, 'quiet', base.quietChannels),
    ...(flags['victim-cli'] ? { victimCli: flags['victim-cli'] } : {}),
    progress: (line) => process.stdout.write(`${line}\n`),
  };
  return { p, attacks: [...new Set(attacks)] as AttackId[] };
}

const num = (x: number | null | undefined, digits = 1): string =>
  x === null || x === undefined ? '-' : x.toFixed(digits);

/** The one figure only this attack has. */
function notable(r: AttackResult): string {
  const x = r.extra as Record<string, unknown>;
  switch (r.id) {
    case 'a':
    case 'b':
    case 'c':
      return `refused ${(r.victimDelta.handshakesRefusedPerSource ?? 0) + (r.victimDelta.handshakesRefusedBusy ?? 0)}`;
    case 'd':
    case 'g':
      return (
        `${x.rssPerChannelKB ?? '-'} KB/ch, ` +
        (x.closedAllAfterMs === null || x.closedAllAfterMs === undefined
          ? `${x.channelsLeftAtEnd ?? '?'} open after ${Math.round(Number(x.waitedMs) / 1000)} s`
          : `all closed in ${x.closedAllAfterMs} ms`)
      );
    case 'e': {
      const q = r.targets.quietP99?.value;
      return `quiet p99 ${q ?? '-'}x idle`;
    }
    case 'n':
      return '-';
    case 'f':
      return `extra ${x.extraAnswers ?? '-'}, corrupt ${x.answersCorrupted ?? '-'}, works ${x.channelWorksAfter ?? '-'}`;
  }
}

function row(r: AttackResult): (string | number)[] {
  const h = r.handshakes;
  const met = Object.entries(r.targets)
    .filter(([, t]) => t.met === false)
    .map(([k]) => k);
  const attacker = r.attacker;
  const sent =
    attacker.framesSent ??
    attacker.opened ??
    attacker.messagesSent ??
    (attacker.replaysSent !== undefined
      ? Number(attacker.replaysSent) + Number(attacker.bitFlipsSent) + Number(attacker.misaddressedSent)
      : undefined);
  const back = attacker.repliesReceived ?? attacker.echoesReceived ?? '-';
  return [
    `${r.id} ${r.name}`,
    num(r.idleRssMB),
    num(r.peakRssMB),
    num(r.rssDeltaMB),
    r.rssAfterMB === null ? '-' : `${num(r.rssAfterMB)} (${num(r.rssAfterRatio, 2)}x)`,
    (r.logBytesWithAfter / 1024).toFixed(1),
    h ? `${h.attack.completed}/${h.attack.attempted}` : '-',
    h ? num(h.attack.successRate === null ? null : h.attack.successRate * 100, 1) : '-',
    h ? `${num(h.attack.p50Ms, 0)}/${num(h.attack.p99Ms, 0)}` : '-',
    h ? num(h.idle.p99Ms, 0) : '-',
    num(r.p99RatioToIdle, 1),
    `${sent ?? '-'}/${back}`,
    notable(r),
    r.error !== null ? 'ERROR' : met.length === 0 ? 'yes' : `no: ${met.join(',')}`,
  ];
}

function notesFor(r: AttackResult): string[] {
  const out: string[] = [`${r.id} ${r.name}${r.informational ? ' (informational)' : ''}:`];
  if (r.error !== null) out.push(`  harness error: ${r.error}`);
  if (!r.victimSurvived) out.push('  THE VICTIM PROCESS DIED');
  for (const [k, t] of Object.entries(r.targets)) {
    out.push(
      `  ${t.met === null ? 'n/a ' : t.met ? 'MET ' : 'FAIL'} ${k}: ${t.description}: ${JSON.stringify(t.value)}`,
    );
  }
  if (r.handshakes) {
    const { idle, attack } = r.handshakes;
    out.push(
      `  handshakes idle ${idle.completed}/${idle.attempted} p50 ${num(idle.p50Ms)} p99 ${num(idle.p99Ms)} ms; ` +
        `attack ${attack.completed}/${attack.attempted} p50 ${num(attack.p50Ms)} p99 ${num(attack.p99Ms)} max ${num(attack.maxMs)} ms`,
    );
    if (attack.failed > 0)
      out.push(`  failures: ${JSON.stringify(attack.failures)} e.g. ${attack.examples[0] ?? ''}`);
  }
  if (r.inside) {
    const i = r.inside;
    out.push(
      i.error !== null
        ? `  inside the victim: ${i.error}`
        : `  inside the victim (MiB): idle heapUsed ${i.idleHeap?.heapUsed ?? '-'}, after the attack heapUsed ${i.afterHeap?.heapUsed ?? '-'} ` +
            `heapTotal ${i.afterHeap?.heapTotal ?? '-'} external ${i.afterHeap?.external ?? '-'}; after a forced full GC: RSS ` +
            `${i.afterGcRssMB ?? '-'} (${num(i.afterGcRssRatio, 2)}x idle), heapUsed ${i.afterGcHeap?.heapUsed ?? '-'} heapTotal ${i.afterGcHeap?.heapTotal ?? '-'}`,
    );
  }
  out.push(`  attacker: ${JSON.stringify(r.attacker)}`);
  out.push(`  victim counters over the attack: ${JSON.stringify(r.victimDelta)}`);
  if (Object.keys(r.extra).length > 0) out.push(`  ${JSON.stringify(r.extra)}`);
  if (r.logTop.length > 0) {
    out.push(
      `  log: ${r.logBytes} bytes during, ${r.logBytesWithAfter} with after; most frequent: ` +
        r.logTop
          .slice(0, 4)
          .map((t) => `${t.count}x "${t.msg}"`)
          .join(', '),
    );
  }
  return out;
}

async function run(flags: BenchFlags): Promise<BenchReport> {
  const { p, attacks } = params(flags);
  const t0 = performance.now();
  const loadBefore = loadavg()[0];
  const results: AttackResult[] = [];
  for (const id of attacks) {
    process.stdout.write(`\n-- ${id}: ${ATTACKS[id].name}\n`);
    results.push(await runAttack(id, p));
  }
  const totalSeconds = (performance.now() - t0) / 1000;
  const table: BenchTable = {
    columns: [
      'attack',
      'idle MB',
      'peak MB',
      'delta MB',
      'after MB',
      'log KiB',
      'hs ok/tried',
      'ok %',
      'p50/p99 ms',
      'idle p99',
      'p99 x idle',
      'attacker sent/back',
      'notable',
      'met',
    ],
    rows: results.map(row),
  };
  const targets = Object.fromEntries(
    results.map((r) => [r.id, { informational: r.informational, ...r.targets }]),
  );
  const targetsMet = results.filter((r) => !r.informational).every((r) => r.met);
  const { progress: _progress, ...shown } = p;
  return {
    parameters: {
      ...shown,
      attacksRun: attacks,
      attacks: Object.fromEntries(attacks.map((id) => [id, ATTACKS[id]])),
      victim:
        'a keyhop node process: `keyhop node start victim --tcp-listener 127.0.0.1:0` (dist/ CLI) in a fresh ' +
        'KEYHOP_HOME per attack, default config: echo, secure-channel listener api with default limits, info log',
      clients:
        'keyhop nodes in the benchmark process, client i connecting from 127.0.0.(2+i), each doing complete ' +
        'handshakes (SecureChannels.create to 1#victim => api, confirm on) one at a time, then closing the channel',
      attacker: 'a separate process (dist/bench/attack-child.js) from 127.0.0.250 (c: 127.1.x.y)',
      units: {
        MB: 'MiB (2^20 bytes)',
        idleRssMB:
          "median VmRSS of the victim over the second half of the idle baseline (clients' handshakes running)",
        peakRssMB: 'highest VmRSS sampled every 200 ms from the start of the attack to its end',
        rssAfterMB:
          'VmRSS at the last afterMs sample after the attack ended (the clients stop with the attack: the victim is idle again)',
        logBytes:
          "growth of the victim's node.log during the attack; logBytesWithAfter: to the last after sample",
        successRate: 'completed / attempted handshakes started during the attack',
        p99RatioToIdle: "clients' handshake p99 during the attack / their p99 in the idle baseline",
      },
      loadAverage1m: { before: loadBefore, after: loadavg()[0] },
    },
    results: { attacks: results, totalSeconds: Number(totalSeconds.toFixed(1)) },
    summary: { targets, targetsMet },
    table,
    notes: [
      ...results.flatMap(notesFor),
      `Whole run ${totalSeconds.toFixed(0)} s; targets met (single-source attacks): ${targetsMet ? 'yes' : 'NO'}.`,
    ],
  };
}

export const attackBenchmark: Benchmark = {
  description:
    'attacks on a real node process (first-message flood, half-open handshakes, channel floods, a flooding channel, replays and bit flips): RSS, log, other clients',
  run,
};
