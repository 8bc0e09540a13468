import { afterEach, describe, expect, it } from 'vitest';
import { hex } from '../../test/support/bytes.js';
import { MemoryRadio } from '../../test/support/memory-gatt.js';
import { type TestNode, testNode } from '../../test/support/nodes.js';
import { ErrorCodes } from '../errors.js';
import { Route } from '../routing/route.js';
import { EchoService } from '../services/echo.js';
import { BleTransport } from '../transports/ble/ble-transport.js';
import { KEYHOP_PROFILE } from '../transports/ble/gatt-link.js';
import { encodeDeviceAdvertisement, parseDeviceAdvertisement } from './advertisement.js';
import { DevicePairing, type PairingRequest, pairedPeersOnly } from './device.js';
import { pairDevice } from './gateway.js';
import { PairedStore } from './paired-store.js';
import {
  decodePairingMessage,
  encodePairingMessage,
  PAIRING_LISTENER,
  pairingCommitment,
  pairingNonce,
  shortAuthenticationString,
} from './protocol.js';

const nodes: TestNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.router.shutdown();
});

interface Rig {
  device: TestNode;
  gateway: TestNode;
  deviceStore: PairedStore;
  gatewayStore: PairedStore;
  pairing: DevicePairing;
  deviceAsked: PairingRequest[];
  route: Route;
}

async function rig(deviceAnswer: (r: PairingRequest) => Promise<boolean> = async () => true): Promise<Rig> {
  const radio = new MemoryRadio({ mtu: 23 });
  const device = await testNode('device');
  const gateway = await testNode('gateway');
  nodes.push(device, gateway);
  const deviceStore = PairedStore.memory();
  const gatewayStore = PairedStore.memory();
  const deviceAsked: PairingRequest[] = [];
  const pairing = await DevicePairing.start(device.router, {
    store: deviceStore,
    name: 'sensor-1',
    confirm: (r) => {
      deviceAsked.push(r);
      return deviceAnswer(r);
    },
    timeoutMs: 2000,
  });
  await device.router.startWorker('echo', new EchoService(), { incoming: pairedPeersOnly(deviceStore) });
  await device.channels.createListener('api', { expose: ['echo'] });
  await device.channels.createListener(PAIRING_LISTENER, { expose: ['pairing'] });
  const ble = BleTransport.create(device.router);
  const peripheral = radio.peripheral();
  await ble.listen(peripheral, {
    name: 'sensor-1',
    profile: KEYHOP_PROFILE,
    manufacturerData: encodeDeviceAdvertisement(device.local.identity.identifier.toString(), true),
    expose: ['api', PAIRING_LISTENER],
  });
  const gble = BleTransport.create(gateway.router, { central: radio.central() });
  const peer = await gble.dial('sensor-1');
  return { device, gateway, deviceStore, gatewayStore, pairing, deviceAsked, route: Route.of(peer.sender) };
}

describe('pairing protocol', () => {
  it('round-trips its messages and rejects malformed ones', () => {
    const n = pairingNonce();
    for (const m of [
      { type: 'commit', commit: pairingCommitment(n), name: 'gw' },
      { type: 'nonce', nonce: n, name: 'dev' },
      { type: 'reveal', nonce: n },
      { type: 'confirm', accepted: true },
      { type: 'done', accepted: false },
      { type: 'abort', reason: 'busy' },
    ] as const) {
      expect(decodePairingMessage(encodePairingMessage(m))).toEqual(m);
    }
    expect(() => decodePairingMessage(Uint8Array.of(0x83, 0x02, 0x01, 0xf5))).toThrow(/version/);
    expect(() => decodePairingMessage(Uint8Array.of(0x83, 0x01, 0x09, 0xf5))).toThrow();
    expect(() => decodePairingMessage(Uint8Array.of(0x83, 0x01, 0x03, 0x41, 0x00))).toThrow(/32 bytes/);
  });

  it('derives a 6-digit code from the handshake hash and both nonces', () => {
    const h = new Uint8Array(32);
    const a = new Uint8Array(32).fill(1);
    const b = new Uint8Array(32).fill(2);
    const sas = shortAuthenticationString(h, a, b);
    expect(sas).toMatch(/^\d{6}$/);
    expect(shortAuthenticationString(h, a, b)).toBe(sas);
    expect(shortAuthenticationString(h, b, a)).not.toBe(sas);
    expect(hex(pairingCommitment(a))).toHaveLength(64);
  });

  it('encodes and parses the advertisement data', () => {
    const id = `I${'ab'.repeat(32)}`;
    const data = encodeDeviceAdvertisement(id, true);
    expect(hex(data)).toBe('ffff6b680101abababab');
    expect(parseDeviceAdvertisement(data)).toEqual({ pairable: true, identifierHint: 'abababab' });
    expect(parseDeviceAdvertisement(encodeDeviceAdvertisement(id, false))?.pairable).toBe(false);
    expect(parseDeviceAdvertisement(Uint8Array.of(0x4c, 0x00, 1, 2, 3, 4, 5, 6, 7, 8))).toBeUndefined();
  });
});

describe('pairing over BLE (in-memory radio)', () => {
  it('pairs when both people accept the same code; each side stores the other', async () => {
    const r = await rig();
    let gatewaySas = '';
    const result = await pairDevice(r.gateway.router, r.route, {
      channels: r.gateway.channels,
      store: r.gatewayStore,
      name: 'gw-1',
      confirm: async (c) => {
        gatewaySas = c.sas;
        return true;
      },
      record: { bleAddress: 'aa:00:00:00:00:01' },
    });
    expect(result.paired).toBe(true);
    expect(r.deviceAsked).toHaveLength(1);
    expect(r.deviceAsked[0]!.sas).toBe(gatewaySas);
    expect(r.deviceAsked[0]!.identifier).toBe(r.gateway.local.identity.identifier.toString());
    expect(r.gatewayStore.get(result.identifier)).toMatchObject({ role: 'device', name: 'sensor-1' });
    expect(r.deviceStore.has(r.gateway.local.identity.identifier.toString(), 'gateway')).toBe(true);
    expect(r.pairing.pairable).toBe(false);
    // The device's own workers now answer the gateway (and only paired peers).
    const ch = await r.gateway.channels.create(r.route.append('api'));
    const ctx = await r.gateway.router.context();
    await ctx.send(Route.of(ch.encryptor, 'echo'), Uint8Array.of(7));
    expect((await ctx.receive(3000)).payload).toEqual(Uint8Array.of(7));
  });

  for (const [who, gatewaySays, deviceSays] of [
    ['the gateway', false, true],
    ['the device', true, false],
  ] as const) {
    it(`stores nothing when ${who} refuses`, async () => {
      const r = await rig(async () => deviceSays);
      const result = await pairDevice(r.gateway.router, r.route, {
        channels: r.gateway.channels,
        store: r.gatewayStore,
        name: 'gw-1',
        confirm: async () => gatewaySays,
      });
      expect(result.paired).toBe(false);
      expect(r.gatewayStore.list()).toEqual([]);
      expect(r.deviceStore.list()).toEqual([]);
      expect(r.pairing.pairable).toBe(true);
    });
  }

  it('stores nothing when the device never answers (timeout)', async () => {
    const r = await rig(() => new Promise<boolean>(() => undefined));
    const result = await pairDevice(r.gateway.router, r.route, {
      channels: r.gateway.channels,
      store: r.gatewayStore,
      name: 'gw-1',
      confirm: async () => true,
      timeoutMs: 1000,
    });
    expect(result.paired).toBe(false);
    expect(result.reason).toMatch(/in time|aborted/);
    expect(r.gatewayStore.list()).toEqual([]);
    expect(r.deviceStore.list()).toEqual([]);
  });

  it('checks a label identifier instead of a code; a different device is refused', async () => {
    const r = await rig();
    const wrong = `I${'00'.repeat(32)}`;
    await expect(
      pairDevice(r.gateway.router, r.route, {
        channels: r.gateway.channels,
        store: r.gatewayStore,
        name: 'gw-1',
        expectIdentifier: wrong,
      }),
    ).rejects.toMatchObject({ code: expect.stringMatching(/TRUST_REFUSED|HANDSHAKE/) });
    expect(r.gatewayStore.list()).toEqual([]);
    const right = r.device.local.identity.identifier.toString();
    const ok = await pairDevice(r.gateway.router, r.route, {
      channels: r.gateway.channels,
      store: r.gatewayStore,
      name: 'gw-1',
      expectIdentifier: right,
    });
    expect(ok.paired).toBe(true);
    expect(r.gatewayStore.has(right, 'device')).toBe(true);
  });

  it('aborts when the revealed nonce does not match the commitment', async () => {
    const r = await rig();
    const ch = await r.gateway.channels.create(r.route.append(PAIRING_LISTENER));
    const ctx = await r.gateway.router.context();
    const to = Route.of(ch.encryptor, 'pairing');
    await ctx.send(
      to,
      encodePairingMessage({ type: 'commit', commit: pairingCommitment(pairingNonce()), name: 'x' }),
    );
    expect(decodePairingMessage((await ctx.receive(3000)).payload).type).toBe('nonce');
    await ctx.send(to, encodePairingMessage({ type: 'reveal', nonce: pairingNonce() }));
    expect(decodePairingMessage((await ctx.receive(3000)).payload)).toEqual({
      type: 'abort',
      reason: 'commitment mismatch',
    });
    expect(r.deviceAsked).toEqual([]);
    expect(r.pairing.outcomes.badCommitment).toBe(1);
  });

  it('keeps device workers closed to unpaired peers, and refuses new pairings once paired', async () => {
    const r = await rig();
    const ch = await r.gateway.channels.create(r.route.append('api'));
    const ctx = await r.gateway.router.context();
    await ctx.send(Route.of(ch.encryptor, 'echo'), Uint8Array.of(1));
    await expect(ctx.receive(300)).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    await pairDevice(r.gateway.router, r.route, {
      channels: r.gateway.channels,
      store: r.gatewayStore,
      name: 'gw-1',
      confirm: async () => true,
    });
    const again = await pairDevice(r.gateway.router, r.route, {
      channels: r.gateway.channels,
      store: PairedStore.memory(),
      name: 'gw-2',
      confirm: async () => true,
    });
    expect(again.paired).toBe(false);
    expect(again.reason).toMatch(/not pairable/);
    r.pairing.setPairable(true);
    const reopened = await pairDevice(r.gateway.router, r.route, {
      channels: r.gateway.channels,
      store: PairedStore.memory(),
      name: 'gw-2',
      confirm: async () => true,
    });
    expect(reopened.paired).toBe(true);
  });
});
