import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildI2cShim, i2cRigSkipReason, repoRoot, runWithI2cShim } from '../rig/i2c-shim.js';
import { type SocatPair, socatSkipReason, startSocatPair } from '../rig/socat.js';

/**
 * The whole ATECC608 story through the real syscall path: the emulator CLI serves a chip on a Unix
 * socket, every keyhop command runs under the i2c-dev shim, so the native addon does the real
 * open/flock/ioctl/read/write. Provision (dry run, then --yes), info, an identity in the chip, a
 * node with that identity serving a portal over a secure channel to a software node, and the
 * emulator's state surviving a restart.
 */
const main = join(import.meta.dirname, '../../dist/runtime/cli/main.js');
const run = promisify(execFile);
const addon = join(repoRoot(), 'build', 'Release', 'keyhop_atecc608.node');
const skip = i2cRigSkipReason({ addon });

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(skip !== undefined)('keyhop with an ATECC608 on I2C (addon + shim + emulator)', () => {
  let dir: string;
  let home: string;
  let socket: string;
  let state: string;
  let shim: string;
  let emulator: ChildProcess | undefined;
  let web: Server;

  async function startEmulator(): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        main,
        'atecc608-emulator',
        '--socket',
        socket,
        '--state',
        state,
        '--timing',
        'zero',
        '--seed',
        'cli-test',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    emulator = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`emulator did not start: ${out}`)), 15_000);
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('state:')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.once('exit', (code) => reject(new Error(`emulator exited ${code}: ${out}`)));
    });
  }

  async function stopEmulator(): Promise<void> {
    const child = emulator;
    emulator = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  const keyhop = (...args: string[]) =>
    runWithI2cShim(process.execPath, [main, ...args], {
      shim,
      socket,
      env: { KEYHOP_HOME: home },
      timeoutMs: 30_000,
    });

  async function json(...args: string[]) {
    const r = await keyhop(...args, '--json');
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kh-atecc-'));
    home = join(dir, 'home');
    socket = join(dir, 'i2c.sock');
    state = join(dir, 'chip.json');
    shim = await buildI2cShim();
    await startEmulator();
    web = createHttpServer((_req, res) => res.end('served by a chip-held identity'));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    await keyhop('node', 'stop', 'field').catch(() => undefined);
    await keyhop('node', 'stop', 'site').catch(() => undefined);
    await stopEmulator();
    web?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('provisions only with --yes, creates a chip-held identity, and serves a portal over a secure channel', async () => {
    const before = await json('atecc608', 'info');
    expect(before).toMatchObject({
      model: '608B',
      configLocked: false,
      dataLocked: false,
      i2cAddress: '0x60',
    });
    expect(before.link).toBe('/dev/i2c-1@0x60');

    const dry = await json('atecc608', 'provision');
    expect(dry.applied).toBe(false);
    expect(dry.steps).toContain('lock the configuration zone (IRREVERSIBLE)');
    expect((await json('atecc608', 'info')).configLocked).toBe(false);
    const dryText = await keyhop('atecc608', 'provision');
    expect(dryText.stdout).toMatch(/nothing was changed: run again with --yes/);

    const done = await json('atecc608', 'provision', '--yes', '--vault', 'chip', '--identity', 'field');
    expect(done).toMatchObject({ applied: true, state: 'provisioned', vault: 'chip', identity: 'field' });
    expect(Object.keys(done.publicKeys)).toHaveLength(8);
    const after = await json('atecc608', 'info');
    expect(after).toMatchObject({ configLocked: true, dataLocked: true });
    expect(after.slots[0].description).toMatch(
      /^P256 private key: external sign, ECDH \(clear\), GenKey allowed/,
    );

    // The identity's primary key is the chip's slot 0 key, and its self-signature verifies.
    const shown = await json('identity', 'show', 'field');
    expect(shown.identifier).toBe(done.identifier);
    expect(shown.changes[0]).toMatchObject({ keyType: 'P256', publicKey: done.publicKeys.slot0 });

    // Provisioning again changes nothing; a chip-held vault refuses Ed25519.
    const again = await json('atecc608', 'provision', '--yes');
    expect(again).toMatchObject({ applied: false, state: 'provisioned' });
    expect(again.publicKeys.slot0).toBe(done.publicKeys.slot0);
    const ed = await keyhop('identity', 'create', 'nope', '--vault', 'chip', '--key-type', 'ed25519');
    expect(ed.code).toBe(1);
    expect(ed.stderr).toMatch(/\[UNSUPPORTED\].*P-256 keys only/);
    // A second identity in the chip takes the next slot.
    const second = await json('identity', 'create', 'field2', '--vault', 'chip');
    const field2 = await json('identity', 'show', 'field2');
    expect(field2.changes[0].keyType).toBe('P256');
    expect(field2.changes[0].publicKey).not.toBe(done.publicKeys.slot0);
    expect(second.identifier).not.toBe(done.identifier);
    const vaultFile = JSON.parse(readFileSync(join(home, 'vaults', 'chip', 'vault.json'), 'utf8'));
    expect(Object.keys(vaultFile.keys)).toEqual(['slot0', 'slot1']);
    // Two processes creating identities at once get different slots (vault.json is locked).
    const [third, fourth] = await Promise.all([
      json('identity', 'create', 'field3', '--vault', 'chip'),
      json('identity', 'create', 'field4', '--vault', 'chip'),
    ]);
    expect(third.identifier).not.toBe(fourth.identifier);
    const after4 = JSON.parse(readFileSync(join(home, 'vaults', 'chip', 'vault.json'), 'utf8'));
    expect(Object.keys(after4.keys).sort()).toEqual(['slot0', 'slot1', 'slot2', 'slot3']);
    // Rotating a chip-held identity: a new key in the next free slot, signed by the old one too.
    await json('identity', 'rotate', 'field2');
    const rotated = await json('identity', 'show', 'field2');
    expect(rotated.changes).toHaveLength(2);
    expect(rotated.changes[1].keyType).toBe('P256');
    expect(rotated.identifier).toBe(second.identifier);
    const after5 = JSON.parse(readFileSync(join(home, 'vaults', 'chip', 'vault.json'), 'utf8'));
    expect(Object.keys(after5.keys)).toHaveLength(5);

    // A node whose identity lives in the chip, reached over a secure channel by a software node.
    const webPort = (web.address() as { port: number }).port;
    const fieldPort = await freePort();
    await json('node', 'start', 'field', '--identity', 'field', '--tcp-listener', `127.0.0.1:${fieldPort}`);
    await json('tcp-outlet', 'create', '--at', 'field', '--to', `127.0.0.1:${webPort}`);
    await json('node', 'start', 'site');
    const inletPort = await freePort();
    await json(
      'tcp-inlet',
      'create',
      '--at',
      'site',
      '--from',
      `127.0.0.1:${inletPort}`,
      '--to',
      `1#127.0.0.1:${fieldPort} => api`,
      '--authorized',
      done.identifier,
    );
    const res = await fetch(`http://127.0.0.1:${inletPort}/`);
    expect(await res.text()).toBe('served by a chip-held identity');
    const channels = await json('secure-channel', 'list', '--at', 'site');
    expect(channels.map((c: { peer: string }) => c.peer)).toContain(done.identifier);
  });

  it('keeps the chip across an emulator restart (--state)', async () => {
    await keyhop('node', 'stop', 'field');
    await keyhop('node', 'stop', 'site');
    const before = await json('atecc608', 'info');
    await stopEmulator();
    await startEmulator();
    const after = await json('atecc608', 'info');
    expect(after).toEqual(before);
    // The key in slot 0 is still the identity's key.
    const shown = await json('identity', 'show', 'field');
    const provisioned = await json('atecc608', 'provision', '--yes');
    expect(`${provisioned.publicKeys.slot0}`).toBe(shown.changes[0].publicKey);
  });

  it('says clearly when no chip answers', async () => {
    const r = await keyhop('atecc608', 'info', '--address', '0x61');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/keyhop: error \[HARDWARE_IO\]/);
    const noSocket = await runWithI2cShim(process.execPath, [main, 'atecc608', 'info'], {
      shim,
      socket: join(dir, 'nothing-here.sock'),
      env: { KEYHOP_HOME: home },
    });
    expect(noSocket.code).toBe(1);
    expect(noSocket.stderr).toMatch(/\[HARDWARE_UNAVAILABLE\].*\/dev\/i2c-1/);
    const bad = await keyhop('atecc608', 'info', '--address', '0x200');
    expect(bad.code).toBe(2);
  });
});

const socatSkip = socatSkipReason();

describe.skipIf(socatSkip !== undefined)(
  'keyhop with an ATECC608 behind a serial kit (emulator --kit-serial)',
  () => {
    let dir: string;
    let pty: SocatPair;
    let emulator: ChildProcess;

    const keyhop = (...args: string[]) =>
      run(process.execPath, [main, ...args], {
        env: { ...process.env, KEYHOP_HOME: join(dir, 'home') },
        timeout: 30_000,
      }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'kh-kit-'));
      pty = await startSocatPair();
      emulator = spawn(
        process.execPath,
        [main, 'atecc608-emulator', '--kit-serial', pty.a, '--timing', 'zero'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      await new Promise<void>((resolve, reject) => {
        let out = '';
        emulator.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('state:')) resolve();
        });
        emulator.once('exit', (code) => reject(new Error(`emulator exited ${code}: ${out}`)));
      });
    });

    afterAll(async () => {
      emulator?.kill('SIGTERM');
      await pty?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('inspects, provisions and records the chip as a vault over the kit protocol', async () => {
      const info = await keyhop('atecc608', 'info', '--kit-serial', pty.b, '--json');
      expect(info.code, info.stderr).toBe(0);
      expect(JSON.parse(info.stdout)).toMatchObject({ link: `serial kit ${pty.b}`, configLocked: false });
      const early = await keyhop('vault', 'create', 'kit', '--backend', 'atecc608', '--kit-serial', pty.b);
      expect(early.code).toBe(1);
      expect(early.stderr).toMatch(/\[PROVISION_REFUSED\].*not provisioned for keyhop/);
      const done = await keyhop('atecc608', 'provision', '--kit-serial', pty.b, '--yes', '--json');
      expect(done.code, done.stderr).toBe(0);
      expect(JSON.parse(done.stdout).applied).toBe(true);
      const vault = await keyhop(
        'vault',
        'create',
        'kit',
        '--backend',
        'atecc608',
        '--kit-serial',
        pty.b,
        '--json',
      );
      expect(vault.code, vault.stderr).toBe(0);
      const id = await keyhop('identity', 'create', 'kitted', '--vault', 'kit', '--json');
      expect(id.code, id.stderr).toBe(0);
      const shown = await keyhop('identity', 'show', 'kitted', '--json');
      expect(JSON.parse(shown.stdout).changes[0].keyType).toBe('P256');
      // Recording the same vault twice is refused.
      const again = await keyhop('vault', 'create', 'kit', '--backend', 'atecc608', '--kit-serial', pty.b);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/\[VAULT_EXISTS\]: vault "kit" already exists/);
    });
  },
);
