import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A software HSM for the PKCS#11 tests: SoftHSM2 with a private configuration and token directory
 * per call, so runs never share (or leave behind) tokens. Tokens are found by label, never by slot
 * number (SoftHSM renumbers a slot when its token is initialised).
 *
 * SoftHSM reads SOFTHSM2_CONF from the process environment when the module is initialised
 * (C_Initialize), and the module stays initialised while any vault of the process uses it. So one
 * configuration per process at a time: a test file (vitest runs each in its own forked worker)
 * sets `process.env.SOFTHSM2_CONF = hsm.conf` before opening a vault, and a test that needs
 * another configuration closes every vault first or runs a child process with `env: hsm.env`.
 */

export const SOFTHSM_MODULE_PATHS = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];

export interface SoftHsm {
  /** Path of the PKCS#11 module. */
  readonly module: string;
  /** The private softhsm2.conf (the value SOFTHSM2_CONF must have). */
  readonly conf: string;
  /** The private directory holding conf and tokens/. */
  readonly dir: string;
  /** Label of the first token; the others are `${label}-2`, `${label}-3`, … */
  readonly label: string;
  readonly labels: readonly string[];
  /** User PIN of every token. */
  readonly pin: string;
  readonly soPin: string;
  /** process.env plus SOFTHSM2_CONF, for child processes. */
  readonly env: NodeJS.ProcessEnv;
  /** Initialises one more token (`label`, same PINs) in this configuration. */
  addToken(label: string): Promise<void>;
  /** Removes the directory (tokens included). */
  stop(): Promise<void>;
}

export function softhsmModule(): string | undefined {
  return SOFTHSM_MODULE_PATHS.find((p) => existsSync(p));
}

/**
 * Why the SoftHSM rig cannot run here, or undefined when it can. With KEYHOP_REQUIRE_RIG=1 a
 * missing rig is an error instead of a reason to skip.
 */
export function softhsmSkipReason(): string | undefined {
  const missing: string[] = [];
  const util = spawnSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
  if (util.error !== undefined || util.status !== 0) missing.push('softhsm2-util');
  if (softhsmModule() === undefined) missing.push('libsofthsm2.so');
  let addon = true;
  try {
    createRequire(import.meta.url)('pkcs11js');
  } catch {
    addon = false;
  }
  if (!addon) missing.push('the pkcs11js addon (npm rebuild pkcs11js)');
  if (missing.length === 0) return undefined;
  const reason = `SoftHSM2 rig needs ${missing.join(', ')} (apt-get install softhsm2): PKCS#11 tests skipped`;
  if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
  return reason;
}

const run = promisify(execFile);

/**
 * A fresh SoftHSM2 configuration in a private temporary directory, with `tokens` (default 1)
 * initialised tokens labelled `label`, `${label}-2`, …, each with `pin` and `soPin`.
 */
export async function startSoftHsm(
  options: { label?: string; pin?: string; soPin?: string; tokens?: number } = {},
): Promise<SoftHsm> {
  const module = softhsmModule();
  if (module === undefined) throw new Error(`no SoftHSM2 module in ${SOFTHSM_MODULE_PATHS.join(', ')}`);
  const label = options.label ?? 'keyhop-test';
  const pin = options.pin ?? '1234';
  const soPin = options.soPin ?? '5678';
  const count = options.tokens ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'kh-softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  const addToken = async (name: string) => {
    // The PINs go to softhsm2-util on its command line: fine for a throwaway test token only.
    await run('softhsm2-util', ['--init-token', '--free', '--label', name, '--pin', pin, '--so-pin', soPin], {
      env,
    });
  };
  const labels = [label, ...Array.from({ length: count - 1 }, (_, i) => `${label}-${i + 2}`)];
  try {
    for (const name of labels) await addToken(name);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    module,
    conf,
    dir,
    label,
    labels,
    pin,
    soPin,
    env,
    addToken,
    stop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}
