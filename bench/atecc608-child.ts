/**
 * The measuring half of `npm run bench -- atecc608` (bench/atecc608.ts starts it). It runs under the
 * LD_PRELOAD I2C shim (KEYHOP_I2C_SOCKET), so /dev/i2c-N opened by the native addon reaches the
 * emulator served by the parent: bus `zeroBus` holds a chip with the zero-time model, bus
 * `datasheetBus` one with datasheet execution times. It drives both through I2cLink (the addon) and
 * the Atecc608 protocol core, then measures the same operations in the software vault, and prints
 * one JSON object (ChildReport) on stdout. Progress goes to stderr.
 */
import { createECDH, createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { describeError } from '../runtime/errors.js';
import { Atecc608 } from '../vaults/atecc608/device.js';
import type { CommandStep } from '../vaults/atecc608/link.js';
import { I2cLink } from '../vaults/atecc608/links/i2c-link.js';
import {
  ecdhCommand,
  infoCommand,
  noncePassThroughCommand,
  randomCommand,
  readCommand,
  signExternalCommand,
} from '../vaults/atecc608/protocol/commands.js';
import { type Command, decodeResponse, encodeCommand } from '../vaults/atecc608/protocol/packet.js';
import { budgetMs } from '../vaults/atecc608/protocol/timing.js';
import { nodeCrypto } from '../vaults/software/node-provider.js';
import { SoftwareVault } from '../vaults/software/software-vault.js';

export interface ChildParams {
  zeroBus: number;
  datasheetBus: number;
  /** Measured transactions per zero-model operation (after `warmup`). */
  iterations: number;
  warmup: number;
  /** Measured transactions per datasheet-model operation (after one warm-up). */
  datasheetIterations: number;
  /** Commands per batched transaction (one wake). */
  batch: number;
  /** How long each software operation runs, ms. */
  softwareMs: number;
  /** Slot with the signing / ECDH key, and the slot GenKey may overwrite. */
  keySlot: number;
  genKeySlot: number;
  wakeDelayUs: number;
  pollIntervalUs: number;
}

export interface Stats {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
  mean: number;
}

/** One operation through I2cLink: wall time per transaction and the addon's own timings. */
export interface LinkSample {
  op: string;
  /** Opcodes in the transaction, in order (one wake). */
  commands: string[];
  wallMs: Stats;
  /** Addon timings, µs: wake (general call, tWHI wait, token read), each step, whole transaction. */
  addonWakeUs: Stats;
  addonStepsUs: Stats;
  addonTotalUs: Stats;
  /** Each measured transaction: start (epoch ms, performance.timeOrigin + now) and wall time, ms. */
  startsMs: number[];
  wallsMs: number[];
}

export interface SoftwareSample {
  op: string;
  ops: number;
  seconds: number;
  opsPerSec: number;
  /** Median of per-call times measured in 64-call groups, µs. */
  medianUs: number;
}

export interface ChildReport {
  zero: LinkSample[];
  datasheet: LinkSample[];
  software: SoftwareSample[];
  checks: {
    revision: string;
    signatureVerifies: boolean;
    ecdhMatchesSoftware: boolean;
    datasheetSignatureVerifies: boolean;
  };
}

function stats(xs: readonly number[]): Stats {
  if (xs.length === 0)
    return { n: 0, median: Number.NaN, p95: Number.NaN, min: Number.NaN, max: Number.NaN, mean: Number.NaN };
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const median = s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  const p95 = s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)]!;
  return {
    n: s.length,
    median,
    p95,
    min: s[0]!,
    max: s.at(-1)!,
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

const log = (line: string) => process.stderr.write(`  [child] ${line}\n`);
const sha256 = (data: Uint8Array) => new Uint8Array(createHash('sha256').update(data).digest());
const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');

function p256PublicKey(xy: Uint8Array) {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: b64(xy.subarray(0, 32)), y: b64(xy.subarray(32, 64)) },
    format: 'jwk',
  });
}

function step(command: Command): CommandStep {
  return { packet: encodeCommand(command), maxExecMs: budgetMs(command.opcode, 'M0') };
}

const OPCODE_NAMES: Record<number, string> = {
  48: 'Info',
  27: 'Random',
  2: 'Read',
  22: 'Nonce',
  65: 'Sign',
  67: 'ECDH',
  64: 'GenKey',
};

interface Op {
  name: string;
  commands: string[];
  run: () => Promise<unknown>;
}

/** Runs `op` `warmup + iterations` times, one transaction at a time, and keeps the measured ones. */
async function measureOp(link: I2cLink, op: Op, warmup: number, iterations: number): Promise<LinkSample> {
  const wall: number[] = [];
  const starts: number[] = [];
  const wake: number[] = [];
  const steps: number[] = [];
  const total: number[] = [];
  for (let i = 0; i < warmup + iterations; i++) {
    const t0 = performance.now();
    await op.run();
    const t1 = performance.now();
    if (i < warmup) continue;
    wall.push(t1 - t0);
    starts.push(performance.timeOrigin + t0);
    const t = link.lastTimings;
    if (t !== undefined) {
      wake.push(t.wakeUs);
      steps.push(t.stepsUs.reduce((a, b) => a + b, 0));
      total.push(t.totalUs);
    }
  }
  return {
    op: op.name,
    commands: op.commands,
    wallMs: stats(wall),
    addonWakeUs: stats(wake),
    addonStepsUs: stats(steps),
    addonTotalUs: stats(total),
    startsMs: starts,
    wallsMs: wall,
  };
}

/** A batch of raw steps in one wake; every response must be a success or carry data. */
function batchOp(link: I2cLink, name: string, commands: Command[]): Op {
  const steps = commands.map(step);
  return {
    name,
    commands: commands.map((c) => OPCODE_NAMES[c.opcode] ?? `0x${c.opcode.toString(16)}`),
    run: async () => {
      const responses = await link.transact(steps);
      for (const [i, raw] of responses.entries()) {
        const r = decodeResponse(raw);
        if (r.kind === 'status' && r.status !== 0) {
          throw new Error(`${name}: step ${i + 1} answered status 0x${r.status.toString(16)}`);
        }
      }
    },
  };
}

async function softwareOp(
  op: string,
  ms: number,
  fn: () => unknown | Promise<unknown>,
): Promise<SoftwareSample> {
  for (let i = 0; i < 200; i++) await fn();
  const groups: number[] = [];
  let ops = 0;
  const t0 = performance.now();
  const until = t0 + ms;
  let now = t0;
  while (now < until) {
    const g0 = performance.now();
    for (let i = 0; i < 64; i++) await fn();
    now = performance.now();
    groups.push(((now - g0) / 64) * 1000);
    ops += 64;
  }
  const seconds = (now - t0) / 1000;
  return { op, ops, seconds, opsPerSec: ops / seconds, medianUs: stats(groups).median };
}

async function main(params: ChildParams): Promise<ChildReport> {
  const linkOptions = { wakeDelayUs: params.wakeDelayUs, pollIntervalUs: params.pollIntervalUs };
  const zeroLink = I2cLink.open({ bus: params.zeroBus, ...linkOptions });
  const dsLink = I2cLink.open({ bus: params.datasheetBus, ...linkOptions });
  const zero = new Atecc608(zeroLink, { retries: 0 });
  const ds = new Atecc608(dsLink, { retries: 0 });
  const slot = params.keySlot;

  // Sanity: the chip's signature verifies and its ECDH agrees with node:crypto.
  const { revision } = await zero.info();
  await zero.readConfigZone(); // learns the clock divider once, as the vault does
  await ds.readConfigZone();
  const chipPublic = await zero.publicKey(slot);
  const message = randomBytes(32);
  const digest = sha256(message);
  const verifies = (sig: Uint8Array) =>
    verify('sha256', message, { key: p256PublicKey(chipPublic), dsaEncoding: 'ieee-p1363' }, sig);
  const signatureVerifies = verifies(await zero.sign(slot, digest));
  const datasheetSignatureVerifies = verifies(await ds.sign(slot, digest));
  const peer = createECDH('prime256v1');
  peer.generateKeys();
  const peerXY = new Uint8Array(peer.getPublicKey().subarray(1));
  const chipShared = await zero.ecdh(slot, peerXY);
  const softShared = peer.computeSecret(Buffer.concat([Buffer.from([0x04]), chipPublic]));
  const ecdhMatchesSoftware = hexOf(chipShared) === softShared.toString('hex');
  log(
    `revision ${hexOf(revision)}, signature verifies: ${signatureVerifies}, ECDH matches: ${ecdhMatchesSoftware}`,
  );

  // ---- zero-time model: what the link itself costs ----
  const k = params.batch;
  const pairs = Math.max(1, Math.floor(k / 2));
  const repeat = (n: number, c: () => Command) => Array.from({ length: n }, c);
  const config0 = { zone: 'config', block: 0 } as const;
  const zeroOps: Op[] = [
    { name: 'Info', commands: ['Info'], run: () => zero.info() },
    { name: 'Random', commands: ['Random'], run: () => zero.random() },
    { name: 'Read-32', commands: ['Read'], run: () => zero.read(config0, 32) },
    { name: 'Nonce+Sign', commands: ['Nonce', 'Sign'], run: () => zero.sign(slot, digest) },
    { name: 'ECDH', commands: ['ECDH'], run: () => zero.ecdh(slot, peerXY) },
    batchOp(
      zeroLink,
      `Info x${k}`,
      repeat(k, () => infoCommand('revision')),
    ),
    batchOp(zeroLink, `Random x${k}`, repeat(k, randomCommand)),
    batchOp(
      zeroLink,
      `Read-32 x${k}`,
      repeat(k, () => readCommand(config0, 32)),
    ),
    batchOp(
      zeroLink,
      `(Nonce+Sign) x${pairs}`,
      Array.from({ length: pairs }, () => [
        noncePassThroughCommand(digest, 'msgdigbuf'),
        signExternalCommand(slot, 'msgdigbuf'),
      ]).flat(),
    ),
    batchOp(
      zeroLink,
      `ECDH x${k}`,
      repeat(k, () => ecdhCommand(slot, peerXY)),
    ),
  ];
  const zeroSamples: LinkSample[] = [];
  for (const op of zeroOps) {
    const s = await measureOp(zeroLink, op, params.warmup, params.iterations);
    log(`zero ${op.name}: median ${s.wallMs.median.toFixed(3)} ms, p95 ${s.wallMs.p95.toFixed(3)} ms`);
    zeroSamples.push(s);
  }

  // ---- datasheet model: end to end against the budgets ----
  const dsOps: Op[] = [
    // The vault's sign: SHA-256 of the message on the host, then Nonce + Sign in one wake.
    { name: 'sign', commands: ['Nonce', 'Sign'], run: () => ds.sign(slot, sha256(message)) },
    { name: 'ECDH', commands: ['ECDH'], run: () => ds.ecdh(slot, peerXY) },
    { name: 'GenKey', commands: ['GenKey'], run: () => ds.genKey(params.genKeySlot) },
    { name: 'Random', commands: ['Random'], run: () => ds.random() },
  ];
  const dsSamples: LinkSample[] = [];
  for (const op of dsOps) {
    const s = await measureOp(dsLink, op, 1, params.datasheetIterations);
    log(`datasheet ${op.name}: median ${s.wallMs.median.toFixed(2)} ms, p95 ${s.wallMs.p95.toFixed(2)} ms`);
    dsSamples.push(s);
  }
  await zeroLink.close();
  await dsLink.close();

  // ---- the same operations in the software vault (node:crypto) ----
  const vault = SoftwareVault.inMemory({ provider: nodeCrypto });
  const keyId = await vault.generateSigningKey('P256');
  const me = createECDH('prime256v1');
  me.generateKeys();
  const peerPoint = peer.getPublicKey();
  const software = [
    await softwareOp('P-256 sign (SHA-256 + ECDSA)', params.softwareMs, () => vault.sign(keyId, message)),
    await softwareOp('P-256 ECDH', params.softwareMs, () => me.computeSecret(peerPoint)),
    await softwareOp('randomBytes(32)', params.softwareMs, () => randomBytes(32)),
  ];
  for (const s of software) log(`software ${s.op}: ${s.opsPerSec.toFixed(0)} ops/s`);

  return {
    zero: zeroSamples,
    datasheet: dsSamples,
    software,
    checks: { revision: hexOf(revision), signatureVerifies, ecdhMatchesSoftware, datasheetSignatureVerifies },
  };
}

const raw = process.argv[2];
if (raw === undefined) {
  process.stderr.write('usage: atecc608-child.js <params JSON> (started by bench/atecc608.ts)\n');
  process.exitCode = 2;
} else {
  main(JSON.parse(raw) as ChildParams).then(
    (report) => {
      process.stdout.write(`${JSON.stringify(report)}\n`);
    },
    (e: unknown) => {
      process.stderr.write(
        `atecc608 bench child failed: ${e instanceof Error ? (e.stack ?? e.message) : describeError(e)}\n`,
      );
      process.exitCode = 1;
    },
  );
}
