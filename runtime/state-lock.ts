import { open, readFile, unlink } from 'node:fs/promises';
import { describeError, ErrorCodes, KeyhopError } from './errors.js';

/** Who holds a state directory: a process, and the node it runs (if any). */
export interface LockOwner {
  pid: number;
  node: string | null;
}

/** Whether process `pid` exists (run by anyone: EPERM still means it is there). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, run by another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live holder of the lock at `path`, if any (a lock left by a dead process is nobody's). */
export async function lockOwner(path: string): Promise<LockOwner | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) return undefined;
    return processAlive(o.pid) ? { pid: o.pid, node: typeof o.node === 'string' ? o.node : null } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock at `path` for this process (a JSON file naming it), so that two processes never
 * write the same state: STATE_IN_USE when a live process holds it. Returns the release.
 */
export async function acquireLock(
  path: string,
  what: string,
  node: string | null,
): Promise<() => Promise<void>> {
  const body = JSON.stringify({ pid: process.pid, node } satisfies LockOwner);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const h = await open(path, 'wx', 0o600);
      try {
        await h.writeFile(body);
      } finally {
        await h.close();
      }
      return async () => {
        const owner = await lockOwner(path);
        if (owner?.pid === process.pid) await unlink(path).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `${what}: lock ${path}: ${describeError(e)}`);
    }
    const owner = await lockOwner(path);
    if (owner !== undefined) {
      throw new KeyhopError(
        ErrorCodes.STATE_IN_USE,
        owner.node !== null
          ? `${what} is served by node "${owner.node}" (pid ${owner.pid}): keyhop asks it when you name it, or stop it first`
          : `${what} is in use by process ${owner.pid}`,
      );
    }
    // Left by a process that is gone.
    await unlink(path).catch(() => undefined);
  }
  throw new KeyhopError(ErrorCodes.STATE_IN_USE, `${what}: another process took the lock meanwhile`);
}
