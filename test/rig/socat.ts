import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSocat } from './socat-process.js';

/**
 * A pair of connected pseudo-terminals made by socat: bytes written to `a` come out of `b` and
 * back. Stands in for a serial cable in tests. Needs the `socat` binary (apt-get install socat).
 */
export interface SocatPair {
  /** Symlinks to the two PTY slaves. */
  readonly a: string;
  readonly b: string;
  /** Directory holding the links. */
  readonly dir: string;
  readonly pid: number;
  /** Kills socat (by pid) and removes the links. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Why the socat rig cannot run here, or undefined when it can. With KEYHOP_REQUIRE_RIG=1 a missing
 * rig is an error instead of a reason to skip.
 */
export function socatSkipReason(): string | undefined {
  const r = spawnSync('socat', ['-V'], { stdio: 'ignore' });
  if (r.error === undefined && r.status === 0) return undefined;
  const reason = 'socat not installed (apt-get install socat): serial PTY tests skipped';
  if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
  return reason;
}

export interface SocatPairOptions {
  /** Directory for the links `a` and `b` (created; removed by stop()). Default: a new temporary one. */
  dir?: string;
  timeoutMs?: number;
}

/**
 * Starts `socat -d -d pty,raw,echo=0,link=<dir>/a pty,raw,echo=0,link=<dir>/b` and waits for both
 * links and for socat's data transfer loop. Passing the `dir` of a stopped pair recreates the same paths (a cable plugged back in).
 */
export async function startSocatPair(options: SocatPairOptions = {}): Promise<SocatPair> {
  const timeoutMs = options.timeoutMs ?? 5000;
  let dir: string;
  if (options.dir === undefined) {
    dir = mkdtempSync(join(tmpdir(), 'keyhop-socat-'));
  } else {
    dir = options.dir;
    mkdirSync(dir, { recursive: true });
  }
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const socat = startSocat([`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`]);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await socat.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  // The links appear while socat is still configuring the PTYs; `-d -d` logs this line once both
  // are ready and it starts copying.
  await socat
    .waitUntil(
      (log) => existsSync(a) && existsSync(b) && log.includes('starting data transfer loop'),
      timeoutMs,
      'socat PTY pair',
    )
    .catch(async (e: unknown) => {
      await stop();
      throw e;
    });
  return { a, b, dir, pid: socat.child.pid!, stop };
}
