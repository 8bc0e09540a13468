/**
 * A node as a service, through the real CLI: it starts when what it reaches for is down and keeps
 * trying, comes back with the configuration it had, refuses settings that would make it weaker
 * without a word, reports only what is true, and stops cleanly on SIGTERM (systemd's way).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI_MAIN,
  type CliResult,
  errorLine,
  freePort,
  freePorts,
  keyhop,
  untilReported,
} from '../support/cli.js';

/**
 * Several nodes start and stop in these tests, each a process of its own, and relays and inlets
 * wait out their back-off: on two busy cores that takes a while. A bound against hangs, not a
 * measurement.
 */
const SLOW = 120_000;

let home: string;
const children: ChildProcess[] = [];
const servers: Server[] = [];

const run = (...args: string[]) => keyhop(home, args);

async function json<T = Record<string, unknown>>(...args: string[]): Promise<T> {
  const r = await keyhop(home, [...args, '--json']);
  if (r.code !== 0) throw new Error(`keyhop ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Show {
  status: string;
  relays: { state: string; lastError: string | null; route: string | null; registrations: number }[];
  inlets: { state: string; channelsOpened: number; lastError: string | null; address: string }[];
  tcpListeners: { address: string }[];
  outlets: { target: string }[];
  services: string[];
  secureChannelTrust: string | null;
  config: Record<string, unknown>;
}
const show = (name: string) => json<Show>('node', 'show', name);

function web(text: string): Promise<number> {
  const server = createHttpServer((_req, res) => res.end(text));
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-service-'));
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  const list = await keyhop(home, ['node', 'list', '--json']);
  for (const n of JSON.parse(list.stdout || '[]') as { name: string; status: string }[]) {
    if (n.status === 'running') await keyhop(home, ['node', 'stop', n.name]);
  }
  rmSync(home, { recursive: true, force: true });
});

describe('a node starts when its relay is down, and keeps trying', () => {
  it(
    'serves its own listeners at once, reports the relay as retrying, and registers when the relay comes',
    async () => {
      const relayPort = await freePort();
      const start = await run(
        'node',
        'start',
        'edge',
        '--tcp-listener',
        '127.0.0.1:0',
        '--relay-at',
        `1#127.0.0.1:${relayPort}`,
        '--relay-alias',
        'edge',
      );
      expect(start.code, start.stderr).toBe(0);
      expect(start.stdout).toMatch(/^node edge started/);
      expect(start.stdout).toMatch(
        new RegExp(`relay at 1#127\\.0\\.0\\.1:${relayPort}: retrying \\(.*\\); retrying in the background`),
      );
      const before = await show('edge');
      expect(before.relays[0]).toMatchObject({ state: 'retrying', route: null });
      expect(before.relays[0]!.lastError).toMatch(/ECONNREFUSED|connect/i);
      const echo = await run(
        'message',
        'send',
        'local',
        '--to',
        `1#${before.tcpListeners[0]!.address} => echo`,
      );
      expect(echo.stdout.trim()).toBe('local');

      expect(
        (await run('node', 'start', 'hub', '--tcp-listener', `127.0.0.1:${relayPort}`, '--relay-service'))
          .code,
      ).toBe(0);
      const up = await untilReported(async () => {
        const s = await show('edge');
        return s.relays[0]!.state === 'up' ? s : undefined;
      }, 'the relay registered');
      expect(up.relays[0]!.route).toMatch(/ => (0#)?forward_to_edge$/);
      const through = await run(
        'message',
        'send',
        'via relay',
        '--to',
        `1#127.0.0.1:${relayPort} => forward_to_edge => echo`,
      );
      expect(through.stdout.trim()).toBe('via relay');
    },
    SLOW,
  );

  it(
    'keeps an inlet listening while the outlet node is down, and opens its channel again after a restart',
    async () => {
      const webPort = await web('through the portal');
      const [sitePort, inletPort] = (await freePorts(2)) as [number, number];
      const config = join(home, 'client.json');
      writeFileSync(
        config,
        JSON.stringify({
          inlets: [
            { bind: `127.0.0.1:${inletPort}`, to: `1#127.0.0.1:${sitePort} => api`, trustAnyOutlet: true },
          ],
        }),
      );
      const client = await run('node', 'start', 'client', '--config', config);
      expect(client.code, client.stderr).toBe(0);
      expect(client.stdout).toMatch(/inlet 127\.0\.0\.1:\d+ -> .*: retrying/);
      expect((await show('client')).inlets[0]!.state).toBe('retrying');
      // While there is no channel a client connection is closed at once, with nothing read.
      const refusedConnection = await new Promise<{ bytes: number }>((resolve, reject) => {
        let bytes = 0;
        const socket = connect(inletPort, '127.0.0.1');
        socket.on('data', (d) => {
          bytes += d.length;
        });
        socket.on('error', () => undefined);
        socket.on('close', () => resolve({ bytes }));
        socket.setTimeout(20_000, () => reject(new Error('the inlet kept a connection it cannot serve')));
      });
      expect(refusedConnection.bytes).toBe(0);
      expect((await show('client')).inlets[0]).toMatchObject({ failed: 1 });

      expect((await run('node', 'start', 'site', '--tcp-listener', `127.0.0.1:${sitePort}`)).code).toBe(0);
      expect((await run('tcp-outlet', 'create', '--at', 'site', '--to', `127.0.0.1:${webPort}`)).code).toBe(
        0,
      );
      await untilReported(
        async () => ((await show('client')).inlets[0]!.state === 'up' ? true : undefined),
        'inlet channel up',
      );
      expect(await (await fetch(`http://127.0.0.1:${inletPort}/`)).text()).toBe('through the portal');

      // The outlet's node restarts (its outlet comes back from its stored configuration).
      expect((await run('node', 'stop', 'site')).code).toBe(0);
      expect((await run('node', 'start', 'site')).code).toBe(0);
      await untilReported(async () => {
        const i = (await show('client')).inlets[0]!;
        return i.state === 'up' && i.channelsOpened === 2 ? true : undefined;
      }, 'inlet channel opened again');
      expect(await (await fetch(`http://127.0.0.1:${inletPort}/`)).text()).toBe('through the portal');
    },
    SLOW,
  );
});

describe('a node comes back as it was', () => {
  it(
    'restores listeners, outlets, relays and services given at first start or added since',
    async () => {
      const [first, second] = (await freePorts(2)) as [number, number];
      expect(
        (await run('node', 'start', 'keeper', '--tcp-listener', `127.0.0.1:${first}`, '--relay-service'))
          .code,
      ).toBe(0);
      expect((await run('tcp-listener', 'create', `127.0.0.1:${second}`, '--at', 'keeper')).code).toBe(0);
      // An outlet to a port where nothing listens is made, and that is said (not hidden).
      const outlet = await run('tcp-outlet', 'create', '--at', 'keeper', '--to', '127.0.0.1:9');
      expect(outlet.code).toBe(0);
      expect(outlet.stderr).toMatch(/^keyhop: note: nothing answers at 127\.0\.0\.1:9 now/);
      expect((await run('node', 'stop', 'keeper')).code).toBe(0);

      // Stopped, it still shows what it will run.
      const stopped = await show('keeper');
      expect(stopped.status).toBe('stopped');
      expect(stopped.config).toMatchObject({
        tcpListeners: [{ address: `127.0.0.1:${first}` }, { address: `127.0.0.1:${second}` }],
        services: { relay: true },
        outlets: [{ target: '127.0.0.1:9' }],
      });
      const text = await run('node', 'show', 'keeper');
      expect(text.stdout).toMatch(/^node keeper \(stopped; keyhop node start keeper runs it again/);

      expect((await run('node', 'start', 'keeper')).code).toBe(0);
      const again = await show('keeper');
      expect(again.status).toBe('running');
      expect(again.tcpListeners.map((l) => l.address).sort()).toEqual(
        [`127.0.0.1:${first}`, `127.0.0.1:${second}`].sort(),
      );
      expect(again.services).toEqual(
        expect.arrayContaining(['forwarding_service', 'static_forwarding_service']),
      );
      expect(again.outlets.map((o) => o.target)).toEqual(['127.0.0.1:9']);
      const stored = JSON.parse(readFileSync(join(home, 'nodes', 'keeper', 'config.json'), 'utf8'));
      expect(stored).toEqual(again.config);

      expect(errorLine(await run('node', 'delete', 'keeper')).code).toBe('NODE_EXISTS');
      expect((await run('node', 'stop', 'keeper')).code).toBe(0);
      expect((await run('node', 'delete', 'keeper')).code).toBe(0);
      expect(errorLine(await run('node', 'show', 'keeper')).code).toBe('NODE_NOT_FOUND');
    },
    SLOW,
  );
});

describe('settings that would be weaker are errors, not fallbacks', () => {
  const refused = (r: CliResult) => {
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    return errorLine(r);
  };

  it('a mistyped identity is not quietly a new one', async () => {
    expect((await run('identity', 'create', 'sensor')).code).toBe(0);
    const e = refused(await run('node', 'start', 'typo', '--identity', 'sensr'));
    expect(e.code).toBe('IDENTITY_NOT_FOUND');
    expect(e.message).toMatch(
      /^node "typo" did not start: no identity "sensr" \(identities here: [a-z, ]*sensor[a-z, ]*\); create it with: keyhop identity create sensr$/,
    );
    expect((await json<{ name: string }[]>('identity', 'list')).map((i) => i.name)).not.toContain('sensr');
  });

  it('authorities without a policy, a policy without authorities, and a mistyped identifier are refused', async () => {
    const a = refused(await run('node', 'start', 'lax', '--authority', 'sensor'));
    expect(a.code).toBe('CONFIG_INVALID');
    expect(a.message).toMatch(/authorities is set but no policy uses it, so any identity would be accepted/);
    const p = refused(await run('node', 'start', 'lax', '--policy', '(= subject.role "x")'));
    expect(p.message).toMatch(/policy needs the authorities/);
    const t = refused(await run('node', 'start', 'lax', '--trust', 'I1234'));
    expect(t.message).toMatch(/"I1234" is not an identifier/);
  });

  it('says loudly when the listener accepts anyone', async () => {
    expect((await run('node', 'start', 'open')).code).toBe(0);
    expect((await show('open')).secureChannelTrust).toBe('any identity');
    expect((await run('node', 'show', 'open')).stdout).toMatch(
      /channels: {3}listener 0#api accepts any identity/,
    );
    const log = readFileSync(join(home, 'nodes', 'open', 'node.log'), 'utf8');
    expect(log).toMatch(/"level":40.*accepts channels from any identity/);
    expect((await run('node', 'stop', 'open')).code).toBe(0);
  });

  it('a credential for another identity is refused when stored', async () => {
    const other = await json<{ identifier: string }>('identity', 'create', 'other');
    expect((await run('identity', 'create', 'ca')).code).toBe(0);
    const { credential } = await json<{ credential: string }>(
      'credential',
      'issue',
      '--as',
      'ca',
      '--for',
      other.identifier,
    );
    const e = refused(await run('credential', 'store', credential, '--identity', 'sensor'));
    expect(e.code).toBe('CREDENTIAL_INVALID');
    expect(e.message).toContain(`the credential is about ${other.identifier}, not about identity "sensor"`);
  });
});

describe('under a supervisor', () => {
  it(
    'node run stops cleanly on SIGTERM: peers are told, files removed, exit 0',
    async () => {
      const port = await freePort();
      const c = spawn(
        process.execPath,
        [CLI_MAIN, 'node', 'run', 'svc', '--tcp-listener', `127.0.0.1:${port}`],
        {
          env: { ...process.env, KEYHOP_HOME: home },
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      children.push(c);
      await untilReported(
        async () =>
          (await keyhop(home, ['node', 'show', 'svc', '--json'])).stdout.includes('"running"')
            ? true
            : undefined,
        'svc running',
      );
      expect((await run('node', 'start', 'peer')).code).toBe(0);
      const ch = await json<{ encryptor: string }>(
        'secure-channel',
        'create',
        '--from',
        'peer',
        '--to',
        `1#127.0.0.1:${port} => api`,
      );
      expect((await json<unknown[]>('secure-channel', 'list', '--at', 'peer')).length).toBe(1);
      const exited = new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
      c.kill('SIGTERM');
      expect(await exited).toBe(0);
      // The peer's end was closed by the Close the stopping node sent.
      await untilReported(
        async () =>
          (await json<unknown[]>('secure-channel', 'list', '--at', 'peer')).length === 0 ? true : undefined,
        'peer channel closed',
      );
      expect(ch.encryptor).toMatch(/^0#sc_encryptor_/);
      expect((await show('svc')).status).toBe('stopped');
      expect((await run('node', 'stop', 'peer')).code).toBe(0);
    },
    SLOW,
  );

  it('prints a systemd unit that systemd accepts', async () => {
    expect((await run('node', 'start', 'unit-node')).code).toBe(0);
    expect((await run('node', 'stop', 'unit-node')).code).toBe(0);
    const r = await run('node', 'service', 'unit-node', '--user', 'root');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      `ExecStart=${process.execPath} --max-semi-space-size=4 --expose-gc ${CLI_MAIN.replace('/test/support/../../', '/')}`,
    );
    expect(r.stdout).toMatch(/\nExecStart=.* node run unit-node\n/);
    expect(r.stdout).toMatch(/\nRestart=on-failure\n/);
    const verify = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    if (verify.status !== 0) {
      if (process.env.KEYHOP_REQUIRE_RIG === '1')
        throw new Error('KEYHOP_REQUIRE_RIG=1 but systemd-analyze is missing (apt-get install systemd)');
      return;
    }
    const unit = join(home, 'keyhop-unit-node.service');
    writeFileSync(unit, r.stdout);
    const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    expect(v.stderr.split('\n').filter((l) => l.includes(unit))).toEqual([]);
  });
});
