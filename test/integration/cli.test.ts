import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const main = join(import.meta.dirname, '../../dist/runtime/cli/main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the built CLI (npm test builds first) with a private KEYHOP_HOME. */
async function keyhop(
  home: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [main, ...args], {
      env: { ...process.env, KEYHOP_HOME: home },
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Polls `probe` until it gives a value. The bound covers node processes starting on busy cores and
 * a relay re-registration waiting out its back-off (0.5, 1, 2, 4, 8 s…); it is not a timing check.
 */
async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(100);
  }
}

describe('keyhop CLI', () => {
  let home: string;
  const children: ChildProcess[] = [];
  beforeAll(() => {
    home = mkdtempSync(join(tmpdir(), 'kh-'));
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    const list = await keyhop(home, 'node', 'list', '--json');
    for (const n of JSON.parse(list.stdout || '[]') as { name: string; status: string }[]) {
      if (n.status === 'running') await keyhop(home, 'node', 'stop', n.name);
    }
    rmSync(home, { recursive: true, force: true });
  });

  it('runs the demo', async () => {
    const r = await keyhop(home, 'demo');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`bob's inbox got "hello bob, this is alice"`);
    expect(r.stdout).toContain('alice got "hi alice, bob here"');
    expect(r.stdout).toContain(`and bob got alice's answer: "alice here, loud and clear"`);
    expect(r.stdout).toContain(`bob's inbox got "the launch code is 0000" from I`);
    expect(r.stdout).toContain('plaintext visible at the relay: no');
    expect(r.stdout).toMatch(
      /GET http:\/\/127\.0\.0\.1:\d+\/ -> 200 "hello from bob's web server, through a portal"/,
    );
  });

  it('starts a relay node and a node behind it, sends through the relay, lists, shows and stops them', async () => {
    const port = await freePort();
    const relay = await keyhop(
      home,
      'node',
      'start',
      'relay',
      '--tcp-listener',
      `127.0.0.1:${port}`,
      '--relay-service',
    );
    expect(relay.code, relay.stderr).toBe(0);
    const bob = await keyhop(
      home,
      'node',
      'start',
      'bob',
      '--relay-at',
      `1#127.0.0.1:${port}`,
      '--relay-alias',
      'bob',
      '--json',
    );
    expect(bob.code, bob.stderr).toBe(0);
    expect(JSON.parse(bob.stdout).relays[0].name).toBe('forward_to_bob');

    const sent = await keyhop(
      home,
      'message',
      'send',
      'hello bob',
      '--to',
      `1#127.0.0.1:${port} => forward_to_bob => echo`,
    );
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout.trim()).toBe('hello bob');

    const list = JSON.parse((await keyhop(home, 'node', 'list', '--json')).stdout) as {
      name: string;
      status: string;
    }[];
    expect(list.filter((n) => n.status === 'running').map((n) => n.name)).toEqual(['bob', 'relay']);

    const show = JSON.parse((await keyhop(home, 'node', 'show', 'relay', '--json')).stdout);
    expect(show.relaysHosted.map((r: { name: string }) => r.name)).toEqual(['forward_to_bob']);

    expect((await keyhop(home, 'node', 'stop', 'bob')).code).toBe(0);
    expect((await keyhop(home, 'node', 'stop', 'relay')).code).toBe(0);
    const after = JSON.parse((await keyhop(home, 'node', 'list', '--json')).stdout) as { status: string }[];
    expect(after.every((n) => n.status === 'stopped')).toBe(true);
  });

  it('answers over UDP from a node started with --udp-bind', async () => {
    const port = await freePort();
    const r = await keyhop(home, 'node', 'start', 'udpnode', '--udp-bind', `127.0.0.1:${port}`, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).udp.route).toBe(`2#127.0.0.1:${port}`);
    const big = 'u'.repeat(3000); // several datagrams
    const sent = await keyhop(home, 'message', 'send', big, '--to', `2#127.0.0.1:${port} => echo`);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout.trim()).toBe(big);
    await keyhop(home, 'node', 'stop', 'udpnode');
  });

  it('re-registers a relay after the relay node is killed and comes back', async () => {
    const port = await freePort();
    const startRelay = () => {
      const c = spawn(
        process.execPath,
        [
          main,
          'node',
          'start',
          'hub',
          '--foreground',
          '--tcp-listener',
          `127.0.0.1:${port}`,
          '--relay-service',
        ],
        { env: { ...process.env, KEYHOP_HOME: home }, stdio: 'ignore' },
      );
      children.push(c);
      return c;
    };
    const hub = startRelay();
    const show = (name: string) => keyhop(home, 'node', 'show', name, '--json');
    await until(async () => ((await show('hub')).code === 0 ? true : undefined));
    expect(
      (
        await keyhop(
          home,
          'node',
          'start',
          'leaf',
          '--relay-at',
          `1#127.0.0.1:${port}`,
          '--relay-alias',
          'leaf',
        )
      ).code,
    ).toBe(0);

    hub.kill('SIGKILL');
    await until(async () => {
      const s = await show('leaf');
      return JSON.parse(s.stdout).relays[0].state !== 'up' ? true : undefined;
    });
    startRelay();
    const relayInfo = await until(async () => {
      const r = JSON.parse((await show('leaf')).stdout).relays[0];
      return r.state === 'up' && r.registrations === 2 ? r : undefined;
    });
    expect(relayInfo.name).toBe('forward_to_leaf');
    const sent = await keyhop(
      home,
      'message',
      'send',
      'back again',
      '--to',
      `1#127.0.0.1:${port} => forward_to_leaf => echo`,
    );
    expect(sent.stdout.trim()).toBe('back again');
    await keyhop(home, 'node', 'stop', 'leaf');
    await keyhop(home, 'node', 'stop', 'hub');
  });

  it('shuts a foreground node down cleanly on SIGTERM and SIGINT', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const port = await freePort();
      const c = spawn(
        process.execPath,
        [main, 'node', 'start', 'sig', '--foreground', '--tcp-listener', `127.0.0.1:${port}`],
        {
          env: { ...process.env, KEYHOP_HOME: home },
          stdio: 'ignore',
        },
      );
      children.push(c);
      await until(async () => {
        const r = await keyhop(home, 'node', 'show', 'sig', '--json');
        return r.code === 0 && JSON.parse(r.stdout).status === 'running' ? true : undefined;
      });
      const exited = new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
      c.kill(signal);
      expect(await exited).toBe(0);
      expect(existsSync(join(home, 'nodes/sig/pid'))).toBe(false);
      expect(existsSync(join(home, 'nodes/sig/control.sock'))).toBe(false);
      // The port is free again.
      await new Promise<void>((resolve, reject) => {
        const s = createServer()
          .once('error', reject)
          .listen(port, '127.0.0.1', () => s.close(() => resolve()));
      });
    }
  });

  it('issues a credential and serves HTTP through an inlet, a secure channel, a relay and an outlet guarded by policies', async () => {
    const web = createHttpServer((_req, res) => res.end('portal works'));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const webPort = (web.address() as { port: number }).port;
    const json = async (...args: string[]) => {
      const r = await keyhop(home, ...args, '--json');
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return JSON.parse(r.stdout);
    };
    try {
      await json('identity', 'create', 'ca');
      const device = await json('identity', 'create', 'sensor', '--key-type', 'p256');
      const { credential } = await json(
        'credential',
        'issue',
        '--as',
        'ca',
        '--for',
        device.identifier,
        '--attribute',
        'role=device',
        '--attribute',
        'fleet=f1',
      );
      const verified = await json('credential', 'verify', credential, '--authority', 'ca');
      expect(verified.attributes).toEqual({ role: 'device', fleet: 'f1' });
      await json('credential', 'store', credential, '--identity', 'sensor');

      const port = await freePort();
      await json('node', 'start', 'hub2', '--tcp-listener', `127.0.0.1:${port}`, '--relay-service');
      await json(
        'node',
        'start',
        'site',
        '--relay-at',
        `1#127.0.0.1:${port}`,
        '--relay-alias',
        'site',
        '--authority',
        'ca',
        '--policy',
        '(= subject.role "device")',
      );
      await json(
        'tcp-outlet',
        'create',
        '--at',
        'site',
        '--to',
        `127.0.0.1:${webPort}`,
        '--policy',
        '(= subject.fleet "f1")',
      );
      await json('node', 'start', 'field', '--identity', 'sensor');
      const inletPort = await freePort();
      // The site node runs as the default identity: the inlet accepts only it at the other end.
      const site = await json('identity', 'show', 'default');
      const inlet = await json(
        'tcp-inlet',
        'create',
        '--at',
        'field',
        '--from',
        `127.0.0.1:${inletPort}`,
        '--to',
        `1#127.0.0.1:${port} => forward_to_site => api`,
        '--authorized',
        site.identifier,
      );
      expect(inlet.channel).toMatch(/^0#sc_encryptor_/);
      const res = await fetch(`http://127.0.0.1:${inletPort}/`);
      expect(await res.text()).toBe('portal works');

      const channels = await json('secure-channel', 'list', '--at', 'site');
      expect(channels.map((c: { peer: string }) => c.peer)).toEqual([device.identifier]);

      // A node whose identity has no credential is refused by the site's policy.
      await json('node', 'start', 'intruder');
      // The site refuses it after message 3 and says so: the command fails, naming who refused whom.
      const refused = await keyhop(
        home,
        'secure-channel',
        'create',
        '--from',
        'intruder',
        '--to',
        `1#127.0.0.1:${port} => forward_to_site => api`,
      );
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        /^keyhop: error \[TRUST_REFUSED\]: the responder I[0-9a-f]{64} refused this node's identity I[0-9a-f]{64} \(its trust policy\)\n$/,
      );
      expect(await json('secure-channel', 'list', '--at', 'intruder')).toEqual([]);
      expect(
        (await json('secure-channel', 'list', '--at', 'site')).map((c: { peer: string }) => c.peer),
      ).toEqual([device.identifier]);
      for (const n of ['intruder', 'field', 'site', 'hub2']) await keyhop(home, 'node', 'stop', n);
    } finally {
      web.closeAllConnections();
      web.close();
    }
  });

  it('prints one clear line and exits non-zero on errors', async () => {
    const notRunning = await keyhop(home, 'node', 'show', 'nosuch');
    expect(notRunning.code).toBe(1);
    expect(notRunning.stderr.trim()).toBe(
      'keyhop: error [NODE_NOT_FOUND]: no node "nosuch" (keyhop node list shows the nodes here)',
    );
    const stopped = await keyhop(home, 'message', 'send', 'x', '--from', 'nosuch', '--to', 'echo');
    expect(stopped.stderr.trim()).toBe(
      'keyhop: error [NODE_NOT_RUNNING]: node "nosuch" is not running (start it with: keyhop node start nosuch; keyhop node list shows the nodes here)',
    );

    const badRoute = await keyhop(home, 'message', 'send', 'x', '--to', '1#a#b');
    expect(badRoute.code).toBe(1);
    expect(badRoute.stderr).toMatch(/^keyhop: error \[ADDRESS_INVALID\]/);

    const badName = await keyhop(home, 'node', 'start', 'bad name!');
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/\[CONFIG_INVALID\]/);

    const usage = await keyhop(home, 'message', 'send', 'x');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("required option '--to <route>' not specified");
  });

  it('shows help for every command', async () => {
    for (const args of [
      [],
      ['node'],
      ['node', 'start'],
      ['relay', 'create'],
      ['message', 'send'],
      ['tcp-listener', 'create'],
    ]) {
      const r = await keyhop(home, ...args, '--help');
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage: keyhop');
    }
  });
});
