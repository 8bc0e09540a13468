import { EventEmitter } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { type RateLimitedLevel, RateLimitedLog } from '../../log-rate-limit.js';
import { Address, type AddressLike, TransportType } from '../../routing/address.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import type { FlowId } from '../../routing/flow-control.js';
import type { Router } from '../../routing/router.js';
import type { Transport } from '../../routing/worker.js';
import { formatHostPort, parseHostPort } from '../host-port.js';
import { HeldBytes } from './held-bytes.js';
import { sourceKey } from './source-key.js';
import { type TcpCloseCause, TcpConnection, type TcpConnectionOptions } from './tcp-connection.js';

/** Defaults of the limits below (docs/protocols/tcp.md says why these). */
export const TCP_LIMIT_DEFAULTS = {
  maxConnections: 1024,
  maxConnectionsPerSource: 64,
  frameTimeoutMs: 30_000,
  frameMinBytesPerSecond: 1024,
  idleTimeoutMs: 0,
  maxBufferedBytesPerSource: 32 * 1024 * 1024,
  maxBufferedBytes: 256 * 1024 * 1024,
} as const;

export interface TcpTransportOptions {
  log?: Logger;
  maxFrameBytes?: number;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
  /**
   * A frame whose first byte (of its length prefix) arrived must complete within this, plus 1 s
   * for every `frameMinBytesPerSecond` bytes of it received. 0: no limit. Default 30 s.
   */
  frameTimeoutMs?: number;
  /** Default 1024 (8 kbit/s). */
  frameMinBytesPerSecond?: number;
  /** Close a connection over which nothing arrived for this long. 0 (default): never. */
  idleTimeoutMs?: number;
  /** The local IP address outgoing connections are made from (a multi-homed host); default: the OS picks. */
  localAddress?: string;
}

export interface ExposeOptions {
  /** Local workers that messages arriving here may reach. */
  expose?: AddressLike[];
}

/** A listener's limits; the timeouts default to the transport's. */
export interface TcpListenerLimits {
  /** Connections open at once through this listener; more are closed at once. Default 1024. */
  maxConnections?: number;
  /** Of those, from one source (an IPv4 address, an IPv6 /64). Default 64. */
  maxConnectionsPerSource?: number;
  frameTimeoutMs?: number;
  idleTimeoutMs?: number;
  /**
   * Bytes the connections of one source may make this node hold (frames partly received, and
   * received messages not yet handled); the connection that goes over is closed. Default 32 MiB.
   */
  maxBufferedBytesPerSource?: number;
  /** The same for all connections of the listener. Default 256 MiB. */
  maxBufferedBytes?: number;
}

export type ListenOptions = ExposeOptions & TcpListenerLimits;

/** What the transport refused or closed on a peer's account, since it was created. */
export interface TcpTransportStats {
  /** Incoming connections taken (within the limits). */
  accepted: number;
  refusedListenerFull: number;
  refusedPerSource: number;
  /** Connections (either direction) closed because a frame stayed unfinished too long. */
  closedSlowFrame: number;
  closedIdle: number;
  closedNoVersion: number;
  /** Protocol violations: a wrong version byte, an oversized, undecodable or misshapen frame. */
  closedBadFrame: number;
  /** Incoming connections whose source or listener went over its budget of received bytes. */
  closedOverBudget: number;
}

const CLOSES: Record<
  TcpCloseCause,
  { counter: keyof TcpTransportStats; level: RateLimitedLevel; message: string }
> = {
  'no-version': {
    counter: 'closedNoVersion',
    level: 'warn',
    message: 'TCP connection closed: no protocol-version byte in time',
  },
  'slow-frame': {
    counter: 'closedSlowFrame',
    level: 'warn',
    message: 'TCP connection closed: a frame stayed unfinished too long',
  },
  idle: { counter: 'closedIdle', level: 'info', message: 'TCP connection closed: idle' },
  'bad-frame': {
    counter: 'closedBadFrame',
    level: 'warn',
    message: 'TCP connection closed: protocol violation',
  },
  'over-budget': {
    counter: 'closedOverBudget',
    level: 'warn',
    message: 'TCP connection closed: its source or listener held too many received bytes',
  },
};

function whole(name: string, v: number | undefined, min: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < min) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `TCP: ${name} must be a whole number >= ${min}, got ${v}`,
    );
  }
  return v;
}

/** How often the one timer looks at every connection: a quarter of the shortest timeout, 25 ms..1 s. */
function sweepPeriod(o: TcpConnectionOptions): number {
  const timeouts = [o.frameTimeoutMs, o.idleTimeoutMs].filter((t) => t > 0);
  return Math.max(25, Math.min(1000, Math.floor(Math.min(4000, ...timeouts) / 4)));
}

export interface TcpListener {
  /** The bound `host:port` (with the real port when 0 was asked for). */
  readonly address: string;
  readonly flow: FlowId;
  expose(address: AddressLike): void;
  close(): Promise<void>;
}

interface ServerEntry {
  server: Server;
  listener: TcpListener;
  connOptions: TcpConnectionOptions;
  maxConnections: number;
  maxPerSource: number;
  open: number;
  perSource: Map<string, { connections: number; held: HeldBytes }>;
  maxHeldPerSource: number;
  held: HeldBytes;
}

export interface DisconnectEvent {
  peer: string;
  direction: 'outgoing' | 'incoming';
  reason: string;
  sender: Address;
}

/**
 * TCP as Ockam speaks it since June 2024: a protocol-version byte 0x01 each way, then frames of
 * u32 big-endian length + CBOR routing message, at most 16 MiB. Addresses `1#host:port` resolve
 * to one reused outgoing connection per peer.
 */
export class TcpTransport
  extends EventEmitter<{ disconnect: [DisconnectEvent]; connect: [TcpConnection] }>
  implements Transport
{
  readonly type = TransportType.TCP;
  readonly name = 'tcp';
  private readonly log: Logger;
  private readonly connOptions: TcpConnectionOptions;
  private readonly connectTimeoutMs: number;
  private readonly localAddress: string | undefined;
  private readonly outgoing = new Map<string, Promise<TcpConnection>>();
  private readonly all = new Set<TcpConnection>();
  private readonly servers = new Set<ServerEntry>();
  private stopped = false;
  private readonly counters: TcpTransportStats = {
    accepted: 0,
    refusedListenerFull: 0,
    refusedPerSource: 0,
    closedSlowFrame: 0,
    closedIdle: 0,
    closedNoVersion: 0,
    closedBadFrame: 0,
    closedOverBudget: 0,
  };
  private readonly limitLog: RateLimitedLog;
  /** One timer for every connection's timeouts, running while there are connections. */
  private sweeper: NodeJS.Timeout | undefined;
  private sweepMs: number;
  private lastSweep = 0;

  private constructor(
    private readonly router: Router,
    options: TcpTransportOptions,
  ) {
    super();
    this.log = (options.log ?? router.log ?? silentLogger).child({ transport: 'tcp' });
    const d = TCP_LIMIT_DEFAULTS;
    this.connOptions = {
      maxFrameBytes: (options.maxFrameBytes ?? MAX_MESSAGE_BYTES) + 64 * 1024,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      highWater: 256,
      lowWater: 64,
      highWaterBytes: 4 * 1024 * 1024,
      lowWaterBytes: 1024 * 1024,
      frameTimeoutMs: whole('frameTimeoutMs', options.frameTimeoutMs, 0, d.frameTimeoutMs),
      frameMinBytesPerSecond: whole(
        'frameMinBytesPerSecond',
        options.frameMinBytesPerSecond,
        1,
        d.frameMinBytesPerSecond,
      ),
      idleTimeoutMs: whole('idleTimeoutMs', options.idleTimeoutMs, 0, d.idleTimeoutMs),
    };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.localAddress = options.localAddress;
    this.limitLog = new RateLimitedLog(this.log);
    this.sweepMs = sweepPeriod(this.connOptions);
  }

  /** Counts of connections accepted, refused and closed on their peer's account (a copy). */
  stats(): TcpTransportStats {
    return { ...this.counters };
  }

  /** Creates the transport and registers it with the router for `1#…` addresses. */
  static create(router: Router, options: TcpTransportOptions = {}): TcpTransport {
    const t = new TcpTransport(router, options);
    router.registerTransport(t);
    return t;
  }

  async resolve(address: Address): Promise<Address> {
    const conn = await this.connect(address.text);
    return conn.sender;
  }

  /** Connects to `host:port`, or returns the open connection to it. */
  connect(peer: string, options: ExposeOptions = {}): Promise<TcpConnection> {
    if (this.stopped)
      return Promise.reject(new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'TCP transport is stopped'));
    const existing = this.outgoing.get(peer);
    if (existing) {
      return existing.then((c) => {
        for (const a of options.expose ?? []) this.router.flowControls.addConsumer(c.flow, Address.from(a));
        return c;
      });
    }
    const p = this.dial(peer, options);
    this.outgoing.set(peer, p);
    p.then(
      (c) => c.onClose(() => this.outgoing.get(peer) === p && this.outgoing.delete(peer)),
      () => this.outgoing.get(peer) === p && this.outgoing.delete(peer),
    );
    return p;
  }

  private async dial(peer: string, options: ExposeOptions): Promise<TcpConnection> {
    const { host, port } = parseHostPort(peer);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection({
        host,
        port,
        ...(this.localAddress !== undefined ? { localAddress: this.localAddress } : {}),
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new KeyhopError(ErrorCodes.CONNECT_FAILED, `connecting to ${peer} timed out`));
      }, this.connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        const why: Record<string, string> = {
          ECONNREFUSED: 'connection refused: nothing listens there (is the node running, on that port?)',
          EHOSTUNREACH: 'host unreachable',
          ENETUNREACH: 'network unreachable',
          ENOTFOUND: 'no such host name',
          EAI_AGAIN: 'the host name could not be looked up now (DNS)',
          EADDRNOTAVAIL: `the local address ${this.localAddress ?? ''} to connect from is not one of this host's`,
        };
        const code = (e as NodeJS.ErrnoException).code ?? '';
        reject(
          new KeyhopError(ErrorCodes.CONNECT_FAILED, `cannot connect to ${peer}: ${why[code] ?? e.message}`, {
            cause: e,
          }),
        );
      });
    });
    const flow = this.router.flowControls.create();
    for (const a of options.expose ?? []) this.router.flowControls.addConsumer(flow, Address.from(a));
    const conn = await this.adopt(socket, peer, 'outgoing', flow);
    await conn.ready;
    return conn;
  }

  private async adopt(
    socket: Socket,
    peer: string,
    direction: 'outgoing' | 'incoming',
    flow: FlowId,
    options = this.connOptions,
    budget?: HeldBytes,
  ): Promise<TcpConnection> {
    const conn = new TcpConnection(this.router, socket, peer, direction, flow, options, this.log, budget);
    this.all.add(conn);
    this.startSweeping();
    conn.onClose((reason) => {
      this.all.delete(conn);
      if (this.all.size === 0) this.stopSweeping();
      const cause = conn.closeCause;
      if (cause !== undefined) {
        const c = CLOSES[cause];
        this.counters[c.counter]++;
        this.limitLog.write(c.level, cause, { peer, direction, reason }, c.message);
      }
      this.emit('disconnect', { peer, direction, reason, sender: conn.sender });
    });
    await conn.start();
    this.log.info({ peer, direction, sender: conn.sender.toString() }, 'TCP connection open');
    this.emit('connect', conn);
    return conn;
  }

  /** Listens on `host:port` (port 0 = any free port). */
  async listen(bind: string, options: ListenOptions = {}): Promise<TcpListener> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'TCP transport is stopped');
    const { host, port } = parseHostPort(bind, true);
    const d = TCP_LIMIT_DEFAULTS;
    const maxConnections = whole('maxConnections', options.maxConnections, 1, d.maxConnections);
    const maxPerSource = whole(
      'maxConnectionsPerSource',
      options.maxConnectionsPerSource,
      1,
      d.maxConnectionsPerSource,
    );
    const maxHeldPerSource = whole(
      'maxBufferedBytesPerSource',
      options.maxBufferedBytesPerSource,
      1024,
      d.maxBufferedBytesPerSource,
    );
    const maxHeld = whole('maxBufferedBytes', options.maxBufferedBytes, 1024, d.maxBufferedBytes);
    const connOptions: TcpConnectionOptions = {
      ...this.connOptions,
      frameTimeoutMs: whole('frameTimeoutMs', options.frameTimeoutMs, 0, this.connOptions.frameTimeoutMs),
      idleTimeoutMs: whole('idleTimeoutMs', options.idleTimeoutMs, 0, this.connOptions.idleTimeoutMs),
    };
    const flows = this.router.flowControls;
    const flow = flows.create();
    for (const a of options.expose ?? []) flows.addConsumer(flow, Address.from(a));
    const server = createServer((socket) => this.accept(entry, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) =>
        reject(
          new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot listen on ${bind}: ${e.message}`, { cause: e }),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    const bound = typeof addr === 'object' && addr ? formatHostPort(addr.address, addr.port) : bind;
    const entry: ServerEntry = {
      server,
      listener: {
        address: bound,
        flow,
        expose: (a: AddressLike) => flows.addConsumer(flow, Address.from(a)),
        close: () => this.closeListener(entry),
      } satisfies TcpListener,
      connOptions,
      maxConnections,
      maxPerSource,
      open: 0,
      perSource: new Map(),
      maxHeldPerSource,
      held: new HeldBytes(maxHeld),
    };
    this.servers.add(entry);
    const period = sweepPeriod(connOptions);
    if (period < this.sweepMs) {
      this.sweepMs = period;
      this.stopSweeping();
      this.startSweeping();
    }
    this.log.info(
      { address: bound, maxConnections, maxConnectionsPerSource: maxPerSource },
      'TCP listener started',
    );
    return entry.listener;
  }

  /** Takes an incoming connection, or closes it at once when over a limit (before any worker or flow). */
  private accept(entry: ServerEntry, socket: Socket): void {
    const ip = socket.remoteAddress;
    if (ip === undefined) {
      socket.destroy(); // gone already
      return;
    }
    const peer = formatHostPort(ip, socket.remotePort ?? 0);
    const listener = entry.listener.address;
    if (entry.open >= entry.maxConnections) {
      socket.destroy();
      this.counters.refusedListenerFull++;
      this.limitLog.write(
        'warn',
        'listener-full',
        { listener, peer, limit: entry.maxConnections },
        'TCP connection refused: the listener has its maximum of connections open',
      );
      return;
    }
    const source = sourceKey(ip);
    let fromSource = entry.perSource.get(source);
    if (fromSource !== undefined && fromSource.connections >= entry.maxPerSource) {
      socket.destroy();
      this.counters.refusedPerSource++;
      this.limitLog.write(
        'warn',
        'per-source',
        { listener, peer, source, limit: entry.maxPerSource },
        'TCP connection refused: its source has the maximum of connections open',
      );
      return;
    }
    entry.open++;
    if (fromSource === undefined) {
      fromSource = { connections: 0, held: new HeldBytes(entry.maxHeldPerSource, entry.held) };
      entry.perSource.set(source, fromSource);
    }
    fromSource.connections++;
    const mine = fromSource;
    // The socket's end, not the connection's: the slot stays taken until its descriptor is freed.
    socket.once('close', () => {
      entry.open--;
      if (--mine.connections === 0 && entry.perSource.get(source) === mine) entry.perSource.delete(source);
    });
    this.counters.accepted++;
    const flow = this.router.flowControls.create(entry.listener.flow);
    this.adopt(socket, peer, 'incoming', flow, entry.connOptions, mine.held).catch((e: unknown) => {
      this.log.warn({ peer, err: describeError(e) }, 'could not accept TCP connection');
      socket.destroy();
    });
  }

  private startSweeping(): void {
    if (this.sweeper !== undefined || this.all.size === 0) return;
    this.lastSweep = performance.now();
    this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
    this.sweeper.unref();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private sweep(): void {
    const now = performance.now();
    // A timer this late means our own event loop was blocked: what peers sent may be unread yet.
    const stalled = now - this.lastSweep > this.sweepMs + 1000;
    this.lastSweep = now;
    for (const c of this.all) c.checkStall(now, stalled);
  }

  private async closeListener(entry: ServerEntry): Promise<void> {
    if (!this.servers.delete(entry)) return;
    await new Promise<void>((resolve) => entry.server.close(() => resolve()));
    this.router.flowControls.remove(entry.listener.flow);
  }

  listenerList(): TcpListener[] {
    return [...this.servers].map((l) => l.listener);
  }

  connections(): TcpConnection[] {
    return [...this.all];
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    this.stopSweeping();
    const closing = [...this.servers].map((l) => this.closeListener(l));
    // Queued frames (the Close of every secure channel on the way down) still leave.
    await Promise.all([...[...this.all].map((c) => c.closeGracefully('transport shut down')), ...closing]);
  }
}
