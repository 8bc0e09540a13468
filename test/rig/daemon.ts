import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
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

/**
 * Whether process `pid` holds a listening TCP socket on `port` (Linux /proc; elsewhere, or when
 * /proc cannot say, true). A port another process took meanwhile also accepts connections.
 */
export function listensOn(pid: number, port: number): boolean {
  let inodes: Set<string>;
  try {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    inodes = new Set<string>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        // local_address is ADDR:PORT (hex), st 0A = LISTEN, inode is the 10th field.
        if (f.length > 9 && f[1]!.endsWith(`:${hex}`) && f[3] === '0A') inodes.add(f[9]!);
      }
    }
  } catch {
    return true;
  }
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return true;
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'utf8' });
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1]!)) return true;
  }
  return false;
}

/**
 * Waits until `port` accepts connections, from the child itself when `owned` (a parallel test may
 * take a port a daemon just freed, and answer in its place); throws with `describe()` if the child
 * exits or 20 s pass.
 */
export async function untilListening(
  child: ChildProcess,
  port: number,
  describe: () => string,
  owned = false,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited(child)) throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${describe()}`);
    if ((await canConnect(port)) && (!owned || child.pid === undefined || listensOn(child.pid, port))) return;
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
