/**
 * noble and bleno on "kernel adapters" (`hciDevice`) end to end: kernel-socket.ts and both stacks
 * are the real code; only the socket package's native addon is replaced, by a stand-in whose
 * user channel is a btvirt LE controller (test-support.ts), because CI's kernel has no
 * AF_BLUETOOTH. What this cannot show is the kernel's side: the bind itself, BlueZ giving the
 * adapter up, a real controller's timing (docs/boards/raspberry-pi.md says what was not tested).
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { bleSkipReason, ensureBtvirt } from '../../../../test/rig/ble.js';
import { isKeyhopError } from '../../../errors.js';
import { type BleCentral, type BlePeripheral, type GattLink, KEYHOP_PROFILE } from '../gatt-link.js';
import { createCentral, createPeripheral } from './index.js';
import { BtvirtUserChannel } from './test-support.js';

vi.mock('./load.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('./load.js')>();
  const { BtvirtUserChannel: Fake } = await import('./test-support.js');
  return {
    ...real,
    loadNoble: async () => ({ ...(await real.loadNoble()), nativeSocket: () => Fake }),
    loadBleno: async () => ({ ...(await real.loadBleno()), nativeSocket: () => Fake }),
  };
});

const skip = await bleSkipReason();

/** A bound on waits for the rig (two stacks and btvirt on busy cores), not a timing expectation. */
const WAIT_MS = 15_000;

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Pair {
  central: BleCentral;
  peripheral: BlePeripheral;
  name: string;
  links: GattLink[];
}

async function startPair(): Promise<Pair> {
  await ensureBtvirt();
  const central = createCentral({ hciDevice: 0 });
  const peripheral = createPeripheral({ hciDevice: 1 });
  cleanups.push(
    () => peripheral.stop(),
    () => central.stop(),
  );
  const name = `kk${randomBytes(3).toString('hex')}`;
  const links: GattLink[] = [];
  await Promise.all([
    peripheral.start({ name, profile: KEYHOP_PROFILE }, (link) => links.push(link)),
    central.start(),
  ]);
  return { central, peripheral, name, links };
}

async function connect(pair: Pair): Promise<{ central: GattLink; peripheral: GattLink }> {
  const ads = await pair.central.scan({
    services: [KEYHOP_PROFILE.service],
    durationMs: WAIT_MS,
    until: (ad) => ad.name === pair.name,
  });
  const ad = ads.find((a) => a.name === pair.name);
  if (ad === undefined) throw new Error(`peripheral ${pair.name} not found`);
  const central = await pair.central.connect(ad.id, KEYHOP_PROFILE, { timeoutMs: WAIT_MS });
  await until(() => pair.links.length > 0, WAIT_MS, 'the peripheral link');
  return { central, peripheral: pair.links.at(-1)! };
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A round trip each way on a fresh connection. */
async function exchange(pair: Pair): Promise<void> {
  const { central, peripheral } = await connect(pair);
  const atPeripheral: Uint8Array[] = [];
  const atCentral: Uint8Array[] = [];
  peripheral.onValue((v) => atPeripheral.push(v));
  central.onValue((v) => atCentral.push(v));
  const big = randomBytes(central.mtu - 3);
  await central.send(Uint8Array.of(1, 2, 3));
  await peripheral.send(big);
  await until(() => atPeripheral.length === 1 && atCentral.length === 1, WAIT_MS, 'a value each way');
  expect(atPeripheral[0]).toEqual(Uint8Array.of(1, 2, 3));
  expect(Buffer.from(atCentral[0]!)).toEqual(big);
}

describe.skipIf(skip !== undefined)('kernel adapters (user channel stand-in on btvirt)', () => {
  it('runs a central and a peripheral on hciDevice 0 and 1, and releases both on stop', async () => {
    const pair = await startPair();
    expect(BtvirtUserChannel.live.size).toBe(2);
    await exchange(pair);
    await pair.central.stop();
    await pair.peripheral.stop();
    expect(BtvirtUserChannel.live.size).toBe(0);
    expect(BtvirtUserChannel.writesAfterStop).toBe(0);
  });

  it('works with HCI_CHANNEL_USER in the environment (the stacks would bind and reset on their own)', async () => {
    process.env.HCI_CHANNEL_USER = '1';
    try {
      await exchange(await startPair());
    } finally {
      delete process.env.HCI_CHANNEL_USER;
    }
  });

  it('fails start() with what to do when the adapter cannot be had', async () => {
    BtvirtUserChannel.bindErrors.set(7, 'Device or resource busy');
    const central = createCentral({ hciDevice: 7 });
    const e = await central.start().catch((x: unknown) => x);
    expect(isKeyhopError(e, 'CONNECT_FAILED')).toBe(true);
    expect((e as Error).message).toMatch(/^BLE central: hci7 is up in BlueZ .*btmgmt -i hci7 power off/);
    await central.stop();
    const peripheral = createPeripheral({ hciDevice: 7 });
    const p = await peripheral
      .start({ name: 'x', profile: KEYHOP_PROFILE }, () => undefined)
      .catch((x: unknown) => x);
    expect(isKeyhopError(p, 'LISTEN_FAILED')).toBe(true);
    await peripheral.stop();
    expect(BtvirtUserChannel.live.size).toBe(0);
  });

  it('closes the links when the adapter goes away, at the next write', async () => {
    const pair = await startPair();
    const { central } = await connect(pair);
    const reasons: string[] = [];
    central.onClose((r) => reasons.push(r));
    const adapter = [...BtvirtUserChannel.live].find((c) => c.devId === 0)!;
    adapter.gone();
    await central.send(Uint8Array.of(9)).catch(() => undefined);
    await until(() => reasons.length > 0, WAIT_MS, 'the central link to close');
    expect(reasons[0]).toMatch(/controller lost: hci0: write failed: No such device/);
    const scan = await pair.central.scan({ services: [], durationMs: 10 }).catch((x: unknown) => x);
    expect(isKeyhopError(scan, 'CONNECTION_CLOSED')).toBe(true);
  });
});
