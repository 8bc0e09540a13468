import { createServer, type Server, type Socket } from 'node:net';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { denyAll } from '../../routing/access-control.js';
import { Address } from '../../routing/address.js';
import { type Route, type RouteLike, toRoute } from '../../routing/route.js';
import type { Router } from '../../routing/router.js';
import { formatHostPort, parseHostPort } from '../../transports/host-port.js';
import {
  emptyStats,
  PortalConnection,
  type PortalStats,
  type PortalTuning,
  type ResolvedTuning,
  resolveTuning,
} from './portal-connection.js';

export interface TcpInletOptions extends PortalTuning {
  /** Local `host:port` to listen on (port 0: any free port; see `TcpInlet.address`). */
  bind: string;
  /**
   * Route to the outlet service, e.g. `1#host:port => outlet`,
   * `1#relay:4000 => forward_to_b => outlet` or `[channel, "outlet"]`; or a function giving the
   * route of the moment (a secure channel that is re-established gets a new encryptor), undefined
   * while there is none: client connections are then refused at once (counted as failed).
   */
  outletRoute: RouteLike | (() => Route | undefined);
  log?: Logger;
  /** Close a client connection whose Ping got no Pong within this long (default 10 s). */
  pongTimeoutMs?: number;
  /** Most client connections at once (default 1024). */
  maxConnections?: number;
  /**
   * Told when the route to the outlet looks broken: a client's Ping got no Pong in time, or could
   * not be routed. `route` is the one that failed (the owner of a secure channel on it can close
   * that channel and make a new one). Not called for an outlet that answers Disconnect.
   */
  onRouteFailure?: (failure: { route: Route; reason: string }) => void;
}

/**
 * The inlet end of a TCP portal: a local TCP listener. Each accepted connection gets a portal
 * worker that sends Ping along `outletRoute`, learns the route to its outlet worker from the
 * Pong's return route, and from then on carries the connection's bytes both ways.
 */
export class TcpInlet {
  /** The bound `host:port` (with the real port when 0 was asked for). */
  readonly address: string;
  readonly stats: PortalStats;
  private readonly live = new Set<PortalConnection>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly router: Router,
    private readonly server: Server,
    address: string,
    private readonly routeNow: () => Route | undefined,
    stats: PortalStats,
    /** A worker whose only job is to close the inlet when the router shuts down. */
    private readonly control: Address,
    private readonly log: Logger,
    private readonly onRouteFailure: TcpInletOptions['onRouteFailure'],
  ) {
    this.address = address;
    this.stats = stats;
  }

  /** The route to the outlet now (undefined while a managed secure channel is down). */
  get outletRoute(): Route | undefined {
    return this.routeNow();
  }

  static async create(router: Router, options: TcpInletOptions): Promise<TcpInlet> {
    let routeNow: () => Route | undefined;
    if (typeof options.outletRoute === 'function') routeNow = options.outletRoute;
    else {
      const fixed = toRoute(options.outletRoute);
      if (fixed.isEmpty) throw new KeyhopError(ErrorCodes.ROUTE_EMPTY, 'the outlet route is empty');
      routeNow = () => fixed;
    }
    const { host, port } = parseHostPort(options.bind, true);
    const tuning = resolveTuning(options);
    const pongTimeoutMs = options.pongTimeoutMs ?? 10_000;
    const stats = emptyStats();
    let inlet: TcpInlet | undefined;
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      if (inlet) inlet.accept(socket, tuning, pongTimeoutMs);
      else socket.destroy();
    });
    server.maxConnections = options.maxConnections ?? 1024;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(
          new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot listen on ${options.bind}: ${e.message}`, {
            cause: e,
          }),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    const bound = typeof addr === 'object' && addr ? formatHostPort(addr.address, addr.port) : options.bind;
    const log = (options.log ?? router.log).child({ inlet: bound });
    server.on('error', (e) => log.warn({ err: e.message }, 'inlet listener error'));
    const control = Address.random('inlet_');
    inlet = new TcpInlet(router, server, bound, routeNow, stats, control, log, options.onRouteFailure);
    const self = inlet;
    try {
      await router.startWorker(
        control,
        { handleMessage: () => undefined, shutdown: () => self.stop() },
        { incoming: denyAll },
      );
    } catch (e) {
      server.close();
      throw e;
    }
    log.info({ outletRoute: routeNow()?.toString() ?? null }, 'TCP inlet listening');
    return inlet;
  }

  private accept(socket: Socket, tuning: ResolvedTuning, pongTimeoutMs: number): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const route = this.routeNow();
    if (route === undefined) {
      // No way to the outlet right now (its secure channel is being re-established).
      this.stats.failed++;
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // an error before the portal worker listens is no crash
    const conn = new PortalConnection(this.router, 'inlet', tuning, this.stats, this.log);
    const report = this.onRouteFailure;
    if (report) {
      conn.onRouteFailure = (reason) => {
        if (this.closing) return;
        try {
          report({ route, reason });
        } catch (e) {
          this.log.warn({ err: describeError(e) }, 'onRouteFailure threw');
        }
      };
    }
    this.live.add(conn);
    conn.onFinish(() => this.live.delete(conn));
    conn
      .start()
      .then(() => conn.ping(socket, route, pongTimeoutMs))
      .catch((e: unknown) => {
        this.log.warn({ err: describeError(e) }, 'could not start a portal connection');
        socket.destroy();
        void conn.abort('start failed');
      });
  }

  /** Portal connections open now. */
  connections(): Record<string, unknown>[] {
    return [...this.live].map((c) => c.describe());
  }

  /** Stops listening and closes every client connection (each open portal gets a Disconnect). */
  async close(): Promise<void> {
    await this.stop();
    await this.router.stopWorker(this.control);
  }

  /** Everything `close` does but stopping the control worker (which calls this when stopped). */
  private stop(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await Promise.all([...this.live].map((c) => c.abort('inlet closed')));
      await stopped;
      this.log.info({ ...this.stats }, 'TCP inlet closed');
    })();
    return this.closing;
  }
}
