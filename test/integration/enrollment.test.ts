import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, errorLine, freePorts, keyhop, untilReported } from '../support/cli.js';

/**
 * Enrollment and the trust lifecycle as an operator scripts them, over real TCP between real node
 * processes: one-time codes over a secure channel, X3DH through a directory while the authority is
 * offline, a fleet from a manifest, revocation reaching a service, renewal, and relay aliases
 * gated by credential. Every party has its own KEYHOP_HOME, as on separate machines.
 */

const SLOW = 120_000;
let root: string;
const homes: string[] = [];
let ports: number[];
let caHistory: string;

const home = (name: string) => {
  const h = join(root, name);
  if (!homes.includes(h)) homes.push(h);
  return h;
};
const at = (name: string, ...args: string[]) => keyhop(home(name), args);

async function json<T = Record<string, unknown>>(name: string, ...args: string[]): Promise<T> {
  const r = await at(name, ...args, '--json');
  if (r.code !== 0) throw new Error(`keyhop ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function ok(r: CliResult): CliResult {
  expect(r.code, r.stderr).toBe(0);
  return r;
}

const route = (port: number, ...rest: string[]) => [`1#127.0.0.1:${port}`, ...rest].join(' => ');

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'kh-enroll-'));
  // 0 authority node, 1 hub (directory), 2 service, 3 relay
  ports = await freePorts(4);
  const created = await json<{ changeHistory: string }>('ca', 'authority', 'create', 'ca', '--prekeys', '10');
  caHistory = created.changeHistory;
  ok(
    await at(
      'hub',
      'node',
      'start',
      'hub',
      '--enrollment-directory',
      '--tcp-listener',
      `127.0.0.1:${ports[1]}`,
    ),
  );
}, SLOW);

afterAll(async () => {
  for (const h of homes) {
    const list = await keyhop(h, ['node', 'list', '--json']);
    for (const n of JSON.parse(list.stdout || '[]') as { name: string; status: string }[]) {
      if (n.status === 'running') await keyhop(h, ['node', 'stop', n.name]);
    }
  }
  rmSync(root, { recursive: true, force: true });
}, SLOW);

describe('enrollment from the command line', () => {
  it(
    'a one-time code enrolls once over a secure channel to the authority; a re-run is a no-op; misuse gets typed errors',
    async () => {
      ok(
        await at(
          'ca',
          'node',
          'start',
          'ca',
          '--serve-authority',
          'ca',
          '--tcp-listener',
          `127.0.0.1:${ports[0]}`,
        ),
      );
      const [t] = await json<{ ticket: string; id: string }[]>(
        'ca',
        'authority',
        'ticket',
        'create',
        'ca',
        '--attribute',
        'role=sensor',
      );
      const first = await json<{ outcome: string; identifier: string; attributes: Record<string, string> }>(
        'd1',
        'enroll',
        '--ticket',
        t!.ticket,
      );
      expect(first).toMatchObject({ outcome: 'enrolled', attributes: { role: 'sensor' } });
      expect((await json<{ outcome: string }>('d1', 'enroll', '--ticket', t!.ticket)).outcome).toBe(
        'already',
      );
      // The code is spent: another device is refused, with the reason.
      const reused = await at('d2', 'enroll', '--ticket', t!.ticket);
      expect(reused.code).toBe(1);
      expect(errorLine(reused)).toMatchObject({ code: 'TRUST_REFUSED' });
      expect(errorLine(reused).message).toMatch(/ticket_used|used/);
      // Not a ticket, a withdrawn one.
      expect(errorLine(await at('d2', 'enroll', '--ticket', 'keyhop-ticket:AAAA')).code).toMatch(/^DECODE_/);
      const [w] = await json<{ ticket: string; id: string }[]>('ca', 'authority', 'ticket', 'create', 'ca');
      ok(await at('ca', 'authority', 'ticket', 'withdraw', 'ca', w!.id));
      expect(errorLine(await at('d2', 'enroll', '--ticket', w!.ticket)).message).toMatch(/withdrawn/);
      const members = await json<{ identifier: string; via: string }[]>('ca', 'authority', 'members', 'ca');
      expect(members).toEqual([expect.objectContaining({ identifier: first.identifier, via: 'ticket' })]);
      const tickets = await json<{ state: string }[]>('ca', 'authority', 'ticket', 'list', 'ca');
      expect(tickets.map((x) => x.state).sort()).toEqual(['used', 'withdrawn']);
      // The authority's state is the node's while it runs: a second process may not open it.
      ok(await at('ca', 'node', 'stop', 'ca'));
    },
    SLOW,
  );

  it(
    'X3DH through the directory while the authority is offline: the request waits (exit 75), the authority comes up and answers, the device collects',
    async () => {
      const [t] = await json<{ ticket: string }[]>(
        'ca',
        'authority',
        'ticket',
        'create',
        'ca',
        '--attribute',
        'role=meter',
        '--route',
        route(ports[0]!, 'api'),
      );
      const directory = route(ports[1]!);
      ok(await at('ca', 'authority', 'sync', 'ca', '--directory', directory));
      const left = await at('d3', 'enroll', '--ticket', t!.ticket, '--directory', directory, '--json');
      expect(left.code).toBe(75);
      expect(JSON.parse(left.stdout)).toMatchObject({ outcome: 'pending' });
      // Run again before the authority did: still pending, and the same request (no new one left).
      expect((await at('d3', 'enroll', '--ticket', t!.ticket, '--directory', directory)).code).toBe(75);
      const sync = await json<{ answered: number }[]>(
        'ca',
        'authority',
        'sync',
        'ca',
        '--directory',
        directory,
      );
      expect(sync[0]!.answered).toBe(1);
      const done = await json<{ outcome: string; via: string; attributes: Record<string, string> }>(
        'd3',
        'enroll',
        '--ticket',
        t!.ticket,
        '--directory',
        directory,
      );
      expect(done).toMatchObject({ outcome: 'enrolled', via: 'x3dh', attributes: { role: 'meter' } });
      const file = JSON.parse(readFileSync(join(home('d3'), 'identities/default.json'), 'utf8'));
      expect(file.enrollment).toMatchObject({ via: 'x3dh', directory, route: null });
    },
    SLOW,
  );

  it(
    'a fleet from a manifest in one command: one bad device fails alone, a re-run does only what is left, the report lists every device',
    async () => {
      const devices = Array.from({ length: 12 }, (_, i) => ({
        name: `sensor-${String(i).padStart(3, '0')}`,
        attributes: { serial: `SN${i}` },
      }));
      const manifest = join(root, 'fleet.json');
      const withTickets = join(root, 'fleet-tickets.json');
      writeFileSync(manifest, JSON.stringify({ devices }));
      ok(
        await at(
          'ca',
          'authority',
          'ticket',
          'create',
          'ca',
          '--attribute',
          'role=sensor',
          '--route',
          route(ports[0]!, 'api'),
          '--manifest',
          manifest,
          '--out',
          withTickets,
        ),
      );
      // One device's ticket is damaged on the way.
      const m = JSON.parse(readFileSync(withTickets, 'utf8'));
      m.devices[5].ticket = `${m.devices[5].ticket.slice(0, -8)}AAAAAAAA`;
      writeFileSync(withTickets, JSON.stringify(m));
      // The authority's node again, now also publishing at the hub's directory.
      ok(await at('ca', 'node', 'start', 'ca', '--authority-directory', route(ports[1]!)));
      const report = join(root, 'fleet-report.json');
      const run1 = await at(
        'ops',
        'enroll',
        '--manifest',
        withTickets,
        '--report',
        report,
        '--concurrency',
        '4',
      );
      expect(run1.code).toBe(1);
      expect(run1.stdout).toMatch(/12 devices: 11 enrolled, 0 already, 0 pending, 1 failed/);
      // Not a terminal: one plain line per device.
      expect(run1.stderr.split('\n').filter((l) => / enrolled I[0-9a-f]{64}$/.test(l))).toHaveLength(11);
      const r1 = JSON.parse(readFileSync(report, 'utf8'));
      expect(r1.devices).toHaveLength(12);
      expect(r1.devices[5]).toMatchObject({
        name: 'sensor-005',
        outcome: 'failed',
        error: { code: expect.any(String) },
      });
      expect(r1.devices[0]).toMatchObject({
        outcome: 'enrolled',
        attributes: { role: 'sensor', serial: 'SN0' },
      });
      // The operator fixes the one ticket and runs the same command again.
      const fresh = await json<{ ticket: string }[]>(
        'ca',
        'authority',
        'ticket',
        'create',
        'ca',
        '--attribute',
        'role=sensor',
        '--attribute',
        'serial=SN5',
      );
      m.devices[5].ticket = fresh[0]!.ticket;
      writeFileSync(withTickets, JSON.stringify(m));
      const run2 = await at('ops', 'enroll', '--manifest', withTickets, '--report', report, '--json');
      expect(run2.code, run2.stderr).toBe(0);
      expect(JSON.parse(run2.stdout)).toMatchObject({ total: 12, enrolled: 1, already: 11, failed: 0 });
      const r2 = JSON.parse(readFileSync(report, 'utf8'));
      expect(new Set(r2.devices.map((d: { identifier: string }) => d.identifier)).size).toBe(12);
      expect((await json<unknown[]>('ca', 'authority', 'members', 'ca')).length).toBe(14);
    },
    SLOW,
  );

  it(
    'a revoked device loses its open channel at a service and is refused afterwards; renewal is pushed into open channels',
    async () => {
      ok(
        await at(
          'svc',
          'node',
          'start',
          'svc',
          '--tcp-listener',
          `127.0.0.1:${ports[2]}`,
          '--authority',
          caHistory,
          '--policy',
          '(= subject.role "sensor")',
          '--revocations-from',
          route(ports[1]!, 'enrollment_directory'),
          '--revocation-interval',
          '1',
        ),
      );
      ok(await at('d1', 'node', 'start', 'd1'));
      const channel = await json<{ state: string }>(
        'd1',
        'secure-channel',
        'create',
        '--from',
        'd1',
        '--to',
        route(ports[2]!, 'api'),
      );
      expect(channel.state).toBe('open');
      // Renewal now (a node does it by itself at 80% of the lifetime): pushed into the open channel.
      const renewed = await json<{ renewals: number }>('d1', 'node', 'renew', 'd1');
      expect(renewed.renewals).toBe(1);
      const d1 = JSON.parse(readFileSync(join(home('d1'), 'identities/default.json'), 'utf8'));
      expect(d1.credentials).toHaveLength(1);

      ok(await at('ca', 'authority', 'revoke', 'ca', '--identity', d1.identifier));
      await untilReported(async () => {
        const s = await json<{ secureChannels: unknown[] }>('svc', 'node', 'show', 'svc');
        return s.secureChannels.length === 0 ? true : undefined;
      }, 'the service closed the revoked device channel');
      const again = await at(
        'd1',
        'secure-channel',
        'create',
        '--from',
        'd1',
        '--to',
        route(ports[2]!, 'api'),
      );
      expect(errorLine(again).code).toBe('TRUST_REFUSED');
      // Nor does it get a new credential.
      expect(errorLine(await at('d1', 'node', 'renew', 'd1')).message).toMatch(/revoked/);
      const trust = (
        await json<{ trust: { revocations: { refusedCredentials: Record<string, number> } } }>(
          'svc',
          'node',
          'show',
          'svc',
        )
      ).trust;
      expect(trust.revocations.refusedCredentials.identity_revoked).toBeGreaterThanOrEqual(1);
    },
    SLOW,
  );

  it(
    'relay aliases are gated by credential: the holder registers through a secure channel, nobody else takes its alias',
    async () => {
      ok(
        await at(
          'relay',
          'node',
          'start',
          'relay',
          '--relay-service',
          '--tcp-listener',
          `127.0.0.1:${ports[3]}`,
          '--relay-authority',
          caHistory,
        ),
      );
      const [t] = await json<{ ticket: string }[]>(
        'ca',
        'authority',
        'ticket',
        'create',
        'ca',
        '--attribute',
        'ockam-relay=gw-1',
      );
      ok(await at('gw', 'enroll', '--ticket', t!.ticket));
      const relayAt = route(ports[3]!);
      ok(
        await at(
          'gw',
          'node',
          'start',
          'gw',
          '--relay-at',
          relayAt,
          '--relay-alias',
          'gw-1',
          '--relay-secure',
        ),
      );
      const up = await json<{ relays: { state: string; route: string }[] }>('gw', 'node', 'show', 'gw');
      expect(up.relays[0]).toMatchObject({ state: 'up', route: `${relayAt} => 0#forward_to_gw-1` });
      // Someone who reaches the relay, without a credential for that alias: never registered.
      ok(await at('rogue', 'node', 'start', 'rogue', '--relay-at', relayAt, '--relay-alias', 'gw-1'));
      const rogue = await json<{ relays: { state: string; registrations: number }[] }>(
        'rogue',
        'node',
        'show',
        'rogue',
      );
      expect(rogue.relays[0]).toMatchObject({ state: 'retrying', registrations: 0 });
      // The holder is still the one reached through the alias.
      ok(await at('client', 'node', 'start', 'client'));
      const gwId = JSON.parse(readFileSync(join(home('gw'), 'identities/default.json'), 'utf8')).identifier;
      const c = await json<{ peer: string }>(
        'client',
        'secure-channel',
        'create',
        '--from',
        'client',
        '--to',
        `${relayAt} => forward_to_gw-1 => api`,
      );
      expect(c.peer).toBe(gwId);
    },
    SLOW,
  );
});
