import { type ChildProcess, spawn } from 'node:child_process';

/** One socat run by a rig: started by us, watched, stopped by pid. */
export interface SocatProcess {
  readonly child: ChildProcess;
  /** What socat logged (the first 8 KiB; `-d -d` says when it is ready). */
  stderr(): string;
  /** Why it ended, once it has. */
  exited(): string | undefined;
  /** Resolves when it has ended. */
  readonly exit: Promise<void>;
  /** SIGTERM (if still running) and wait for the end. Idempotent. */
  stop(): Promise<void>;
  /** Polls `ready` every 10 ms; stops socat and throws `what` with its log if it ends or times out first. */
  waitUntil(ready: (stderr: string) => boolean, timeoutMs: number, what: string): Promise<void>;
}

export function startSocat(args: readonly string[]): SocatProcess {
  const child = spawn('socat', ['-d', '-d', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 8192) stderr += d.toString();
  });
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `socat exited (code ${code}, signal ${signal})`;
      resolve();
    });
    child.once('error', (e) => {
      exited = `socat failed to start: ${e.message}`;
      resolve();
    });
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exited === undefined && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          // ended just now
        }
      }
      await exit;
    })();
    return stopping;
  };
  const waitUntil = async (ready: (s: string) => boolean, timeoutMs: number, what: string): Promise<void> => {
    const until = Date.now() + timeoutMs;
    while (!ready(stderr)) {
      if (exited !== undefined || Date.now() > until) {
        await stop();
        throw new Error(`${what} not ready: ${exited ?? 'timed out'}\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { child, stderr: () => stderr, exited: () => exited, exit, stop, waitUntil };
}
