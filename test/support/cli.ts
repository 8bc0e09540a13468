import { execFile } from 'node:child_process';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The built CLI (`npm test` builds first). */
export const CLI_MAIN = join(import.meta.dirname, '../../dist/runtime/cli/main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `keyhop …args` as a user would, with a private KEYHOP_HOME and without the developer's
 * KEYHOP_VAULT_PASSPHRASE (tests that want one pass it in `env`).
 */
export async function keyhop(home: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const base = { ...process.env };
  delete base.KEYHOP_VAULT_PASSPHRASE;
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI_MAIN, ...args], {
      env: { ...base, KEYHOP_HOME: home, ...env },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** The one-line error contract: `keyhop: error [CODE]: message`, exit 1 (2 for usage). */
export function errorLine(r: CliResult): { code: string; message: string } {
  const lines = r.stderr.trimEnd().split('\n');
  const last = lines[lines.length - 1] ?? '';
  const m = /^keyhop: error \[([A-Z_]+)\]: (.+)$/.exec(last);
  if (m === null) throw new Error(`not a keyhop error line (exit ${r.code}): ${JSON.stringify(r.stderr)}`);
  return { code: m[1]!, message: m[2]! };
}

/**
 * `count` distinct TCP ports that were free a moment ago. They are held open together before any
 * is released, so two of them can never be the same port (asked one after the other, the kernel
 * may hand the port it just got back a second time).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * Polls `probe` (what a node reports, not the clock) every 50 ms until it gives a value; throws
 * naming `what` after 30 s (a generous bound for 2 busy cores, not a timing assertion).
 */
export async function untilReported<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never happened: ${what}`);
}
