import { createConnection, type Socket } from 'node:net';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Address, type AddressLike } from '../../routing/address.js';
import type { Context } from '../../routing/context.js';
import type { Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import type { Worker } from '../../routing/worker.js';
import { parseHostPort } from '../../transports/host-port.js';
import {
  emptyStats,
  PortalConnection,
  type PortalStats,
  type PortalTuning,
  type ResolvedTuning,
  resolveTuning,
} from './portal-connection.js';
import { decodePortalMessage, describePortalMessage, type PortalMessage } from './portal-message.js';

/** Ockam's default outlet worker address. */
export const DEFAULT_OUTLET_ADDRESS = 'outlet';

export interface TcpOutletOptions extends PortalTuning {
  /** The outlet service's local address (default `outlet`). */
  address?: AddressLike;
  /** Where every portal connection connects: `host:port`. */
  target: string;
  log?: Logger;
  /** Give up connecting to the target after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Most portal connections open at once; further Pings are answered with Disconnect (default 1024). */
  maxConnections?: number;
}

/**
 * The outlet end of a TCP portal: a service worker (Ockam's default address `outlet`) that, for
 * each Ping, connects to `target`, starts a portal worker for that connection and answers Pong
 * from the worker's address, so the inlet's later messages go straight to it.
 *
 * The service must be reachable from where inlets are: expose it on the TCP listener or
 * connection the Pings arrive on (`tcp.listen(…, { expose: ['outlet'] })`). Every portal worker
 * inherits that exposure and accepts only messages whose return route starts where its Ping's
 * did.
 */
export class TcpOutlet implements Worker {
  readonly address: Address;
  readonly target: string;
  readonly stats: PortalStats = emptyStats();
  private readonly host: string;
  private readonly port: number;
  private readonly tuning: ResolvedTuning;
  private readonly log: Logger;
  private readonly connectTimeoutMs: number;
  private readonly maxConnections: number;
  private readonly live = new Set<PortalConnection>();
  private closed = false;

  private constructor(
    private readonly router: Router,
    options: TcpOutletOptions,
  ) {
    this.address = Address.from(options.address ?? DEFAULT_OUTLET_ADDRESS);
    const { host, port } = parseHostPort(options.target);
    this.host = host;
    this.port = port;
    this.target = options.target;
    this.tuning = resolveTuning(options);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.maxConnections = options.maxConnections ?? 1024;
    this.log = (options.log ?? router.log).child({ outlet: this.address.toString(), target: this.target });
  }

  static async create(router: Router, options: TcpOutletOptions): Promise<TcpOutlet> {
    const outlet = new TcpOutlet(router, options);
    await router.startWorker(outlet.address, outlet, { incoming: outlet.tuning.incoming });
    // A portal whose way back to its inlet is gone (the channel or connection it came through
    // closed: the inlet's node crashed or its link was cut) ends with it, or its target socket
    // and worker would stay open for ever.
    outlet.unwatch = router.onWorkerStopped((stopped) => outlet.hopStopped(stopped));
    outlet.log.info('TCP outlet started');
    return outlet;
  }

  async handleMessage(ctx: Context, message: Message): Promise<void> {
    if (this.closed) return;
    let m: PortalMessage;
    try {
      m = decodePortalMessage(message.payload, 0);
    } catch (e) {
      this.log.debug({ err: describeError(e) }, 'undecodable message to the outlet ignored');
      return;
    }
    if (m.type !== 'ping') {
      this.log.debug({ message: describePortalMessage(m) }, 'outlet expects Ping; message ignored');
      return;
    }
    if (message.returnRoute.isEmpty) {
      this.log.debug('Ping without a return route ignored');
      return;
    }
    const conn = new PortalConnection(
      this.router,
      'outlet',
      this.tuning,
      this.stats,
      this.log,
      message.returnRoute,
    );
    this.live.add(conn);
    conn.onFinish(() => this.live.delete(conn));
    // A portal worker may receive whatever its outlet may: it inherits the outlet's exposure.
    this.router.flowControls.copyConsumer(ctx.address, conn.address);
    try {
      await conn.start();
    } catch (e) {
      this.live.delete(conn);
      this.router.flowControls.forget(conn.address);
      throw e;
    }
    if (this.live.size > this.maxConnections) {
      await conn.refuse(`more than ${this.maxConnections} portal connections`);
      return;
    }
    // Connect without holding the service: other Pings are served meanwhile.
    void this.connect().then(
      (socket) => {
        if (conn.isOpen && !this.closed) conn.accept(socket);
        else socket.destroy();
      },
      (e: unknown) => conn.refuse(describeError(e)),
    );
  }

  private unwatch: (() => void) | undefined;

  private hopStopped(stopped: readonly Address[]): void {
    if (this.live.size === 0) return;
    const keys = new Set(stopped.map((a) => a.key));
    for (const conn of [...this.live]) {
      const hop = conn.peerHop;
      if (hop === undefined || !hop.isLocal || !keys.has(hop.key)) continue;
      this.stats.closedWithTransport++;
      void conn.abort(`the way to the inlet closed (${hop})`);
    }
  }

  private connect(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const socket = createConnection({ host: this.host, port: this.port, allowHalfOpen: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new KeyhopError(ErrorCodes.CONNECT_FAILED, `connecting to ${this.target} timed out`));
      }, this.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        resolve(socket);
      });
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(
          new KeyhopError(ErrorCodes.CONNECT_FAILED, `cannot connect to ${this.target}: ${e.message}`, {
            cause: e,
          }),
        );
      });
    });
  }

  /** Portal connections open now. */
  connections(): Record<string, unknown>[] {
    return [...this.live].map((c) => c.describe());
  }

  async shutdown(): Promise<void> {
    await this.closeAll('outlet stopped');
  }

  /** Stops the service and closes every portal connection (each peer gets a Disconnect). */
  async close(): Promise<void> {
    await this.closeAll('outlet closed');
    await this.router.stopWorker(this.address);
  }

  private async closeAll(reason: string): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    await Promise.all([...this.live].map((c) => c.abort(reason)));
    this.log.info({ ...this.stats }, 'TCP outlet stopped');
  }
}
