import type { Socket } from 'node:net';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { flowControlled } from '../../routing/access-control.js';
import { Address } from '../../routing/address.js';
import { decodeCborFrame, encodeStreamFrame } from '../../routing/codec/cbor-frame.js';
import type { FlowId } from '../../routing/flow-control.js';
import { type LocalInfo, Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import { formatHostPort } from '../host-port.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transport-info.js';
import { FrameReader, TCP_PROTOCOL_VERSION } from './frame-reader.js';
import type { HeldBytes } from './held-bytes.js';
import { type StallLimits, StallWatch } from './stall-watch.js';

export interface TcpConnectionOptions extends StallLimits {
  maxFrameBytes: number;
  handshakeTimeoutMs: number;
  /** Pause reading while this many received messages are still being handled… */
  highWater: number;
  /** …and resume once no more than this many are. */
  lowWater: number;
  /** Pause reading while received messages still being handled hold this many bytes… */
  highWaterBytes: number;
  /** …and resume once they hold no more than this. */
  lowWaterBytes: number;
}

/** Unsent bytes a connection buffers before its sender waits for the socket to drain. */
const WRITE_BUFFER_LIMIT = 1024 * 1024;
/** Bytes of small frames held back (within one tick) to leave in one system call. */
const COALESCE_LIMIT = 64 * 1024;
/** Bytes one connection may read per turn of the event loop before it lets the others go. */
const TURN_BYTES = 64 * 1024;
/** Payloads below this are copied into their frame's buffer; larger ones are written as they are. */
const INLINE_BELOW = 2048;

export type ConnectionDirection = 'outgoing' | 'incoming';

/** Why keyhop closed a connection on its peer: a protocol violation or a limit. */
export type TcpCloseCause = 'no-version' | 'slow-frame' | 'idle' | 'bad-frame' | 'over-budget';

/**
 * One TCP connection = a sender worker (its local address stands for the peer in routes) and a
 * receiver that decodes frames and routes them, restricted to the consumers of the connection's
 * flow.
 */
export class TcpConnection {
  readonly sender = Address.random('tcp_sender_');
  readonly receiver = Address.random('tcp_receiver_');
  readonly peer: string;
  /** Our end of the socket, `host:port`. */
  readonly local: string;
  readonly direction: ConnectionDirection;
  readonly flow: FlowId;
  readonly opened = Date.now();
  stats = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
  private readonly reader: FrameReader;
  private readonly watch: StallWatch;
  private cause: TcpCloseCause | undefined;
  /** What every received message learns about where it came from (built once). */
  private readonly localInfo: readonly LocalInfo[];
  private inFlight = 0;
  private inFlightBytes = 0;
  /** What this connection counts in its budget now: partial frame bytes + inFlightBytes. */
  private counted = 0;
  private corked = false;
  private readonly uncork = () => {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  };
  private paused = false;
  private closedReason: string | undefined;
  private readonly closeListeners: ((reason: string) => void)[] = [];
  private readyResolve!: () => void;
  private readyReject!: (e: Error) => void;
  /** Resolves once the peer's protocol-version byte arrived. */
  readonly ready: Promise<void>;

  constructor(
    private readonly router: Router,
    private readonly socket: Socket,
    peer: string,
    direction: ConnectionDirection,
    flow: FlowId,
    private readonly options: TcpConnectionOptions,
    private readonly log: Logger,
    /** Incoming connections: the bytes their source and listener may hold. */
    private readonly budget?: HeldBytes,
  ) {
    this.peer = peer;
    this.local = formatHostPort(socket.localAddress ?? '?', socket.localPort ?? 0);
    this.direction = direction;
    this.flow = flow;
    this.reader = new FrameReader(options.maxFrameBytes);
    this.watch = new StallWatch(options);
    const info: TransportInfo = { transport: 'tcp', peer, sender: this.sender.toString() };
    this.localInfo = [{ type: TRANSPORT_INFO, data: info }];
    this.ready = new Promise((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => undefined);
  }

  /** Registers the workers and starts reading. Sends our protocol-version byte first. */
  async start(): Promise<void> {
    const router = this.router;
    await router.startWorker(this.sender, {
      handleMessage: (_ctx, m) => this.write(m),
    });
    await router.startWorker(
      this.receiver,
      { handleMessage: () => undefined },
      { incoming: () => false, outgoing: flowControlled(router.flowControls, this.flow) },
    );
    const timer = setTimeout(
      () =>
        this.closeFor('no-version', `no protocol-version byte within ${this.options.handshakeTimeoutMs} ms`),
      this.options.handshakeTimeoutMs,
    );
    this.ready.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    this.socket.setNoDelay(true);
    // Ockam uses OS keepalive (idle 300 s) instead of application heartbeats.
    this.socket.setKeepAlive(true, 300_000);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    this.socket.on('close', () => this.close('peer closed the connection'));
    this.socket.write(Buffer.of(TCP_PROTOCOL_VERSION));
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Set when keyhop closed the connection because of its peer (a violation, a timeout). */
  get closeCause(): TcpCloseCause | undefined {
    return this.cause;
  }

  /**
   * Called by the transport's one timer for all connections: closes this one if its peer sends
   * nothing for the idle timeout, or leaves a frame unfinished too long. `stalled`: our own event
   * loop was blocked since the last call, so silence proves nothing.
   */
  checkStall(now: number, stalled: boolean): void {
    if (this.closedReason !== undefined) return;
    const partial = this.reader.partialFrameBytes;
    const stall = this.watch.sample(
      now,
      this.stats.bytesIn,
      this.stats.framesIn,
      partial,
      stalled || this.paused,
    );
    if (stall === 'idle') {
      this.closeFor('idle', `nothing received for ${this.options.idleTimeoutMs} ms`);
    } else if (stall === 'slow-frame') {
      this.closeFor('slow-frame', `frame unfinished too long (${partial} bytes of it received)`);
    }
  }

  onClose(listener: (reason: string) => void): void {
    if (this.closedReason !== undefined) listener(this.closedReason);
    else this.closeListeners.push(listener);
  }

  private onData(chunk: Buffer): void {
    if (this.closedReason !== undefined) return;
    this.stats.bytesIn += chunk.length;
    // Fairness: libuv reads a busy socket up to 32 times per turn of the event loop, and every
    // message of every chunk is handled before the loop polls again; one connection flooding
    // small messages would hold the others off for tens of milliseconds. After TURN_BYTES in one
    // turn, this connection waits for the next.
    this.turnBytes += chunk.length;
    if (this.turnBytes >= TURN_BYTES && !this.yielding) {
      this.yielding = true;
      this.socket.pause();
      setImmediate(this.endTurn);
    }
    const frames: Buffer[] = [];
    let violation: string | undefined;
    const hadVersion = this.reader.versionReceived;
    try {
      this.reader.push(chunk, frames);
    } catch (e) {
      violation = isKeyhopError(e) ? e.message : describeError(e);
    }
    if (!hadVersion && this.reader.versionReceived) this.readyResolve();
    // Frames that were complete before a violation are still delivered.
    for (const f of frames) {
      if (this.closedReason !== undefined) return;
      this.onFrame(f);
    }
    if (violation !== undefined) this.closeFor('bad-frame', violation);
    else this.recount();
  }

  /** Brings the budget up to date with what this connection holds; closes it when over. */
  private recount(): void {
    if (this.budget === undefined || this.closedReason !== undefined) return;
    const now = this.reader.pending + this.inFlightBytes;
    const delta = now - this.counted;
    if (delta === 0) return;
    this.counted = now;
    if (!this.budget.add(delta) && delta > 0) {
      this.closeFor(
        'over-budget',
        `its source or listener holds more than its budget of received bytes (${this.budget.limit} for the source)`,
      );
    }
  }

  private onFrame(frame: Buffer): void {
    this.stats.framesIn++;
    let message: Message;
    try {
      message = decodeCborFrame(frame);
    } catch (e) {
      this.closeFor('bad-frame', `undecodable frame: ${describeError(e)}`);
      return;
    }
    if (message.onward.isEmpty) return; // Ockam's old heartbeat: silently ignored.
    const routed = new Message(
      message.onward,
      message.returnRoute.prepend(this.sender),
      message.payload,
      this.localInfo,
    );
    const bytes = frame.length;
    this.inFlight++;
    this.inFlightBytes += bytes;
    if (
      !this.paused &&
      (this.inFlight >= this.options.highWater || this.inFlightBytes >= this.options.highWaterBytes)
    ) {
      this.paused = true;
      this.socket.pause();
    }
    this.router
      .send(this.receiver, routed, () => this.handled(bytes))
      .catch((e: unknown) => {
        this.log.debug({ peer: this.peer, err: describeError(e) }, 'message from TCP peer not delivered');
      });
  }

  private handled(bytes: number): void {
    this.inFlight--;
    this.inFlightBytes -= bytes;
    if (this.closedReason !== undefined) return;
    if (this.budget !== undefined) this.recount();
    if (
      this.paused &&
      !this.resuming &&
      this.inFlight <= this.options.lowWater &&
      this.inFlightBytes <= this.options.lowWaterBytes
    ) {
      // Resumed from the next turn of the event loop, not now: a resume here (within this
      // connection's own microtasks) hands it the data it already buffered at once, so one busy
      // connection could keep the loop from ever polling the others.
      this.resuming = true;
      setImmediate(this.resume);
    }
  }

  private resuming = false;
  private readonly resume = () => {
    this.resuming = false;
    if (!this.paused || this.closedReason !== undefined) return;
    this.paused = false;
    if (!this.yielding) this.socket.resume();
  };

  private turnBytes = 0;
  private yielding = false;
  private readonly endTurn = () => {
    this.yielding = false;
    this.turnBytes = 0;
    if (!this.paused && this.closedReason === undefined) this.socket.resume();
  };

  // Not async: a promise only when the socket is full (most frames cost none).
  private write(message: Message): Promise<void> | undefined {
    if (this.closedReason !== undefined) {
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `connection to ${this.peer} is closed`);
    }
    // Whoever sends through this connection may receive the answers that come back on it.
    const replyTo = message.returnRoute.next;
    if (replyTo?.isLocal && this.router.isRegistered(replyTo)) {
      this.router.flowControls.addConsumer(this.flow, replyTo);
    }
    // The frame leaves without our own address (the first onward one); small payloads are copied
    // into the frame (one write), large ones are written after it, never copied.
    const frame = encodeStreamFrame(message, 1, INLINE_BELOW);
    if (frame.length > this.options.maxFrameBytes) {
      throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `frame of ${frame.length} bytes exceeds the limit`);
    }
    this.stats.framesOut++;
    this.stats.bytesOut += frame.length + 4;
    // Frames written in the same tick leave together in one writev (the socket stays corked until
    // the next tick, or until 64 KiB wait: large frames gain nothing from waiting).
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(frame.bytes);
    if (!frame.inline && message.payload.length > 0) this.socket.write(message.payload);
    if (this.socket.writableLength >= COALESCE_LIMIT) this.uncork();
    // Back-pressure: hold this mailbox (and so its senders) while too much is unsent. The bound is
    // ours rather than the socket's 16 KiB high-water mark, which a single large frame exceeds.
    if (this.socket.writableLength > WRITE_BUFFER_LIMIT) return this.drained();
    return undefined;
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Closes the socket at once (what was not written yet is lost) and stops both workers. Idempotent. */
  close(reason = 'closed locally', level: 'info' | 'warn' = 'info'): void {
    if (this.markClosed(reason, level)) this.socket.destroy();
  }

  /** Closes on the peer's account; the transport counts it and logs it, rate-limited. */
  private closeFor(cause: TcpCloseCause, reason: string): void {
    if (this.closedReason !== undefined) return;
    this.cause = cause;
    if (this.markClosed(reason, 'debug')) this.socket.destroy();
  }

  /**
   * Closes after writing what is queued (a Close a channel just sent, the last reply), then a FIN;
   * gives up and destroys the socket after `flushMs`. For shutting down, not for misbehaving peers.
   */
  async closeGracefully(reason: string, flushMs = 2000): Promise<void> {
    if (!this.markClosed(reason, 'info')) return;
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, flushMs);
      timer.unref();
      this.socket.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.socket.destroy();
  }

  /** Records the close and stops the workers; false when it was closed already. */
  private markClosed(reason: string, level: 'debug' | 'info' | 'warn'): boolean {
    if (this.closedReason !== undefined) return false;
    this.closedReason = reason;
    this.log[level]({ peer: this.peer, direction: this.direction, reason }, 'TCP connection closed');
    this.readyReject(
      new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `connection to ${this.peer} closed: ${reason}`),
    );
    // Messages still in flight are garbage once handled; the budget forgets them now.
    if (this.budget !== undefined && this.counted !== 0) this.budget.add(-this.counted);
    this.counted = 0;
    this.router.flowControls.remove(this.flow);
    void this.router.stopWorker(this.sender);
    void this.router.stopWorker(this.receiver);
    for (const l of this.closeListeners.splice(0)) l(reason);
    return true;
  }

  describe(): Record<string, unknown> {
    return {
      peer: this.peer,
      local: this.local,
      direction: this.direction,
      sender: this.sender.toString(),
      flow: this.flow,
      openedAt: new Date(this.opened).toISOString(),
      ...this.stats,
    };
  }
}
