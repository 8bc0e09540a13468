/**
 * keyhop installed the way users install it, on a machine without a C/C++ toolchain (a fresh
 * Raspberry Pi OS Lite, a slim container): compilers hidden from PATH (test/rig/no-compiler.ts),
 * npm from its cache. Two ways in:
 * - a clone and `npm install` (README): optional native dependencies that cannot build are left
 *   out, the addons are not built, the TypeScript build still succeeds, and the demo and a
 *   software-vault node work; the hardware backends say what is missing and how to get it;
 * - the packed package (`npm pack`, what a registry serves): no tsc at install time, and the
 *   prebuilt ATECC608 addon for this platform talks to an (emulated) chip.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildI2cShim, i2cRigSkipReason, repoRoot, shimEnv } from '../rig/i2c-shim.js';
import { noCompilerPath, stageCheckout, userEnv } from '../rig/no-compiler.js';

const execFileP = promisify(execFile);
const root = repoRoot();
const INSTALL_MS = 240_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function sh(
  cmd: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeout = 60_000,
): Promise<Run> {
  try {
    const r = await execFileP(cmd, args, {
      cwd,
      env,
      timeout,
      maxBuffer: 32 * 1024 * 1024,
      encoding: 'utf8',
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const r = e as { code?: number; stdout?: string; stderr?: string; message: string };
    return {
      code: typeof r.code === 'number' ? r.code : -1,
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? r.message,
    };
  }
}

const show = (r: Run) =>
  `exit ${r.code}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`;

let work: string;
let path: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'keyhop-nocc-'));
  path = noCompilerPath(join(work, 'bin'));
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

/** A software-vault node started, asked and stopped through `keyhop` in `cwd`. */
async function softwareNodeWorks(cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  const start = await sh(
    'npx',
    ['keyhop', 'node', 'start', 'n1', '--tcp-listener', '127.0.0.1:0', '--json'],
    cwd,
    env,
  );
  expect(start.code, show(start)).toBe(0);
  const route = (JSON.parse(start.stdout) as { tcpListeners: { route: string }[] }).tcpListeners[0]!.route;
  try {
    const echo = await sh(
      'npx',
      ['keyhop', 'message', 'send', 'hello', '--to', `${route} => echo`],
      cwd,
      env,
    );
    expect(echo.code, show(echo)).toBe(0);
    expect(echo.stdout.trim()).toBe('hello');
  } finally {
    const stop = await sh('npx', ['keyhop', 'node', 'stop', 'n1'], cwd, env);
    expect(stop.code, show(stop)).toBe(0);
  }
}

describe('installing keyhop without a C/C++ compiler', () => {
  it('hides the toolchain', async () => {
    const env = userEnv(path);
    for (const tool of ['gcc', 'g++', 'cc', 'make']) {
      expect((await sh('sh', ['-c', `command -v ${tool}`], work, env)).code, tool).not.toBe(0);
    }
    expect((await sh('node', ['--version'], work, env)).code).toBe(0);
  });

  it(
    'from a clone: npm install succeeds, the demo and a software-vault node run, hardware backends say what is missing',
    async () => {
      const clone = join(work, 'clone');
      stageCheckout(root, clone);
      const env = userEnv(path, { KEYHOP_HOME: join(work, 'home-clone') });
      const install = await sh('npm', ['install'], clone, env, INSTALL_MS);
      expect(install.code, show(install)).toBe(0);
      expect(install.stderr).toMatch(
        /keyhop: the ATECC608 I2C, TPM 2\.0 and AEAD addons .*not built: no C\+\+ compiler/,
      );
      expect(existsSync(join(clone, 'dist', 'runtime', 'cli', 'main.js'))).toBe(true);
      expect(existsSync(join(clone, 'build', 'Release', 'keyhop_atecc608.node'))).toBe(false);

      const demo = await sh('npx', ['keyhop', 'demo'], clone, env);
      expect(demo.code, show(demo)).toBe(0);
      expect(demo.stdout).toContain('plaintext visible at the relay: no');
      await softwareNodeWorks(clone, env);

      const chip = await sh('npx', ['keyhop', 'atecc608', 'info'], clone, env);
      expect(chip.code).toBe(1);
      expect(chip.stderr).toMatch(
        /^keyhop: error \[HARDWARE_UNAVAILABLE\]: the ATECC608 I2C addon is not built .*build-essential/,
      );
      const token = await sh(
        'npx',
        [
          'keyhop',
          'vault',
          'create',
          't',
          '--backend',
          'pkcs11',
          '--module',
          '/usr/lib/softhsm/libsofthsm2.so',
          '--token',
          'x',
        ],
        clone,
        { ...env, KEYHOP_PKCS11_PIN: '1234' },
      );
      expect(token.code).toBe(1);
      // pkcs11js is an optional dependency npm left out: the error says so and how to get it.
      expect(token.stderr).toMatch(/^keyhop: error \[HARDWARE_UNAVAILABLE\]: .*pkcs11js\b.*build-essential/);
      expect(token.stderr.trim().split('\n')).toHaveLength(1);
      // BLE's stacks are optional packages with addons too: a BLE node says what to install.
      writeFileSync(
        join(work, 'ble.json'),
        JSON.stringify({ name: 'radio', ble: { role: 'peripheral', hci: '/dev/ttyS99' } }),
      );
      const ble = await sh(
        'npx',
        ['keyhop', 'node', 'start', '--config', join(work, 'ble.json')],
        clone,
        env,
      );
      expect(ble.code).toBe(1);
      expect(ble.stderr).toMatch(
        /^keyhop: error \[UNSUPPORTED\]: node "radio" did not start: BLE .*not installed.*build-essential/,
      );
    },
    INSTALL_MS + 60_000,
  );

  describe('from the packed package', () => {
    const rigSkip = i2cRigSkipReason({});
    let tarball: string;

    beforeAll(async () => {
      const given = process.env.KEYHOP_PACKED_TGZ;
      if (given !== undefined && given !== '') {
        tarball = given;
        return;
      }
      // What `npm pack` makes, from this checkout's build (prepack would rebuild the addons).
      const stage = join(work, 'pack');
      stageCheckout(root, stage);
      cpSync(join(root, 'dist'), join(stage, 'dist'), { recursive: true });
      const prebuilds = [
        ['build/Release', `${process.platform}-${process.arch}`],
        ['build-arm64/Release', 'linux-arm64'],
      ] as const;
      for (const [from, platform] of prebuilds) {
        for (const f of ['keyhop_atecc608.node', 'keyhop_tpm2.node', 'keyhop_aead.node']) {
          if (!existsSync(join(root, from, f))) continue;
          mkdirSync(join(stage, 'prebuilds', platform), { recursive: true });
          cpSync(join(root, from, f), join(stage, 'prebuilds', platform, f));
        }
      }
      const pack = await sh(
        'npm',
        ['pack', '--ignore-scripts', '--pack-destination', work],
        stage,
        userEnv(process.env.PATH ?? ''),
      );
      expect(pack.code, show(pack)).toBe(0);
      tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);
    }, 120_000);

    it(
      'installs without tsc, runs the demo, and drives an ATECC608 through the prebuilt addon',
      async () => {
        const app = join(work, 'app');
        mkdirSync(app);
        writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true }\n');
        const env = userEnv(path, { KEYHOP_HOME: join(work, 'home-app') });
        const install = await sh('npm', ['install', tarball], app, env, INSTALL_MS);
        expect(install.code, show(install)).toBe(0);
        expect(install.stdout + install.stderr).not.toMatch(/\btsc\b/);
        expect(existsSync(join(app, 'node_modules', 'typescript'))).toBe(false);
        // npm hides a dependency's install-script output; what it did shows in the files.
        const pkg = join(app, 'node_modules', 'keyhop');
        expect(existsSync(join(pkg, 'build'))).toBe(false);
        expect(
          existsSync(join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, 'keyhop_atecc608.node')),
        ).toBe(true);

        const demo = await sh('npx', ['keyhop', 'demo'], app, env);
        expect(demo.code, show(demo)).toBe(0);
        await softwareNodeWorks(app, env);

        if (rigSkip !== undefined) return; // the I2C shim needs gcc on the test machine
        const shim = await buildI2cShim();
        const socket = join(work, 'i2c.sock');
        // --detach returns once the chip is served and prints the emulator's pid (stdout only).
        const started = await sh(
          'npx',
          ['keyhop', 'atecc608-emulator', '--socket', socket, '--timing', 'zero', '--detach'],
          app,
          env,
        );
        expect(started.code, show(started)).toBe(0);
        const pid = Number(started.stdout.trim());
        expect(Number.isInteger(pid) && pid > 0, started.stdout).toBe(true);
        try {
          const info = await sh(
            'npx',
            ['keyhop', 'atecc608', 'info', '--json'],
            app,
            shimEnv({ shim, socket, env }),
          );
          expect(info.code, show(info)).toBe(0);
          expect(JSON.parse(info.stdout)).toMatchObject({ model: expect.stringMatching(/^608[AB]$/) });
        } finally {
          process.kill(pid, 'SIGTERM');
        }
      },
      INSTALL_MS + 60_000,
    );
  });
});
