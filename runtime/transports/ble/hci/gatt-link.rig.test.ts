/**
 * noble central ↔ bleno peripheral through the virtual BLE rig (test/rig/ble.ts): two btvirt LE
 * controllers per test, both stacks in this one process. Other test files may share btvirt at
 * the same time (all its controllers hear each other), so every peripheral advertises a name of
 * its own and the central only ever connects to that one.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { type BleController, bleSkipReason, startController } from '../../../../test/rig/ble.js';
import { isKeyhopError } from '../../../errors.js';
import {
  type BleAdvertisement,
  type BleCentral,
  type BlePeripheral,
  type GattLink,
  type GattProfile,
  KEYHOP_PROFILE,
  NUS_PROFILE,
} from '../gatt-link.js';
import { createCentral, createPeripheral } from './index.js';

const skip = await bleSkipReason();

/** A bound on waits for the rig (two stacks, btvirt and socat on busy cores), not a timing expectation. */
const WAIT_MS = 15_000;

interface Rig {
  central: BleCentral;
  peripheral: BlePeripheral;
  centralController: BleController;
  peripheralController: BleController;
  name: string;
  manufacturerData: Uint8Array;
  profile: GattProfile;
  /** Links delivered to the peripheral's onConnect, in order. */
  peripheralLinks: GattLink[];
  nextPeripheralLink(): Promise<GattLink>;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function uniqueName(): string {
  return `kh${randomBytes(3).toString('hex')}`;
}

async function startRig(options: { maxMtu?: number; profile?: GattProfile } = {}): Promise<Rig> {
  const profile = options.profile ?? KEYHOP_PROFILE;
  const [peripheralController, centralController] = await Promise.all([
    startController('periph'),
    startController('central'),
  ]);
  cleanups.push(
    () => peripheralController.stop(),
    () => centralController.stop(),
  );
  const peripheral = createPeripheral({
    uartPath: peripheralController.path,
    ...(options.maxMtu !== undefined ? { maxMtu: options.maxMtu } : {}),
  });
  const central = createCentral({ uartPath: centralController.path });
  cleanups.push(
    () => peripheral.stop(),
    () => central.stop(),
  );
  const name = uniqueName();
  const manufacturerData = Uint8Array.of(0xff, 0xff, ...randomBytes(4));
  const peripheralLinks: GattLink[] = [];
  const waiting: ((l: GattLink) => void)[] = [];
  await Promise.all([
    peripheral.start({ name, profile, manufacturerData }, (link) => {
      peripheralLinks.push(link);
      waiting.shift()?.(link);
    }),
    central.start(),
  ]);
  return {
    central,
    peripheral,
    centralController,
    peripheralController,
    name,
    manufacturerData,
    profile,
    peripheralLinks,
    nextPeripheralLink: () => new Promise((resolve) => waiting.push(resolve)),
  };
}

async function find(rig: Rig, name = rig.name): Promise<BleAdvertisement> {
  const ads = await rig.central.scan({
    services: [rig.profile.service],
    durationMs: WAIT_MS,
    until: (ad) => ad.name === name,
  });
  const ad = ads.find((a) => a.name === name);
  if (ad === undefined) throw new Error(`peripheral ${name} not found`);
  return ad;
}

async function connect(rig: Rig): Promise<{ central: GattLink; peripheral: GattLink }> {
  const ad = await find(rig);
  const delivered = rig.nextPeripheralLink();
  const central = await rig.central.connect(ad.id, rig.profile, { timeoutMs: WAIT_MS });
  return { central, peripheral: await delivered };
}

function collect(link: GattLink): Uint8Array[] {
  const values: Uint8Array[] = [];
  link.onValue((v) => values.push(v));
  return values;
}

function closeReasons(link: GattLink): string[] {
  const reasons: string[] = [];
  link.onClose((r) => reasons.push(r));
  return reasons;
}

/** Value i of a burst: its index in the first 2 bytes, then a pattern, `size` bytes in all. */
function value(i: number, size: number): Uint8Array {
  const v = new Uint8Array(size);
  v[0] = i >> 8;
  v[1] = i & 0xff;
  for (let j = 2; j < size; j++) v[j] = (i * 31 + j) & 0xff;
  return v;
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Handles that would keep the process alive (vitest's own pipes excluded). */
function ourResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'Timeout' || r === 'FSReqCallback' || r === 'ProcessWrap' || r === 'TTYWrap') {
      counts[r] = (counts[r] ?? 0) + 1;
    }
  }
  return counts;
}

function indices(values: Uint8Array[]): number[] {
  return values.map((v) => (v[0]! << 8) | v[1]!);
}

describe.skipIf(skip !== undefined)('GATT link over HCI UART (btvirt rig)', () => {
  it('discovers the peripheral with its name and manufacturer data', async () => {
    const rig = await startRig();
    const found: BleAdvertisement[] = [];
    const ads = await rig.central.scan({
      services: [KEYHOP_PROFILE.service],
      durationMs: WAIT_MS,
      onFound: (ad) => found.push(ad),
      until: (ad) => ad.name === rig.name,
    });
    const ad = ads.find((a) => a.name === rig.name);
    expect(ad).toBeDefined();
    expect(ad!.serviceUuids).toContain(KEYHOP_PROFILE.service);
    expect(ad!.manufacturerData).toEqual(rig.manufacturerData);
    expect(ad!.address).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(found.some((a) => a.id === ad!.id)).toBe(true);

    // A scan for another service does not report it.
    const others = await rig.central.scan({ services: [NUS_PROFILE.service], durationMs: 200 });
    expect(others.some((a) => a.name === rig.name)).toBe(false);

    // New advertising data (e.g. paired/unpaired) is seen by the next scan.
    const changed = Uint8Array.of(0xff, 0xff, 0xaa, 0x55);
    await rig.peripheral.advertise({ name: rig.name, profile: KEYHOP_PROFILE, manufacturerData: changed });
    const again = await rig.central.scan({
      services: [KEYHOP_PROFILE.service],
      durationMs: WAIT_MS,
      until: (a) => a.name === rig.name && Buffer.from(a.manufacturerData ?? []).equals(Buffer.from(changed)),
    });
    expect(again.find((a) => a.name === rig.name)?.manufacturerData).toEqual(changed);
  });

  it('negotiates MTU 23 when the peripheral caps it, and enforces mtu − 3 on both sides', async () => {
    const rig = await startRig({ maxMtu: 23 });
    const { central, peripheral } = await connect(rig);
    expect(central.mtu).toBe(23);
    expect(peripheral.mtu).toBe(23);
    expect(central.isOpen && peripheral.isOpen).toBe(true);
    expect(central.role).toBe('central');
    expect(peripheral.role).toBe('peripheral');
    const toPeripheral = collect(peripheral);
    const toCentral = collect(central);
    await central.send(value(1, 20));
    await peripheral.send(value(2, 20));
    await until(() => toPeripheral.length === 1 && toCentral.length === 1, WAIT_MS, 'one value each way');
    expect(toPeripheral[0]).toEqual(value(1, 20));
    expect(toCentral[0]).toEqual(value(2, 20));
    for (const link of [central, peripheral]) {
      const e = await link.send(new Uint8Array(21)).catch((x: unknown) => x);
      expect(isKeyhopError(e, 'ENCODE_LIMIT')).toBe(true);
    }
  });

  it('negotiates a large MTU and carries mtu − 3 byte values both ways', async () => {
    const rig = await startRig();
    const { central, peripheral } = await connect(rig);
    expect(central.mtu).toBeGreaterThanOrEqual(247);
    expect(peripheral.mtu).toBe(central.mtu);
    const toPeripheral = collect(peripheral);
    const toCentral = collect(central);
    const max = central.mtu - 3;
    await central.send(value(1, max));
    await peripheral.send(value(2, max));
    await until(() => toPeripheral.length === 1 && toCentral.length === 1, WAIT_MS, 'one value each way');
    expect(toPeripheral[0]).toEqual(value(1, max));
    expect(toCentral[0]).toEqual(value(2, max));
    const e = await central.send(new Uint8Array(max + 1)).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'ENCODE_LIMIT')).toBe(true);
  });

  for (const maxMtu of [23, 256]) {
    it(`keeps bursts of 200 values in order, both ways at once (MTU ${maxMtu})`, async () => {
      const rig = await startRig({ maxMtu });
      const { central, peripheral } = await connect(rig);
      const size = central.mtu - 3;
      const toPeripheral = collect(peripheral);
      const toCentral = collect(central);
      const n = 200;
      const sent = [
        ...Array.from({ length: n }, (_, i) => central.send(value(i, size))),
        ...Array.from({ length: n }, (_, i) => peripheral.send(value(i, size))),
      ];
      await Promise.all(sent);
      await until(() => toPeripheral.length >= n && toCentral.length >= n, WAIT_MS, 'both bursts');
      expect(indices(toPeripheral)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(indices(toCentral)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(toPeripheral.every((v, i) => Buffer.from(v).equals(Buffer.from(value(i, size))))).toBe(true);
      expect(toCentral.every((v, i) => Buffer.from(v).equals(Buffer.from(value(i, size))))).toBe(true);
    });
  }

  it('closes both ends once when the central disconnects, then sends reject', async () => {
    const rig = await startRig();
    const { central, peripheral } = await connect(rig);
    const centralReasons = closeReasons(central);
    const peripheralReasons = closeReasons(peripheral);
    await central.disconnect();
    expect(central.isOpen).toBe(false);
    await until(() => peripheralReasons.length > 0, WAIT_MS, 'peripheral close');
    await central.disconnect(); // idempotent
    await new Promise((r) => setTimeout(r, 50));
    expect(centralReasons).toHaveLength(1);
    expect(peripheralReasons).toHaveLength(1);
    for (const link of [central, peripheral]) {
      const e = await link.send(value(0, 4)).catch((x: unknown) => x);
      expect(isKeyhopError(e, 'CONNECTION_CLOSED')).toBe(true);
    }
  });

  it('closes both ends when the peripheral disconnects in the middle of a burst', async () => {
    const rig = await startRig({ maxMtu: 23 });
    const { central, peripheral } = await connect(rig);
    const centralReasons = closeReasons(central);
    const peripheralReasons = closeReasons(peripheral);
    const received = collect(peripheral);
    // Hang up as the 20th value arrives (a poll could notice it only after the whole burst).
    let cut: Promise<void> | undefined;
    peripheral.onValue(() => {
      if (received.length === 20) cut = peripheral.disconnect();
    });
    const n = 300;
    const sends = Array.from({ length: n }, (_, i) => central.send(value(i, 20)));
    await until(() => cut !== undefined, WAIT_MS, 'the first values');
    await cut;
    await until(() => centralReasons.length > 0, WAIT_MS, 'central close');
    const results = await Promise.allSettled(sends);
    const late = await central.send(value(n, 20)).catch((x: unknown) => x);
    expect(isKeyhopError(late, 'CONNECTION_CLOSED')).toBe(true);
    // What arrived is an in-order prefix (the rest died with the connection).
    expect(indices(received)).toEqual(Array.from({ length: received.length }, (_, i) => i));
    expect(received.length).toBeLessThan(n);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(centralReasons).toHaveLength(1);
    expect(peripheralReasons).toHaveLength(1);
  });

  it('lets the same central reconnect to the same peripheral', async () => {
    const rig = await startRig();
    for (let round = 0; round < 3; round++) {
      const { central, peripheral } = await connect(rig);
      const echoed = collect(central);
      peripheral.onValue((v) => void peripheral.send(v));
      await central.send(value(round, 8));
      await until(() => echoed.length === 1, WAIT_MS, `echo in round ${round}`);
      expect(echoed[0]).toEqual(value(round, 8));
      // Alternate which side hangs up.
      await (round % 2 === 0 ? central : peripheral).disconnect();
      await until(() => !central.isOpen && !peripheral.isOpen, WAIT_MS, 'both closed');
    }
    expect(rig.peripheralLinks).toHaveLength(3);
  });

  it('closes the links on the side whose controller goes away, leaving nothing running', async () => {
    const before = ourResources();
    const rig = await startRig();
    const { central, peripheral } = await connect(rig);
    const centralReasons = closeReasons(central);
    const peripheralReasons = closeReasons(peripheral);
    await rig.peripheralController.stop(); // socat killed: the peripheral's UART hangs up
    await until(() => peripheralReasons.length > 0, WAIT_MS, 'peripheral close');
    expect(peripheralReasons[0]).toMatch(/controller lost/);
    const e = await peripheral.send(value(0, 4)).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'CONNECTION_CLOSED')).toBe(true);
    const a = await rig.peripheral
      .advertise({ name: rig.name, profile: KEYHOP_PROFILE })
      .catch((x: unknown) => x);
    expect(isKeyhopError(a, 'CONNECTION_CLOSED')).toBe(true);
    await rig.peripheral.stop();

    // btvirt drops a destroyed controller's connections without telling the peer (no
    // supervision timeout in the emulator), so the central's link only ends with its own UART.
    expect(central.isOpen).toBe(true);
    await rig.centralController.stop();
    await until(() => centralReasons.length > 0, WAIT_MS, 'central close');
    expect(centralReasons[0]).toMatch(/controller lost/);
    const scan = await rig.central.scan({ services: [], durationMs: 10 }).catch((x: unknown) => x);
    expect(isKeyhopError(scan, 'CONNECTION_CLOSED')).toBe(true);
    await rig.central.stop();
    // No timer, serial read or child process of the stacks or the rig outlives them (handles
    // close asynchronously: wait until none is left over, then say which one if not).
    const leftOver = () => Object.entries(ourResources()).some(([kind, n]) => n > (before[kind] ?? 0));
    await until(() => !leftOver(), WAIT_MS, 'the handles to close').catch(() => undefined);
    expect(centralReasons).toHaveLength(1);
    expect(peripheralReasons).toHaveLength(1);
    const after = ourResources();
    for (const [kind, n] of Object.entries(after)) expect(n, kind).toBeLessThanOrEqual(before[kind] ?? 0);
  });

  it('runs two centrals and two peripherals in one process, each on its own controller', async () => {
    const [a, b] = await Promise.all([startRig(), startRig({ profile: NUS_PROFILE })]);
    const la = await connect(a);
    const lb = await connect(b);
    expect(la.central.peer).not.toBe(lb.central.peer);
    const ra = collect(la.peripheral);
    const rb = collect(lb.peripheral);
    await Promise.all([la.central.send(value(1, 10)), lb.central.send(value(2, 10))]);
    await until(() => ra.length === 1 && rb.length === 1, WAIT_MS, 'one value on each link');
    expect(ra[0]).toEqual(value(1, 10));
    expect(rb[0]).toEqual(value(2, 10));
  });
});

describe.skipIf(skip !== undefined)('HCI UART failures', () => {
  it('rejects start() with a KeyhopError when the UART does not exist', async () => {
    const central = createCentral({ uartPath: '/nonexistent/keyhop-hci', startTimeoutMs: 2000 });
    const e = await central.start().catch((x: unknown) => x);
    expect(isKeyhopError(e, 'CONNECT_FAILED')).toBe(true);
    await central.stop();
    const peripheral = createPeripheral({ uartPath: '/nonexistent/keyhop-hci', startTimeoutMs: 2000 });
    const p = await peripheral
      .start({ name: 'x', profile: KEYHOP_PROFILE }, () => undefined)
      .catch((x: unknown) => x);
    expect(isKeyhopError(p, 'LISTEN_FAILED')).toBe(true);
    await peripheral.stop();
  });
});

describe.skipIf(skip !== undefined)('HCI UART with HCI_CHANNEL_USER in the environment', () => {
  it('ignores it (noble and bleno would bind the UART in user mode, which never came up)', async () => {
    process.env.HCI_CHANNEL_USER = '1';
    try {
      const rig = await startRig();
      const { central, peripheral } = await connect(rig);
      const received = collect(peripheral);
      await central.send(value(1, 8));
      await until(() => received.length === 1, WAIT_MS, 'the value');
      expect(received[0]).toEqual(value(1, 8));
    } finally {
      delete process.env.HCI_CHANNEL_USER;
    }
  });
});
