import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { channelPolicy } from '../channel/access.js';
import { OckamChannelIdentity } from '../channel/ockam-identity.js';
import type { SecureChannelEnd } from '../channel/secure-channel.js';
import { type SecureChannelListener, SecureChannels } from '../channel/secure-channels.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import { systemClock } from '../identity/clock.js';
import { createIdentity, Identity, type LocalIdentity } from '../identity/identity.js';
import type { CredentialAndPurposeKey } from '../identity/models.js';
import {
  type TrustPolicy,
  trustAll,
  trustAny,
  trustCredential,
  trustEveryone,
  trustIdentifiers,
} from '../identity/trust.js';
import { type Logger, silentLogger } from '../log.js';
import { Address } from '../routing/address.js';
import type { Message } from '../routing/message.js';
import { Route, type RouteLike, toRoute } from '../routing/route.js';
import { Router } from '../routing/router.js';
import { ECHO_ADDRESS, EchoService } from '../services/echo.js';
import { TcpInlet } from '../services/portal/inlet.js';
import { DEFAULT_OUTLET_ADDRESS, TcpOutlet } from '../services/portal/outlet.js';
import {
  FORWARDING_SERVICE,
  RelayService,
  STATIC_FORWARDING_SERVICE,
} from '../services/relay/relay-service.js';
import { createRemoteRelay, type RelayVia, type RemoteRelayInfo } from '../services/relay/remote-relay.js';
import { DEFAULT_BAUD_RATE, SerialTransport } from '../transports/serial/serial-transport.js';
import { TcpTransport } from '../transports/tcp/tcp-transport.js';
import { UdpTransport } from '../transports/udp/udp-transport.js';
import { NodeBle } from './ble-node.js';
import type { InletConfig, NodeConfig, OutletConfig, RelayConfig, SerialConfig } from './config.js';
import { IdentityStore } from './identity-store.js';

interface ManagedRelay {
  config: RelayConfig;
  info: RemoteRelayInfo | undefined;
  state: 'registering' | 'up' | 'retrying';
  lastError: string | undefined;
  registrations: number;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

/**
 * A running keyhop node: a router, its transports, the services its config asks for, and the
 * relays it keeps registered on other nodes (registering again after a disconnect).
 */
export class KeyhopNode {
  readonly router: Router;
  readonly tcp: TcpTransport;
  serial: SerialTransport | undefined;
  udp: UdpTransport | undefined;
  readonly log: Logger;
  readonly startedAt = Date.now();
  private readonly services: string[] = [];
  private relayService: RelayService | undefined;
  private readonly relays: ManagedRelay[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  /** Set up by `start`: this node's identity and secure channels. */
  channels!: SecureChannels;
  /** BLE transport and pairing, when the config has a `ble` section. */
  ble: NodeBle | undefined;
  identity!: LocalIdentity;
  private channelListener: SecureChannelListener | undefined;
  private readonly outlets: { config: OutletConfig; outlet: TcpOutlet }[] = [];
  private readonly inlets: { config: InletConfig; inlet: TcpInlet; channel: SecureChannelEnd | undefined }[] =
    [];

  private constructor(
    readonly config: NodeConfig,
    log: Logger,
  ) {
    this.log = log;
    this.router = new Router({ name: config.name, log });
    this.tcp = TcpTransport.create(this.router, { log });
    this.tcp.on('disconnect', (e) => {
      if (e.direction === 'outgoing') this.onDisconnect(e.peer);
    });
  }

  /**
   * Starts a node. `home` (KEYHOP_HOME) is where named identities live; without it, or with
   * `identity: null`, the node gets a fresh identity in memory.
   */
  static async start(config: NodeConfig, options: { log?: Logger; home?: string } = {}): Promise<KeyhopNode> {
    const node = new KeyhopNode(config, options.log ?? silentLogger);
    try {
      await node.setUpIdentity(options.home);
      if (config.services.echo) {
        await node.router.startWorker(ECHO_ADDRESS, new EchoService());
        node.services.push(ECHO_ADDRESS);
      }
      if (config.services.relay) {
        node.relayService = await RelayService.start(node.router);
        node.services.push(FORWARDING_SERVICE, STATIC_FORWARDING_SERVICE);
      }
      await node.setUpSecureChannelListener(options.home);
      for (const o of config.outlets ?? []) await node.createOutlet(o);
      for (const l of config.tcpListeners) await node.createTcpListener(l.address, l.expose);
      // UDP peers' source addresses can be forged: by default the secure-channel listener (whose
      // answer is larger than the question) is not reachable over UDP.
      if (config.udp) {
        const udpDefault = node.services.filter((s) => s !== (config.secureChannel?.address ?? 'api'));
        await node.createUdpTransport(config.udp.bind, config.udp.expose ?? udpDefault);
      }
      for (const sc of config.serial ?? []) await node.createSerialLink(sc);
      for (const r of config.relays) await node.createRelay(r);
      for (const i of config.inlets ?? []) await node.createInlet(i);
      if (config.ble) node.ble = await NodeBle.start(node, config.ble, options.home);
    } catch (e) {
      await node.stop();
      throw e;
    }
    return node;
  }

  get name(): string {
    return this.config.name;
  }

  /** Local workers relays may forward through (RelayConfig.via), by address. */
  private readonly vias = new Map<string, RelayVia>();

  registerRelayVia(via: RelayVia): void {
    this.vias.set(via.address.toString(), via);
  }

  private relayVia(address: string): RelayVia {
    const via = this.vias.get(address);
    if (via === undefined) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `no relay via-worker ${address}`);
    return via;
  }

  get hasRelayService(): boolean {
    return this.relayService !== undefined;
  }

  private async setUpIdentity(home: string | undefined): Promise<void> {
    const verifier = new SoftwareVerifier();
    let credentials: CredentialAndPurposeKey[] = [];
    if (typeof this.config.identity === 'string' && home) {
      const store = new IdentityStore(home, systemClock, {
        onCreated: ({ name, encrypted }) =>
          this.log.warn(
            { vault: name, encryptedAtRest: encrypted },
            encrypted
              ? 'created the default vault'
              : 'created the default vault: private keys in clear on disk',
          ),
      });
      this.identityStore = store;
      const stored = (await store.exists(this.config.identity))
        ? await store.load(this.config.identity)
        : await store.create(this.config.identity);
      this.identity = stored.local;
      credentials = stored.credentials;
    } else {
      if (typeof this.config.identity === 'string') {
        this.log.warn(
          { identity: this.config.identity },
          'no KEYHOP_HOME given: using a fresh in-memory identity instead',
        );
      }
      this.identity = await createIdentity({ vault: SoftwareVault.inMemory(), verifier, clock: systemClock });
    }
    const authorities = await this.resolveAuthorities(home, verifier);
    const channelIdentity = await OckamChannelIdentity.create({
      local: this.identity,
      // The X25519 static key is made fresh for each run and attested by the identity key.
      secureChannelVault: SoftwareVault.inMemory(),
      verifier,
      clock: systemClock,
      credentials,
      authorities,
      log: this.log,
    });
    this.channels = new SecureChannels(this.router, { identity: channelIdentity, log: this.log });
    this.authorities = authorities;
  }

  private authorities: Identity[] = [];
  /** Holds the identity's vault (a hardware vault keeps its device open until stop). */
  private identityStore: IdentityStore | undefined;

  private async resolveAuthorities(
    home: string | undefined,
    verifier: SoftwareVerifier,
  ): Promise<Identity[]> {
    const out: Identity[] = [];
    for (const a of this.config.secureChannel?.authorities ?? []) {
      if (/^[0-9a-f]{64,}$/i.test(a)) {
        out.push(Identity.import(new Uint8Array(Buffer.from(a, 'hex')), { verifier, clock: null }));
      } else if (home) {
        this.identityStore ??= new IdentityStore(home);
        out.push((await this.identityStore.load(a)).local.identity);
      } else {
        throw new KeyhopError(
          ErrorCodes.CONFIG_INVALID,
          `authority "${a}" is a name, but this node has no KEYHOP_HOME`,
        );
      }
    }
    return out;
  }

  private async setUpSecureChannelListener(_home: string | undefined): Promise<void> {
    const sc = this.config.secureChannel;
    if (sc && !sc.listener) return;
    const address = sc?.address ?? 'api';
    const policies: TrustPolicy[] = [];
    if (sc?.trustedIdentifiers) policies.push(trustIdentifiers(sc.trustedIdentifiers));
    if (sc?.policy !== undefined)
      policies.push(trustCredential({ authorities: this.authorities, policy: sc.policy }));
    let trustPolicy = policies.length === 0 ? trustEveryone : trustAll(...policies);
    if (policies.length > 0 && this.config.ble?.role === 'peripheral') {
      // A BLE device also trusts the gateways it paired with (the store is opened later, at BLE start).
      trustPolicy = trustAny(
        trustPolicy,
        (peer) => this.ble?.store.has(peer.identifier.toString(), 'gateway') === true,
      );
    }
    this.channelListener = await this.channels.createListener(address, {
      trustPolicy,
      expose: sc?.expose ?? this.services,
    });
    this.services.push(address);
  }

  /** Starts a TCP outlet; secure-channel peers (not plain transports) may use it. */
  async createOutlet(config: OutletConfig): Promise<string> {
    const address = config.address ?? DEFAULT_OUTLET_ADDRESS;
    const outlet = await TcpOutlet.create(this.router, {
      address,
      target: config.target,
      log: this.log,
      ...(config.policy !== undefined ? { incoming: channelPolicy(config.policy) } : {}),
    });
    this.outlets.push({ config, outlet });
    if (!this.config.secureChannel?.expose) this.channelListener?.expose(address);
    return address;
  }

  /**
   * Starts a TCP inlet: by default it opens a secure channel to the listener at `config.to` and
   * reaches the outlet through it.
   */
  async createInlet(config: InletConfig): Promise<{ address: string; channel: string | null }> {
    const outlet = config.outlet ?? DEFAULT_OUTLET_ADDRESS;
    let channel: SecureChannelEnd | undefined;
    let outletRoute: Route;
    if (config.secure === false) outletRoute = toRoute(config.to);
    else {
      channel = await this.createSecureChannel(config.to, config.authorized);
      outletRoute = Route.of(channel.encryptor, outlet);
    }
    const inlet = await TcpInlet.create(this.router, { bind: config.bind, outletRoute, log: this.log });
    this.inlets.push({ config, inlet, channel });
    return { address: inlet.address, channel: channel?.encryptor.toString() ?? null };
  }

  /** Opens a secure channel to the listener at `route`, optionally only to `authorized` identifiers. */
  async createSecureChannel(route: RouteLike, authorized?: string[]): Promise<SecureChannelEnd> {
    return this.channels.create(
      route,
      authorized?.length ? { trustPolicy: trustIdentifiers(authorized) } : {},
    );
  }

  /** Service addresses this node runs (the default exposure of listeners and relays). */
  serviceAddresses(): string[] {
    // Everything a transport peer may reach by default, the secure-channel listener included.
    return [...this.services];
  }

  async createTcpListener(address: string, expose?: string[]): Promise<string> {
    const listener = await this.tcp.listen(address, { expose: expose ?? this.services });
    return listener.address;
  }

  /** Binds the node's UDP socket; `2#host:port` routes work from then on. */
  async createUdpTransport(bind: string, expose?: string[]): Promise<string> {
    if (this.udp)
      throw new KeyhopError(ErrorCodes.ADDRESS_IN_USE, `node has a UDP socket on ${this.udp.address}`);
    this.udp = await UdpTransport.create(this.router, {
      bind,
      expose: expose ?? this.services,
      log: this.log,
    });
    return this.udp.address;
  }

  /**
   * Opens a serial port (a cable to a board). What arrives on it may reach `expose`: local
   * workers, and `1#host:port` entries, which let the board's messages go on over TCP to that peer
   * (the node is then the board's gateway).
   */
  async createSerialLink(config: SerialConfig): Promise<string> {
    this.serial ??= SerialTransport.create(this.router, { log: this.log });
    const expose: Address[] = [];
    for (const e of config.expose ?? this.services) {
      const a = Address.parse(e);
      expose.push(a);
      if (a.type === this.tcp.type) expose.push((await this.tcp.connect(a.text)).sender);
    }
    const link = await this.serial.open(config.path, {
      baudRate: config.baudRate ?? DEFAULT_BAUD_RATE,
      reliable: config.reliable ?? false,
      expose,
    });
    return link.sender.toString();
  }

  /** Registers a relay for this node at `config.at`; kept registered until the node stops. */
  async createRelay(config: RelayConfig): Promise<RemoteRelayInfo> {
    const managed: ManagedRelay = {
      config,
      info: undefined,
      state: 'registering',
      lastError: undefined,
      registrations: 0,
    };
    const info = await this.register(managed);
    this.relays.push(managed);
    return info;
  }

  private async register(managed: ManagedRelay): Promise<RemoteRelayInfo> {
    const route = toRoute(managed.config.at);
    const head = route.next!;
    // Messages that come back through the relay arrive on this connection: expose our services on it.
    if (head.type === this.tcp.type) {
      await this.tcp.connect(head.text, { expose: managed.config.expose ?? this.services });
    }
    const { alias, via } = managed.config;
    const info = await createRemoteRelay(this.router, route, {
      ...(alias === undefined ? {} : { alias }),
      ...(via === undefined ? {} : { via: this.relayVia(via) }),
    });
    managed.info = info;
    managed.state = 'up';
    managed.lastError = undefined;
    managed.registrations++;
    this.log.info({ relay: info.name, at: route.toString() }, 'relay registered');
    return info;
  }

  private onDisconnect(peer: string): void {
    for (const m of this.relays) {
      const head = toRoute(m.config.at).next;
      if (m.state === 'up' && head?.type === this.tcp.type && head.text === peer) {
        m.state = 'retrying';
        this.log.warn({ relay: m.info?.name, peer }, 'relay connection lost; registering again');
        this.retry(m, RETRY_MIN_MS);
      }
    }
  }

  private retry(m: ManagedRelay, delay: number): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.register(m).catch((e: unknown) => {
        m.lastError = describeError(e);
        this.log.debug({ relay: m.config.alias, err: m.lastError }, 'relay registration failed; will retry');
        this.retry(m, Math.min(delay * 2, RETRY_MAX_MS));
      });
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  /** Sends `payload` along `route` and waits for one answer. */
  async request(route: RouteLike, payload: Uint8Array, timeoutMs = 10_000): Promise<Message> {
    const ctx = await this.router.context();
    try {
      await ctx.send(toRoute(route), payload);
      return await ctx.receive(timeoutMs);
    } finally {
      await ctx.stop();
    }
  }

  describe(): Record<string, unknown> {
    return {
      name: this.name,
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      services: this.services,
      tcpListeners: this.tcp.listenerList().map((l) => ({
        address: l.address,
        route: `1#${l.address}`,
      })),
      tcpConnections: this.tcp.connections().map((c) => c.describe()),
      udp: this.udp
        ? { address: this.udp.address, route: `2#${this.udp.address}`, ...this.udp.stats() }
        : null,
      relaysHosted: this.relayService
        ? [...this.relayService.relays.values()].map((r) => ({
            name: r.name,
            route: r.route.toString(),
            forwarded: r.forwarded,
          }))
        : [],
      relays: this.relays.map((m) => ({
        at: m.config.at,
        alias: m.config.alias ?? null,
        name: m.info?.name ?? null,
        route: m.info?.route.toString() ?? null,
        state: m.state,
        registrations: m.registrations,
        lastError: m.lastError ?? null,
      })),
      identity: this.identity?.identity.identifier.toString() ?? null,
      secureChannelListener: this.channelListener?.address.toString() ?? null,
      secureChannels: this.channels?.list().map((c) => c.describe()) ?? [],
      outlets: this.outlets.map(({ config, outlet }) => ({
        address: config.address ?? DEFAULT_OUTLET_ADDRESS,
        target: config.target,
        policy: config.policy ?? null,
        ...outlet.stats,
      })),
      inlets: this.inlets.map(({ config, inlet, channel }) => ({
        address: inlet.address,
        to: config.to,
        channel: channel?.encryptor.toString() ?? null,
        ...inlet.stats,
      })),
      workers: this.router.workers().map((a) => a.toString()),
      metrics: this.router.metrics,
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await this.ble?.stop().catch(() => undefined);
    for (const { inlet } of this.inlets) await inlet.close().catch(() => undefined);
    for (const { outlet } of this.outlets) await outlet.close().catch(() => undefined);
    await this.channels?.shutdown().catch(() => undefined);
    await this.router.shutdown();
    await this.identityStore?.close().catch(() => undefined);
  }
}
