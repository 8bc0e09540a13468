import { EventEmitter } from 'node:events';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { denyAll, flowControlled } from '../../routing/access-control.js';
import { Address, type AddressLike, TransportType } from '../../routing/address.js';
import { encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import type { FlowId } from '../../routing/flow-control.js';
import type { LocalInfo, Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import type { Transport } from '../../routing/worker.js';
import { receivedMessage } from '../received.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transport-info.js';
import { FramedBleLink } from './ble-link.js';
import {
  type AdvertiseOptions,
  type BleAdvertisement,
  type BleCentral,
  type BlePeripheral,
  type GattLink,
  type GattProfile,
  KEYHOP_PROFILE,
  NUS_PROFILE,
} from './gatt-link.js';

/** The BLE address type (`TransportType.BLE`, as in Ockam). */
export const BLE = TransportType.BLE;

export interface BleTransportOptions {
  log?: Logger;
  /** The adapter used to dial `4#…` addresses. Without one only incoming links exist. */
  central?: BleCentral;
  /** Largest routing message accepted (announced to peers). Default 256 KiB. */
  maxMessage?: number;
  /** Data fragments a peer may have in flight towards us. Default 32. */
  window?: number;
  helloTimeoutMs?: number;
  /** Scan + connect budget when dialing. Default 15 s. */
  connectTimeoutMs?: number;
  /** Unsent bytes per peer before senders wait. Default 256 KiB. */
  maxQueuedBytes?: number;
  /** First delay before redialing a lost peer, doubled per failure. Default 250 ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

export interface BleDialOptions {
  profile?: GattProfile;
  /** Local workers that messages from this peer may reach. */
  expose?: AddressLike[];
}

export interface BleListenOptions extends AdvertiseOptions {
  expose?: AddressLike[];
}

export interface BleLinkEvent {
  peer: string;
  sender: Address;
  direction: 'outgoing' | 'incoming';
  reason: string;
}

type TransportEvents = {
  link_up: [BleLinkEvent & { mtu: number }];
  link_down: [BleLinkEvent];
};

/** Centrals (by address) whose peer is kept for their return after they disconnect. */
const MAX_REMEMBERED_CENTRALS = 16;

interface Settings {
  maxMessage: number;
  window: number;
  helloTimeoutMs: number;
  connectTimeoutMs: number;
  maxQueuedBytes: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

/** `4#[nus:]target` → profile and target (a device address or an advertised name). */
export function parseBleAddress(text: string): { profile: GattProfile; target: string } {
  let profile = KEYHOP_PROFILE;
  let target = text;
  if (text.startsWith('nus:')) {
    profile = NUS_PROFILE;
    target = text.slice(4);
  }
  if (target.length === 0 || target.length > 64) {
    throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `BLE address "${text}": empty or too long target`);
  }
  return { profile, target: /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(target) ? target.toLowerCase() : target };
}

/**
 * keyhop's BLE transport (docs/protocols/ble.md): routing messages, CBOR-encoded as on TCP, are
 * carried whole over one GATT connection by FramedBleLink. A central dials `4#<address|name>`
 * (keyhop's GATT profile) or `4#nus:<address|name>` (Nordic UART Service); a peripheral listens.
 * One BlePeer per remote device keeps its sender address (and so every route through it) across
 * disconnections: the central side redials with back-off, the peripheral side waits for the
 * central to come back, and messages not yet sent wait for the next link.
 */
export class BleTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly type = BLE;
  readonly name = 'ble';
  readonly log: Logger;
  private readonly settings: Settings;
  /** Outgoing peers by `profile:target` and `profile:device address` (both lead to one peer). */
  private readonly outgoing = new Map<string, Promise<BlePeer>>();
  private readonly dialed = new Set<BlePeer>();
  private readonly incoming = new Map<string, BlePeer>();
  private readonly peripherals = new Set<BlePeripheral>();
  private stopped = false;

  private constructor(
    readonly router: Router,
    private readonly options: BleTransportOptions,
  ) {
    super();
    this.log = (options.log ?? router.log ?? silentLogger).child({ transport: 'ble' });
    this.settings = {
      maxMessage: options.maxMessage ?? 256 * 1024,
      window: options.window ?? 32,
      helloTimeoutMs: options.helloTimeoutMs ?? 5000,
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      maxQueuedBytes: options.maxQueuedBytes ?? 256 * 1024,
      reconnectMinMs: options.reconnectMinMs ?? 250,
      reconnectMaxMs: options.reconnectMaxMs ?? 10_000,
    };
  }

  static create(router: Router, options: BleTransportOptions = {}): BleTransport {
    const t = new BleTransport(router, options);
    router.registerTransport(t);
    return t;
  }

  async resolve(address: Address): Promise<Address> {
    if (address.type !== BLE)
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `${address} is not a BLE address`);
    const { profile, target } = parseBleAddress(address.text);
    const known = this.incoming.get(target);
    if (known) return known.sender;
    const peer = await this.dial(target, { profile });
    return peer.sender;
  }

  /**
   * Connects to the device advertising `target` (address or name), or returns the peer already
   * dialed. Resolves once the first link is up.
   */
  async dial(target: string, options: BleDialOptions = {}): Promise<BlePeer> {
    this.checkRunning();
    const central = this.options.central;
    if (central === undefined) {
      throw new KeyhopError(
        ErrorCodes.TRANSPORT_UNKNOWN,
        'BLE transport has no central adapter to dial with',
      );
    }
    const profile = options.profile ?? KEYHOP_PROFILE;
    const key = `${profile.name}:${target}`;
    let p = this.outgoing.get(key);
    if (p === undefined) {
      p = this.newOutgoing(central, target, profile);
      this.outgoing.set(key, p);
      p.catch(() => this.outgoing.get(key) === p && this.outgoing.delete(key));
    }
    const peer = await p;
    for (const a of options.expose ?? []) this.router.flowControls.addConsumer(peer.flow, Address.from(a));
    return peer;
  }

  /**
   * Finds the device first: a name and an address may name the same device, and a central can
   * have only one connection to it, so peers are kept by device address.
   */
  private async newOutgoing(central: BleCentral, target: string, profile: GattProfile): Promise<BlePeer> {
    const ad = await this.find(central, target, profile, this.settings.connectTimeoutMs);
    const device = ad.address || ad.id;
    const key = `${profile.name}:${device}`;
    const known = key === `${profile.name}:${target}` ? undefined : this.outgoing.get(key);
    if (known !== undefined) return known;
    const peer = new BlePeer(this, device, 'outgoing', this.settings, async (timeoutMs) => {
      const again = await this.find(central, device, profile, timeoutMs);
      return central.connect(again.id, profile, { timeoutMs });
    });
    const p = (async () => {
      try {
        await peer.start();
        await peer.attach(
          await central.connect(ad.id, profile, { timeoutMs: this.settings.connectTimeoutMs }),
        );
        this.dialed.add(peer);
        return peer;
      } catch (e) {
        await peer.close();
        throw e;
      }
    })();
    this.outgoing.set(key, p);
    p.catch(() => this.outgoing.get(key) === p && this.outgoing.delete(key));
    return p;
  }

  /** Connects to a device seen in a scan (pairing picks one from a list). */
  async dialAdvertisement(ad: BleAdvertisement, options: BleDialOptions = {}): Promise<BlePeer> {
    return this.dial(ad.address || ad.id, options);
  }

  /**
   * Advertises `options.profile` on `peripheral` and accepts centrals. Messages from them may only
   * reach `expose` (and whoever sends back through them).
   */
  async listen(peripheral: BlePeripheral, options: BleListenOptions): Promise<{ flow: FlowId }> {
    this.checkRunning();
    const flows = this.router.flowControls;
    const flow = flows.create();
    for (const a of options.expose ?? []) flows.addConsumer(flow, Address.from(a));
    this.peripherals.add(peripheral);
    await peripheral.start(options, (gatt) => {
      let peer = this.incoming.get(gatt.peer);
      const attach = (p: BlePeer) =>
        p
          .attach(gatt)
          .catch((e: unknown) =>
            this.log.debug({ peer: gatt.peer, err: describeError(e) }, 'BLE link failed'),
          );
      if (peer === undefined) {
        this.evictIncoming();
        const p = new BlePeer(this, gatt.peer, 'incoming', this.settings, undefined, flow);
        this.incoming.set(gatt.peer, p);
        peer = p;
        p.start().then(
          () => attach(p),
          (e: unknown) => this.log.warn({ err: describeError(e) }, 'BLE peer could not start'),
        );
      } else {
        void attach(peer);
      }
    });
    return { flow };
  }

  /**
   * Incoming peers are remembered by central address so a returning central keeps its routes;
   * a central that changes address each time (or many centrals) must not grow that without bound.
   */
  private evictIncoming(): void {
    if (this.incoming.size < MAX_REMEMBERED_CENTRALS) return;
    for (const [k, p] of this.incoming) {
      if (!p.isUp) {
        this.incoming.delete(k);
        void p.close();
        return;
      }
    }
  }

  /** Peers dialed and peers that connected to us. */
  peers(): BlePeer[] {
    return [...this.dialed, ...this.incoming.values()];
  }

  /** Closes the peer (no more redialing) and forgets it. */
  async forget(peer: BlePeer): Promise<void> {
    this.dialed.delete(peer);
    for (const [k, p] of this.incoming) if (p === peer) this.incoming.delete(k);
    for (const [k, p] of this.outgoing) {
      p.then(
        (x) => x === peer && this.outgoing.get(k) === p && this.outgoing.delete(k),
        () => undefined,
      );
    }
    await peer.close();
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const peers = this.peers();
    this.dialed.clear();
    this.outgoing.clear();
    this.incoming.clear();
    await Promise.all(peers.map((p) => p.close()));
    await Promise.all([...this.peripherals].map((p) => p.stop().catch(() => undefined)));
    this.peripherals.clear();
  }

  private checkRunning(): void {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'BLE transport is stopped');
  }

  private async find(
    central: BleCentral,
    target: string,
    profile: GattProfile,
    timeoutMs: number,
  ): Promise<BleAdvertisement> {
    const matches = (ad: BleAdvertisement) => ad.address === target || ad.name === target || ad.id === target;
    const seen = await central.scan({ services: [profile.service], durationMs: timeoutMs, until: matches });
    const ad = seen.find(matches);
    if (ad === undefined) {
      throw new KeyhopError(
        ErrorCodes.CONNECT_FAILED,
        `no BLE device "${target}" advertising ${profile.name} found`,
      );
    }
    return ad;
  }
}

/**
 * One remote device: a sender worker (its address stands for the device in routes) and a
 * receiver mailbox that routes what the device sends to consumers of the peer's flow. Links come
 * and go under it.
 */
export class BlePeer {
  readonly sender = Address.random('ble_sender_');
  readonly receiver = Address.random('ble_receiver_');
  readonly flow: FlowId;
  private link: FramedBleLink | undefined;
  private readonly pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private readonly upWaiters: (() => void)[] = [];
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private readonly log: Logger;
  private readonly localInfo: readonly LocalInfo[];
  private inflight = 0;
  readonly counts = {
    links: 0,
    messagesIn: 0,
    messagesOut: 0,
    undecodable: 0,
    valueBytesIn: 0,
    valueBytesOut: 0,
  };

  constructor(
    private readonly transport: BleTransport,
    readonly target: string,
    readonly direction: 'outgoing' | 'incoming',
    private readonly settings: Settings,
    private readonly connect: ((timeoutMs: number) => Promise<GattLink>) | undefined,
    flow?: FlowId,
  ) {
    this.flow = flow ?? transport.router.flowControls.create();
    this.reconnectDelay = settings.reconnectMinMs;
    this.log = transport.log.child({ peer: target });
    const info: TransportInfo = { transport: 'ble', peer: target, sender: this.sender.toString() };
    this.localInfo = [{ type: TRANSPORT_INFO, data: info }];
  }

  get isUp(): boolean {
    return this.link?.isOpen === true && this.link.peer !== undefined;
  }

  /** The GATT link in use (for its MTU and peer address), if up. */
  get gatt(): GattLink | undefined {
    return this.isUp ? this.link!.gatt : undefined;
  }

  async start(): Promise<void> {
    const router = this.transport.router;
    await router.startWorker(this.sender, { handleMessage: (_ctx, m) => this.write(m) });
    await router.startWorker(
      this.receiver,
      { handleMessage: () => undefined },
      { incoming: denyAll, outgoing: flowControlled(router.flowControls, this.flow) },
    );
  }

  /** Dials now (outgoing peers); rejects when the first attempt fails. */
  async redial(): Promise<void> {
    if (this.connect === undefined) return;
    const gatt = await this.connect(this.settings.connectTimeoutMs);
    await this.attach(gatt);
  }

  /** Runs the framing over a new GATT connection and sends what waited for it. */
  async attach(gatt: GattLink): Promise<void> {
    if (this.closed) {
      await gatt.disconnect();
      return;
    }
    const old = this.link;
    this.link = undefined;
    if (old !== undefined) {
      for (const m of old.takeUnsent()) this.queuePending(m);
      if (old.isOpen) await old.close();
    }
    const link = new FramedBleLink(gatt, {
      maxMessage: this.settings.maxMessage,
      window: this.settings.window,
      helloTimeoutMs: this.settings.helloTimeoutMs,
      maxQueuedBytes: this.settings.maxQueuedBytes,
      log: this.log,
      onMessage: (m) => this.onMessage(m),
      onClose: (reason) => this.onLinkClosed(link, reason),
    });
    this.link = link;
    await link.start();
    this.counts.links++;
    this.reconnectDelay = this.settings.reconnectMinMs;
    this.transport.emit('link_up', { ...this.event('connected'), mtu: gatt.mtu });
    this.log.info({ mtu: gatt.mtu, role: gatt.role }, 'BLE link up');
    const waiting = this.pending.splice(0);
    this.pendingBytes = 0;
    for (const m of waiting) void link.send(m).catch(() => undefined);
    for (const w of this.upWaiters.splice(0)) w();
  }

  private queuePending(m: Uint8Array): void {
    this.pending.push(m);
    this.pendingBytes += m.length;
  }

  private event(reason: string): BleLinkEvent {
    return { peer: this.target, sender: this.sender, direction: this.direction, reason };
  }

  private onLinkClosed(link: FramedBleLink, reason: string): void {
    const s = link.stats();
    this.counts.valueBytesIn += s.valueBytesIn;
    this.counts.valueBytesOut += s.valueBytesOut;
    if (this.link !== link) return;
    // Whatever was not fully handed to the stack goes out whole on the next link.
    for (const m of link.takeUnsent()) this.queuePending(m);
    if (this.closed) return;
    this.log.warn({ reason }, 'BLE link down');
    this.transport.emit('link_down', this.event(reason));
    this.scheduleRedial();
  }

  private scheduleRedial(): void {
    if (this.connect === undefined || this.closed || this.reconnectTimer) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, this.settings.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.redial().catch((e: unknown) => {
        this.log.debug({ err: describeError(e), retryMs: this.reconnectDelay }, 'BLE redial failed');
        this.scheduleRedial();
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  /** The sender worker: pops itself, encodes, queues on the link (or until the next one). */
  private async write(message: Message): Promise<void> {
    if (this.closed) throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `BLE peer ${this.target} is closed`);
    const replyTo = message.returnRoute.next;
    const router = this.transport.router;
    if (replyTo?.isLocal && router.isRegistered(replyTo)) router.flowControls.addConsumer(this.flow, replyTo);
    const bytes = encodeCborFrame(message.withOnward(message.onward.step()).forWire());
    if (bytes.length > this.settings.maxMessage) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `BLE routing message of ${bytes.length} bytes exceeds the ${this.settings.maxMessage}-byte limit`,
      );
    }
    this.counts.messagesOut++;
    const link = this.link;
    if (link?.isOpen && link.peer !== undefined) {
      await link.send(bytes);
      return;
    }
    this.queuePending(bytes);
    if (this.pendingBytes > this.settings.maxQueuedBytes) {
      // Back-pressure while the link is down: wait for it, but not forever.
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          const i = this.upWaiters.indexOf(done);
          if (i >= 0) this.upWaiters.splice(i, 1);
          reject(new KeyhopError(ErrorCodes.TIMEOUT, `BLE peer ${this.target} stayed down`));
        }, this.settings.connectTimeoutMs);
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        this.upWaiters.push(done);
      });
    }
  }

  private onMessage(bytes: Uint8Array): void {
    let routed: Message | undefined;
    try {
      routed = receivedMessage(bytes, 'BLE routing message', this.sender, this.localInfo);
    } catch (e) {
      this.counts.undecodable++;
      this.log.debug({ err: describeError(e) }, 'undecodable BLE message dropped');
      return;
    }
    if (routed === undefined) return;
    this.counts.messagesIn++;
    // Credits are withheld while many messages are still being routed (slow consumer).
    const link = this.link;
    if (++this.inflight === 64) link?.pauseGrants();
    this.transport.router
      .send(this.receiver, routed)
      .catch((e: unknown) => this.log.debug({ err: describeError(e) }, 'message from BLE peer not delivered'))
      .finally(() => {
        if (--this.inflight === 16) link?.resumeGrants();
      });
  }

  stats(): { up: boolean; mtu?: number; pendingMessages: number } & BlePeer['counts'] {
    const s = this.link?.stats();
    return {
      ...this.counts,
      valueBytesIn: this.counts.valueBytesIn + (this.link?.isOpen ? (s?.valueBytesIn ?? 0) : 0),
      valueBytesOut: this.counts.valueBytesOut + (this.link?.isOpen ? (s?.valueBytesOut ?? 0) : 0),
      up: this.isUp,
      mtu: this.gatt?.mtu,
      pendingMessages: this.pending.length + (s?.queuedMessages ?? 0),
    };
  }

  /** Disconnects for good: no more redialing; unsent messages are dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const link = this.link;
    if (link) await link.close().catch(() => undefined);
    this.pending.length = 0;
    for (const w of this.upWaiters.splice(0)) w();
    const router = this.transport.router;
    if (this.direction === 'outgoing') router.flowControls.remove(this.flow);
    await router.stopWorker(this.sender).catch(() => undefined);
    await router.stopWorker(this.receiver).catch(() => undefined);
  }
}
