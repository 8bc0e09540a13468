import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import {
  BLE_FRAMING_VERSION,
  encodeCredit,
  encodeHello,
  type Fragment,
  type Hello,
  MAX_CREDITS,
  MessageFragmenter,
  MIN_VALUE_SIZE,
  parseFragment,
  Reassembler,
} from './framing.js';
import type { GattLink } from './gatt-link.js';

export interface FramedLinkOptions {
  /** Largest message this side accepts (announced in HELLO). */
  maxMessage: number;
  /** Data fragments the peer may send before we grant more (announced in HELLO). */
  window: number;
  /** The peer's HELLO must arrive within this time. */
  helloTimeoutMs: number;
  /** Unsent bytes queued before send() makes its caller wait. */
  maxQueuedBytes: number;
  onMessage: (message: Uint8Array) => void;
  /** Called once when the link ends; `error` unless it was a local close(). */
  onClose: (reason: string, error?: KeyhopError) => void;
  log: Logger;
}

export interface FramedLinkStats {
  messagesIn: number;
  messagesOut: number;
  fragmentsIn: number;
  fragmentsOut: number;
  /** Bytes of every value sent/received, headers included (framing efficiency). */
  valueBytesIn: number;
  valueBytesOut: number;
  creditsGranted: number;
  /** Times the sender had data but no credit. */
  creditStalls: number;
  /** Messages queued and not yet fully handed to the stack. */
  queuedMessages: number;
  queuedBytes: number;
}

interface Outgoing {
  fragmenter: MessageFragmenter;
  length: number;
}

/**
 * keyhop's framing over one GATT connection: HELLO exchange, fragmentation at the current MTU,
 * reassembly with limits, credit-based flow control both ways. A protocol violation or a
 * rejected send disconnects the link; messages not yet fully handed to the stack can be taken
 * back with takeUnsent() and sent whole on the next connection.
 */
export class FramedBleLink {
  private readonly reassembler: Reassembler;
  private readonly queue: Outgoing[] = [];
  private readonly drainWaiters: (() => void)[] = [];
  private peerHello: Hello | undefined;
  private sendCredits = 0;
  private ungranted = 0;
  private grantsPaused = false;
  private grantScheduled = false;
  private closed = false;
  private helloTimer: NodeJS.Timeout | undefined;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (e: KeyhopError) => void;
  private readonly counts = {
    messagesIn: 0,
    messagesOut: 0,
    fragmentsIn: 0,
    fragmentsOut: 0,
    valueBytesIn: 0,
    valueBytesOut: 0,
    creditsGranted: 0,
    creditStalls: 0,
  };
  private queuedBytes = 0;

  constructor(
    readonly gatt: GattLink,
    private readonly options: FramedLinkOptions,
  ) {
    if (!Number.isInteger(options.window) || options.window < 1 || options.window > MAX_CREDITS) {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `BLE window must be 1..${MAX_CREDITS}`);
    }
    if (!Number.isInteger(options.maxMessage) || options.maxMessage < 1 || options.maxMessage > 0xffffffff) {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'BLE maxMessage must be a positive 32-bit integer');
    }
    this.reassembler = new Reassembler(options.maxMessage);
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.readyPromise.catch(() => undefined);
    gatt.onClose((reason) => this.fail(reason, new KeyhopError(ErrorCodes.CONNECTION_CLOSED, reason)));
    gatt.onMtu(() => this.pump());
  }

  /** Sends HELLO; resolves when the peer's HELLO arrived. Rejects (and disconnects) on timeout. */
  start(): Promise<void> {
    if (this.closed) return this.readyPromise;
    this.helloTimer = setTimeout(() => {
      this.disconnectWith(
        new KeyhopError(
          ErrorCodes.TIMEOUT,
          `no BLE HELLO from ${this.gatt.peer} in ${this.options.helloTimeoutMs} ms`,
        ),
      );
    }, this.options.helloTimeoutMs);
    this.helloTimer.unref();
    this.sendValue(
      encodeHello({
        version: BLE_FRAMING_VERSION,
        maxMessage: this.options.maxMessage,
        credits: this.options.window,
      }),
    );
    // Only now: the peer's HELLO may already be waiting in the stack (it often is after a
    // reconnection), and it must find the timer armed and our HELLO sent ahead of any data.
    this.gatt.onValue((v) => this.onValue(v));
    return this.readyPromise;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  get peer(): Hello | undefined {
    return this.peerHello;
  }

  /** Value size in use now: the ATT MTU minus the 3-byte ATT header. */
  get valueSize(): number {
    return Math.max(MIN_VALUE_SIZE, this.gatt.mtu - 3);
  }

  stats(): FramedLinkStats {
    return { ...this.counts, queuedMessages: this.queue.length, queuedBytes: this.queuedBytes };
  }

  /**
   * Queues one message. Resolves when the queue is below maxQueuedBytes again (back-pressure),
   * not when the peer got it. Throws ENCODE_LIMIT for a message over the peer's limit.
   */
  async send(message: Uint8Array): Promise<void> {
    if (this.closed)
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `BLE link to ${this.gatt.peer} is closed`);
    const limit = this.peerHello?.maxMessage ?? this.options.maxMessage;
    if (message.length > limit) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `BLE message of ${message.length} bytes exceeds the peer's ${limit}-byte limit`,
      );
    }
    this.queue.push({ fragmenter: new MessageFragmenter(message), length: message.length });
    this.queuedBytes += message.length;
    this.pump();
    if (this.queuedBytes > this.options.maxQueuedBytes && !this.closed) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
  }

  /** Stops granting credits (the consumer is behind); the peer stops within one window. */
  pauseGrants(): void {
    this.grantsPaused = true;
  }

  resumeGrants(): void {
    this.grantsPaused = false;
    this.maybeGrant(true);
  }

  /** Messages not completely handed to the stack, whole, in order; empties the queue. */
  takeUnsent(): Uint8Array[] {
    const out = this.queue.map((o) => o.fragmenter.message);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.releaseWaiters();
    return out;
  }

  /** Disconnects. Queued messages stay available to takeUnsent(). */
  async close(): Promise<void> {
    if (!this.closed) this.fail('closed locally');
    await this.gatt.disconnect();
  }

  private onValue(value: Uint8Array): void {
    if (this.closed) return;
    this.counts.valueBytesIn += value.length;
    let f: Fragment;
    let message: Uint8Array | undefined;
    try {
      f = parseFragment(value);
      if (f.kind === 'hello') {
        this.onHello(f.hello);
        return;
      }
      if (f.kind === 'credit') {
        this.sendCredits += f.n;
        if (this.sendCredits > MAX_CREDITS * 16) {
          throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'BLE peer granted more credits than any window');
        }
        this.pump();
        return;
      }
      if (this.peerHello === undefined) {
        throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'BLE data before HELLO');
      }
      this.counts.fragmentsIn++;
      this.ungranted++;
      if (this.ungranted > this.options.window) {
        throw new KeyhopError(
          ErrorCodes.DECODE_INVALID,
          'BLE peer sent more fragments than it had credits for',
        );
      }
      message = this.reassembler.push(f);
    } catch (e) {
      this.disconnectWith(
        isKeyhopError(e) ? e : new KeyhopError(ErrorCodes.DECODE_INVALID, describeError(e)),
      );
      return;
    }
    this.maybeGrant(message !== undefined);
    if (message !== undefined) {
      this.counts.messagesIn++;
      this.options.onMessage(message);
    }
  }

  private onHello(h: Hello): void {
    if (this.peerHello !== undefined) {
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'second BLE HELLO');
    }
    if (h.version < 1) throw new KeyhopError(ErrorCodes.PROTOCOL_VERSION, `BLE framing version ${h.version}`);
    if (h.maxMessage < 1 || h.credits < 1) {
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'BLE HELLO with no room (max message or credits 0)');
    }
    this.peerHello = h;
    this.sendCredits += h.credits;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.resolveReady();
    this.pump();
  }

  /**
   * Grants what was consumed once a quarter of the window is (fewer values on the way back), or
   * at once at the end of a message so a short burst never waits on a partial batch.
   */
  private maybeGrant(endOfMessage: boolean): void {
    if (this.grantsPaused || this.ungranted === 0 || this.closed) return;
    if (this.ungranted < Math.max(1, this.options.window >> 2)) {
      // End of a message with a small batch: grant after this turn, so an answer produced by
      // the message's consumer in the same turn goes out first (one value less per round trip).
      if (endOfMessage && !this.grantScheduled) {
        this.grantScheduled = true;
        setImmediate(() => {
          this.grantScheduled = false;
          this.grantNow();
        });
      }
      return;
    }
    this.grantNow();
  }

  private grantNow(): void {
    if (this.grantsPaused || this.ungranted === 0 || this.closed) return;
    const n = this.ungranted;
    this.ungranted = 0;
    this.counts.creditsGranted += n;
    this.sendValue(encodeCredit(n));
  }

  /** Hands data fragments to the stack while there are credits and queued messages. */
  private pump(): void {
    if (this.closed || this.peerHello === undefined) return;
    while (this.queue.length > 0) {
      if (this.sendCredits === 0) {
        this.counts.creditStalls++;
        return;
      }
      const head = this.queue[0]!;
      this.sendCredits--;
      this.counts.fragmentsOut++;
      this.sendValue(head.fragmenter.next(this.valueSize));
      if (head.fragmenter.done) {
        this.queue.shift();
        this.queuedBytes -= head.length;
        this.counts.messagesOut++;
        if (this.queuedBytes <= this.options.maxQueuedBytes) this.releaseWaiters();
      }
    }
  }

  private sendValue(value: Uint8Array): void {
    this.counts.valueBytesOut += value.length;
    this.gatt.send(value).catch((e: unknown) => {
      this.disconnectWith(
        isKeyhopError(e)
          ? e
          : new KeyhopError(ErrorCodes.SEND_FAILED, `BLE send failed: ${describeError(e)}`),
      );
    });
  }

  private releaseWaiters(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }

  private disconnectWith(error: KeyhopError): void {
    if (this.closed) return;
    this.options.log.warn({ peer: this.gatt.peer, code: error.code, err: error.message }, 'BLE link failed');
    this.fail(error.message, error);
    this.gatt.disconnect().catch(() => undefined);
  }

  private fail(reason: string, error?: KeyhopError): void {
    if (this.closed) return;
    this.closed = true;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.reassembler.reset();
    this.rejectReady(error ?? new KeyhopError(ErrorCodes.CONNECTION_CLOSED, reason));
    // A message cut off mid-way is resent whole by whoever takes the unsent ones; restart them.
    for (const o of this.queue) o.fragmenter = new MessageFragmenter(o.fragmenter.message);
    this.releaseWaiters();
    this.options.onClose(reason, error);
  }
}
