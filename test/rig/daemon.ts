import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { createConnection } from 'node:net';

/** Helpers the rigs share for the daemons they start (brokers, TPMs): probe, wait, stop by pid. */

export function commandRuns(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Waits until `port` accepts connections; throws with `describe()` if the child exits or 20 s pass. */
export async function untilListening(
  child: ChildProcess,
  port: number,
  describe: () => string,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited(child)) throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${describe()}`);
    if (await canConnect(port)) return;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`did not listen on 127.0.0.1:${port} within 20 s: ${describe()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `signal` (SIGTERM by default; SIGKILL for a crash) and wait for the exit; SIGKILL after 5 s. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => {
    if (!exited(child)) child.kill('SIGKILL');
  }, 5000);
  await gone;
  clearTimeout(timer);
}

/** Why a rig cannot run (undefined when it can); with KEYHOP_REQUIRE_RIG=1 a missing piece throws. */
export function rigSkipReason(missing: string[], what: string): string | undefined {
  if (missing.length === 0) return undefined;
  const reason = `${what} needs ${missing.join(', ')}: skipped`;
  if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
  return reason;
}
