// An identity whose key lives in an ATECC608, end to end, with keyhop's chip emulator standing in
// for the chip (docs/vaults/atecc608.md): the emulator serves /dev/i2c-1 through the i2c-dev shim,
// so every keyhop command below runs the native addon's real system calls, exactly as on a
// Raspberry Pi with a chip on its header. Provision the chip (dry run first), create an identity in
// it, start a node with that identity, and open a secure channel to it from a software identity.
//
//   node examples/atecc608-identity/run.mjs        (after `npm install`; needs gcc for the shim)
//
// On a Pi with a real chip, drop the emulator and the LD_PRELOAD/KEYHOP_I2C_SOCKET variables.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyhopNode, parseNodeConfig, Route } from '../../dist/runtime/index.js';
import { buildI2cShim } from '../../dist/test/rig/i2c-shim.js';

const keyhop = join(import.meta.dirname, '../../dist/runtime/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'keyhop-atecc608-'));
const socket = join(dir, 'i2c.sock');
const env = {
  ...process.env,
  KEYHOP_HOME: join(dir, 'home'),
  LD_PRELOAD: await buildI2cShim(),
  KEYHOP_I2C_SOCKET: socket,
};

function cli(...args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [keyhop, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) =>
      code === 0 ? resolve(out.trim()) : reject(new Error(`keyhop ${args.join(' ')}: ${err}`)),
    );
  });
}

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

// The emulated chip, with the datasheet's execution times (a Sign takes 115 ms, as on the chip).
const emulator = spawn(
  process.execPath,
  [keyhop, 'atecc608-emulator', '--socket', socket, '--state', join(dir, 'chip.json'), '--timing', 'real'],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
await new Promise((resolve) => emulator.stdout.on('data', (d) => String(d).includes('state:') && resolve()));

try {
  console.log(await cli('atecc608', 'info'));
  console.log(await cli('atecc608', 'provision'));
  console.log(await cli('atecc608', 'provision', '--yes', '--vault', 'chip', '--identity', 'sensor'));

  const port = await freePort();
  await cli('node', 'start', 'sensor', '--identity', 'sensor', '--tcp-listener', `127.0.0.1:${port}`);
  const sensor = JSON.parse(await cli('identity', 'show', 'sensor', '--json'));
  console.log(
    `node sensor started; its identity ${sensor.identifier} is a ${sensor.changes[0].keyType} key in slot 0`,
  );

  // A client with a software identity opens a secure channel to it and uses its echo service.
  const client = await KeyhopNode.start(parseNodeConfig({ name: 'client', identity: null }));
  const started = performance.now();
  const channel = await client.createSecureChannel(`1#127.0.0.1:${port} => api`);
  const ms = (performance.now() - started).toFixed(1);
  const same = channel.peer.identifier.toString() === sensor.identifier;
  console.log(
    `client: secure channel to ${channel.peer.identifier} in ${ms} ms (the chip's identity: ${same ? 'yes' : 'NO'})`,
  );
  const ctx = await client.router.context();
  await ctx.send(Route.of(channel.encryptor, 'echo'), new TextEncoder().encode('hello, chip-held identity'));
  const reply = await ctx.receive(10_000);
  console.log(`client got: ${new TextDecoder().decode(reply.payload)}`);
  await client.stop();
} finally {
  await cli('node', 'stop', 'sensor').catch(() => undefined);
  emulator.kill('SIGTERM');
  await new Promise((resolve) => emulator.once('exit', resolve));
  rmSync(dir, { recursive: true, force: true });
}
