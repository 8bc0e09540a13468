import { randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket, type SocketType } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { denyAll, flowControlled } from '../../routing/access-control.js';
import { Address, type AddressLike, TransportType } from '../../routing/address.js';
import { decodeCborFrame, encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import type { FlowId } from '../../routing/flow-control.js';
import type { Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import type { Transport } from '../../routing/worker.js';
import { formatHostPort, type HostPort, parseHostPort } from '../host-port.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transport-info.js';
import { Reassembler, type ReassemblyDropReason, type ReassemblyLimits } from './reassembly.js';
import { nextRoutingNumber, segment } from './segmentation.js';

/** Datagrams sent back to back before the sender yields to the event loop. */
const YIELD_EVERY = 16;

export interface UdpTransportOptions extends ReassemblyLimits {
  /** `host:port` to bind the one socket to; port 0 picks a free port. */
  bind: string;
  /** Local workers that messages arriving on this socket may reach (from any peer). */
  expose?: AddressLike[];
  log?: Logger;
  /**
   * Received messages still being handled by local workers, across all peers, beyond which new
   * ones are dropped (`overloaded`): UDP has no way to slow a sender down. Default 1024. Counts
   * messages from proven peers only.
   */
  maxInFlight?: number;
  /**
   * The same for messages from unproven peers, in a budget of their own (`unproven_overloaded`).
   * Default maxInFlight / 4.
   */
  maxUnprovenInFlight?: number;
  /** SO_RCVBUF / SO_SNDBUF to ask for (the kernel may cap them). */
  recvBufferSize?: number;
  sendBufferSize?: number;
}

/** Why a received datagram or message was dropped, or an outgoing one failed. */
export type UdpDropReason =
  | ReassemblyDropReason
  /** The reassembled bytes are not a CBOR routing message. */
  | 'undecodable'
  /** An empty onward route (nothing to deliver to). */
  | 'empty_onward'
  /** From a new peer, to an address not exposed on this socket: no peer state is created. */
  | 'not_exposed'
  /** maxInFlight messages were already being handled. */
  | 'overloaded'
  /** From an unproven peer, and maxUnprovenInFlight messages of unproven peers were being handled. */
  | 'unproven_overloaded'
  /** The socket refused a datagram. */
  | 'send_failed';

type OwnDropReason = Exclude<UdpDropReason, ReassemblyDropReason>;

export interface UdpTransportStats {
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  /** Peers with sender/receiver workers: provenPeers + unprovenPeers. */
  peers: number;
  provenPeers: number;
  /** Peers created by an incoming datagram and not proven reachable (yet). */
  unprovenPeers: number;
  /** Partial messages being reassembled, and the bytes they hold (of which unproven sources'). */
  pendingMessages: number;
  bufferedBytes: number;
  unprovenBufferedBytes: number;
  /** Received messages being handled by local workers, from proven and from unproven peers. */
  inFlight: number;
  unprovenInFlight: number;
  drops: Record<UdpDropReason, number>;
}

export interface UdpPeerInfo {
  peer: string;
  sender: string;
  flow: FlowId;
  proven: boolean;
}

interface Settings {
  log: Logger;
  reassembler: Reassembler;
  maxInFlight: number;
  maxUnprovenInFlight: number;
  expose: Address[];
}

interface UdpPeer {
  /** Canonical `host:port` of the remote socket (numeric host). */
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly sender: Address;
  readonly receiver: Address;
  readonly flow: FlowId;
  routingNumber: number;
  ready: Promise<void>;
  closed: boolean;
  /** This node chose to talk to it (resolve), or a layer above called TransportInfo.reachable. */
  proven: boolean;
}

/**
 * UDP as Ockam speaks it (ockam.md §2.1): one bound socket; each routing message is CBOR-encoded
 * like a TCP frame body, cut into ≤ 493-byte pieces and sent as ≤ 508-byte datagrams (see
 * segmentation.ts), reassembled in order on the other side (reassembly.ts). No retransmission:
 * a lost datagram loses its message.
 *
 * `2#host:port` resolves to the local address of a per-peer sender worker (created on first use
 * and reused). Messages from a peer are routed by that peer's receiver mailbox, only to consumers
 * of the peer's flow, whose parent is the socket's flow (what `expose` grants).
 *
 * Source addresses can be forged, so a peer created by an incoming datagram is unproven: it draws
 * on budgets of its own (maxUnprovenPeers, maxUnprovenBufferedBytes, maxUnprovenInFlight) and
 * never evicts a proven peer nor takes its bytes or in-flight slots. It is proven once a layer
 * above calls the `reachable` of the TransportInfo its messages carry; a peer this node resolved
 * itself is proven from the start.
 */
export class UdpTransport implements Transport {
  readonly type = TransportType.UDP;
  readonly name = 'udp';
  /** The bound `host:port`, with the real port when 0 was asked for. */
  readonly address: string;
  /** Flow of the socket: its consumers may receive messages from every peer. */
  readonly flow: FlowId;
  private readonly log: Logger;
  private readonly reassembler: Reassembler;
  private readonly maxMessageBytes: number;
  private readonly maxPeers: number;
  private readonly maxUnprovenPeers: number;
  private readonly maxInFlight: number;
  private readonly maxUnprovenInFlight: number;
  /** Least recently used first, each. */
  private readonly proven = new Map<string, UdpPeer>();
  private readonly unproven = new Map<string, UdpPeer>();
  /** `host:port` as written in addresses → numeric host and port (one DNS lookup per name). */
  private readonly resolved = new Map<string, Promise<HostPort>>();
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly counters = {
    datagramsIn: 0,
    datagramsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    messagesIn: 0,
    messagesOut: 0,
  };
  private readonly ownDrops: Record<OwnDropReason, number> = {
    undecodable: 0,
    empty_onward: 0,
    not_exposed: 0,
    overloaded: 0,
    unproven_overloaded: 0,
    send_failed: 0,
  };
  private inFlight = 0;
  private unprovenInFlight = 0;
  private stopped = false;

  private constructor(
    private readonly router: Router,
    private readonly socket: Socket,
    private readonly socketType: SocketType,
    address: string,
    settings: Settings,
  ) {
    this.address = address;
    this.log = settings.log;
    this.reassembler = settings.reassembler;
    const limits = settings.reassembler.limits;
    this.maxMessageBytes = limits.maxMessageBytes;
    this.maxPeers = limits.maxPeers;
    this.maxUnprovenPeers = limits.maxUnprovenPeers;
    this.maxInFlight = settings.maxInFlight;
    this.maxUnprovenInFlight = settings.maxUnprovenInFlight;
    const flows = router.flowControls;
    this.flow = flows.create();
    for (const a of settings.expose) flows.addConsumer(this.flow, Address.from(a));
    socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    socket.on('error', (e) => this.log.warn({ err: e.message }, 'UDP socket error'));
    const sweepMs = Math.max(100, Math.min(limits.timeoutMs, 5_000));
    this.sweepTimer = setInterval(() => this.reassembler.sweep(), sweepMs);
    this.sweepTimer.unref();
  }

  /** Binds the socket and registers the transport with the router for `2#…` addresses. */
  static async create(router: Router, options: UdpTransportOptions): Promise<UdpTransport> {
    const { host, port } = parseHostPort(options.bind, true);
    // Everything that can be refused is checked before the socket exists.
    const log = (options.log ?? router.log ?? silentLogger).child({ transport: 'udp' });
    const reassembler = new Reassembler({
      ...definedOnly(options),
      onDrop: (reason, peer, detail) => log.debug({ peer, reason, detail }, 'UDP datagram dropped'),
    });
    const maxInFlight = options.maxInFlight ?? 1024;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `UDP: maxInFlight must be >= 1, got ${maxInFlight}`);
    }
    const maxUnprovenInFlight = options.maxUnprovenInFlight ?? Math.max(1, Math.floor(maxInFlight / 4));
    if (!Number.isInteger(maxUnprovenInFlight) || maxUnprovenInFlight < 1) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `UDP: maxUnprovenInFlight must be a whole number >= 1, got ${maxUnprovenInFlight}`,
      );
    }
    for (const k of ['recvBufferSize', 'sendBufferSize'] as const) {
      const v = options[k];
      if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1)) {
        throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `UDP: ${k} must be a positive integer, got ${v}`);
      }
    }
    const expose = (options.expose ?? []).map((a) => Address.from(a));
    if (router.transport(TransportType.UDP)) {
      throw new KeyhopError(
        ErrorCodes.ADDRESS_IN_USE,
        `a transport for type ${TransportType.UDP} is registered`,
      );
    }
    let bindHost = host;
    let type: SocketType;
    const family = isIP(host);
    if (family !== 0) {
      type = family === 6 ? 'udp6' : 'udp4';
    } else {
      try {
        const r = await lookup(host);
        bindHost = r.address;
        type = r.family === 6 ? 'udp6' : 'udp4';
      } catch (e) {
        throw new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot resolve ${host}: ${describeError(e)}`, {
          cause: e,
        });
      }
    }
    const socket = createSocket({
      type,
      ...(options.recvBufferSize === undefined ? {} : { recvBufferSize: options.recvBufferSize }),
      ...(options.sendBufferSize === undefined ? {} : { sendBufferSize: options.sendBufferSize }),
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        socket.close();
        reject(
          new KeyhopError(ErrorCodes.LISTEN_FAILED, `cannot bind UDP to ${options.bind}: ${e.message}`, {
            cause: e,
          }),
        );
      };
      socket.once('error', onError);
      socket.bind(port, bindHost, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    const a = socket.address();
    const t = new UdpTransport(router, socket, type, formatHostPort(a.address, a.port), {
      log,
      reassembler,
      maxInFlight,
      maxUnprovenInFlight,
      expose,
    });
    try {
      router.registerTransport(t);
    } catch (e) {
      await t.shutdown();
      throw e;
    }
    t.log.info({ address: t.address }, 'UDP transport bound');
    return t;
  }

  /** Lets messages from every peer of this socket reach `address`. */
  expose(address: AddressLike): void {
    this.router.flowControls.addConsumer(this.flow, Address.from(address));
  }

  async resolve(address: Address): Promise<Address> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'UDP transport is stopped');
    if (address.type !== TransportType.UDP) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `${address} is not a UDP address`);
    }
    const { host, port } = await this.lookupPeer(address.text);
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'UDP transport is stopped');
    // This node chose to talk to it: proven.
    const peer = this.peerFor(host, port, true);
    await peer.ready;
    return peer.sender;
  }

  private lookupPeer(text: string): Promise<HostPort> {
    const cached = this.resolved.get(text);
    if (cached) return cached;
    const p = this.lookupUncached(text);
    if (this.resolved.size >= this.maxPeers) {
      const oldest = this.resolved.keys().next();
      if (!oldest.done) this.resolved.delete(oldest.value);
    }
    this.resolved.set(text, p);
    p.catch(() => this.resolved.get(text) === p && this.resolved.delete(text));
    return p;
  }

  private async lookupUncached(text: string): Promise<HostPort> {
    const { host, port } = parseHostPort(text);
    let ip = host;
    let family = isIP(host);
    if (family === 0) {
      try {
        const r = await lookup(host, { family: this.socketType === 'udp4' ? 4 : 0 });
        ip = r.address;
        family = r.family;
      } catch (e) {
        throw new KeyhopError(ErrorCodes.CONNECT_FAILED, `cannot resolve ${host}: ${describeError(e)}`, {
          cause: e,
        });
      }
    }
    if (this.socketType === 'udp4' && family === 6) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `${text}: IPv6 peer, but the socket is IPv4`);
    }
    if (this.socketType === 'udp6' && family === 4) ip = `::ffff:${ip}`;
    return { host: ip, port };
  }

  /** The peer at numeric `host:port`, created (with its workers) if needed; promoted if `proven`. */
  private peerFor(host: string, port: number, proven: boolean): UdpPeer {
    const key = formatHostPort(host, port);
    const existing = this.proven.get(key) ?? this.unproven.get(key);
    if (existing) {
      if (proven) this.promote(existing);
      else this.touch(existing);
      return existing;
    }
    if (proven) this.makeRoom(this.proven, this.maxPeers, 'maxPeers');
    else this.makeRoom(this.unproven, this.maxUnprovenPeers, 'maxUnprovenPeers');
    const flows = this.router.flowControls;
    const peer: UdpPeer = {
      key,
      host,
      port,
      sender: Address.random('udp_sender_'),
      receiver: Address.random('udp_receiver_'),
      flow: flows.create(this.flow),
      routingNumber: randomInt(0, 0x10000),
      ready: Promise.resolve(),
      closed: false,
      proven,
    };
    peer.ready = this.startPeer(peer);
    peer.ready.catch((e: unknown) => {
      this.log.warn({ peer: key, err: describeError(e) }, 'could not start UDP peer workers');
      void this.closePeer(peer);
    });
    (proven ? this.proven : this.unproven).set(key, peer);
    return peer;
  }

  /** Forgets least recently used peers of `set` until one more fits. */
  private makeRoom(set: Map<string, UdpPeer>, max: number, limit: string): void {
    while (set.size >= max) {
      const oldest = set.values().next();
      if (oldest.done) break;
      this.log.debug({ peer: oldest.value.key }, `UDP peer forgotten (${limit})`);
      void this.closePeer(oldest.value); // removes it from `set` at once
    }
  }

  /** Moves an unproven peer to the proven ones (which may forget the least recently used of those). */
  private promote(peer: UdpPeer): void {
    if (peer.closed) return;
    if (peer.proven) {
      this.touch(peer);
      return;
    }
    this.unproven.delete(peer.key);
    this.makeRoom(this.proven, this.maxPeers, 'maxPeers');
    peer.proven = true;
    this.proven.set(peer.key, peer);
    this.log.debug({ peer: peer.key }, 'UDP peer proven');
  }

  private async startPeer(peer: UdpPeer): Promise<void> {
    const router = this.router;
    await router.startWorker(peer.sender, {
      handleMessage: (_ctx, m) => this.sendMessage(peer, m),
      shutdown: () => void this.closePeer(peer),
    });
    await router.startWorker(
      peer.receiver,
      { handleMessage: () => undefined },
      { incoming: denyAll, outgoing: flowControlled(router.flowControls, peer.flow) },
    );
  }

  private touch(peer: UdpPeer): void {
    const set = peer.proven ? this.proven : this.unproven;
    if (set.get(peer.key) !== peer) return;
    set.delete(peer.key);
    set.set(peer.key, peer);
  }

  private async closePeer(peer: UdpPeer): Promise<void> {
    if (peer.closed) return;
    peer.closed = true;
    const set = peer.proven ? this.proven : this.unproven;
    if (set.get(peer.key) === peer) set.delete(peer.key);
    this.router.flowControls.remove(peer.flow);
    await this.router.stopWorker(peer.sender);
    await this.router.stopWorker(peer.receiver);
  }

  /** The sender worker: pops itself, encodes, segments and sends. */
  private async sendMessage(peer: UdpPeer, message: Message): Promise<void> {
    if (this.stopped || peer.closed) {
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `UDP sender for ${peer.key} is stopped`);
    }
    // Whoever sends through this peer may receive the answers that come back from it.
    const replyTo = message.returnRoute.next;
    if (replyTo?.isLocal && this.router.isRegistered(replyTo)) {
      this.router.flowControls.addConsumer(peer.flow, replyTo);
    }
    const bytes = encodeCborFrame(message.withOnward(message.onward.step()));
    if (bytes.length > this.maxMessageBytes) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `UDP routing message of ${bytes.length} bytes exceeds ${this.maxMessageBytes}`,
      );
    }
    const rn = peer.routingNumber;
    peer.routingNumber = nextRoutingNumber(rn);
    this.touch(peer);
    const datagrams = segment(bytes, rn);
    for (let i = 0; i < datagrams.length; i++) {
      // A datagram the kernel accepts at once completes without a trip through the event loop;
      // yield now and then so this process's own sockets (and timers) get to run.
      if (i > 0 && i % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
      await this.sendDatagram(peer, datagrams[i]!);
    }
    this.counters.messagesOut++;
  }

  private sendDatagram(peer: UdpPeer, datagram: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      const failed = (e: unknown) => {
        this.ownDrops.send_failed++;
        this.log.debug({ peer: peer.key, err: describeError(e) }, 'UDP send failed');
        reject(
          new KeyhopError(
            ErrorCodes.SEND_FAILED,
            `cannot send to UDP peer ${peer.key}: ${describeError(e)}`,
            {
              cause: e,
            },
          ),
        );
      };
      try {
        this.socket.send(datagram, peer.port, peer.host, (e) => {
          if (e) return failed(e);
          this.counters.datagramsOut++;
          this.counters.bytesOut += datagram.length;
          resolve();
        });
      } catch (e) {
        failed(e); // socket closed under us
      }
    });
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.stopped) return;
    this.counters.datagramsIn++;
    this.counters.bytesIn += msg.length;
    const key = formatHostPort(rinfo.address, rinfo.port);
    try {
      const bytes = this.reassembler.pushBytes(key, msg, this.proven.has(key));
      if (bytes !== undefined) this.onMessage(key, rinfo, bytes);
    } catch (e) {
      // Nothing above throws by design; never let a datagram take the node down.
      this.log.warn({ peer: key, err: describeError(e) }, 'UDP datagram handling failed');
    }
  }

  private onMessage(key: string, rinfo: RemoteInfo, bytes: Uint8Array): void {
    let message: Message;
    try {
      message = decodeCborFrame(bytes, 'UDP routing message');
    } catch (e) {
      this.drop('undecodable', key, describeError(e));
      return;
    }
    const next = message.onward.next;
    if (next === undefined) {
      this.drop('empty_onward', key, 'empty onward route');
      return;
    }
    let peer = this.proven.get(key) ?? this.unproven.get(key);
    // A new peer may only reach what is exposed on the socket: check before creating any state.
    if (peer === undefined && (!next.isLocal || !this.router.flowControls.isConsumer(next, this.flow))) {
      this.drop('not_exposed', key, `${next} is not exposed on ${this.address}`);
      return;
    }
    const proven = peer?.proven === true;
    if (proven && this.inFlight >= this.maxInFlight) {
      this.drop('overloaded', key, `${this.inFlight} messages in flight`);
      return;
    }
    if (!proven && this.unprovenInFlight >= this.maxUnprovenInFlight) {
      this.drop('unproven_overloaded', key, `${this.unprovenInFlight} messages of unproven peers in flight`);
      return;
    }
    if (peer === undefined) peer = this.peerFor(rinfo.address, rinfo.port, false);
    else this.touch(peer);
    let routed: Message;
    try {
      const info: TransportInfo = {
        transport: 'udp',
        peer: key,
        sender: peer.sender.toString(),
        reachable: () => this.reachable(key),
      };
      routed = message
        .withReturn(message.returnRoute.prepend(peer.sender))
        .withLocalInfo({ type: TRANSPORT_INFO, data: info });
    } catch (e) {
      this.drop('undecodable', key, describeError(e));
      return;
    }
    this.counters.messagesIn++;
    if (proven) this.inFlight++;
    else this.unprovenInFlight++;
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      if (proven) this.inFlight--;
      else this.unprovenInFlight--;
    };
    const from = peer;
    from.ready
      .then(() => {
        // A stopped receiver mailbox would route without its outgoing access control.
        if (from.closed) throw new KeyhopError(ErrorCodes.WORKER_STOPPED, `UDP peer ${key} was closed`);
        return this.router.send(from.receiver, routed, done);
      })
      .catch((e: unknown) => {
        done();
        this.log.debug({ peer: key, err: describeError(e) }, 'message from UDP peer not delivered');
      });
  }

  /** TransportInfo.reachable: the source `key` receives what is sent to it. */
  private reachable(key: string): void {
    const peer = this.unproven.get(key) ?? this.proven.get(key);
    if (peer !== undefined && !this.stopped) this.promote(peer);
  }

  private drop(reason: OwnDropReason, peer: string, detail: string): void {
    this.ownDrops[reason]++;
    this.log.debug({ peer, reason, detail }, 'UDP message dropped');
  }

  stats(): UdpTransportStats {
    return {
      ...this.counters,
      peers: this.proven.size + this.unproven.size,
      provenPeers: this.proven.size,
      unprovenPeers: this.unproven.size,
      pendingMessages: this.reassembler.pending,
      bufferedBytes: this.reassembler.bufferedBytes,
      unprovenBufferedBytes: this.reassembler.unprovenBufferedBytes,
      inFlight: this.inFlight,
      unprovenInFlight: this.unprovenInFlight,
      drops: { ...this.reassembler.drops, ...this.ownDrops },
    };
  }

  peerList(): UdpPeerInfo[] {
    return [...this.proven.values(), ...this.unproven.values()].map((p) => ({
      peer: p.key,
      sender: p.sender.toString(),
      flow: p.flow,
      proven: p.proven,
    }));
  }

  /** Closes the socket, stops every peer's workers and forgets all state. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweepTimer);
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    });
    await Promise.all([...this.proven.values(), ...this.unproven.values()].map((p) => this.closePeer(p)));
    this.router.flowControls.remove(this.flow);
    this.reassembler.clear();
    this.resolved.clear();
    this.log.info({ address: this.address }, 'UDP transport stopped');
  }
}

function definedOnly(options: ReassemblyLimits): ReassemblyLimits {
  const out: ReassemblyLimits = {};
  if (options.maxMessageBytes !== undefined) out.maxMessageBytes = options.maxMessageBytes;
  if (options.maxPeers !== undefined) out.maxPeers = options.maxPeers;
  if (options.maxBufferedBytes !== undefined) out.maxBufferedBytes = options.maxBufferedBytes;
  if (options.timeoutMs !== undefined) out.timeoutMs = options.timeoutMs;
  if (options.maxUnprovenPeers !== undefined) out.maxUnprovenPeers = options.maxUnprovenPeers;
  if (options.maxUnprovenBufferedBytes !== undefined) {
    out.maxUnprovenBufferedBytes = options.maxUnprovenBufferedBytes;
  }
  return out;
}
