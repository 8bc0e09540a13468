import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import type { Logger } from '../log.js';
import { encodeDeviceAdvertisement, parseDeviceAdvertisement } from '../pairing/advertisement.js';
import { DevicePairing } from '../pairing/device.js';
import { DeviceForwarder } from '../pairing/device-forwarder.js';
import { type DeviceCandidate, type PairingResult, pairDevice } from '../pairing/gateway.js';
import { type PairedPeer, PairedStore } from '../pairing/paired-store.js';
import { PAIRING_LISTENER, PAIRING_SERVICE } from '../pairing/protocol.js';
import { Address } from '../routing/address.js';
import { Route } from '../routing/route.js';
import { createRemoteRelay } from '../services/relay/remote-relay.js';
import { BleTransport } from '../transports/ble/ble-transport.js';
import {
  type AdvertiseOptions,
  type BleCentral,
  type BlePeripheral,
  KEYHOP_PROFILE,
  NUS_PROFILE,
} from '../transports/ble/gatt-link.js';
import { createCentral, createPeripheral } from '../transports/ble/hci/index.js';
import { type BleConfig, bleController } from './config.js';
import type { KeyhopNode } from './node.js';

export interface ScanCandidate {
  id: string;
  address: string;
  name: string | null;
  rssi: number;
  /** From keyhop's advertisement data; null for devices that do not send it (e.g. plain NUS). */
  pairable: boolean | null;
  identifierHint: string | null;
}

interface PendingPairing {
  id: string;
  candidate: Promise<DeviceCandidate | PairingResult>;
  answer: (accepted: boolean) => void;
  result: Promise<PairingResult>;
  timer: NodeJS.Timeout;
}

export interface PairingOutcome {
  paired: boolean;
  identifier: string;
  name: string;
  sas: string;
  reason?: string;
  /** The route others use to reach the device through this gateway (relay), when paired. */
  relay?: string;
}

/** Forwarder names and relay aliases are made from device names: keep to the alias alphabet. */
function aliasOf(name: string, identifier: string): string {
  const clean = name.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 48);
  return clean.length > 0 ? clean : identifier.slice(1, 13);
}

/**
 * BLE for a node: the transport on one HCI controller, and pairing. As a peripheral (a device) it
 * advertises, answers pairing and exposes its secure-channel listener to centrals. As a central
 * (a gateway) it scans, pairs devices on request from the control socket (`keyhop pair`), gives
 * each paired device a stable forwarder `ble_<alias>` and a relay, and keeps their links up.
 */
export class NodeBle {
  readonly transport: BleTransport;
  private central: BleCentral | undefined;
  private peripheral: BlePeripheral | undefined;
  private devicePairing: DevicePairing | undefined;
  private readonly pending = new Map<string, PendingPairing>();
  private readonly forwarders = new Map<string, DeviceForwarder>();
  private readonly linkers = new Set<NodeJS.Timeout>();
  private stopped = false;

  private constructor(
    private readonly node: KeyhopNode,
    private readonly config: BleConfig,
    readonly store: PairedStore,
    private readonly log: Logger,
  ) {
    if (config.role === 'central') this.central = createCentral({ ...bleController(config), log });
    this.transport = BleTransport.create(node.router, {
      log,
      ...(this.central ? { central: this.central } : {}),
    });
  }

  static async start(node: KeyhopNode, config: BleConfig, home: string | undefined): Promise<NodeBle> {
    const identityName = typeof node.config.identity === 'string' ? node.config.identity : undefined;
    const store =
      home !== undefined && identityName !== undefined
        ? await PairedStore.open(join(home, 'paired', `${identityName}.json`))
        : PairedStore.memory();
    const log = node.log.child({ component: 'ble' });
    const ble = new NodeBle(node, config, store, log);
    try {
      if (config.role === 'central') await ble.startGateway();
      else await ble.startDevice();
    } catch (e) {
      await ble.stop();
      throw e;
    }
    return ble;
  }

  private get identifier(): string {
    return this.node.identity.identity.identifier.toString();
  }

  private async startDevice(): Promise<void> {
    const config = this.config;
    const name = config.name ?? this.node.name;
    this.peripheral = createPeripheral({
      ...bleController(config),
      ...(config.maxMtu ? { maxMtu: config.maxMtu } : {}),
      log: this.log,
    });
    const advertising = (pairable: boolean): AdvertiseOptions => ({
      name,
      profile: config.profile === 'nus' ? NUS_PROFILE : KEYHOP_PROFILE,
      manufacturerData: encodeDeviceAdvertisement(this.identifier, pairable),
    });
    this.devicePairing = await DevicePairing.start(this.node.router, {
      store: this.store,
      name,
      // A node has no screen or button: it shows the code in its log and leaves the decision
      // to the person at the gateway, who compares it (docs/protocols/pairing.md).
      confirm: async (r) => {
        this.log.warn({ code: r.sas, gateway: r.identifier, name: r.name }, `pairing code ${r.sas}`);
        return true;
      },
      onPairableChange: (pairable) => {
        this.peripheral
          ?.advertise(advertising(pairable))
          .catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'advertising update failed'));
      },
    });
    await this.node.channels.createListener(PAIRING_LISTENER, { expose: [PAIRING_SERVICE] });
    const listener = this.node.config.secureChannel?.address ?? 'api';
    await this.transport.listen(this.peripheral, {
      ...advertising(this.devicePairing.pairable),
      expose: [...(config.expose ?? [listener]), PAIRING_LISTENER],
    });
  }

  private async startGateway(): Promise<void> {
    await this.central!.start();
    for (const device of this.store.list('device')) await this.setUpDevice(device);
  }

  /** Devices in range that advertise keyhop's service. */
  async scan(durationMs: number): Promise<ScanCandidate[]> {
    const central = this.requireCentral();
    const profile = this.config.profile === 'nus' ? NUS_PROFILE : KEYHOP_PROFILE;
    const seen = await central.scan({ services: [profile.service], durationMs });
    return seen.map((ad) => {
      const info = parseDeviceAdvertisement(ad.manufacturerData);
      return {
        id: ad.id,
        address: ad.address,
        name: ad.name ?? null,
        rssi: ad.rssi,
        pairable: info?.pairable ?? null,
        identifierHint: info?.identifierHint ?? null,
      };
    });
  }

  /**
   * Connects to `target`, opens a channel and runs pairing up to the code. Resolves with the code
   * to compare and an id for confirmPairing(), or with the final outcome when no comparison is
   * needed (expectIdentifier) or pairing failed early. Unanswered pairings end after `timeoutMs`.
   */
  async startPairing(
    target: string,
    options: { expectIdentifier?: string; timeoutMs?: number } = {},
  ): Promise<{ id: string; sas: string; identifier: string; name: string } | PairingOutcome> {
    this.requireCentral();
    const peer = await this.transport.dial(target);
    const id = randomBytes(8).toString('hex');
    let answer!: (accepted: boolean) => void;
    const answered = new Promise<boolean>((resolve) => {
      answer = resolve;
    });
    let shown!: (c: DeviceCandidate) => void;
    const candidateShown = new Promise<DeviceCandidate>((resolve) => {
      shown = resolve;
    });
    const timeoutMs = options.timeoutMs ?? 120_000;
    const result = pairDevice(this.node.router, Route.of(peer.sender), {
      channels: this.node.channels,
      store: this.store,
      name: this.node.name,
      timeoutMs,
      record: { bleAddress: peer.target },
      ...(options.expectIdentifier !== undefined
        ? { expectIdentifier: options.expectIdentifier }
        : {
            confirm: (c: DeviceCandidate) => {
              shown(c);
              return answered;
            },
          }),
    });
    const timer = setTimeout(() => answer(false), timeoutMs);
    timer.unref();
    const entry: PendingPairing = {
      id,
      candidate: Promise.race([candidateShown, result]),
      answer,
      result,
      timer,
    };
    this.pending.set(id, entry);
    result
      .finally(() => {
        clearTimeout(timer);
        this.pending.delete(id);
      })
      .catch(() => undefined);
    const first = await entry.candidate;
    if ('paired' in first) return this.finishPairing(first);
    return { id, sas: first.sas, identifier: first.identifier, name: first.name };
  }

  /** The person's answer for a pairing started by startPairing. */
  async confirmPairing(id: string, accepted: boolean): Promise<PairingOutcome> {
    const p = this.pending.get(id);
    if (p === undefined) {
      throw new KeyhopError(
        ErrorCodes.NODE_NOT_FOUND,
        `no pairing ${id} in progress (finished or timed out)`,
      );
    }
    p.answer(accepted);
    return this.finishPairing(await p.result);
  }

  private async finishPairing(r: PairingResult): Promise<PairingOutcome> {
    const out: PairingOutcome = { paired: r.paired, identifier: r.identifier, name: r.name, sas: r.sas };
    if (r.reason !== undefined) out.reason = r.reason;
    if (r.paired && r.peer) {
      const alias = aliasOf(r.name, r.identifier);
      const peer = { ...r.peer, relayAlias: alias };
      await this.store.add(peer);
      out.relay = await this.setUpDevice(peer);
    }
    return out;
  }

  /** Gives a paired device its forwarder and relay, and keeps a link to it. Returns the relay route. */
  private async setUpDevice(device: PairedPeer): Promise<string> {
    const alias = device.relayAlias ?? aliasOf(device.name, device.identifier);
    let forwarder = this.forwarders.get(device.identifier);
    if (forwarder === undefined) {
      forwarder = new DeviceForwarder(Address.local(`ble_${alias}`), undefined);
      await this.node.router.startWorker(forwarder.address, forwarder);
      this.node.registerRelayVia(forwarder);
      this.forwarders.set(device.identifier, forwarder);
    }
    this.keepLinked(device, forwarder);
    const relayAt = this.config.relayAt;
    if (relayAt !== undefined) {
      const info = await this.node.createRelay({
        at: relayAt,
        alias,
        via: forwarder.address.toString(),
        expose: [forwarder.address.toString()],
      });
      return info.route.toString();
    }
    if (this.node.hasRelayService) {
      const info = await createRemoteRelay(this.node.router, Route.EMPTY, { alias, via: forwarder });
      return this.routeHere(info.name);
    }
    return this.routeHere(forwarder.address.toString());
  }

  /** `1#<first TCP listener> => <worker>`: how the network reaches a worker on this gateway. */
  private routeHere(worker: string): string {
    const listener = this.node.tcp.listenerList()[0];
    return listener === undefined ? worker : `1#${listener.address} => ${worker}`;
  }

  private keepLinked(device: PairedPeer, forwarder: DeviceForwarder, delay = 0): void {
    if (this.stopped || device.bleAddress === undefined) return;
    const t = setTimeout(() => {
      this.linkers.delete(t);
      this.transport.dial(device.bleAddress!).then(
        (peer) => forwarder.setLink(peer.sender),
        (e: unknown) => {
          this.log.debug({ device: device.name, err: describeError(e) }, 'paired device not reachable yet');
          this.keepLinked(device, forwarder, Math.min(30_000, Math.max(1000, delay * 2)));
        },
      );
    }, delay);
    t.unref();
    this.linkers.add(t);
  }

  paired(): PairedPeer[] {
    return this.store.list();
  }

  get pairable(): boolean | undefined {
    return this.devicePairing?.pairable;
  }

  setPairable(pairable: boolean): void {
    if (this.devicePairing === undefined) {
      throw new KeyhopError(ErrorCodes.USAGE, 'this node is not a BLE peripheral');
    }
    this.devicePairing.setPairable(pairable);
  }

  private requireCentral(): BleCentral {
    if (this.central === undefined) {
      throw new KeyhopError(ErrorCodes.USAGE, 'this node is not a BLE central (ble.role must be "central")');
    }
    return this.central;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.linkers) clearTimeout(t);
    this.linkers.clear();
    for (const p of this.pending.values()) p.answer(false);
    await this.transport.shutdown();
    await this.central?.stop().catch(() => undefined);
  }
}
