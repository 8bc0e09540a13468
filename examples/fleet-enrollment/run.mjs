// Fleet enrollment, end to end, with the keyhop CLI (each party has its own KEYHOP_HOME, as on
// its own machine): an authority that is offline most of the time, a hub node that relays and
// keeps an enrollment directory, three devices that enroll through the hub while the authority is
// down (X3DH), the authority coming up and answering, a service behind the hub's relay that
// accepts sensors, and one sensor revoked and then refused.
//
//   node examples/fleet-enrollment/run.mjs        (after `npm install`)
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const keyhop = join(import.meta.dirname, '../../dist/runtime/cli/main.js');
const root = mkdtempSync(join(tmpdir(), 'keyhop-fleet-'));
const started = [];

/** `keyhop …args` in party `who`'s home; resolves to stdout and the exit code. */
async function cli(who, args, { allow = [0] } = {}) {
  const env = { ...process.env, KEYHOP_HOME: join(root, who) };
  delete env.KEYHOP_VAULT_PASSPHRASE;
  try {
    const { stdout } = await run(process.execPath, [keyhop, ...args], { env });
    return { code: 0, stdout };
  } catch (e) {
    if (allow.includes(e.code)) return { code: e.code, stdout: e.stdout };
    throw new Error(`${who}: keyhop ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}
const json = async (who, args, options) => JSON.parse((await cli(who, [...args, '--json'], options)).stdout);

async function startNode(who, name, args) {
  await cli(who, ['node', 'start', name, ...args]);
  started.push([who, name]);
  return json(who, ['node', 'show', name]);
}

/** Polls a node's state until `check` holds (what the node reports, not a timer). */
async function until(who, name, check) {
  for (let i = 0; i < 300; i++) {
    if (check(await json(who, ['node', 'show', name]))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} never got there`);
}

try {
  // The authority is made on the operator's machine; from now on it is offline unless said.
  const ca = await json('ca', ['authority', 'create', 'ca']);
  console.log(`authority ca: ${ca.identifier}`);

  const hubShow = await startNode('hub', 'hub', [
    '--relay-service',
    '--enrollment-directory',
    '--tcp-listener',
    '127.0.0.1:0',
  ]);
  const hub = `1#${hubShow.tcpListeners[0].address}`;
  console.log(`hub (relay + enrollment directory) at ${hub}`);

  // The authority comes up for a moment: it publishes its prekey bundle at the hub, makes a ticket
  // per device (a one-time code), and goes away again.
  const fleet = join(root, 'fleet.json');
  const tickets = join(root, 'fleet-tickets.json');
  writeFileSync(
    fleet,
    JSON.stringify({
      directory: hub,
      devices: ['sensor-0', 'sensor-1', 'sensor-2'].map((name) => ({ name })),
    }),
  );
  await cli('ca', ['authority', 'sync', 'ca', '--directory', hub]);
  await cli('ca', [
    'authority',
    'ticket',
    'create',
    'ca',
    '--attribute',
    'role=sensor',
    '--route',
    hub,
    '--manifest',
    fleet,
    '--out',
    tickets,
  ]);
  console.log('authority published its bundle at the hub and went offline');

  // The devices enroll through the hub while the authority is down: requests left, exit 75.
  const pending = await json('factory', ['enroll', '--manifest', tickets], { allow: [75] });
  console.log(`devices: ${pending.pending} enrollment requests left at the hub (authority offline)`);

  // The authority's node comes up and works through its mailbox at the hub.
  await startNode('ca', 'ca', [
    '--serve-authority',
    'ca',
    '--authority-directory',
    hub,
    '--tcp-listener',
    '127.0.0.1:0',
  ]);
  const done = await json('factory', ['enroll', '--manifest', tickets]);
  console.log(`devices: ${done.enrolled} enrolled once the authority came up`);
  const report = JSON.parse(readFileSync(join(root, 'fleet-tickets.report.json'), 'utf8'));
  for (const d of report.devices) console.log(`  ${d.name} ${d.identifier} role=${d.attributes.role}`);

  // A service behind the hub's relay accepts sensors of this authority, and follows its
  // revocations from the hub's directory.
  await startNode('svc', 'svc', [
    '--relay-at',
    hub,
    '--relay-alias',
    'svc',
    '--authority',
    ca.changeHistory,
    '--policy',
    '(= subject.role "sensor")',
    '--revocations-from',
    `${hub} => enrollment_directory`,
    '--revocation-interval',
    '1',
  ]);
  const service = `${hub} => forward_to_svc => api`;
  const device = (name) => report.devices.find((d) => d.name === name);
  for (const name of ['sensor-0', 'sensor-1']) {
    const home = join('devices', name);
    await startNode(home, name, []);
    const c = await json(home, ['secure-channel', 'create', '--from', name, '--to', service]);
    console.log(`${name}: secure channel to the service ${c.state}`);
  }

  // sensor-1 is lost: the operator revokes it; the service closes its channel and refuses it.
  await cli('ca', ['authority', 'revoke', 'ca', '--identity', device('sensor-1').identifier]);
  console.log('authority revoked sensor-1');
  await until('svc', 'svc', (s) => s.secureChannels.length === 1);
  const refused = await cli(
    join('devices', 'sensor-1'),
    ['secure-channel', 'create', '--from', 'sensor-1', '--to', service],
    { allow: [1] },
  );
  console.log(`sensor-1: ${refused.code === 1 ? 'refused by the service' : 'STILL ACCEPTED'}`);
  const again = await json(join('devices', 'sensor-0'), [
    'secure-channel',
    'create',
    '--from',
    'sensor-0',
    '--to',
    service,
  ]);
  console.log(`sensor-0: still welcome (${again.state})`);
} finally {
  for (const [who, name] of started.reverse())
    await cli(who, ['node', 'stop', name], { allow: [1] }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
}
