/**
 * `npm run bench -- atecc608`: the ATECC608 vault's I2C path (native addon → LD_PRELOAD shim → Unix
 * socket → emulator, docs/protocols/i2c-emulator.md) against the targets of issue 5:
 * - zero-time chip model: the link's own overhead per command ≤ 1 ms, single commands and k commands
 *   in one wake, where overhead = (wall − tWHI − emulated execution) / commands;
 * - datasheet chip model: end-to-end sign (Nonce + Sign) and ECDH ≤ the sum of the commands'
 *   datasheet budgets + 5 % (atecc608.md §1.7, §6), on the raw wall time; GenKey and Random are
 *   measured the same way for information (no target);
 * - the same operations in the software vault (node:crypto), for comparison (no target).
 *
 * This process provisions an emulated chip (cryptoauthlib's test config, config locked, P-256 keys
 * in slots 0 and 2, data locked), serves two copies of it on one socket (bus 1 zero-time, bus 2
 * datasheet timing) and runs bench/atecc608-child.ts in ONE child Node process started with
 * LD_PRELOAD=<shim> (it only takes effect at process start); the child measures and prints JSON.
 *
 * Flags (all optional): --iterations=300 (zero-model transactions per operation) --warmup=30
 * --datasheet-iterations=15 --batch=8 (commands per batched wake, at most 16) --software-ms=1000
 * --poll-interval-us=1000 (the link's polling interval: the addon polls at once after the command
 * write, then every this many µs).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../runtime/errors.js';
import { buildI2cShim, i2cRigSkipReason, shimEnv } from '../test/rig/i2c-shim.js';
import { Atecc608 } from '../vaults/atecc608/device.js';
import { Atecc608Chip, type ChipImage } from '../vaults/atecc608/emulator/chip.js';
import { EmulatorLink } from '../vaults/atecc608/emulator/emulator-link.js';
import { EmulatedI2cBus } from '../vaults/atecc608/emulator/i2c-bus.js';
import { I2cSocketServer } from '../vaults/atecc608/emulator/i2c-socket-server.js';
import { testConfig } from '../vaults/atecc608/emulator/test-helpers.js';
import { addonPath } from '../vaults/atecc608/links/native-addon.js';
import { Opcode } from '../vaults/atecc608/protocol/opcodes.js';
import { budgetMs } from '../vaults/atecc608/protocol/timing.js';
import type { ChildParams, ChildReport, LinkSample, SoftwareSample } from './atecc608-child.js';
import { type BenchFlags, type Benchmark, type BenchReport, formatTable, intFlag } from './harness.js';
import { median, round } from './support.js';

const CHILD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'atecc608-child.js');
const KEY_SLOT = 0;
const GENKEY_SLOT = 2;
const ZERO_BUS = 1;
const DATASHEET_BUS = 2;
/** tWHI: the wait between wake pulse and wake-token read the protocol requires (§1.2). */
const WAKE_DELAY_US = 1500;
const LINK_TARGET_MS = 1;
const DATASHEET_TARGET_RATIO = 1.05;
/** The datasheet-model operations the issue sets the budget + 5 % target on; the others are informational. */
const DATASHEET_TARGET_OPS: ReadonlySet<string> = new Set(['sign', 'ECDH']);

const OPCODES: Record<string, number> = {
  Info: Opcode.INFO,
  Random: Opcode.RANDOM,
  Read: Opcode.READ,
  Nonce: Opcode.NONCE,
  Sign: Opcode.SIGN,
  ECDH: Opcode.ECDH,
  GenKey: Opcode.GENKEY,
};

const budgetOf = (commands: readonly string[]) =>
  commands.reduce((sum, c) => sum + budgetMs(OPCODES[c] ?? -1, 'M0'), 0);

/**
 * A chip provisioned as cryptoauthlib's tests expect it (test config written and locked, P-256 keys
 * generated in KEY_SLOT and GENKEY_SLOT, data zone locked), through the protocol core over the
 * in-process EmulatorLink. Returned as an image so several chips (with different timing) start alike.
 */
async function provisionedImage(): Promise<ChipImage> {
  const chip = new Atecc608Chip({ timing: 'zero', seed: 'keyhop bench atecc608' });
  const dev = new Atecc608(new EmulatorLink(chip));
  const factory = await dev.readConfigZone();
  await dev.writeConfigZone(testConfig(factory));
  await dev.lockConfig(await dev.readConfigZone());
  await dev.genKey(KEY_SLOT);
  await dev.genKey(GENKEY_SLOT);
  await dev.lockData();
  await dev.sleep();
  return chip.exportImage();
}

/** chip.execute calls of one emulated chip: when (epoch ms), which opcode, how long (µs). */
interface ExecLog {
  at: number[];
  opcode: number[];
  us: number[];
}

/**
 * Wraps `chip.execute` (on this instance only) to log what the emulated chip itself spends computing
 * each command (P-256 in JavaScript, SHA, RNG) while it serves the child. In the zero-time model this
 * time stands in for the chip's execution: it is chip time, not link overhead, so it is matched to the
 * child's transactions by time and subtracted. In the datasheet model the bus starts the busy time
 * when the command write arrives, before execute runs, so this time lies inside the busy time (as a
 * real chip's computing does) and is only reported.
 */
function logExecute(chip: Atecc608Chip): ExecLog {
  const log: ExecLog = { at: [], opcode: [], us: [] };
  const execute = chip.execute.bind(chip);
  chip.execute = (packet: Uint8Array) => {
    const t0 = performance.now();
    const result = execute(packet);
    const t1 = performance.now();
    log.at.push(performance.timeOrigin + t0);
    log.opcode.push(packet[1] ?? -1);
    log.us.push((t1 - t0) * 1000);
    return result;
  };
  return log;
}

/** Median compute per opcode name over the whole run, µs (for the notes). */
function execMedians(log: ExecLog): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, opcode] of Object.entries(OPCODES)) {
    const list = log.us.filter((_, i) => log.opcode[i] === opcode);
    if (list.length > 0) out[name] = median(list);
  }
  return out;
}

/** Emulator compute (ms) inside each of the sample's transactions, from the log (both in time order). */
function execPerTransaction(s: LinkSample, log: ExecLog): number[] {
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < s.startsMs.length; i++) {
    const start = s.startsMs[i]!;
    const end = start + s.wallsMs[i]!;
    while (j < log.at.length && log.at[j]! < start) j++;
    let us = 0;
    for (let m = j; m < log.at.length && log.at[m]! <= end; m++) us += log.us[m]!;
    out.push(us / 1000);
  }
  return out;
}

function quantiles(xs: readonly number[]): { median: number; p95: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: median(s), p95: s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)]! };
}

/** Runs the child under the shim; its stderr (progress) is passed through, its stdout is the report. */
function runChild(shim: string, socket: string, params: ChildParams): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD_SCRIPT, JSON.stringify(params)], {
      env: shimEnv({ shim, socket }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      process.stderr.write(d);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15 * 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || last === '') {
        reject(
          new Error(`atecc608 bench child exited with ${code ?? signal}: ${stderr.trim().slice(-2000)}`),
        );
        return;
      }
      try {
        resolve(JSON.parse(last) as ChildReport);
      } catch (e) {
        reject(
          new Error(
            `atecc608 bench child printed no JSON report (${describeError(e)}): ${last.slice(0, 200)}`,
          ),
        );
      }
    });
  });
}

/** Refuses to run, saying what to do, when a piece of the rig is missing. */
function checkRig(): void {
  const addon = addonPath();
  if (!existsSync(addon)) {
    throw new Error(
      `the ATECC608 I2C addon is not built (${addon} is missing): run \`npm run build:native\` first ` +
        '(or build with cmake-js and set KEYHOP_ATECC608_ADDON)',
    );
  }
  const reason = i2cRigSkipReason();
  if (reason !== undefined) throw new Error(`atecc608 bench: ${reason.replace(': skipped', '')}`);
}

interface ZeroRow {
  op: string;
  commands: string[];
  wallMedianMs: number;
  wallP95Ms: number;
  /** (wall − tWHI) / commands, literally (median wall); contains the emulated execution. */
  netOfWakePerCommandMs: number;
  /** What the emulated chip computed (P-256 etc.), summed over the commands (median per transaction). */
  emulatorExecMs: number;
  /** (wall − tWHI − emulated execution) / commands: the link's own cost per command (median). */
  linkOverheadPerCommandMs: number;
  linkOverheadPerCommandP95Ms: number;
  target: number;
  targetMet: boolean;
  /** From the addon's own timings (medians): where the overhead goes, µs. */
  breakdownUs: {
    wakeBeyondTwhi: number;
    stepsBeyondExecPerCommand: number;
    openLockIdleClose: number;
    jsAndThreadHop: number;
  };
  note: string;
}

interface DatasheetRow {
  op: string;
  commands: string[];
  wallMedianMs: number;
  wallP95Ms: number;
  minMs: number;
  budgetMs: number;
  /** Median wall / budget: the verdict's ratio (sign, ECDH). */
  ratio: number;
  ratioP95: number;
  /** (median wall − tWHI) / budget: the same without the wake, which no budget contains. */
  ratioNetOfWake: number;
  /**
   * What the emulator computed per transaction (median). The bus starts the busy time when the
   * command write arrives, so this lies inside the busy time, as a real chip's computing does: shown
   * for information, not subtracted.
   */
  emulatorExecMs: number;
  /** DATASHEET_TARGET_RATIO for sign and ECDH; null (no target, informational) for GenKey and Random. */
  target: number | null;
  targetMet: boolean | null;
  note: string;
}

interface SoftwareRow {
  op: string;
  softwareOpsPerSec: number;
  softwareMedianUs: number;
  chipOp: string;
  chipOpsPerSec: number;
  /** Software ops/s over chip (datasheet model) ops/s. */
  softwareOverChip: number;
  note: string;
}

const ZERO_NOTES: Record<string, string> = {
  Info: 'Info (revision) alone in one wake: open, flock, wake, write, poll, 7-byte read, idle, close',
  Random: 'Random alone in one wake: 35-byte response',
  'Read-32': 'Read of config block 0 (32 bytes) alone in one wake',
  'Nonce+Sign': 'the vault sign path: Nonce pass-through (41-byte write) + Sign (67-byte response), one wake',
  ECDH: 'ECDH with the slot key, 73-byte write, 35-byte response, one wake',
};

function zeroRow(s: LinkSample, log: ExecLog): ZeroRow {
  const k = s.commands.length;
  const exec = execPerTransaction(s, log);
  const emulatorExecMs = median(exec);
  const twhiMs = WAKE_DELAY_US / 1000;
  const perTransaction = quantiles(s.wallsMs.map((w, i) => (w - twhiMs - exec[i]!) / k));
  const overhead = perTransaction.median;
  const base = s.op.split(' x')[0]!.replace(/^\(|\)$/g, '');
  const note =
    ZERO_NOTES[s.op] ??
    `${k} commands (${[...new Set(s.commands)].join('+')}) in one wake: per-command cost with the wake shared (${base})`;
  return {
    op: s.op,
    commands: s.commands,
    wallMedianMs: s.wallMs.median,
    wallP95Ms: s.wallMs.p95,
    netOfWakePerCommandMs: (s.wallMs.median - twhiMs) / k,
    emulatorExecMs,
    linkOverheadPerCommandMs: overhead,
    linkOverheadPerCommandP95Ms: perTransaction.p95,
    target: LINK_TARGET_MS,
    targetMet: overhead <= LINK_TARGET_MS,
    breakdownUs: {
      wakeBeyondTwhi: s.addonWakeUs.median - WAKE_DELAY_US,
      stepsBeyondExecPerCommand: (s.addonStepsUs.median - emulatorExecMs * 1000) / k,
      openLockIdleClose: s.addonTotalUs.median - s.addonWakeUs.median - s.addonStepsUs.median,
      jsAndThreadHop: s.wallMs.median * 1000 - s.addonTotalUs.median,
    },
    note,
  };
}

const DATASHEET_NOTES: Record<string, string> = {
  sign: 'vault sign: SHA-256 on the host, Nonce pass-through + Sign in one wake; chip busy 20 + 115 ms',
  ECDH: 'ECDH with the slot key (clear output); chip busy 75 ms',
  GenKey: 'GenKey of a new P-256 key in slot 2; chip busy 115 ms; informational (no target in the issue)',
  Random:
    "Random (32 bytes); chip busy 23 ms; informational (no target in the issue): the 23 ms budget cannot absorb the 1.5 ms tWHI of Random's own wake (6.5 % of it), so budget + 5 % is out of reach by construction",
};

function datasheetRow(s: LinkSample, log: ExecLog): DatasheetRow {
  const budget = budgetOf(s.commands);
  const ratio = s.wallMs.median / budget;
  const emulatorExecMs = median(execPerTransaction(s, log));
  const target = DATASHEET_TARGET_OPS.has(s.op) ? DATASHEET_TARGET_RATIO : null;
  return {
    op: s.op,
    commands: s.commands,
    wallMedianMs: s.wallMs.median,
    wallP95Ms: s.wallMs.p95,
    minMs: s.wallMs.min,
    budgetMs: budget,
    ratio,
    ratioP95: s.wallMs.p95 / budget,
    ratioNetOfWake: (s.wallMs.median - WAKE_DELAY_US / 1000) / budget,
    emulatorExecMs,
    target,
    targetMet: target === null ? null : ratio <= target,
    note: DATASHEET_NOTES[s.op] ?? '',
  };
}

function softwareRows(software: SoftwareSample[], datasheet: LinkSample[]): SoftwareRow[] {
  const pairs: [string, string, string][] = [
    ['P-256 sign (SHA-256 + ECDSA)', 'sign', 'SoftwareVault.sign (node:crypto P-256, SHA-256 of 32 bytes)'],
    ['P-256 ECDH', 'ECDH', 'crypto.createECDH(prime256v1).computeSecret(peer point)'],
    ['randomBytes(32)', 'Random', 'crypto.randomBytes(32)'],
  ];
  const rows: SoftwareRow[] = [];
  for (const [op, chipOp, note] of pairs) {
    const soft = software.find((s) => s.op === op);
    const chip = datasheet.find((s) => s.op === chipOp);
    if (soft === undefined || chip === undefined) continue;
    const chipOpsPerSec = 1000 / chip.wallMs.median;
    rows.push({
      op,
      softwareOpsPerSec: soft.opsPerSec,
      softwareMedianUs: soft.medianUs,
      chipOp,
      chipOpsPerSec,
      softwareOverChip: soft.opsPerSec / chipOpsPerSec,
      note,
    });
  }
  return rows;
}

const verdict = (met: boolean) => (met ? 'MET' : 'NOT MET');
const ms = (x: number, d = 3) => x.toFixed(d);

async function run(flags: BenchFlags): Promise<BenchReport> {
  const params: ChildParams = {
    zeroBus: ZERO_BUS,
    datasheetBus: DATASHEET_BUS,
    iterations: intFlag(flags, 'iterations', 300),
    warmup: intFlag(flags, 'warmup', 30),
    datasheetIterations: intFlag(flags, 'datasheet-iterations', 15),
    batch: intFlag(flags, 'batch', 8),
    softwareMs: intFlag(flags, 'software-ms', 1000),
    keySlot: KEY_SLOT,
    genKeySlot: GENKEY_SLOT,
    wakeDelayUs: WAKE_DELAY_US,
    pollIntervalUs: intFlag(flags, 'poll-interval-us', 1000),
  };
  if (params.batch < 2 || params.batch > 16) throw new Error('--batch must be 2..16 (commands in one wake)');
  checkRig();
  const shim = await buildI2cShim();
  const image = await provisionedImage();

  const dir = await mkdtemp(join(tmpdir(), 'keyhop-bench-atecc608-'));
  const socket = join(dir, 'i2c.sock');
  const zeroChip = Atecc608Chip.fromImage(image, { timing: 'zero' });
  const dsChip = Atecc608Chip.fromImage(image, { timing: 'datasheet' });
  const zeroExec = logExecute(zeroChip);
  const dsExec = logExecute(dsChip);
  const zeroBus = new EmulatedI2cBus();
  zeroBus.attach(zeroChip);
  const dsBus = new EmulatedI2cBus();
  dsBus.attach(dsChip);
  const server = await I2cSocketServer.listen(
    socket,
    new Map([
      [ZERO_BUS, zeroBus],
      [DATASHEET_BUS, dsBus],
    ]),
  );
  let report: ChildReport;
  try {
    report = await runChild(shim, socket, params);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  const { checks } = report;
  if (!checks.signatureVerifies || !checks.ecdhMatchesSoftware || !checks.datasheetSignatureVerifies) {
    throw new Error(`atecc608 bench: the chip's answers are wrong: ${JSON.stringify(checks)}`);
  }

  const execUs = { zeroTime: execMedians(zeroExec), datasheet: execMedians(dsExec) };
  const zero = report.zero.map((s) => zeroRow(s, zeroExec));
  const datasheet = report.datasheet.map((s) => datasheetRow(s, dsExec));
  const software = softwareRows(report.software, report.datasheet);
  const worstOverhead = Math.max(...zero.map((r) => r.linkOverheadPerCommandMs));
  const worstLiteral = Math.max(...zero.map((r) => r.netOfWakePerCommandMs));
  const linkMet = zero.every((r) => r.targetMet);

  const rows: (string | number)[][] = [
    ...zero.map((r) => [
      'zero',
      r.op,
      r.commands.length,
      ms(r.wallMedianMs),
      ms(r.wallP95Ms),
      'link overhead/cmd ms (literal (wall-tWHI)/cmd)',
      `${ms(r.linkOverheadPerCommandMs)} (literal ${ms(r.netOfWakePerCommandMs)}; p95 ${ms(r.linkOverheadPerCommandP95Ms)})`,
      `<= ${LINK_TARGET_MS} ms`,
      verdict(r.targetMet),
    ]),
    ...datasheet.map((r) => [
      'datasheet',
      r.op,
      r.commands.length,
      ms(r.wallMedianMs, 2),
      ms(r.wallP95Ms, 2),
      `ratio vs budget ${r.budgetMs} ms`,
      `${r.ratio.toFixed(3)} (p95 ${r.ratioP95.toFixed(3)}; w/o tWHI ${r.ratioNetOfWake.toFixed(3)})`,
      r.target === null ? 'none' : `<= ${r.target}`,
      r.targetMet === null ? 'info' : verdict(r.targetMet),
    ]),
    ...software.map((r) => [
      'software',
      r.op,
      '',
      ms(r.softwareMedianUs / 1000, 4),
      '',
      `ops/s vs chip ${r.chipOp} ${r.chipOpsPerSec.toFixed(1)}`,
      `${r.softwareOpsPerSec.toFixed(0)} (${r.softwareOverChip.toFixed(0)}x)`,
      'none',
      '',
    ]),
  ];

  const detail = formatTable({
    columns: [
      'operation',
      'cmds',
      'wall med',
      'wall p95',
      '(wall-tWHI)/cmd',
      'emu exec',
      'overhead/cmd',
      'wake+',
      'steps+/cmd',
      'open..close',
      'js hop',
    ],
    rows: zero.map((r) => [
      r.op,
      r.commands.length,
      ms(r.wallMedianMs),
      ms(r.wallP95Ms),
      ms(r.netOfWakePerCommandMs),
      ms(r.emulatorExecMs),
      ms(r.linkOverheadPerCommandMs),
      r.breakdownUs.wakeBeyondTwhi.toFixed(0),
      r.breakdownUs.stepsBeyondExecPerCommand.toFixed(0),
      r.breakdownUs.openLockIdleClose.toFixed(0),
      r.breakdownUs.jsAndThreadHop.toFixed(0),
    ]),
  });

  const notes = [
    `Zero-time model, ${params.iterations} transactions per row after ${params.warmup} warm-up (times in ms; breakdown in µs from the addon's own timings, medians):`,
    detail,
    `link overhead/cmd = (wall - tWHI ${WAKE_DELAY_US / 1000} ms - emulated execution) / commands; the verdict (<= ${LINK_TARGET_MS} ms) is on its median.`,
    '  tWHI is the wait after the wake the protocol requires (§1.2); the addon polls at once after each command write, then every',
    `  ${params.pollIntervalUs} µs, so no poll wait is subtracted (in the zero-time model the first poll finds the response ready).`,
    '  emu exec = the emulator computing the commands (P-256 in JS), chip.execute timed while serving and matched to each transaction by time.',
    "  It is subtracted because it is the chip's execution, not the link's: a real chip spends its own execution time there.",
    '  Medians/p95 are over per-transaction values. (wall-tWHI)/cmd = the literal definition, emulated execution included.',
    '  wake+ = addon wake time beyond tWHI; steps+/cmd = addon step time (write, polls, read) beyond emulated execution;',
    '  open..close = open, flock, I2C_SLAVE, idle and close; js hop = JS promise + addon worker thread round trip.',
    `Datasheet model (${params.datasheetIterations} transactions per row): ratio = median wall / sum of the commands' M0 budgets (§1.7), raw:`,
    '  the emulator bus starts the busy time when the command write arrives, so the emulator computing (P-256 in JS) runs inside',
    "  the busy time as a real chip's does, and nothing is subtracted. p95 = p95 wall / budget; w/o tWHI = (median wall - tWHI) / budget.",
    `  Targets (issue): sign and ECDH <= budget x ${DATASHEET_TARGET_RATIO}; GenKey and Random are informational (target none).`,
    ...datasheet.map(
      (r) =>
        `  ${r.op.padEnd(7)} median ${ms(r.wallMedianMs, 2)} ms, min ${ms(r.minMs, 2)}, p95 ${ms(r.wallP95Ms, 2)}; budget ${r.budgetMs} ms; ` +
        `ratio ${r.ratio.toFixed(3)}, p95 ${r.ratioP95.toFixed(3)}, without tWHI ${r.ratioNetOfWake.toFixed(3)}; ` +
        `emulator compute ${ms(r.emulatorExecMs, 2)} ms (inside the busy time): ${r.note}`,
    ),
    'Software vault (node:crypto, same process as the link): ops/s over a timed loop; (Nx) = software ops/s / chip ops/s (datasheet model, one chip, serial).',
    ...software.map((r) => `  ${r.op}: ${r.note}`),
    ...Object.entries(execUs).map(
      ([model, m]) =>
        `Emulator compute per command, ${model} chip (µs, median over the run): ${Object.entries(m)
          .map(([k, v]) => `${k} ${v.toFixed(0)}`)
          .join(', ')}.`,
    ),
    `Checks: revision ${checks.revision}; chip signature verifies with node:crypto: ${checks.signatureVerifies}; chip ECDH equals node:crypto ECDH: ${checks.ecdhMatchesSoftware}.`,
  ];

  return {
    parameters: {
      ...params,
      chip: 'emulated ATECC608A, cryptoauthlib test config, config and data locked, keys in slots 0 and 2',
      path: 'I2cLink → native addon (worker thread, i2c-dev) → LD_PRELOAD i2c_shim.so → Unix socket → I2cSocketServer → EmulatedI2cBus (100 kHz wake model) → Atecc608Chip',
      clockDivider: 'M0',
    },
    results: {
      zeroTime: zero,
      datasheet,
      software,
      emulatorExecUs: execUs,
      // The child's report without the per-transaction series (stats are kept).
      raw: {
        ...report,
        zero: report.zero.map(({ startsMs: _s, wallsMs: _w, ...rest }) => rest),
        datasheet: report.datasheet.map(({ startsMs: _s, wallsMs: _w, ...rest }) => rest),
      },
    },
    summary: {
      targets: {
        linkOverheadPerCommand: {
          target: `<= ${LINK_TARGET_MS} ms (median of (wall - tWHI - emulated execution) / commands, zero-time model)`,
          worstMs: round(worstOverhead, 4),
          worstLiteralMs: round(worstLiteral, 4),
          met: linkMet,
        },
        datasheet: Object.fromEntries(
          datasheet.map((r) => [
            r.op,
            {
              budgetMs: r.budgetMs,
              ratio: round(r.ratio, 4),
              ratioP95: round(r.ratioP95, 4),
              ratioWithoutTwhi: round(r.ratioNetOfWake, 4),
              target: r.target ?? 'none (informational)',
              met: r.targetMet,
            },
          ]),
        ),
        datasheetTargetsMet: datasheet.every((r) => r.targetMet !== false),
        software: 'none set (ratios reported)',
      },
    },
    table: {
      columns: ['model', 'operation', 'cmds', 'median ms', 'p95 ms', 'measure', 'value', 'target', 'verdict'],
      rows,
    },
    notes,
  };
}

export const atecc608Benchmark: Benchmark = {
  description:
    'ATECC608 over addon + I2C shim + emulator: link overhead per command (zero-time chip), sign/ECDH vs datasheet budgets (GenKey/Random informational), software vault for comparison',
  run,
};
