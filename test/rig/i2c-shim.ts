import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type {
  AddonTransactOptions,
  AddonTransactResult,
  AteccI2cAddon,
} from '../../vaults/atecc608/links/native-addon.js';

/**
 * The I2C redirect rig: builds native/testing/i2c_shim.c (an LD_PRELOAD library that sends
 * /dev/i2c-N traffic to a Unix socket, docs/protocols/i2c-emulator.md) and starts programs under
 * it. LD_PRELOAD only takes effect when a process starts, so everything that must see the
 * redirected bus runs in a child process.
 */

const run = promisify(execFile);

/** The checkout root (found from this file, so it also works from dist/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native', 'testing', 'i2c_shim.c'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('native/testing/i2c_shim.c not found above test/rig');
    dir = up;
  }
}

function runs(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

/**
 * Why the I2C shim rig cannot run here, or undefined when it can. `i2ctransfer` (Debian i2c-tools)
 * is only needed by the tests that run it; `addon` asks for the built native addon too. With
 * KEYHOP_REQUIRE_RIG=1 a missing piece is an error instead of a reason to skip.
 */
export function i2cRigSkipReason(
  needs: { i2ctransfer?: boolean; python3?: boolean; addon?: string } = {},
): string | undefined {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  if (!runs('gcc', ['--version'])) missing.push('gcc');
  if (needs.i2ctransfer === true && !runs('i2ctransfer', ['-V'])) {
    missing.push('i2ctransfer (apt-get install i2c-tools)');
  }
  if (needs.python3 === true && !runs('python3', ['--version'])) missing.push('python3');
  if (needs.addon !== undefined && !existsSync(needs.addon)) {
    missing.push(`the native addon ${needs.addon} (npm run build:native)`);
  }
  if (missing.length === 0) return undefined;
  const reason = `I2C shim rig needs ${missing.join(', ')}: skipped`;
  if (process.env.KEYHOP_REQUIRE_RIG === '1') throw new Error(`KEYHOP_REQUIRE_RIG=1 but ${reason}`);
  return reason;
}

/** Builds native/testing/i2c_shim.c into native/testing/build/ unless the build is current. */
export async function buildI2cShim(): Promise<string> {
  const root = repoRoot();
  const src = join(root, 'native', 'testing', 'i2c_shim.c');
  const out = join(root, 'native', 'testing', 'build', 'i2c_shim.so');
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  mkdirSync(dirname(out), { recursive: true });
  // Several vitest workers may build at once: each builds its own file and renames it into place.
  const tmp = `${out}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const args = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-o', tmp, src, '-ldl', '-lpthread'];
  try {
    await run('gcc', args, { encoding: 'utf8' });
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as { message?: string; stderr?: string };
    throw new Error(`gcc ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
  renameSync(tmp, out);
  return out;
}

/**
 * One atcab_info() on /dev/i2c-N as cryptoauthlib does it, in the traces' notation (atecc608.md
 * §1.8, recorded from the stock cryptoauth_test binary; here for a 608B): general-call wake, wake
 * token, Info command, poll (W 00), count, rest, idle.
 */
export const ATCAB_INFO_TRACE: readonly string[] = [
  'W 0x00 [01] NACK',
  'R 0x60 len 4 -> 04 11 33 43',
  'W 0x60 [03 07 30 00 00 00 03 5d]',
  'W 0x60 [00]',
  'R 0x60 len 1 -> 07',
  'R 0x60 len 6 -> 00 00 60 03 83 bb',
  'W 0x60 [02]',
];

export interface ShimEnv {
  /** The built shim (buildI2cShim()). */
  readonly shim: string;
  /** KEYHOP_I2C_SOCKET: the emulator or scripted server. */
  readonly socket: string;
  /** KEYHOP_I2C_BUSES, e.g. '1'. */
  readonly buses?: string;
  /** KEYHOP_I2C_BUSY: addresses where I2C_SLAVE fails with EBUSY (a kernel driver "bound"). */
  readonly busy?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export function shimEnv(o: ShimEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...o.env,
    LD_PRELOAD: o.shim,
    KEYHOP_I2C_SOCKET: o.socket,
  };
  if (o.buses !== undefined) env.KEYHOP_I2C_BUSES = o.buses;
  if (o.busy !== undefined) env.KEYHOP_I2C_BUSY = o.busy;
  return env;
}

/** Starts `cmd args` with LD_PRELOAD=<shim> and KEYHOP_I2C_SOCKET=<socket>. */
export function spawnWithI2cShim(
  cmd: string,
  args: readonly string[],
  o: ShimEnv & { readonly ipc?: boolean },
): ChildProcess {
  return spawn(cmd, args, {
    env: shimEnv(o),
    stdio: o.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    serialization: 'advanced',
  });
}

/** Runs a program under the shim to completion. */
export async function runWithI2cShim(
  cmd: string,
  args: readonly string[],
  o: ShimEnv & { readonly timeoutMs?: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnWithI2cShim(cmd, args, o);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 10_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** What the addon child reports for one transaction. */
export interface ChildTransact {
  readonly result?: AddonTransactResult;
  readonly error?: { message: string; code?: string; device?: string; address?: number };
  /** setInterval(5 ms) ticks the child's event loop ran while the transaction was pending. */
  readonly ticks: number;
  readonly ms: number;
}

// Runs in the child (plain CommonJS via `node -e`): loads the addon, answers IPC requests, and
// counts event-loop ticks so a test can see the loop stay responsive during a transaction.
const CHILD_SCRIPT = `
const addon = require(process.env.KEYHOP_ATECC608_ADDON);
let ticks = 0;
const iv = setInterval(() => { ticks++; }, 5);
process.on('message', async (m) => {
  if (m.op === 'exit') { clearInterval(iv); process.disconnect(); return; }
  const t0 = ticks, s0 = Date.now();
  try {
    const result = await addon.transact(m.options);
    process.send({ id: m.id, result, ticks: ticks - t0, ms: Date.now() - s0 });
  } catch (e) {
    const error = { message: String(e && e.message), code: e && e.code, device: e && e.device, address: e && e.address };
    process.send({ id: m.id, error, ticks: ticks - t0, ms: Date.now() - s0 });
  }
});
process.send({ ready: true });
`;

/**
 * A child Node process under the shim that answers IPC requests `{ id, ... }` with `{ id, ... }`
 * (after one `{ ready: true }`), for the addon and device children below.
 */
class IpcChild<Reply> {
  private nextId = 1;
  private readonly pending = new Map<number, (r: Reply) => void>();
  private stderr = '';
  /** Messages the child sent without being asked (events such as ticks). */
  unsolicited = 0;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: { id?: number } & Reply) => {
      if (m.id === undefined) {
        this.unsolicited++;
        return;
      }
      this.pending.get(m.id)?.(m);
      this.pending.delete(m.id);
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
  }

  static async start<R>(what: string, args: readonly string[], o: ShimEnv): Promise<IpcChild<R>> {
    const child = spawnWithI2cShim(process.execPath, args, { ...o, ipc: true });
    const c = new IpcChild<R>(child);
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number | null) =>
        reject(new Error(`${what} child exited (${code}) before it was ready: ${c.stderr}`));
      child.once('exit', onExit);
      child.once('message', () => {
        child.off('exit', onExit);
        resolve();
      });
    });
    return c;
  }

  request(message: Record<string, unknown>): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, resolve);
      this.child.send({ id, ...message }, (e) => {
        if (e) reject(e);
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.send({ op: 'exit' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * A child Node process that loads the addon under the shim and runs transactions sent over IPC.
 * `addon` adapts it to AteccI2cAddon, so an in-process I2cLink can drive the real addon through
 * the shim.
 */
export class AddonChild {
  private constructor(private readonly ipc: IpcChild<ChildTransact>) {}

  static async start(o: ShimEnv & { readonly addonPath: string }): Promise<AddonChild> {
    const env = { ...o.env, KEYHOP_ATECC608_ADDON: o.addonPath };
    return new AddonChild(await IpcChild.start<ChildTransact>('addon', ['-e', CHILD_SCRIPT], { ...o, env }));
  }

  transact(options: AddonTransactOptions): Promise<ChildTransact> {
    return this.ipc.request({ options: options as unknown as Record<string, unknown> });
  }

  /** The real addon in the child, as an AteccI2cAddon (rejections carry the addon's code). */
  get addon(): AteccI2cAddon {
    return {
      transact: async (options) => {
        const r = await this.transact(options);
        if (r.result !== undefined) return r.result;
        const e = new Error(r.error?.message ?? 'unknown addon failure') as Error & { code?: string };
        if (r.error?.code !== undefined) e.code = r.error.code;
        throw e;
      },
    };
  }

  stop(): Promise<void> {
    return this.ipc.stop();
  }
}

/** What a device child reports for one Atecc608 method call. */
export interface ChildCall<T = unknown> {
  readonly result?: T;
  readonly error?: { message: string; code?: string; name?: string };
  /** setInterval(5 ms) ticks the child's event loop ran while the call was pending. */
  readonly ticks: number;
  readonly ms: number;
}

// Runs in the child (ESM via `node --input-type=module -e`): imports the compiled protocol core and
// I2C link from dist/, opens Atecc608 over I2cLink with the options in KEYHOP_CHILD_OPTIONS, and
// runs the method calls sent over IPC. Bytes travel as Uint8Array (advanced serialization).
const DEVICE_CHILD_SCRIPT = `
const { Atecc608 } = await import(process.env.KEYHOP_CHILD_DEVICE_MODULE);
const { I2cLink } = await import(process.env.KEYHOP_CHILD_LINK_MODULE);
const options = JSON.parse(process.env.KEYHOP_CHILD_OPTIONS);
const device = new Atecc608(I2cLink.open(options.link), options.device);
let ticks = 0, pending = 0;
// While a call is pending every tick is also reported, so a test can hold the chip busy until it
// has seen the child's event loop run (DeviceChild.ticksReported).
const iv = setInterval(() => { ticks++; if (pending > 0) process.send({ tick: ticks }); }, 5);
process.on('message', async (m) => {
  if (m.op === 'exit') { clearInterval(iv); await device.link.close(); process.disconnect(); return; }
  const t0 = ticks, s0 = Date.now();
  pending++;
  try {
    const result = await device[m.method](...m.args);
    process.send({ id: m.id, result, ticks: ticks - t0, ms: Date.now() - s0 });
  } catch (e) {
    const error = { message: String(e && e.message), code: e && e.code, name: e && e.name };
    process.send({ id: m.id, error, ticks: ticks - t0, ms: Date.now() - s0 });
  } finally {
    pending--;
  }
});
process.send({ ready: true });
`;

/** The compiled modules a device child imports (`npm run build` makes them). */
export function deviceChildModules(): { device: string; link: string } {
  const dist = join(repoRoot(), 'dist', 'vaults', 'atecc608');
  return { device: join(dist, 'device.js'), link: join(dist, 'links', 'i2c-link.js') };
}

/**
 * Why the compiled dist/ cannot serve a device child (missing, or older than a source file it is
 * built from), or undefined when it is current. Device children run the compiled code, so a stale
 * build would test something else than the checkout.
 */
export function staleDistReason(): string | undefined {
  const root = repoRoot();
  const dirs = [
    join('vaults', 'atecc608'),
    join('vaults', 'atecc608', 'protocol'),
    join('vaults', 'atecc608', 'links'),
  ];
  for (const dir of dirs) {
    for (const name of readdirSync(join(root, dir))) {
      if (!name.endsWith('.ts') || name.endsWith('.test.ts')) continue;
      const src = join(root, dir, name);
      const out = join(root, 'dist', dir, name.replace(/\.ts$/, '.js'));
      if (!existsSync(out)) return `${out} is missing: run npm run build`;
      if (statSync(out).mtimeMs < statSync(src).mtimeMs)
        return `${out} is older than ${src}: run npm run build`;
    }
  }
  return undefined;
}

/**
 * A child Node process under the shim that drives Atecc608 over I2cLink from the compiled dist/,
 * so the whole host stack (protocol core, I2cLink, the native addon) runs against whatever serves
 * the socket. `call('sign', 2, digest)` runs `device.sign(2, digest)` in the child.
 */
export class DeviceChild {
  private constructor(private readonly ipc: IpcChild<ChildCall>) {}

  static async start(
    o: ShimEnv & {
      /** I2cLink.open options, e.g. `{ bus: 1 }`. */
      readonly link?: Record<string, unknown>;
      /** Atecc608 options (retries, divider). */
      readonly device?: Record<string, unknown>;
    },
  ): Promise<DeviceChild> {
    const modules = deviceChildModules();
    const env = {
      ...o.env,
      KEYHOP_CHILD_DEVICE_MODULE: pathToFileURL(modules.device).href,
      KEYHOP_CHILD_LINK_MODULE: pathToFileURL(modules.link).href,
      KEYHOP_CHILD_OPTIONS: JSON.stringify({ link: o.link ?? {}, device: o.device ?? {} }),
    };
    const args = ['--input-type=module', '-e', DEVICE_CHILD_SCRIPT];
    return new DeviceChild(await IpcChild.start<ChildCall>('device', args, { ...o, env }));
  }

  /** Event-loop ticks the child reported while a call was pending, since it started. */
  get ticksReported(): number {
    return this.ipc.unsolicited;
  }

  /** Runs `device[method](...args)` in the child; resolves with its result or error, never rejects on it. */
  run<T = unknown>(method: string, ...args: unknown[]): Promise<ChildCall<T>> {
    return this.ipc.request({ method, args }) as Promise<ChildCall<T>>;
  }

  /** Like run(), but rejects with the child's error (its `code` kept). */
  async call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const r = await this.run<T>(method, ...args);
    if (r.error === undefined) return r.result as T;
    const e = new Error(`${method}: ${r.error.message}`) as Error & { code?: string };
    if (r.error.code !== undefined) e.code = r.error.code;
    throw e;
  }

  stop(): Promise<void> {
    return this.ipc.stop();
  }
}
