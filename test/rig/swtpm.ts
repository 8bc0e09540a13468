import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tpm2AddonPath } from '../../vaults/tpm/native-tpm.js';
import { canConnect, commandRuns, exited } from './daemon.js';

/**
 * A software TPM 2.0 for tests (research ecosystem.md §C): `swtpm socket --tpm2` with its own
 * state directory and two free TCP ports on 127.0.0.1 (TPM commands on P, control channel on P + 1,
 * as the swtpm TCTI expects), powered on
 * and started by swtpm itself (`--flags not-need-init,startup-clear`), stopped by pid. Every call
 * starts a separate swtpm, so parallel vitest workers never share one.
 */

export interface SwtpmOptions {
  /** Reuse a state directory (a restarted TPM keeps its persistent objects and seeds). */
  readonly stateDir?: string;
}

export interface Swtpm {
  /** TCTI configuration string for Tss2_TctiLdr_Initialize / TpmVault.open. */
  readonly tcti: string;
  readonly stateDir: string;
  readonly pid: number;
  readonly port: number;
  readonly ctrlPort: number;
  readonly logFile: string;
  /** SIGTERM, then SIGKILL after 3 s; removes the state directory unless `keepState`. */
  stop(options?: { keepState?: boolean }): Promise<void>;
}

/**
 * Why the swtpm rig cannot run here, or undefined when it can. With KEYHOP_REQUIRE_RIG=1 a missing
 * piece is an error instead of a reason to skip.
 */
export function swtpmSkipReason(): string | undefined {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  if (!commandRuns('swtpm', ['--version'])) missing.push('swtpm (apt-get install swtpm swtpm-tools)');
  const addon = tpm2AddonPath();
  if (!existsSync(addon)) {
    missing.push(`the TPM 2.0 addon ${addon} (apt-get install libtss2-dev; npm run build:native)`);
  }
  if (missing.length === 0) return undefined;
  const reason = `swtpm rig needs ${missing.join(', ')}: TPM tests skipped`;
  if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
  return reason;
}

function listen(port: number): Promise<import('node:net').Server | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

const closeServer = (s: import('node:net').Server) => new Promise<void>((r) => s.close(() => r()));

/**
 * A free port P whose neighbour P + 1 is free too: tpm2-tss's swtpm TCTI always finds the control
 * channel at the TPM port + 1. Both are closed again; swtpm binds them right after.
 */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const a = await listen(0);
    if (a === undefined) continue;
    const addr = a.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    const b = port > 0 && port < 65535 ? await listen(port + 1) : undefined;
    await closeServer(a);
    if (b !== undefined) {
      await closeServer(b);
      return port;
    }
  }
  throw new Error('no two adjacent free TCP ports on 127.0.0.1');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startOnce(stateDir: string): Promise<Swtpm | { retry: string }> {
  const port = await freePortPair();
  const ctrlPort = port + 1;
  const logFile = join(stateDir, 'swtpm.log');
  const out = openSync(join(stateDir, 'swtpm.out'), 'a');
  const child = spawn(
    'swtpm',
    [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${stateDir}`,
      '--server',
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl',
      `type=tcp,port=${ctrlPort},bindaddr=127.0.0.1`,
      '--flags',
      'not-need-init,startup-clear',
      '--log',
      `file=${logFile},level=1`,
    ],
    { stdio: ['ignore', out, out] },
  );
  closeSync(out);
  const pid = child.pid;
  if (pid === undefined) {
    await new Promise((r) => child.once('error', r));
    throw new Error('swtpm did not start (is it installed?)');
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited(child)) {
      const log = [logFile, join(stateDir, 'swtpm.out')]
        .map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : ''))
        .join('')
        .trim();
      return { retry: `swtpm exited (${child.exitCode ?? child.signalCode}): ${log.slice(-500)}` };
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`swtpm on 127.0.0.1:${port} did not answer within 10 s`);
    }
    await sleep(20);
  }
  const stop = async (options: { keepState?: boolean } = {}) => {
    if (!exited(child)) {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (!exited(child)) process.kill(pid, 'SIGKILL');
      }, 3000);
      await gone;
      clearTimeout(timer);
    }
    if (options.keepState !== true) rmSync(stateDir, { recursive: true, force: true });
  };
  return {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    stateDir,
    pid,
    port,
    ctrlPort,
    logFile,
    stop,
  };
}

/**
 * Starts a swtpm and waits until its TPM port accepts connections. A port another process grabbed
 * between choosing it and swtpm binding it is retried with new ports (3 attempts).
 */
export async function startSwtpm(options: SwtpmOptions = {}): Promise<Swtpm> {
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'keyhop-swtpm-'));
  mkdirSync(stateDir, { recursive: true });
  let why = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await startOnce(stateDir);
    if (!('retry' in r)) return r;
    why = r.retry;
  }
  if (options.stateDir === undefined) rmSync(stateDir, { recursive: true, force: true });
  throw new Error(`swtpm did not start: ${why}`);
}
