import { ErrorCodes, KeyhopError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import type { Message } from '../routing/message.js';
import { type RouteLike, toRoute } from '../routing/route.js';
import { Router } from '../routing/router.js';
import { ECHO_ADDRESS, EchoService } from '../services/echo.js';
import {
  FORWARDING_SERVICE,
  RelayService,
  STATIC_FORWARDING_SERVICE,
} from '../services/relay/relay-service.js';
import { createRemoteRelay, type RemoteRelayInfo } from '../services/relay/remote-relay.js';
import { TcpTransport } from '../transports/tcp/tcp-transport.js';
import { UdpTransport } from '../transports/udp/udp-transport.js';
import type { NodeConfig, RelayConfig } from './config.js';

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
  udp: UdpTransport | undefined;
  readonly log: Logger;
  readonly startedAt = Date.now();
  private readonly services: string[] = [];
  private relayService: RelayService | undefined;
  private readonly relays: ManagedRelay[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

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

  static async start(config: NodeConfig, options: { log?: Logger } = {}): Promise<KeyhopNode> {
    const node = new KeyhopNode(config, options.log ?? silentLogger);
    try {
      if (config.services.echo) {
        await node.router.startWorker(ECHO_ADDRESS, new EchoService());
        node.services.push(ECHO_ADDRESS);
      }
      if (config.services.relay) {
        node.relayService = await RelayService.start(node.router);
        node.services.push(FORWARDING_SERVICE, STATIC_FORWARDING_SERVICE);
      }
      for (const l of config.tcpListeners) await node.createTcpListener(l.address, l.expose);
      if (config.udp) await node.createUdpTransport(config.udp.bind, config.udp.expose);
      for (const r of config.relays) await node.createRelay(r);
    } catch (e) {
      await node.stop();
      throw e;
    }
    return node;
  }

  get name(): string {
    return this.config.name;
  }

  /** Service addresses this node runs (the default exposure of listeners and relays). */
  serviceAddresses(): string[] {
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
    const options = managed.config.alias === undefined ? {} : { alias: managed.config.alias };
    const info = await createRemoteRelay(this.router, route, options);
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
        m.lastError = e instanceof Error ? e.message : String(e);
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
      workers: this.router.workers().map((a) => a.toString()),
      metrics: this.router.metrics,
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await this.router.shutdown();
  }
}
