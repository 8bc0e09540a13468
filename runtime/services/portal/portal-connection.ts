import type { Socket } from 'node:net';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { type AccessControl, type AccessRequest, allowAll } from '../../routing/access-control.js';
import { Address } from '../../routing/address.js';
import type { Context } from '../../routing/context.js';
import { Message } from '../../routing/message.js';
import { Route } from '../../routing/route.js';
import type { Router } from '../../routing/router.js';
import type { Worker } from '../../routing/worker.js';
import {
  decodePortalMessage,
  describePortalMessage,
  encodeFlowMessage,
  encodePayload,
  encodePortalMessage,
  type FlowMessage,
  nextCounter,
  PING,
  PORTAL_DEFAULT_CHUNK,
  PORTAL_MAX_PAYLOAD,
  PORTAL_MAX_RECEIVED_PAYLOAD,
  PORTAL_MAX_WINDOW,
  PORTAL_MIN_WINDOW,
  type PortalMessage,
} from './portal-message.js';

/** Counters of an inlet or an outlet (all its portal connections together). */
export interface PortalStats {
  /** Portal connections open now (including those still in their handshake). */
  connections: number;
  /** Portal connections that completed their handshake since the portal started. */
  opened: number;
  /** Portal connections that failed before carrying data (no Pong, target refused, limit). */
  failed: number;
  /** Bytes read from local sockets and sent into the portal. */
  bytesSent: number;
  /** Bytes that came out of the portal and were written to local sockets. */
  bytesReceived: number;
  /** Portal connections that ran keyhop's per-stream flow control (the peer is keyhop too). */
  flowControlled: number;
  /** Portal connections closed because the peer broke flow control (PORTAL_FLOW_VIOLATION). */
  flowViolations: number;
  /** Portal connections closed because the channel or connection towards the peer closed. */
  closedWithTransport: number;
}

export function emptyStats(): PortalStats {
  return {
    connections: 0,
    opened: 0,
    failed: 0,
    bytesSent: 0,
    bytesReceived: 0,
    flowControlled: 0,
    flowViolations: 0,
    closedWithTransport: 0,
  };
}

/** Knobs shared by inlets and outlets; every one has a default. */
export interface PortalTuning {
  /**
   * Most socket bytes per Payload message: default 16 KiB, at most 48 KiB (Ockam's
   * MAX_PAYLOAD_SIZE). Smaller messages cost no measurable throughput and divide the memory a
   * stalled reader pins along the route (transports bound their queues in messages) by three.
   */
  maxPayload?: number;
  /** Most data bytes accepted in one received Payload (default 256 KiB). */
  maxReceivedPayload?: number;
  /**
   * Socket bytes sent into the portal that the next hop has not finished handling yet; beyond
   * this the socket stops being read until half of it was handled (default 256 KiB).
   */
  windowBytes?: number;
  /**
   * Without flow control (an Ockam peer): bytes buffered for a local socket beyond which the
   * portal worker waits for the socket to drain before it takes its next message (default 256 KiB).
   */
  writeBufferBytes?: number;
  /**
   * keyhop's per-stream flow control, used when the peer is keyhop too (default true): the peer
   * sends only what this side granted, so a reader that stalls stalls its own stream and no other.
   * With an Ockam peer, or false, portals work as Ockam's do.
   */
  flowControl?: boolean;
  /**
   * With flow control: bytes of the peer's data this side accepts before it has handed them to
   * its socket (the most a stalled reader pins here; default 1 MiB, at least 1 KiB).
   */
  receiveWindowBytes?: number;
  /**
   * After a half-close (our socket's read side ended, or the other side's Disconnect arrived):
   * how long the socket may stay half-open before it is destroyed (default 10 s).
   */
  closeTimeoutMs?: number;
  /**
   * Send packet counters (`01` + u16 LE after every Payload's data). Default false, as Rust HEAD:
   * counters the other side sends are checked either way.
   */
  packetCounter?: boolean;
  /** Extra incoming access control of every portal worker (e.g. an identity policy). */
  incoming?: AccessControl;
}

export interface ResolvedTuning {
  maxPayload: number;
  maxReceivedPayload: number;
  windowBytes: number;
  writeBufferBytes: number;
  flowControl: boolean;
  receiveWindowBytes: number;
  closeTimeoutMs: number;
  packetCounter: boolean;
  incoming: AccessControl;
}

export function resolveTuning(t: PortalTuning): ResolvedTuning {
  const maxPayload = Math.min(t.maxPayload ?? PORTAL_DEFAULT_CHUNK, PORTAL_MAX_PAYLOAD);
  if (!Number.isInteger(maxPayload) || maxPayload < 1) throw new RangeError('maxPayload must be ≥ 1');
  const receiveWindowBytes = t.receiveWindowBytes ?? 1024 * 1024;
  if (
    !Number.isInteger(receiveWindowBytes) ||
    receiveWindowBytes < PORTAL_MIN_WINDOW ||
    receiveWindowBytes > PORTAL_MAX_WINDOW
  ) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `receiveWindowBytes must be an integer in ${PORTAL_MIN_WINDOW}..${PORTAL_MAX_WINDOW}`,
    );
  }
  return {
    maxPayload,
    maxReceivedPayload: t.maxReceivedPayload ?? PORTAL_MAX_RECEIVED_PAYLOAD,
    windowBytes: Math.max(t.windowBytes ?? 256 * 1024, maxPayload),
    writeBufferBytes: t.writeBufferBytes ?? 256 * 1024,
    flowControl: t.flowControl ?? true,
    receiveWindowBytes,
    closeTimeoutMs: t.closeTimeoutMs ?? 10_000,
    packetCounter: t.packetCounter ?? false,
    incoming: t.incoming ?? allowAll,
  };
}

export type PortalKind = 'inlet' | 'outlet';
type State = 'handshake' | 'open' | 'closed';

/**
 * One portal connection: a worker at a random address that owns one local socket. The inlet's
 * starts in `handshake` (Ping sent, waiting for Pong); the outlet's starts once its target socket
 * is connected and the Pong is on its way. From then on socket reads become Payloads along
 * `route`, received Payloads are written to the socket, and each side sends one Disconnect when
 * its socket's read side ends.
 *
 * Back-pressure (docs/protocols/portal.md):
 * - socket -> portal: every Payload is handed to the router with a `done` callback that runs when
 *   the next hop has handled it; while more than `windowBytes` are unhandled the socket is paused.
 * - with a keyhop peer (flow control): the outlet offers it after its Pong, the inlet accepts, and
 *   from the turn each side marks (Accept, Start) a side sends only the bytes the other granted
 *   (its window, then Credit as its socket takes them); `handleMessage` never waits.
 * - with an Ockam peer: while more than `writeBufferBytes` wait in the socket, `handleMessage`
 *   does not return; the router then holds this worker's later messages, which holds back the
 *   transport connection they came from (and every other portal on it).
 */
export class PortalConnection implements Worker {
  readonly address = Address.random();
  readonly openedAt = Date.now();
  private state: State;
  private socket: Socket | undefined;
  /** Where our portal messages go: the Pong's return route (inlet) or the Ping's (outlet). */
  private route: Route | undefined;
  /** Only messages whose return route starts here are accepted (once known). */
  private peerHead: Address | undefined;
  private sentDisconnect = false;
  private receivedDisconnect = false;
  private inFlight = 0;
  private paused = false;
  private txCounter = 0;
  private lastRxCounter = 0xffff;
  private closeTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private finished = false;
  private failedCounted = false;
  private readonly finishListeners: (() => void)[] = [];
  // ---- flow control (both ends keyhop) ----
  /** The peer message this side waits for: Accept (outlet, after its Offer) or Start (inlet). */
  private awaiting: 'accept' | 'start' | undefined;
  /** Our data is under the peer's credit (from our Accept or Start on). */
  private txCredit = false;
  /** Bytes we may have sent under credit: the peer's window plus its Credits. */
  private txLimit = 0;
  private txSent = 0;
  private txGranted = 0;
  /** Socket bytes read but not sent for want of credit (the socket is paused meanwhile). */
  private pending: Buffer | undefined;
  private creditPaused = false;
  /** The Disconnect waits for `pending`: after the socket's read side ended, or the socket closed. */
  private disconnectAfterPending: 'end' | 'close' | undefined;
  /** The peer's data is under our credit (from its Accept or Start on). */
  private rxCredit = false;
  private rxReceived = 0;
  private rxConsumed = 0;
  private rxCredited = 0;
  /** Sizes of the socket writes made under credit, in order, until the socket has taken them. */
  private readonly unflushed: number[] = [];
  /** Access control for this worker's mailbox. */
  readonly incoming: AccessControl;
  /** Inlet: told when the route to the outlet looks broken (no Pong, or the Ping was not routed). */
  onRouteFailure: ((reason: string) => void) | undefined;

  constructor(
    private readonly router: Router,
    readonly kind: PortalKind,
    private readonly tuning: ResolvedTuning,
    private readonly stats: PortalStats,
    private readonly log: Logger,
    /** The outlet knows its peer from the Ping; the inlet learns it from the Pong. */
    peerRoute?: Route,
  ) {
    this.state = kind === 'inlet' ? 'handshake' : 'open';
    if (peerRoute !== undefined) {
      this.route = peerRoute;
      this.peerHead = peerRoute.next;
    }
    const extra = tuning.incoming;
    this.incoming = (request: AccessRequest) => {
      const head = this.peerHead;
      if (head !== undefined && !(request.message.returnRoute.next?.equals(head) ?? false)) return false;
      return extra(request);
    };
    stats.connections++;
  }

  /** Registers the worker. */
  async start(): Promise<void> {
    await this.router.startWorker(this.address, this, { incoming: this.incoming });
  }

  onFinish(listener: () => void): void {
    if (this.finished) listener();
    else this.finishListeners.push(listener);
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  describe(): Record<string, unknown> {
    return {
      kind: this.kind,
      worker: this.address.toString(),
      state: this.state,
      route: this.route?.toString() ?? null,
      socketPeer: this.socket ? `${this.socket.remoteAddress}:${this.socket.remotePort}` : null,
      inFlight: this.inFlight,
      paused: this.paused || this.creditPaused,
      flowControl: this.txCredit || this.rxCredit ? 'on' : this.awaiting === 'accept' ? 'offered' : 'off',
      /** Bytes we may still send under the peer's credit (null without flow control). */
      credit: this.txCredit ? this.txLimit - this.txSent : null,
      /** Socket bytes read and waiting for credit. */
      pending: this.pending?.length ?? 0,
      /** Bytes waiting in the local socket's user-space buffer (the receive side's memory). */
      buffered: this.socket?.writableLength ?? 0,
      openedAt: new Date(this.openedAt).toISOString(),
    };
  }

  // ---- inlet side -------------------------------------------------------------------------

  /** Inlet: adopt the accepted (paused) client socket and send Ping along `outletRoute`. */
  async ping(socket: Socket, outletRoute: Route, pongTimeoutMs: number): Promise<void> {
    this.socket = socket;
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    this.handshakeTimer = setTimeout(() => {
      this.log.warn(
        { worker: this.address.toString(), route: outletRoute.toString(), timeoutMs: pongTimeoutMs },
        'portal outlet did not answer Ping; closing the client connection',
      );
      this.countFailed();
      socket.destroy();
      this.onRouteFailure?.(`no Pong within ${pongTimeoutMs} ms`);
      // Listen a while longer: a late Pong is answered with Disconnect, so the outlet does not
      // keep a target connection open for nobody.
      this.handshakeTimer = setTimeout(() => this.finish(), pongTimeoutMs);
      this.handshakeTimer.unref();
    }, pongTimeoutMs);
    this.handshakeTimer.unref();
    try {
      await this.router.send(this.address, new Message(outletRoute, Route.of(this.address), encode(PING)));
    } catch (e) {
      this.log.warn(
        { worker: this.address.toString(), route: outletRoute.toString(), err: describeError(e) },
        'cannot send Ping to the portal outlet; closing the client connection',
      );
      this.fail();
      this.onRouteFailure?.(`Ping not routed: ${describeError(e)}`);
    }
  }

  // ---- outlet side ------------------------------------------------------------------------

  /** Outlet: the target socket is connected; answer Pong from this worker and start reading. */
  accept(socket: Socket): void {
    this.socket = socket;
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    this.stats.opened++;
    this.post(encode({ type: 'pong' }));
    if (this.tuning.flowControl) {
      // Right after the Pong and before any data: an Ockam inlet reads an empty Payload.
      this.awaiting = 'accept';
      this.postFlow({ type: 'offer', window: this.tuning.receiveWindowBytes });
    }
    this.startReading();
  }

  /** Outlet: the target could not be reached; tell the inlet, which closes its client socket. */
  async refuse(reason: string): Promise<void> {
    this.log.warn({ worker: this.address.toString(), reason }, 'portal outlet cannot reach its target');
    if (this.route !== undefined && !this.sentDisconnect) {
      this.sentDisconnect = true;
      await this.send(encode({ type: 'disconnect' })).catch((e: unknown) =>
        this.log.debug({ worker: this.address.toString(), err: describeError(e) }, 'cannot send Disconnect'),
      );
    }
    this.fail();
  }

  // ---- worker -----------------------------------------------------------------------------

  handleMessage(_ctx: Context, message: Message): Promise<void> | undefined {
    if (this.state === 'closed') return;
    // The message must end here: anything routed further is not for a portal worker.
    if (message.onward.length !== 1) {
      this.log.debug(
        { worker: this.address.toString() },
        'portal message with a longer onward route ignored',
      );
      return;
    }
    let m: PortalMessage;
    try {
      m = decodePortalMessage(message.payload, this.tuning.maxReceivedPayload);
    } catch (e) {
      this.log.warn({ worker: this.address.toString(), err: describeError(e) }, 'undecodable portal message');
      return;
    }
    if (this.state === 'handshake') {
      this.onHandshakeMessage(m, message);
      return;
    }
    switch (m.type) {
      case 'payload':
        if (m.counter !== undefined) {
          const expected = nextCounter(this.lastRxCounter);
          if (m.counter !== expected) {
            this.log.warn(
              { worker: this.address.toString(), counter: m.counter, expected },
              'portal packet counter mismatch (lost or reordered packet); disconnecting',
            );
            this.abortNow();
            return;
          }
          this.lastRxCounter = m.counter;
        }
        if (this.rxCredit) {
          this.receiveCredited(m.data);
          return;
        }
        return this.write(m.data);
      case 'disconnect':
        this.onRemoteDisconnect();
        return;
      case 'offer':
        this.onOffer(m.window);
        return;
      case 'accept':
        this.onAccept(m.window);
        return;
      case 'start':
        this.onStart();
        return;
      case 'credit':
        this.onCredit(m.bytes);
        return;
      default:
        this.log.debug(
          { worker: this.address.toString(), message: describePortalMessage(m) },
          'unexpected portal message ignored',
        );
    }
  }

  shutdown(): void {
    // The router stopped us (router shutdown, or finish()): the socket goes with the worker.
    this.state = 'closed';
    this.clearTimers();
    this.socket?.destroy();
    this.finish();
  }

  private onHandshakeMessage(m: PortalMessage, message: Message): void {
    if (m.type === 'pong') {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      this.route = message.returnRoute;
      this.peerHead = message.returnRoute.next;
      if (this.route.isEmpty) {
        this.log.warn({ worker: this.address.toString() }, 'Pong without a return route');
        this.fail();
        return;
      }
      this.state = 'open';
      const socket = this.socket;
      if (!socket || socket.destroyed) {
        // The client left (or we gave up) while we waited: release the outlet's connection.
        this.countFailed();
        this.sentDisconnect = true;
        this.post(encode({ type: 'disconnect' }));
        this.finish();
        return;
      }
      this.stats.opened++;
      this.log.debug({ worker: this.address.toString(), route: this.route.toString() }, 'portal open');
      this.startReading();
      socket.resume();
    } else if (m.type === 'disconnect') {
      this.log.warn(
        { worker: this.address.toString() },
        'portal outlet answered Disconnect (target unreachable?); closing the client connection',
      );
      this.receivedDisconnect = true;
      this.fail();
    } else {
      this.log.debug(
        { worker: this.address.toString(), message: describePortalMessage(m) },
        'unexpected portal message while waiting for Pong ignored',
      );
    }
  }

  // ---- flow control -----------------------------------------------------------------------

  /** Inlet: the outlet is keyhop. Our data after the Accept goes by its credit. */
  private onOffer(window: number): void {
    if (this.kind !== 'inlet' || this.awaiting !== undefined || this.txCredit) {
      this.violation('Offer out of turn');
      return;
    }
    if (!this.tuning.flowControl) return; // unanswered: the outlet goes on as with an Ockam inlet
    this.awaiting = 'start';
    this.postFlow({ type: 'accept', window: this.tuning.receiveWindowBytes });
    this.startCredit(window);
  }

  /** Outlet: the inlet's data after its Accept comes by our credit; ours after the Start by its. */
  private onAccept(window: number): void {
    if (this.kind !== 'outlet' || this.awaiting !== 'accept') {
      this.violation('Accept out of turn');
      return;
    }
    this.awaiting = undefined;
    this.rxCredit = true;
    this.postFlow({ type: 'start' });
    this.startCredit(window);
  }

  /** Inlet: the outlet's data after this comes by our credit. */
  private onStart(): void {
    if (this.kind !== 'inlet' || this.awaiting !== 'start') {
      this.violation('Start out of turn');
      return;
    }
    this.awaiting = undefined;
    this.rxCredit = true;
  }

  private startCredit(window: number): void {
    this.txCredit = true;
    this.txLimit = window;
    this.stats.flowControlled++;
  }

  private onCredit(bytes: number): void {
    if (!this.txCredit) {
      this.violation('Credit before flow control started');
      return;
    }
    this.txGranted += bytes;
    // An honest peer credits only bytes it received.
    if (this.txGranted > this.txSent) {
      this.violation(`credit for ${this.txGranted} bytes, ${this.txSent} sent`);
      return;
    }
    this.txLimit += bytes;
    const closing = this.disconnectAfterPending !== undefined;
    this.sendPending();
    // Progress: a socket closed (or half-closed) behind bytes that wait for credit gets its time again.
    if (closing) this.closeTimer?.refresh();
  }

  private receiveCredited(data: Uint8Array): void {
    const n = data.length;
    const allowed = this.tuning.receiveWindowBytes + this.rxCredited;
    if (this.rxReceived + n > allowed) {
      this.violation(`${this.rxReceived + n - allowed} bytes beyond the credit granted`);
      return;
    }
    this.rxReceived += n;
    const socket = this.socket;
    if (n === 0 || !socket || socket.destroyed || socket.writableEnded) return;
    this.stats.bytesReceived += n;
    this.unflushed.push(n);
    socket.write(data, this.onFlushed);
  }

  /** A write made under credit left the socket's buffer: credit the peer, half a window at a time. */
  private readonly onFlushed = (e?: Error | null): void => {
    const n = this.unflushed.shift() ?? 0;
    // After the peer's Disconnect no data comes that credit would be for.
    if (e || this.finished || this.receivedDisconnect) return;
    this.rxConsumed += n;
    const owed = this.rxConsumed - this.rxCredited;
    if (owed >= this.tuning.receiveWindowBytes / 2) {
      this.rxCredited += owed;
      this.postFlow({ type: 'credit', bytes: owed });
    }
  };

  private violation(detail: string): void {
    const e = new KeyhopError(ErrorCodes.PORTAL_FLOW_VIOLATION, `portal flow control: ${detail}`);
    this.stats.flowViolations++;
    this.log.warn(
      { worker: this.address.toString(), code: e.code, err: e.message },
      'portal peer broke flow control; closing the connection',
    );
    void this.abort(e.message);
  }

  // ---- socket -> portal -------------------------------------------------------------------

  private startReading(): void {
    const socket = this.socket!;
    socket.on('data', this.onData);
    socket.on('end', this.onReadEnd);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.state !== 'open' || this.sentDisconnect) return;
    if (!this.txCredit) {
      const max = this.tuning.maxPayload;
      for (let off = 0; off < chunk.length; off += max) {
        this.sendPiece(chunk.subarray(off, Math.min(off + max, chunk.length)));
      }
    } else if (this.pending !== undefined) {
      // Read after the pause took effect: keep it behind what waits already.
      this.pending = Buffer.concat([this.pending, chunk]);
    } else {
      const sent = this.sendWithinCredit(chunk);
      if (sent < chunk.length) {
        this.pending = chunk.subarray(sent);
        this.creditPaused = true;
        this.socket?.pause();
      }
    }
    if (!this.paused && this.inFlight >= this.tuning.windowBytes) {
      this.paused = true;
      this.socket?.pause();
    }
  };

  /** Sends as much of `data` as the peer's credit allows; returns how many bytes went. */
  private sendWithinCredit(data: Buffer): number {
    const max = this.tuning.maxPayload;
    let off = 0;
    while (off < data.length) {
      const room = this.txLimit - this.txSent;
      if (room <= 0) break;
      const n = Math.min(max, room, data.length - off);
      this.sendPiece(data.subarray(off, off + n));
      this.txSent += n;
      off += n;
    }
    return off;
  }

  private sendPiece(piece: Buffer): void {
    let counter: number | undefined;
    if (this.tuning.packetCounter) {
      counter = this.txCounter;
      this.txCounter = nextCounter(this.txCounter);
    }
    const payload = encodePayload(
      piece,
      counter,
      { counterField: this.tuning.packetCounter },
      this.tuning.maxPayload,
    );
    const n = piece.length;
    this.inFlight += n;
    this.stats.bytesSent += n;
    this.post(payload, () => this.handled(n));
  }

  /** Credit came: send what waits for it, then the deferred Disconnect, or read on. */
  private sendPending(): void {
    const pending = this.pending;
    if (pending === undefined || this.state !== 'open' || this.sentDisconnect) return;
    const sent = this.sendWithinCredit(pending);
    if (sent < pending.length) {
      this.pending = pending.subarray(sent);
      return;
    }
    this.pending = undefined;
    this.creditPaused = false;
    const after = this.disconnectAfterPending;
    if (after !== undefined) {
      this.disconnectAfterPending = undefined;
      this.sentDisconnect = true;
      this.post(encode({ type: 'disconnect' }));
      if (after === 'close') this.finish();
      return;
    }
    if (this.inFlight >= this.tuning.windowBytes) this.paused = true;
    this.resumeReading();
  }

  private handled(n: number): void {
    this.inFlight -= n;
    if (this.paused && this.inFlight <= this.tuning.windowBytes / 2) {
      this.paused = false;
      this.resumeReading();
    }
  }

  private resumeReading(): void {
    if (this.paused || this.creditPaused || this.state !== 'open') return;
    if (this.socket && !this.socket.destroyed) this.socket.resume();
  }

  private readonly onReadEnd = (): void => {
    // Our local peer will send nothing more: tell the other side (after everything it sent).
    if (!this.sentDisconnect && this.state === 'open') {
      if (this.pending !== undefined) this.disconnectAfterPending ??= 'end';
      else {
        this.sentDisconnect = true;
        this.post(encode({ type: 'disconnect' }));
      }
    }
    // Half-open now: we may still write what the other side sends until its Disconnect.
    if (!this.receivedDisconnect) this.armCloseTimer();
  };

  private readonly onSocketError = (e: Error): void => {
    this.log.debug({ worker: this.address.toString(), err: e.message }, 'portal socket error');
  };

  private readonly onSocketClose = (): void => {
    if (this.state === 'handshake') {
      // No route yet: a Pong (until the handshake timer ends) is answered with Disconnect.
      return;
    }
    this.clearTimers();
    if (this.state === 'open' && !this.sentDisconnect && this.route !== undefined) {
      if (this.pending !== undefined) {
        // What was read still goes, as credit allows; the worker stays until then (or the timer).
        this.disconnectAfterPending = 'close';
        this.armCloseTimer();
        return;
      }
      this.sentDisconnect = true;
      this.post(encode({ type: 'disconnect' }));
    }
    this.finish();
  };

  // ---- portal -> socket -------------------------------------------------------------------

  /** Without flow control: write, and hold this worker while the socket holds too much. */
  private async write(data: Uint8Array): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.destroyed || socket.writableEnded || data.length === 0) return;
    this.stats.bytesReceived += data.length;
    socket.write(data);
    if (socket.writableLength > this.tuning.writeBufferBytes) await drained(socket);
  }

  private onRemoteDisconnect(): void {
    if (this.receivedDisconnect) return;
    this.receivedDisconnect = true;
    const socket = this.socket;
    if (!socket || socket.destroyed) {
      if (this.disconnectAfterPending === undefined) this.finish();
      return;
    }
    // Flush what we have, then FIN; destroy if the local peer does not close in time.
    socket.end();
    this.armCloseTimer();
  }

  /** The first hop towards the peer (a channel's encryptor, a connection's sender), once known. */
  get peerHop(): Address | undefined {
    return this.route?.next;
  }

  // ---- closing ----------------------------------------------------------------------------

  /** Sends Disconnect (if the portal is open and we have not yet), destroys the socket, stops. */
  async abort(reason: string): Promise<void> {
    if (this.finished) return;
    this.log.debug({ worker: this.address.toString(), reason }, 'portal connection aborted');
    this.pending = undefined;
    this.disconnectAfterPending = undefined;
    if (this.state === 'open' && !this.sentDisconnect && this.route !== undefined) {
      this.sentDisconnect = true;
      await this.send(encode({ type: 'disconnect' })).catch(() => undefined);
    }
    this.state = 'closed';
    this.socket?.destroy();
    this.finish();
  }

  private abortNow(): void {
    void this.abort('protocol error');
  }

  private countFailed(): void {
    if (!this.failedCounted) {
      this.failedCounted = true;
      this.stats.failed++;
    }
  }

  /** A connection that never carried data. */
  private fail(): void {
    this.countFailed();
    this.state = 'closed';
    this.socket?.destroy();
    this.finish();
  }

  private armCloseTimer(): void {
    if (this.closeTimer !== undefined) return;
    this.closeTimer = setTimeout(() => {
      this.log.debug(
        { worker: this.address.toString(), pending: this.pending?.length ?? 0 },
        'portal half-close timed out; destroying the socket',
      );
      this.socket?.destroy();
      if (this.pending !== undefined) {
        // No credit came for what waits: give it up, but let the other side close too.
        this.pending = undefined;
        this.disconnectAfterPending = undefined;
        if (this.state === 'open' && !this.sentDisconnect && this.route !== undefined) {
          this.sentDisconnect = true;
          this.post(encode({ type: 'disconnect' }));
        }
      }
      this.finish();
    }, this.tuning.closeTimeoutMs);
    this.closeTimer.unref();
  }

  private clearTimers(): void {
    clearTimeout(this.closeTimer);
    clearTimeout(this.handshakeTimer);
    this.closeTimer = undefined;
    this.handshakeTimer = undefined;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.state = 'closed';
    this.pending = undefined;
    this.clearTimers();
    this.stats.connections--;
    void this.router.stopWorker(this.address);
    for (const l of this.finishListeners.splice(0)) l();
  }

  // ---- sending ----------------------------------------------------------------------------

  private send(payload: Uint8Array, done?: () => void): Promise<void> {
    return this.router.send(this.address, new Message(this.route!, Route.of(this.address), payload), done);
  }

  /**
   * Flow-control messages may follow a Disconnect (credit for data still coming) and so reach a
   * peer that just finished: a failure ends nothing (a Payload that cannot go does).
   */
  private postFlow(m: FlowMessage): void {
    this.send(encodeFlowMessage(m)).catch((e: unknown) =>
      this.log.debug(
        { worker: this.address.toString(), message: describePortalMessage(m), err: describeError(e) },
        'flow-control message not routed',
      ),
    );
  }

  /** Fire-and-forget send; an unreachable peer ends the portal connection. */
  private post(payload: Uint8Array, done?: () => void): void {
    this.send(payload, done).catch((e: unknown) => {
      if (this.finished) return;
      this.log.warn(
        {
          worker: this.address.toString(),
          code: isKeyhopError(e) ? e.code : undefined,
          err: describeError(e),
        },
        'portal peer unreachable; closing the connection',
      );
      this.state = 'closed';
      this.socket?.destroy();
      this.finish();
    });
  }
}

function encode(m: PortalMessage): Uint8Array {
  return encodePortalMessage(m);
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
