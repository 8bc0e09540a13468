import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import { channelPolicy } from '../channel/access.js';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from '../channel/channel-identity.js';
import { ChannelStore } from '../channel/channel-store.js';
import { OckamChannelIdentity } from '../channel/ockam-identity.js';
import type { SecureChannelEnd } from '../channel/secure-channel.js';
import { type SecureChannelListener, SecureChannels } from '../channel/secure-channels.js';
import { AUTHORITY_ADDRESS, DIRECTORY_ADDRESS } from '../enrollment/client.js';
import { Directory, directoryWorker } from '../enrollment/directory.js';
import { TrustState } from '../enrollment/trust-state.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import { Policy } from '../identity/abac.js';
import { systemClock } from '../identity/clock.js';
import { createIdentity, Identity, type LocalIdentity } from '../identity/identity.js';
import type { CredentialAndPurposeKey } from '../identity/models.js';
import {
  type AuthenticatedPeer,
  peerSubject,
  type TrustPolicy,
  trustAll,
  trustAny,
  trustCredential,
  trustEveryone,
  trustIdentifiers,
} from '../identity/trust.js';
import { type Logger, logFloodStats, silentLogger } from '../log.js';
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
import { type EmbeddedBroker, startEmbeddedBroker } from '../transports/mqtt/embedded-broker.js';
import { MqttTransport } from '../transports/mqtt/mqtt-transport.js';
import { DEFAULT_BAUD_RATE, SerialTransport } from '../transports/serial/serial-transport.js';
import { type TcpListenerLimits, TcpTransport } from '../transports/tcp/tcp-transport.js';
import { UdpTransport } from '../transports/udp/udp-transport.js';
import { AuthorityRunner } from './authority-runner.js';
import { NodeBle } from './ble-node.js';
import {
  channelLimitsOf,
  type InletConfig,
  inletTrustProblem,
  type MqttConfig,
  type NodeConfig,
  type OutletConfig,
  type RelayConfig,
  type SerialConfig,
} from './config.js';
import { DEFAULT_IDENTITY, IdentityStore, type StoredIdentity } from './identity-store.js';
import { nodePaths } from './paths.js';
import { Backoff } from './retry.js';
import { enrollmentRevocationRoute, type RevocationSource, TrustKeeper } from './trust-keeper.js';

interface ManagedRelay {
  config: RelayConfig;
  /** The secure channel a `secure` relay registered through. */
  channel: SecureChannelEnd | undefined;
  info: RemoteRelayInfo | undefined;
  state: 'registering' | 'up' | 'retrying';
  lastError: string | undefined;
  registrations: number;
  backoff: Backoff;
  nextAttemptAt: number | undefined;
}

/**
 * An inlet whose secure channel to the outlet's node the node keeps open: made in the background
 * at start (the other node may be down), and made again whenever it closes.
 */
interface ManagedInlet {
  config: InletConfig;
  inlet: TcpInlet;
  channel: SecureChannelEnd | undefined;
  state: 'connecting' | 'up' | 'retrying' | 'plain';
  lastError: string | undefined;
  channelsOpened: number;
  backoff: Backoff;
  nextAttemptAt: number | undefined;
}

export interface KeyhopNodeOptions {
  log?: Logger;
  /** KEYHOP_HOME: where named identities and vaults live. */
  home?: string;
  /** Told whenever the node's configuration changed at run time (to persist it). */
  onConfigChange?: (config: NodeConfig) => void | Promise<void>;
}

/**
 * A running keyhop node: a router, its transports, the services its config asks for, and the
 * relays it keeps registered on other nodes (registering again after a disconnect).
 */
export class KeyhopNode {
  readonly router: Router;
  readonly tcp: TcpTransport;
  serial: SerialTransport | undefined;
  udp: UdpTransport | undefined;
  mqtt: MqttTransport | undefined;
  mqttBroker: EmbeddedBroker | undefined;
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
  private channelStore: ChannelStore | undefined;
  private readonly outlets: { config: OutletConfig; outlet: TcpOutlet }[] = [];
  private readonly inlets: ManagedInlet[] = [];
  /** What the secure-channel listener accepts, in words (node show, refusals). */
  private trustDescription: string | null = null;
  /** Known histories and revocation lists, checked on every peer. */
  trust: TrustState | undefined;
  trustKeeper: TrustKeeper | undefined;
  /** The enrollment authority this node serves, if any. */
  authorityRunner: AuthorityRunner | undefined;
  directory: Directory | undefined;
  private channelIdentity: OckamChannelIdentity | undefined;

  private constructor(
    /** The configuration, kept current: what the control API adds is recorded here too. */
    readonly config: NodeConfig,
    log: Logger,
    private readonly onConfigChange: KeyhopNodeOptions['onConfigChange'],
  ) {
    this.log = log;
    this.router = new Router({ name: config.name, log });
    this.tcp = TcpTransport.create(this.router, { log });
    this.tcp.on('disconnect', (e) => {
      if (e.direction === 'outgoing') this.onDisconnect(e.peer, e.sender);
    });
  }

  /**
   * Starts a node. `home` (KEYHOP_HOME) is where named identities live; without it, or with
   * `identity: null`, the node gets a fresh identity in memory. What is local (identity, vaults,
   * listeners, outlets, serial ports that may appear later) must work for the node to start;
   * what is remote (relays, the nodes inlets lead to) is reached in the background, with retries.
   */
  static async start(config: NodeConfig, options: KeyhopNodeOptions = {}): Promise<KeyhopNode> {
    const node = new KeyhopNode(structuredClone(config), options.log ?? silentLogger, options.onConfigChange);
    try {
      await node.setUpIdentity(options.home);
      if (config.services.echo) {
        await node.router.startWorker(ECHO_ADDRESS, new EchoService());
        node.services.push(ECHO_ADDRESS);
      }
      if (config.services.relay) {
        node.relayService = await RelayService.start(node.router, node.relayServiceOptions());
        node.services.push(FORWARDING_SERVICE, STATIC_FORWARDING_SERVICE);
      }
      await node.setUpEnrollmentServices(options.home);
      await node.setUpSecureChannelListener(options.home);
      for (const o of config.outlets ?? []) await node.createOutlet(o);
      for (const l of config.tcpListeners) await node.createTcpListener(l.address, l.expose, l);
      // UDP peers' source addresses can be forged: by default the secure-channel listener (whose
      // answer is larger than the question) is not reachable over UDP.
      if (config.udp) {
        const udpDefault = node.services.filter((s) => s !== (config.secureChannel?.address ?? 'api'));
        await node.createUdpTransport(config.udp.bind, config.udp.expose ?? udpDefault);
      }
      for (const sc of config.serial ?? []) await node.createSerialLink(sc, true);
      // After the listener (a restored responder takes its exposure) and before the mailboxes
      // open: what a broker kept for a restored channel arrives as soon as they do.
      await node.channels.restore();
      if (config.mqttBroker)
        node.mqttBroker = await startEmbeddedBroker(config.mqttBroker.bind, { log: node.log });
      for (const m of config.mqtt ?? []) await node.openMqttMailbox(m, options.home);
      // Remote dependencies get one attempt now (so that a node whose peers are up is whole when
      // it reports ready), then retry in the background.
      await Promise.all(config.relays.map((r) => node.startRelay(r)));
      for (const i of config.inlets ?? []) await node.startInlet(i);
      if (config.ble) node.ble = await NodeBle.start(node, config.ble, options.home);
      await node.keepTrust();
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
      const name = this.config.identity;
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
      let stored: StoredIdentity;
      if (await store.exists(name)) stored = await store.load(name);
      else if (name === DEFAULT_IDENTITY) {
        stored = await store.create(name);
        this.log.info({ identity: name, identifier: stored.file.identifier }, 'created the default identity');
      } else {
        // A mistyped name must not quietly become a new identity that no peer trusts.
        const known = await store.list();
        throw new KeyhopError(
          ErrorCodes.IDENTITY_NOT_FOUND,
          `no identity "${name}" (${known.length === 0 ? 'there are none yet' : `identities here: ${known.join(', ')}`}); create it with: keyhop identity create ${name}`,
        );
      }
      this.identity = stored.local;
      this.storedIdentity = stored;
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
    this.relayAuthorities = await this.resolveAuthorities(
      home,
      verifier,
      this.config.relayAccess?.authorities ?? [],
    );
    const enrollment = this.storedIdentity?.file.enrollment;
    if (enrollment) {
      this.enrolledAuthority = Identity.import(new Uint8Array(Buffer.from(enrollment.authority, 'hex')), {
        verifier,
        clock: null,
      });
    }
    // Credentials from any of these count for peers (the listener's policy decides what they need).
    const known = new Map<string, Identity>();
    for (const a of [
      ...authorities,
      ...this.relayAuthorities,
      ...(this.enrolledAuthority ? [this.enrolledAuthority] : []),
    ])
      known.set(a.identifier.toString(), a);
    this.trust = await TrustState.open(
      home ? join(nodePaths(home, this.config.name).dir, 'trust') : undefined,
      {
        verifier,
        clock: systemClock,
      },
    );
    const channelIdentity = await OckamChannelIdentity.create({
      local: this.identity,
      // The X25519 static key is made fresh for each run and attested by the identity key.
      secureChannelVault: SoftwareVault.inMemory(),
      verifier,
      clock: systemClock,
      credentials,
      authorities: [...known.values()],
      checks: this.trust,
      log: this.log,
    });
    this.channelIdentity = channelIdentity;
    const lifetime = this.config.secureChannel?.maxLifetimeSeconds;
    if (this.config.secureChannel?.persist) {
      if (!home) {
        throw new KeyhopError(
          ErrorCodes.CONFIG_INVALID,
          'secureChannel.persist needs a node directory (KEYHOP_HOME) to keep channels in',
        );
      }
      this.channelStore = await ChannelStore.open(join(nodePaths(home, this.config.name).dir, 'channels'), {
        ...(process.env.KEYHOP_VAULT_PASSPHRASE ? { passphrase: process.env.KEYHOP_VAULT_PASSPHRASE } : {}),
        log: this.log,
        node: this.config.name,
        fsync: this.config.secureChannel.persistSync ?? true,
      });
    }
    this.channels = new SecureChannels(this.router, {
      ...(this.channelStore ? { store: this.channelStore } : {}),
      identity: channelIdentity,
      log: this.log,
      ...(lifetime !== undefined ? { maxLifetimeMs: lifetime * 1000 } : {}),
      ...(this.config.secureChannel?.receiveWindow !== undefined
        ? { receiveWindow: this.config.secureChannel.receiveWindow }
        : {}),
      limits: channelLimitsOf(this.config.secureChannel),
    });
    this.authorities = authorities;
    this.verifier = verifier;
  }

  private verifier = new SoftwareVerifier();
  private relayAuthorities: Identity[] = [];
  private enrolledAuthority: Identity | undefined;
  private storedIdentity: StoredIdentity | undefined;
  private home: string | undefined;

  /** The enrollment directory and the authority this node serves, as its config asks. */
  private async setUpEnrollmentServices(home: string | undefined): Promise<void> {
    this.home = home;
    const { enrollmentDirectory, authority } = this.config;
    if ((enrollmentDirectory || authority) && !home) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        'an enrollment directory or authority keeps its state in KEYHOP_HOME: give the node one',
      );
    }
    if (enrollmentDirectory && home) {
      this.directory = await Directory.open(
        join(nodePaths(home, this.config.name).dir, 'enrollment-directory'),
        {
          verifier: this.verifier,
          log: this.log,
          ...(enrollmentDirectory.authorities ? { authorities: enrollmentDirectory.authorities } : {}),
        },
      );
      try {
        await this.router.startWorker(DIRECTORY_ADDRESS, directoryWorker(this.directory));
      } catch (e) {
        await this.directory.close();
        throw e;
      }
      this.services.push(DIRECTORY_ADDRESS);
    }
    if (authority && home && this.identityStore) {
      // Its worker is reachable through this node's secure channels (and, for revocation lists only,
      // over its transports): it starts with the listener's exposure.
      this.authorityRunner = await AuthorityRunner.start({
        config: authority,
        home,
        node: this.config.name,
        local: this.identity,
        store: this.identityStore,
        router: this.router,
        log: this.log,
        later: (d, fn) => this.later(d, fn),
      });
      this.services.push(AUTHORITY_ADDRESS);
    }
  }

  /** Who may register relays: with `relayAccess`, peers of a secure channel holding an `ockam-relay` credential. */
  private relayServiceOptions(): ConstructorParameters<typeof RelayService>[1] {
    const access = this.config.relayAccess;
    if (!access) return {};
    const policy = access.policy === undefined ? undefined : Policy.parse(access.policy);
    return {
      authorize: ({ alias, message }) => {
        const info = message.info<SecureChannelInfo>(SECURE_CHANNEL_INFO);
        if (!info) return false;
        const subject = peerSubject(info.peer, this.relayAuthorities, systemClock);
        const attributes = subject.attributes as ReadonlyMap<string, string> | undefined;
        const allowed = attributes?.get('ockam-relay');
        if (allowed === undefined) return false;
        // A static alias only for its holder; a random name for anyone with the attribute.
        if (alias !== undefined && allowed !== '*' && allowed !== alias) return false;
        return policy === undefined || policy.evaluate(subject);
      },
    };
  }

  /**
   * Starts what keeps trust current: revocation lists from `secureChannel.revocationsFrom` and
   * from the enrollment authority, and the renewal of this node's own credential.
   */
  private async keepTrust(): Promise<void> {
    if (!this.trust || !this.channelIdentity) return;
    const keeper = new TrustKeeper({
      router: this.router,
      channels: () => this.channels,
      channelIdentity: () => this.channelIdentity!,
      trust: this.trust,
      verifier: this.verifier,
      clock: systemClock,
      log: this.log,
      later: (d, fn) => this.later(d, fn),
    });
    this.trustKeeper = keeper;
    const sources: RevocationSource[] = [];
    const from = this.config.secureChannel?.revocationsFrom;
    if (from) for (const authority of this.authorities) sources.push({ authority, route: from });
    const enrollment = this.storedIdentity?.file.enrollment;
    if (enrollment && this.enrolledAuthority) {
      const route = enrollmentRevocationRoute(enrollment);
      const id = this.enrolledAuthority.identifier.toString();
      if (route && !sources.some((s) => s.authority.identifier.toString() === id))
        sources.push({ authority: this.enrolledAuthority, route });
      if (this.identityStore && this.storedIdentity) {
        keeper.keepCredential({
          store: this.identityStore,
          name: this.storedIdentity.name,
          local: this.identity,
          enrollment,
          authority: this.enrolledAuthority,
          credentials: this.storedIdentity.credentials,
        });
      }
    }
    await keeper.followRevocations(
      sources,
      (this.config.secureChannel?.revocationIntervalSeconds ?? 30) * 1000,
    );
  }

  private authorities: Identity[] = [];
  /** Holds the identity's vault (a hardware vault keeps its device open until stop). */
  private identityStore: IdentityStore | undefined;

  private async resolveAuthorities(
    home: string | undefined,
    verifier: SoftwareVerifier,
    names: readonly string[] = this.config.secureChannel?.authorities ?? [],
  ): Promise<Identity[]> {
    const out: Identity[] = [];
    for (const a of names) {
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
      const paired = Object.assign(
        (peer: AuthenticatedPeer) => this.ble?.store.has(peer.identifier.toString(), 'gateway') === true,
        { description: 'a gateway this device paired with' },
      );
      trustPolicy = trustAny(trustPolicy, paired);
    }
    this.trustDescription = trustPolicy.description ?? null;
    if (policies.length === 0) {
      // Ockam's default, and the quick start's: loud, so that nobody ships it by accident.
      this.log.warn(
        { listener: address },
        'the secure-channel listener accepts channels from any identity (no --trust or --policy)',
      );
    }
    this.channelListener = await this.channels.createListener(address, {
      trustPolicy,
      ...(sc?.persist ? { persist: true } : {}),
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
   * reaches the outlet through it, and opens it again whenever it closes. Fails (and keeps nothing)
   * if the first channel cannot be made: the control API reports only what works.
   */
  async createInlet(config: InletConfig): Promise<{ address: string; channel: string | null }> {
    const m = await this.startInlet(config, true);
    return { address: m.inlet.address, channel: m.channel?.encryptor.toString() ?? null };
  }

  /** Starts an inlet; `strict`: its first channel must open now, else (at start) it is retried. */
  private async startInlet(config: InletConfig, strict = false): Promise<ManagedInlet> {
    const problem = inletTrustProblem(config);
    if (problem) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `inlet on ${config.bind} ${problem}`);
    const outlet = config.outlet ?? DEFAULT_OUTLET_ADDRESS;
    const secure = config.secure !== false;
    if (secure && config.trustAnyOutlet) {
      this.log.warn(
        { inlet: config.bind, to: config.to },
        'inlet trusts any identity that answers at its route (trustAnyOutlet)',
      );
    }
    const m: ManagedInlet = {
      config,
      inlet: undefined as unknown as TcpInlet,
      channel: undefined,
      state: secure ? 'connecting' : 'plain',
      lastError: undefined,
      channelsOpened: 0,
      backoff: new Backoff(),
      nextAttemptAt: undefined,
    };
    const outletRoute = secure
      ? () => (m.channel?.state === 'open' ? Route.of(m.channel.encryptor, outlet) : undefined)
      : toRoute(config.to);
    m.inlet = await TcpInlet.create(this.router, {
      bind: config.bind,
      outletRoute,
      log: this.log,
      onRouteFailure: ({ route, reason }) => {
        if (m.channel !== undefined && route.next?.equals(m.channel.encryptor))
          this.inletRouteBroken(m, reason);
      },
    });
    if (secure) {
      try {
        await this.openInletChannel(m);
      } catch (e) {
        if (strict) {
          await m.inlet.close();
          throw e;
        }
        this.inletChannelFailed(m, e);
      }
    }
    this.inlets.push(m);
    return m;
  }

  private async openInletChannel(m: ManagedInlet): Promise<void> {
    const channel = await this.createSecureChannel(m.config.to, m.config.authorized);
    if (this.stopped) {
      await channel.close();
      return;
    }
    m.channel = channel;
    m.state = 'up';
    m.lastError = undefined;
    m.channelsOpened++;
    m.backoff.reset();
    m.nextAttemptAt = undefined;
    channel.onClose(() => {
      if (this.stopped || m.channel !== channel) return;
      m.channel = undefined;
      m.state = 'retrying';
      this.log.warn({ inlet: m.inlet.address, to: m.config.to }, 'inlet channel closed; opening it again');
      this.scheduleInletChannel(m, 0);
    });
  }

  /**
   * The way to the outlet broke without a Close (its node crashed, a connection on the way
   * dropped): closing the channel makes the close handler open a new one.
   */
  private inletRouteBroken(m: ManagedInlet, reason: string): void {
    const channel = m.channel;
    if (this.stopped || channel === undefined) return;
    this.log.warn(
      { inlet: m.inlet.address, to: m.config.to, reason },
      'inlet route broken; closing its channel',
    );
    m.lastError = reason;
    void channel.close();
  }

  private inletChannelFailed(m: ManagedInlet, e: unknown): void {
    const first = m.lastError === undefined;
    m.state = 'retrying';
    m.lastError = describeError(e);
    const level = first ? 'warn' : 'debug';
    this.log[level](
      { inlet: m.inlet.address, to: m.config.to, err: m.lastError },
      'inlet channel not open; retrying',
    );
    this.scheduleInletChannel(m, m.backoff.next());
  }

  private scheduleInletChannel(m: ManagedInlet, delay: number): void {
    m.nextAttemptAt = Date.now() + delay;
    this.later(delay, () => {
      m.nextAttemptAt = undefined;
      this.openInletChannel(m).catch((e: unknown) => this.inletChannelFailed(m, e));
    });
  }

  /** Runs `fn` after `delay` ms unless the node stopped first. */
  private later(delay: number, fn: () => void): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  /**
   * Opens a secure channel to the listener at `route`, optionally only to `authorized` identifiers.
   * Resolves once both sides accepted each other (see SecureChannels.create; `confirm: false` for
   * Ockam responders, which never confirm).
   */
  async createSecureChannel(
    route: RouteLike,
    authorized?: string[],
    options: { confirm?: boolean; timeoutMs?: number; persist?: boolean } = {},
  ): Promise<SecureChannelEnd> {
    return this.channels.create(route, {
      ...(options.persist ? { persist: true } : {}),
      ...(authorized?.length ? { trustPolicy: trustIdentifiers(authorized) } : {}),
      ...(options.confirm === false ? { confirm: false } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
  }

  /** Service addresses this node runs (the default exposure of listeners and relays). */
  serviceAddresses(): string[] {
    // Everything a transport peer may reach by default, the secure-channel listener included.
    return [...this.services];
  }

  async createTcpListener(
    address: string,
    expose?: string[],
    limits: TcpListenerLimits = {},
  ): Promise<string> {
    const listener = await this.tcp.listen(address, { expose: expose ?? this.services, ...limits });
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
   * Opens this node's mailbox on an MQTT broker. The broker is a remote dependency: the node
   * waits a moment for it, then goes on and the connection keeps trying in the background;
   * messages to other mailboxes wait in the outbox meanwhile (durable in the node's directory).
   */
  async openMqttMailbox(config: MqttConfig, home?: string): Promise<string> {
    this.mqtt ??= MqttTransport.create(this.router, { log: this.log });
    let password: string | undefined;
    if (config.passwordFile !== undefined) {
      try {
        password = (await readFile(config.passwordFile, 'utf8')).replace(/\r?\n$/, '');
      } catch (e) {
        throw new KeyhopError(
          ErrorCodes.CONFIG_INVALID,
          `cannot read the MQTT password file ${config.passwordFile}: ${describeError(e)}`,
        );
      }
    }
    const durable = config.durable ?? true;
    const outbox = config.outbox ?? {};
    const conn = await this.mqtt.connect({
      urls: config.urls,
      mailbox: config.mailbox ?? this.name,
      ...(config.broker !== undefined ? { broker: config.broker } : {}),
      ...(config.username !== undefined ? { username: config.username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(config.tls ? { tls: config.tls } : {}),
      ...(config.protocolVersion !== undefined ? { protocolVersion: config.protocolVersion } : {}),
      ...(config.topicPrefix !== undefined ? { topicPrefix: config.topicPrefix } : {}),
      ...(durable && home ? { stateDir: join(nodePaths(home, this.name).dir, 'mqtt') } : {}),
      outbox: {
        ...(outbox.maxMessages !== undefined ? { maxMessages: outbox.maxMessages } : {}),
        ...(outbox.maxBytes !== undefined ? { maxBytes: outbox.maxBytes } : {}),
        ...(outbox.maxAgeSeconds !== undefined ? { maxAgeMs: outbox.maxAgeSeconds * 1000 } : {}),
        ...(outbox.window !== undefined ? { window: outbox.window } : {}),
      },
      // Persistent channels' ends too: ciphertext queued for them arrives as soon as the mailbox
      // opens (they authenticate everything they accept).
      expose: [
        ...(config.expose ?? this.services),
        ...this.channels
          .list()
          .filter((c) => c.persistent)
          .map((c) => c.remote.toString()),
      ],
      connectTimeoutMs: 0,
      log: this.log,
    });
    if (!(await conn.connectedWithin(5_000))) {
      this.log.warn(
        { broker: conn.broker, err: conn.stats().lastError },
        'MQTT broker not reached yet: the node keeps trying in the background',
      );
    }
    return conn.address.toString();
  }

  /**
   * Opens a serial port (a cable to a board). What arrives on it may reach `expose`: local
   * workers, and `1#host:port` entries, which let the board's messages go on over TCP to that peer
   * (the node is then the board's gateway).
   */
  async createSerialLink(config: SerialConfig, waitForPort = false): Promise<string> {
    this.serial ??= SerialTransport.create(this.router, { log: this.log });
    // A `1#host:port` entry admits that transport address: the connection to it is made on the
    // board's first message and made again after it drops (the router resolves it each time).
    const expose = (config.expose ?? this.services).map((e) => Address.parse(e));
    const link = await this.serial.open(config.path, {
      baudRate: config.baudRate ?? DEFAULT_BAUD_RATE,
      reliable: config.reliable ?? false,
      expose,
      waitForPort,
    });
    return link.sender.toString();
  }

  /**
   * Registers a relay for this node at `config.at` now (rejecting if it cannot), and keeps it
   * registered until the node stops.
   */
  async createRelay(config: RelayConfig): Promise<RemoteRelayInfo> {
    const managed = managedRelay(config);
    const info = await this.register(managed);
    this.relays.push(managed);
    return info;
  }

  /** A relay from the configuration: one attempt now, then retried in the background until it works. */
  private async startRelay(config: RelayConfig): Promise<void> {
    const managed = managedRelay(config);
    this.relays.push(managed);
    await this.register(managed).catch((e: unknown) => this.relayFailed(managed, e));
  }

  private relayFailed(m: ManagedRelay, e: unknown): void {
    const first = m.state !== 'retrying' || m.lastError === undefined;
    m.state = 'retrying';
    m.lastError = describeError(e);
    const delay = m.backoff.next();
    m.nextAttemptAt = Date.now() + delay;
    this.log[first ? 'warn' : 'debug'](
      { relay: m.config.alias ?? null, at: m.config.at, err: m.lastError, retryMs: delay },
      'relay registration failed; retrying',
    );
    this.later(delay, () => {
      m.nextAttemptAt = undefined;
      this.register(m).catch((err: unknown) => this.relayFailed(m, err));
    });
  }

  private async register(managed: ManagedRelay): Promise<RemoteRelayInfo> {
    const route = toRoute(managed.config.at);
    const head = route.next!;
    const expose = managed.config.expose ?? this.services;
    // Messages that come back through the relay arrive on this connection: expose our services on it.
    if (head.type === this.tcp.type) {
      await this.tcp.connect(head.text, { expose: managed.config.secure ? [] : expose });
    }
    const { alias, via } = managed.config;
    let through = route;
    if (managed.config.secure) {
      // Registered through a channel, so the relay node sees this node's credentials; what the
      // relay forwards then arrives through that channel and may reach what the relay exposes.
      const previous = managed.channel;
      managed.channel = undefined;
      await previous?.close().catch(() => undefined);
      const channel = await this.createSecureChannel(route.append('api'), managed.config.authorized);
      managed.channel = channel;
      for (const a of expose) this.router.flowControls.addConsumer(channel.flow, Address.parse(a));
      channel.onClose(() => {
        if (this.stopped || managed.channel !== channel || managed.state !== 'up') return;
        this.log.warn(
          { relay: managed.info?.name, at: managed.config.at },
          'relay channel closed; registering again',
        );
        managed.state = 'retrying';
        this.later(0, () => this.register(managed).catch((e: unknown) => this.relayFailed(managed, e)));
      });
      through = Route.of(channel.encryptor);
    }
    const registered = await createRemoteRelay(this.router, through, {
      ...(alias === undefined ? {} : { alias }),
      ...(via === undefined ? {} : { via: this.relayVia(via) }),
    });
    // Others reach it at the relay node's route, whichever way it was registered.
    const info = { ...registered, node: route, route: route.append(registered.name) };
    managed.info = info;
    managed.state = 'up';
    managed.lastError = undefined;
    managed.registrations++;
    managed.backoff.reset();
    this.log.info({ relay: info.name, at: route.toString() }, 'relay registered');
    return info;
  }

  private onDisconnect(peer: string, sender: Address): void {
    for (const m of this.relays) {
      const head = toRoute(m.config.at).next;
      if (m.state === 'up' && head?.type === this.tcp.type && head.text === peer) {
        this.log.warn({ relay: m.info?.name, peer }, 'relay connection lost; registering again');
        m.state = 'retrying';
        m.nextAttemptAt = Date.now();
        this.later(0, () => {
          m.nextAttemptAt = undefined;
          this.register(m).catch((e: unknown) => this.relayFailed(m, e));
        });
      }
    }
    for (const m of this.inlets) {
      if (m.channel === undefined) continue;
      const head = m.channel.remoteRoute.next;
      // The channel's first hop is the connection's sender, or the transport address it was made from.
      const lost = head?.type === this.tcp.type ? head.text === peer : head?.equals(sender) === true;
      if (lost) this.inletRouteBroken(m, `connection to ${peer} lost`);
    }
  }

  /**
   * Records a change made at run time (a listener, outlet, inlet or relay added through the
   * control API) in the configuration, and tells whoever persists it.
   */
  async recordConfig(change: (config: NodeConfig) => void): Promise<void> {
    change(this.config);
    await this.onConfigChange?.(this.config);
  }

  /** Sends `payload` along `route` and waits for one answer. */
  async request(route: RouteLike, payload: Uint8Array, timeoutMs = 10_000): Promise<Message> {
    const ctx = await this.router.context();
    const to = toRoute(route);
    try {
      await ctx.send(to, payload);
      return await ctx.receive(timeoutMs);
    } catch (e) {
      if (!isKeyhopError(e, ErrorCodes.TIMEOUT)) throw e;
      // Nodes drop what a sender may not reach without a word (so that nobody can probe them).
      throw new KeyhopError(
        ErrorCodes.TIMEOUT,
        `no answer from ${to} within ${timeoutMs} ms: a worker that does not exist there, or that this sender may not reach, drops messages silently (keyhop node show <node> lists its workers and listeners)`,
      );
    } finally {
      await ctx.stop();
    }
  }

  describe(): Record<string, unknown> {
    return {
      name: this.name,
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      memory: process.memoryUsage(),
      services: this.services,
      tcpListeners: this.tcp.listenerList().map((l) => ({
        address: l.address,
        route: `1#${l.address}`,
      })),
      tcpConnections: this.tcp.connections().map((c) => c.describe()),
      udp: this.udp
        ? { address: this.udp.address, route: `2#${this.udp.address}`, ...this.udp.stats() }
        : null,
      mqtt: (this.mqtt?.connections() ?? []).map((c) => ({ route: c.address.toString(), ...c.stats() })),
      mqttBroker: this.mqttBroker ? { url: this.mqttBroker.url, clients: this.mqttBroker.clients } : null,
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
        nextAttemptAt: m.nextAttemptAt === undefined ? null : new Date(m.nextAttemptAt).toISOString(),
      })),
      identity: this.identity?.identity.identifier.toString() ?? null,
      secureChannelListener: this.channelListener?.address.toString() ?? null,
      secureChannelTrust: this.channelListener ? this.trustDescription : null,
      secureChannels: this.channels?.list().map((c) => c.describe()) ?? [],
      secureChannelStats: this.channels?.stats() ?? null,
      tcpStats: this.tcp.stats(),
      logSuppressed: logFloodStats(this.log) ?? null,
      outlets: this.outlets.map(({ config, outlet }) => ({
        address: config.address ?? DEFAULT_OUTLET_ADDRESS,
        target: config.target,
        policy: config.policy ?? null,
        ...outlet.stats,
      })),
      inlets: this.inlets.map((m) => ({
        address: m.inlet.address,
        to: m.config.to,
        state: m.state,
        channel: m.channel?.encryptor.toString() ?? null,
        channelsOpened: m.channelsOpened,
        trustAnyOutlet: m.config.trustAnyOutlet === true,
        lastError: m.lastError ?? null,
        nextAttemptAt: m.nextAttemptAt === undefined ? null : new Date(m.nextAttemptAt).toISOString(),
        ...m.inlet.stats,
      })),
      trust: this.trustKeeper?.describe() ?? this.trust?.describe() ?? null,
      authority: this.authorityRunner?.describe() ?? null,
      enrollmentDirectory: this.directory?.describe() ?? null,
      workers: this.router.workers().map((a) => a.toString()),
      metrics: this.router.metrics,
      config: this.config,
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
    await this.channelStore?.close().catch(() => undefined);
    await this.router.shutdown();
    await this.mqttBroker?.close().catch(() => undefined);
    // After the router: no request is in flight in their workers any more.
    await this.authorityRunner?.stop().catch(() => undefined);
    await this.trust?.close().catch(() => undefined);
    await this.identityStore?.close().catch(() => undefined);
  }
}

function managedRelay(config: RelayConfig): ManagedRelay {
  return {
    config,
    channel: undefined,
    info: undefined,
    state: 'registering',
    lastError: undefined,
    registrations: 0,
    backoff: new Backoff(),
    nextAttemptAt: undefined,
  };
}
