// BLE-to-gateway pairing, end to end, on the virtual BLE rig (btvirt + socat PTYs, see
// docs/protocols/ble.md): a device node advertises as unpaired, a gateway node pairs with it
// through `keyhop pair` (this script plays the person who compares the two codes), and then a
// client on the network opens a secure channel to the device through the gateway's relay.
//
//   node examples/ble-gateway-pairing/run.mjs        (after `npm install`, as root for btvirt)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyhopNode, parseNodeConfig, Route } from '../../dist/runtime/index.js';
import { startController, stopBtvirt } from '../../dist/test/rig/ble.js';

const here = import.meta.dirname;
const keyhop = join(here, '../../dist/runtime/cli/main.js');
const home = mkdtempSync(join(tmpdir(), 'keyhop-pairing-'));
const env = { ...process.env, KEYHOP_HOME: home };

function cli(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [keyhop, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => {
      err += d;
      input?.(String(d), child.stdin);
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`keyhop ${args[0]}: ${err || out}`)),
    );
    if (!input) child.stdin.end();
  });
}

function withHci(file, hci) {
  const config = JSON.parse(readFileSync(join(here, file), 'utf8'));
  config.ble.hci = hci;
  const path = join(home, file);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

/** The code the device shows: the device node writes it to its log (give the log a moment). */
async function deviceCode() {
  for (let i = 0; i < 50; i++) {
    const log = readFileSync(join(home, 'nodes/sensor-1/node.log'), 'utf8');
    const code = log.match(/pairing code (\d{6})/)?.[1];
    if (code) return code;
    await new Promise((r) => setTimeout(r, 100));
  }
  return 'nothing';
}

const controllers = [];
try {
  const deviceHci = await startController('example-device');
  const gatewayHci = await startController('example-gateway');
  controllers.push(deviceHci, gatewayHci);
  // Each node's identity is made once, on purpose (a node only makes the one named "default").
  await cli(['identity', 'create', 'sensor-1']);
  await cli(['identity', 'create', 'gateway']);
  await cli(['node', 'start', '--config', withHci('device.json', deviceHci.path)]);
  await cli(['node', 'start', '--config', withHci('gateway.json', gatewayHci.path)]);
  console.log('device and gateway nodes started, each on its own virtual BLE controller');

  // `keyhop pair` scans, lists unpaired devices and asks which; then shows a code and asks
  // whether the device shows the same. This script answers like a person would.
  let shownCode;
  const result = await cli(['pair', '--at', 'gateway', '--scan-ms', '2000'], (text, stdin) => {
    process.stdout.write(text.replace(/^/gm, '  | '));
    if (text.includes('pair with which device?')) stdin.write('1\n');
    const m = text.match(/pairing code: (\d{3}) (\d{3})/);
    if (m) shownCode = m[1] + m[2];
    if (text.includes('does the device show the same code?')) {
      deviceCode().then((onDevice) => {
        const same = onDevice === shownCode;
        console.log(
          `person: the gateway shows ${shownCode}, the device ${onDevice}: ${same ? 'same' : 'DIFFERENT'}`,
        );
        stdin.end(same ? 'y\n' : 'n\n');
      });
    }
  });
  console.log(result.trim());

  // A client on the network reaches the device through the gateway, end to end encrypted.
  const client = await KeyhopNode.start(parseNodeConfig({ name: 'client', identity: null }));
  const channel = await client.createSecureChannel('1#127.0.0.1:4100 => forward_to_sensor-1 => api');
  console.log(`client: secure channel to ${channel.peer.identifier} through the gateway`);
  const ctx = await client.router.context();
  await ctx.send(Route.of(channel.encryptor, 'echo'), new TextEncoder().encode('hello over BLE'));
  const reply = await ctx.receive(10_000);
  console.log(`client got: ${new TextDecoder().decode(reply.payload)}`);
  await client.stop();
  console.log((await cli(['pair', 'list', '--at', 'gateway'])).trim());
} finally {
  await cli(['node', 'stop', 'gateway']).catch(() => undefined);
  await cli(['node', 'stop', 'sensor-1']).catch(() => undefined);
  for (const c of controllers) await c.stop();
  await stopBtvirt();
  rmSync(home, { recursive: true, force: true });
}
