import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseNodeConfig } from '../../runtime/node/config.js';
import { bleRigSkipReason } from '../rig/ble.js';
import { i2cRigSkipReason, repoRoot } from '../rig/i2c-shim.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../..');

describe('examples run as written', () => {
  it('hello-relay.mjs', async () => {
    const { stdout } = await run(process.execPath, ['examples/hello-relay.mjs'], {
      cwd: root,
      timeout: 20_000,
    });
    expect(stdout).toContain('device reachable as 1#127.0.0.1:');
    expect(stdout).toContain('client got: hello through the relay');
  });

  it('secure-channel.mjs', async () => {
    const { stdout } = await run(process.execPath, ['examples/secure-channel.mjs'], {
      cwd: root,
      timeout: 20_000,
    });
    expect(stdout).toContain('guest: message refused by the control worker');
    expect(stdout).toMatch(/server: "hello from the operator" from I[0-9a-f]{64}, \{"role":"operator"\}/);
    expect(stdout).not.toContain('hello from the guest');
  });

  it('broker-store-and-forward.mjs', async () => {
    const { stdout } = await run(process.execPath, ['examples/broker-store-and-forward.mjs'], {
      cwd: root,
      timeout: 50_000,
    });
    expect(stdout).toContain('collector: 5 readings while online');
    expect(stdout).toContain(
      'sensor: 100 readings sent while the collector is offline, 100 kept in its outbox',
    );
    expect(stdout).toContain('collector: back online, 105 readings in all, in order and once: true');
    expect(stdout).toMatch(/broker: carried \d+ frames, 0 with a reading in clear/);
  }, 60_000);

  it('fleet-enrollment/run.mjs', async () => {
    const { stdout } = await run(process.execPath, ['examples/fleet-enrollment/run.mjs'], {
      cwd: root,
      timeout: 110_000,
    });
    expect(stdout).toContain('devices: 3 enrollment requests left at the hub (authority offline)');
    expect(stdout).toContain('devices: 3 enrolled once the authority came up');
    expect(stdout).toMatch(/sensor-1 I[0-9a-f]{64} role=sensor/);
    expect(stdout).toContain('sensor-1: refused by the service');
    expect(stdout).toContain('sensor-0: still welcome (open)');
  }, 120_000);

  it.skipIf(bleRigSkipReason() !== undefined)(
    'ble-gateway-pairing/run.mjs (virtual BLE rig)',
    async () => {
      const { stdout } = await run(process.execPath, ['examples/ble-gateway-pairing/run.mjs'], {
        cwd: root,
        timeout: 60_000,
      });
      expect(stdout).toMatch(/person: the gateway shows (\d{6}), the device \1: same/);
      expect(stdout).toMatch(/paired with sensor-1 \(I[0-9a-f]{64}\)/);
      expect(stdout).toMatch(/reachable through this gateway at: 1#127\.0\.0\.1:4100 => forward_to_sensor-1/);
      expect(stdout).toContain('client got: hello over BLE');
      expect(stdout).toMatch(/device +sensor-1 +I[0-9a-f]{64}/);
    },
    70_000,
  );

  it.skipIf(
    i2cRigSkipReason({ addon: join(repoRoot(), 'build/Release/keyhop_atecc608.node') }) !== undefined,
  )(
    'atecc608-identity/run.mjs (emulated chip behind /dev/i2c-1)',
    async () => {
      const { stdout } = await run(process.execPath, ['examples/atecc608-identity/run.mjs'], {
        cwd: root,
        timeout: 60_000,
      });
      expect(stdout).toMatch(/ATECC608B at \/dev\/i2c-1@0x60/);
      expect(stdout).toContain('nothing was changed: run again with --yes to do this');
      expect(stdout).toMatch(/identity sensor: I[0-9a-f]{64}/);
      expect(stdout).toMatch(
        /client: secure channel to I[0-9a-f]{64} in [\d.]+ ms \(the chip's identity: yes\)/,
      );
      expect(stdout).toContain('client got: hello, chip-held identity');
    },
    70_000,
  );

  it('node-config.json is a valid node config', () => {
    const config = parseNodeConfig(JSON.parse(readFileSync(join(root, 'examples/node-config.json'), 'utf8')));
    expect(config.name).toBe('gateway');
    expect(config.services).toEqual({ echo: true, relay: true });
  });
});
