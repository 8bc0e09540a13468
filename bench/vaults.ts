/**
 * `npm run bench -- vaults`: operations per second of the hardware vaults against what a user
 * would otherwise use, each pair in one run (issue 6):
 * - TPM 2.0 through keyhop's ESAPI addon (TpmVault) against the same work scripted with tpm2-tools
 *   (one process per command, plus the flush a TPM without a resource manager needs), both on one
 *   swtpm;
 * - PKCS#11 through pkcs11js (Pkcs11Vault on SoftHSM2) against the software vault (node:crypto).
 * Operations: P-256 sign of a 32-byte message (SHA-256 on the host, ECDSA on the digest), P-256
 * ECDH (shared x-coordinate), 32 random bytes. Flags: --iterations=N (keyhop and software ops per
 * measurement, default 300), --tool-iterations=N (tpm2-tools rounds, default 20).
 */
import { execFile } from 'node:child_process';
import { createECDH, createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { p256 } from '@noble/curves/nist.js';
import { startSoftHsm } from '../test/rig/softhsm.js';
import { startSwtpm } from '../test/rig/swtpm.js';
import { Pkcs11Vault } from '../vaults/pkcs11/pkcs11-vault.js';
import { SoftwareVault } from '../vaults/software/software-vault.js';
import { TpmVault } from '../vaults/tpm/tpm-vault.js';
import { type BenchFlags, type Benchmark, intFlag } from './harness.js';
import { round } from './support.js';

const run = promisify(execFile);

const OPS = ['sign', 'ecdh', 'random'] as const;
type Op = (typeof OPS)[number];

interface Rate {
  opsPerSec: number;
  medianMs: number;
}

async function rate(iterations: number, op: () => Promise<unknown>): Promise<Rate> {
  for (let i = 0; i < Math.min(10, iterations); i++) await op();
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await op();
    times.push(performance.now() - t0);
  }
  const total = performance.now() - start;
  times.sort((a, b) => a - b);
  return { opsPerSec: (iterations * 1000) / total, medianMs: times[Math.floor(times.length / 2)]! };
}

const message = new TextEncoder().encode('keyhop vault benchmark: a 32-byte message to sign!!');
const peerSecret = p256.utils.randomSecretKey();
const peerPublic = p256.getPublicKey(peerSecret, false);

async function tpmRates(iterations: number, toolIterations: number) {
  const tpm = await startSwtpm();
  const work = mkdtempSync(join(tmpdir(), 'kh-bench-tpm-'));
  try {
    const vault = await TpmVault.open({ tcti: tpm.tcti });
    const signKey = await vault.generateSigningKey('P256');
    const ecdhKey = await vault.generateEcdhKey();
    const keyhop = {
      sign: await rate(iterations, () => vault.sign(signKey, message)),
      ecdh: await rate(iterations, () => vault.ecdh(ecdhKey, peerPublic)),
      random: await rate(iterations, () => vault.random(32)),
    };
    await vault.close();
    // The same without parameter encryption (what tpm2-tools does by default), to show its cost.
    const plainVault = await TpmVault.open({ tcti: tpm.tcti, paramEncryption: false });
    const plainSign = await plainVault.generateSigningKey('P256');
    const plainEcdh = await plainVault.generateEcdhKey();
    const keyhopPlain = {
      sign: await rate(iterations, () => plainVault.sign(plainSign, message)),
      ecdh: await rate(iterations, () => plainVault.ecdh(plainEcdh, peerPublic)),
      random: await rate(iterations, () => plainVault.random(32)),
    };
    await plainVault.close();

    // The same work with tpm2-tools, as a script would do it: keys created and loaded once into
    // context files, then one tool process per operation and a flush after it (no resource manager).
    const env = { ...process.env, TPM2TOOLS_TCTI: tpm.tcti };
    const t = (args: string[]) => run(args[0]!, args.slice(1), { env, cwd: work });
    const flush = () => t(['tpm2_flushcontext', '-t']);
    // tpm2_ecdhzgen also leaves an auth session loaded (the third one fails with 0x903).
    const flushSessions = () => t(['tpm2_flushcontext', '-l']);
    await t(['tpm2_createprimary', '-C', 'o', '-g', 'sha256', '-G', 'ecc256', '-c', 'primary.ctx']);
    await flush();
    const attrs = 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth';
    await t([
      'tpm2_create',
      '-C',
      'primary.ctx',
      '-G',
      'ecc256:ecdsa-sha256',
      '-a',
      `${attrs}|sign`,
      '-u',
      's.pub',
      '-r',
      's.priv',
    ]);
    await flush();
    await t(['tpm2_load', '-C', 'primary.ctx', '-u', 's.pub', '-r', 's.priv', '-c', 'sign.ctx']);
    await flush();
    await t([
      'tpm2_create',
      '-C',
      'primary.ctx',
      '-G',
      'ecc256:ecdh',
      '-a',
      `${attrs}|decrypt`,
      '-u',
      'e.pub',
      '-r',
      'e.priv',
    ]);
    await flush();
    await t(['tpm2_load', '-C', 'primary.ctx', '-u', 'e.pub', '-r', 'e.priv', '-c', 'ecdh.ctx']);
    await flush();
    writeFileSync(join(work, 'digest.bin'), createHash('sha256').update(message).digest());
    // TPM2B_ECC_POINT: size ‖ (size ‖ X) ‖ (size ‖ Y)
    const point = Buffer.concat([
      Buffer.of(0, 0x44, 0, 0x20),
      peerPublic.subarray(1, 33),
      Buffer.of(0, 0x20),
      peerPublic.subarray(33),
    ]);
    writeFileSync(join(work, 'peer.ecc'), point);
    const tools = {
      sign: await rate(toolIterations, async () => {
        // Hashing the message on the host, as the vault does, is left out: it is microseconds.
        await t([
          'tpm2_sign',
          '-c',
          'sign.ctx',
          '-g',
          'sha256',
          '-s',
          'ecdsa',
          '-d',
          '-f',
          'plain',
          '-o',
          'sig.der',
          'digest.bin',
        ]);
        await flush();
      }),
      ecdh: await rate(toolIterations, async () => {
        await t(['tpm2_ecdhzgen', '-c', 'ecdh.ctx', '-u', 'peer.ecc', '-o', 'z.ecc']);
        await flush();
        await flushSessions();
      }),
      random: await rate(toolIterations, () => t(['tpm2_getrandom', '-o', 'rnd.bin', '32'])),
    };
    return { keyhop, keyhopPlain, tools };
  } finally {
    await tpm.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

async function pkcs11Rates(iterations: number) {
  const hsm = await startSoftHsm({ label: 'keyhop-bench', pin: '123456' });
  process.env.SOFTHSM2_CONF = hsm.conf;
  process.env.KEYHOP_BENCH_PIN = hsm.pin;
  try {
    const vault = await Pkcs11Vault.open({
      module: hsm.module,
      token: hsm.label,
      pin: { env: 'KEYHOP_BENCH_PIN' },
    });
    const key = await vault.generateSigningKey('P256');
    const token = {
      sign: await rate(iterations, () => vault.sign(key, message)),
      ecdh: await rate(iterations, () => vault.ecdh(key, peerPublic)),
      random: await rate(iterations, () => vault.random(32)),
    };
    await vault.deleteKey(key);
    await vault.close();

    const soft = SoftwareVault.inMemory();
    const softKey = await soft.generateSigningKey('P256');
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const software = {
      sign: await rate(iterations, () => soft.sign(softKey, message)),
      ecdh: await rate(iterations, async () => ecdh.computeSecret(peerPublic)),
      random: await rate(iterations, async () => randomBytes(32)),
    };
    return { token, software };
  } finally {
    delete process.env.KEYHOP_BENCH_PIN;
    await hsm.stop();
  }
}

export const vaultsBenchmark: Benchmark = {
  description:
    'TPM (ESAPI) vs tpm2-tools on swtpm; PKCS#11 (SoftHSM2) vs the software vault: sign, ECDH, random per second',
  async run(flags: BenchFlags) {
    const iterations = intFlag(flags, 'iterations', 300);
    const toolIterations = intFlag(flags, 'tool-iterations', 20);
    const tpm = await tpmRates(iterations, toolIterations);
    const pkcs11 = await pkcs11Rates(iterations);
    // Each keyhop vault against what it is compared with, one table row per operation.
    const comparisons = [
      { vault: 'TPM', key: 'tpm', ours: tpm.keyhop, against: 'tpm2-tools', theirs: tpm.tools },
      {
        vault: 'TPM, no param. encryption',
        key: 'tpm_plain',
        ours: tpm.keyhopPlain,
        against: 'tpm2-tools',
        theirs: tpm.tools,
      },
      {
        vault: 'PKCS#11',
        key: 'pkcs11',
        ours: pkcs11.token,
        against: 'software vault',
        theirs: pkcs11.software,
      },
    ];
    const ratio = (c: (typeof comparisons)[number], op: Op) => c.ours[op].opsPerSec / c.theirs[op].opsPerSec;
    const rows = comparisons.flatMap((c) =>
      OPS.map((op) => [
        c.vault,
        op,
        round(c.ours[op].opsPerSec, 1),
        round(c.ours[op].medianMs, 3),
        c.against,
        round(c.theirs[op].opsPerSec, 1),
        round(c.theirs[op].medianMs, 4),
        `${round(ratio(c, op), ratio(c, op) >= 1 ? 1 : 3)}x`,
      ]),
    );
    return {
      parameters: { iterations, toolIterations },
      results: { tpm, pkcs11 },
      summary: {
        ratios: Object.fromEntries(
          comparisons.flatMap((c) =>
            OPS.map((op) => [
              `${c.key}_${op}_vs_${c.against === 'tpm2-tools' ? 'tpm2tools' : 'software'}`,
              round(ratio(c, op), 4),
            ]),
          ),
        ),
      },
      table: {
        columns: [
          'vault',
          'op',
          'keyhop ops/s',
          'median ms',
          'comparison',
          'its ops/s',
          'median ms',
          'keyhop / it',
        ],
        rows,
      },
      notes: [
        'TPM: keyhop = TpmVault over the ESAPI addon (one ESAPI context, the last key kept loaded, parameter encryption on',
        '  by default: a salted AES-128-CFB session; "no param. encryption" = the same with it off); tpm2-tools = one process per command plus tpm2_flushcontext -t (and -l after ecdhzgen), as a script must run them.',
        'PKCS#11: Pkcs11Vault (pkcs11js) on SoftHSM2 2.6 against SoftwareVault/node:crypto in this process.',
        'All on loopback on one machine; swtpm and SoftHSM are software, so these compare the software stacks, not chips.',
      ],
    };
  },
};
