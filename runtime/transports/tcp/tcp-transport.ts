import { EventEmitter } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { Address, type AddressLike, TransportType } from '../../routing/address.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import type { FlowId } from '../../routing/flow-control.js';
import type { Router } from '../../routing/router.js';
import type { Transport } from '../../routing/worker.js';
import { formatHostPort, parseHostPort } from '../host-port.js';
import { TcpConnection, type TcpConnectionOptions } from './tcp-connection.js';

export interface TcpTransportOptions {
  log?: Logger;
  maxFrameBytes?: number;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export interface ExposeOptions {
  /** Local workers that messages arriving here may reach. */
  expose?: AddressLike[];
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
  private readonly outgoing = new Map<string, Promise<TcpConnection>>();
  private readonly all = new Set<TcpConnection>();
  private readonly servers = new Set<ServerEntry>();
  private stopped = false;

  private constructor(
    private readonly router: Router,
    options: TcpTransportOptions,
  ) {
    super();
    this.log = (options.log ?? router.log ?? silentLogger).child({ transport: 'tcp' });
    this.connOptions = {
      maxFrameBytes: (options.maxFrameBytes ?? MAX_MESSAGE_BYTES) + 64 * 1024,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      highWater: 256,
      lowWater: 64,
    };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
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
      const s = createConnection({ host, port });
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
  ): Promise<TcpConnection> {
    const conn = new TcpConnection(this.router, socket, peer, direction, flow, this.connOptions, this.log);
    this.all.add(conn);
    conn.onClose((reason) => {
      this.all.delete(conn);
      this.emit('disconnect', { peer, direction, reason, sender: conn.sender });
    });
    await conn.start();
    this.log.info({ peer, direction, sender: conn.sender.toString() }, 'TCP connection open');
    this.emit('connect', conn);
    return conn;
  }

  /** Listens on `host:port` (port 0 = any free port). */
  async listen(
    bind: string,
    options: ExposeOptions & { maxConnections?: number } = {},
  ): Promise<TcpListener> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'TCP transport is stopped');
    const { host, port } = parseHostPort(bind, true);
    const flows = this.router.flowControls;
    const flow = flows.create();
    for (const a of options.expose ?? []) flows.addConsumer(flow, Address.from(a));
    const server = createServer((socket) => {
      const peer = formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
      this.adopt(socket, peer, 'incoming', flows.create(flow)).catch((e: unknown) => {
        this.log.warn({ peer, err: describeError(e) }, 'could not accept TCP connection');
        socket.destroy();
      });
    });
    if (options.maxConnections !== undefined) server.maxConnections = options.maxConnections;
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
    };
    this.servers.add(entry);
    this.log.info({ address: bound }, 'TCP listener started');
    return entry.listener;
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
    const closing = [...this.servers].map((l) => this.closeListener(l));
    // Queued frames (the Close of every secure channel on the way down) still leave.
    await Promise.all([...[...this.all].map((c) => c.closeGracefully('transport shut down')), ...closing]);
  }
}
