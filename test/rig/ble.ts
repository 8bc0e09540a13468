import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError } from '../../runtime/errors.js';
import { startSocat } from './socat-process.js';

/**
 * Virtual BLE without hardware (docs: native/testing/README.md): BlueZ's `btvirt -s` emulates
 * LE controllers that see each other over the air; every connection to its /tmp/bt-server-le
 * socket is one fresh controller speaking H4. One socat per controller turns that socket into a
 * PTY, which noble/bleno open as an HCI UART. btvirt needs an AF_ALG shim on kernels without the
 * crypto user API (native/testing/afalg_shim.c), built here with gcc on demand.
 *
 * btvirt's socket paths are fixed, so one btvirt serves the whole machine: every process calls
 * ensureBtvirt() (a working one is reused; a lock directory keeps two processes from starting
 * one each) and holds a lease until stopBtvirt(); the last lease holder stops it (by pid). Under
 * vitest the lease belongs to the main process (ble-global-setup.ts sets KEYHOP_BTVIRT_OWNER),
 * whose teardown stops it; worker processes come and go. Not for use from tests' afterAll.
 * A benchmark holds its own lease: `await ensureBtvirt()`, then `finally { await stopBtvirt() }`.
 *
 * All controllers of one btvirt hear each other, including other processes' (parallel test
 * files, a benchmark): advertise unique names and connect only to your own peripheral. At most
 * 16 controllers exist at a time. LE pairing/encryption does not work in the emulator, and a
 * controller that goes away drops its connections without telling the peer (no supervision
 * timeout).
 */

export const BT_SERVER_LE = '/tmp/bt-server-le';
/** btvirt -s creates these; stale ones survive a killed btvirt (btvirt replaces them on start). */
const BT_SERVER_PATHS = ['bredrle', 'bredr', 'amp', 'le', 'mon'].map((n) => `/tmp/bt-server-${n}`);
/** Machine-wide like btvirt's sockets (literally /tmp, not $TMPDIR). */
const STATE_DIR = '/tmp/keyhop-btvirt';
const LOCK_DIR = join(STATE_DIR, 'lock');
const PID_FILE = join(STATE_DIR, 'btvirt.pid');
const LOG_FILE = join(STATE_DIR, 'btvirt.log');
const USERS_DIR = join(STATE_DIR, 'users');
const OPENSSL_HEADER = '/usr/include/openssl/evp.h';

/**
 * Why the BLE rig cannot run here, or undefined when it can. With KEYHOP_REQUIRE_RIG=1 a missing
 * rig is an error instead of a reason to skip.
 */
export function bleRigSkipReason(): string | undefined {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  if (!runs('btvirt', ['--version'])) missing.push('btvirt (apt-get install bluez-test-tools)');
  if (!runs('socat', ['-V'])) missing.push('socat (apt-get install socat)');
  if (!runs('gcc', ['--version'])) missing.push('gcc');
  if (!existsSync(OPENSSL_HEADER)) missing.push('OpenSSL headers (apt-get install libssl-dev)');
  if (missing.length === 0) return undefined;
  const reason = `virtual BLE rig needs ${missing.join(', ')}: BLE rig tests skipped`;
  if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
  return reason;
}

function runs(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

/** Builds native/testing/afalg_shim.c into native/testing/build/ unless the build is current. */
export function buildAfalgShim(): string {
  const root = repoRoot();
  const src = join(root, 'native', 'testing', 'afalg_shim.c');
  const out = join(root, 'native', 'testing', 'build', 'afalg_shim.so');
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(dirname(out), { recursive: true });
  // Several vitest workers may build at once: each builds its own file and renames it into place.
  const tmp = `${out}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const args = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-o', tmp, src, '-ldl', '-lcrypto'];
  const r = spawnSync('gcc', args, { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`gcc ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
  }
  renameSync(tmp, out);
  return out;
}

/** The checkout root (found from this file, so it also works from dist/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native', 'testing', 'afalg_shim.c'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('native/testing/afalg_shim.c not found above test/rig');
    dir = up;
  }
}

/**
 * True when a working btvirt listens on /tmp/bt-server-le: it creates a controller for the
 * connection and answers HCI_Reset with Command Complete (one without the AF_ALG shim drops the
 * connection instead). The probe's controller goes away when the probe disconnects.
 */
export function probeBtvirt(timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const sock = createConnection(BT_SERVER_LE);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('connect', () => sock.write(Buffer.from('01030c00', 'hex')));
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // H4 event 0x0e Command Complete, length 4, any credit count, opcode 0x0c03, status 0.
      if (buf.length >= 7)
        done(buf[0] === 0x04 && buf[1] === 0x0e && buf.subarray(4, 7).equals(Buffer.of(3, 0x0c, 0)));
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

export interface BtvirtStatus {
  /** True when this call started btvirt. */
  readonly started: boolean;
  /** The rig's btvirt, or undefined when a btvirt not started by the rig is serving. */
  readonly pid: number | undefined;
}

/**
 * Makes sure a working btvirt serves /tmp/bt-server-le and takes a lease on it for this process
 * (or for KEYHOP_BTVIRT_OWNER). Cheap when one is running.
 */
export async function ensureBtvirt(timeoutMs = 10_000): Promise<BtvirtStatus> {
  const skip = bleRigSkipReason();
  if (skip !== undefined) throw new Error(skip);
  const lease = () => {
    mkdirSync(USERS_DIR, { recursive: true });
    writeFileSync(join(USERS_DIR, owner()), '');
  };
  lease();
  if (await probeBtvirt()) return { started: false, pid: rigPid() };
  return withLock(timeoutMs, async () => {
    lease(); // again under the lock: a concurrent stopBtvirt() may have swept the directory
    if (await probeBtvirt()) return { started: false, pid: rigPid() };
    const running = rigPid();
    if (running === undefined) {
      const pid = await spawnBtvirt(timeoutMs);
      writeFileSync(PID_FILE, String(pid));
      return { started: true, pid };
    }
    // Never replace a live btvirt of the rig: others' controllers run on it, and a failed probe
    // may only mean it is busy or full (16 controllers at most).
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (await probeBtvirt()) return { started: false, pid: running };
      await sleep(100);
    }
    throw new Error(
      `btvirt (pid ${running}) runs but does not answer on ${BT_SERVER_LE}; all 16 controllers in use, or hung (kill it)`,
    );
  });
}

async function spawnBtvirt(timeoutMs: number): Promise<number> {
  const shim = buildAfalgShim();
  const log = openSync(LOG_FILE, 'w');
  let child: ChildProcess;
  try {
    // Detached with its output in a file: it outlives the (worker) process that started it and
    // is stopped by pid from stopBtvirt(). SIGPIPE ignored (inherited through exec; libuv resets
    // it in the children it spawns): btvirt does not, and died with SIGPIPE (exit 141) when it
    // wrote to a controller's socket just as its socat went away, taking every controller down.
    child = spawn('sh', ['-c', 'trap "" PIPE; exec env LD_PRELOAD="$1" btvirt -s', 'sh', shim], {
      detached: true,
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  let exited: string | undefined;
  child.on('error', (e) => {
    exited = `btvirt failed to start: ${e.message}`;
  });
  child.on('exit', (code, signal) => {
    exited = `btvirt exited (code ${code}, signal ${signal})`;
  });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`btvirt did not start: ${exited ?? 'no pid'}`);
  const until = Date.now() + timeoutMs;
  while (!(await probeBtvirt(500))) {
    if (exited !== undefined || Date.now() > until) {
      if (exited === undefined) await killAndWait(pid);
      throw new Error(`btvirt not serving ${BT_SERVER_LE}: ${exited ?? 'timed out'}\n${readLog()}`);
    }
    await sleep(50);
  }
  return pid;
}

/**
 * Drops this process's lease (or KEYHOP_BTVIRT_OWNER's) and stops the rig's btvirt by pid when no
 * live lease is left. A btvirt the rig did not start is never touched. True when it stopped one.
 */
export async function stopBtvirt(timeoutMs = 10_000): Promise<boolean> {
  if (!existsSync(STATE_DIR)) return false;
  rmSync(join(USERS_DIR, owner()), { force: true });
  const stopped = await withLock(timeoutMs, async () => {
    const users = existsSync(USERS_DIR) ? readdirSync(USERS_DIR) : [];
    let live = 0;
    for (const u of users) {
      if (/^\d+$/.test(u) && pidAlive(Number(u))) live++;
      else rmSync(join(USERS_DIR, u), { force: true }); // its process died without stopping
    }
    if (live > 0) return false;
    const pid = rigPid();
    if (pid !== undefined) await killAndWait(pid);
    for (const f of [PID_FILE, LOG_FILE]) rmSync(f, { force: true });
    tryRmdir(USERS_DIR);
    if (pid !== undefined) await removeStaleSockets();
    return pid !== undefined;
  });
  tryRmdir(STATE_DIR);
  return stopped;
}

/** Removes a directory if it is empty (someone may have registered in the meantime). */
function tryRmdir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or gone
  }
}

function owner(): string {
  const o = process.env.KEYHOP_BTVIRT_OWNER;
  return o !== undefined && /^\d+$/.test(o) ? o : String(process.pid);
}

/** The pid in PID_FILE if that process is still a live btvirt (guards against pid reuse). */
function rigPid(): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(PID_FILE, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isRunning(pid)) return undefined;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.endsWith('btvirt') ? pid : undefined;
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Alive and not a zombie (a killed child of ours stays in /proc until reaped). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function killAndWait(pid: number): Promise<void> {
  for (const [signal, waitMs] of [
    ['SIGTERM', 2000],
    ['SIGKILL', 2000],
  ] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    const until = Date.now() + waitMs;
    while (Date.now() < until) {
      if (!isRunning(pid)) return;
      await sleep(20);
    }
  }
  throw new Error(`btvirt (pid ${pid}) did not exit`);
}

/** Unlinks btvirt's socket files when nothing listens on them any more. */
async function removeStaleSockets(): Promise<void> {
  for (const path of BT_SERVER_PATHS) {
    try {
      if (!lstatSync(path).isSocket()) continue;
    } catch {
      continue;
    }
    const refused = await new Promise<boolean>((resolve) => {
      const s = createConnection(path);
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
    });
    if (refused) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
  }
}

/** Runs fn holding the machine-wide rig lock (a directory; a dead holder's lock is taken over). */
async function withLock<T>(timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  mkdirSync(STATE_DIR, { recursive: true });
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(join(LOCK_DIR, 'holder'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (lockIsStale()) {
        rmSync(LOCK_DIR, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > until) throw new Error(`timed out waiting for ${LOCK_DIR}`);
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(LOCK_DIR, { recursive: true, force: true });
  }
}

function lockIsStale(): boolean {
  try {
    const holder = Number(readFileSync(join(LOCK_DIR, 'holder'), 'utf8'));
    return !pidAlive(holder);
  } catch {
    // Between mkdir and the holder file, or left by a crash right there.
    try {
      return Date.now() - statSync(LOCK_DIR).mtimeMs > 5000;
    } catch {
      return true;
    }
  }
}

function readLog(): string {
  try {
    return readFileSync(LOG_FILE, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One virtual LE controller: a PTY that noble/bleno open as an HCI UART. */
export interface BleController {
  /** Symlink to the PTY slave (unique per controller). */
  readonly path: string;
  /** socat's pid (killing it is "the controller went away"). */
  readonly pid: number;
  /** Kills socat (by pid) and removes the link. Idempotent. */
  stop(): Promise<void>;
}

let controllerCount = 0;
const liveBridges = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Starts `socat PTY,link=<unique>,rawer,wait-slave UNIX-CONNECT:/tmp/bt-server-le` (ensuring
 * btvirt first). socat connects to btvirt, which creates the controller, only when the PTY is
 * opened; closing the PTY ends socat and destroys the controller, so a controller is single-use.
 * socat checks for the opened PTY once a second by default (pty-interval): 0.01 s here, which
 * took a stack's power-on from ~1 s to ~10 ms.
 */
export async function startController(
  label: string,
  options: { timeoutMs?: number } = {},
): Promise<BleController> {
  const timeoutMs = options.timeoutMs ?? 5000;
  await ensureBtvirt();
  installExitHook();
  // Never reuse a link name: an exiting socat removes its link, and with a reused name it removed
  // the next socat's new link (the next stack then timed out opening it).
  const safe = label.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40);
  const path = join(
    tmpdir(),
    `keyhop-hci-${safe}-${process.pid}-${++controllerCount}-${randomBytes(3).toString('hex')}`,
  );
  const socat = startSocat([
    `PTY,link=${path},rawer,wait-slave,pty-interval=0.01`,
    `UNIX-CONNECT:${BT_SERVER_LE}`,
  ]);
  const child = socat.child;
  liveBridges.add(child);
  void socat.exit.then(() => liveBridges.delete(child));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await socat.stop();
    rmSync(path, { force: true });
  };
  await socat
    .waitUntil(
      (log) => existsSync(path) && log.includes('PTY is'),
      timeoutMs,
      `socat PTY for BLE controller "${label}"`,
    )
    .catch(async (e: unknown) => {
      await stop();
      throw e;
    });
  return { path, pid: child.pid!, stop };
}

/** socat bridges still running when the process exits are killed (by pid) on the way out. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of liveBridges) {
      try {
        if (c.pid !== undefined) process.kill(c.pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
  });
}

/**
 * Why BLE tests on the rig cannot run (rig missing, or noble/bleno not installed: bleno compiles
 * at install and may be missing), or undefined. Throws instead with KEYHOP_REQUIRE_RIG=1.
 */
export async function bleSkipReason(): Promise<string | undefined> {
  const rig = bleRigSkipReason();
  if (rig !== undefined) return rig;
  try {
    const { loadBleno, loadNoble } = await import('../../runtime/transports/ble/hci/load.js');
    await Promise.all([loadNoble(), loadBleno()]);
    return undefined;
  } catch (e) {
    const reason = `BLE stacks unavailable (${describeError(e)}): tests skipped`;
    if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
    return reason;
  }
}
