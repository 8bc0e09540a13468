import { EventEmitter } from 'node:events';
import { SerialPort } from 'serialport';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { type Logger, silentLogger } from '../../log.js';
import { denyAll, flowControlled } from '../../routing/access-control.js';
import { Address, type AddressLike, TransportType } from '../../routing/address.js';
import { encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import type { FlowId } from '../../routing/flow-control.js';
import type { LocalInfo, Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import type { Transport } from '../../routing/worker.js';
import { receivedMessage } from '../received.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transport-info.js';
import { fixHangupRead, fixPollerEventMask } from './binding-fixes.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, type SerialDrops, type SerialFrame, SerialFrameReader } from './frame.js';
import {
  createSerialLink,
  type LinkCounters,
  type LinkDrops,
  type LinkFailure,
  type PlainLink,
  ReliableLink,
} from './reliability.js';

export { fixHangupRead, fixPollerEventMask } from './binding-fixes.js';

/** The serial address type (`TransportType.SERIAL`). */
export const SERIAL = TransportType.SERIAL;

/** Baud rate used by `resolve` when the address has no `@baud` suffix. */
export const DEFAULT_BAUD_RATE = 115_200;

/** Unsent bytes a port buffers before its sender worker waits for it to drain. */
const WRITE_BUFFER_LIMIT = 1024 * 1024;
/**
 * Payloads a reliable link holds for its window before the sender worker waits for ACKs: far
 * below the link's own refusal limit (maxQueued, 256), which would otherwise drop a burst on a
 * slow line with SEND_FAILED. Messages then wait in the sender's mailbox, as on TCP.
 */
const LINK_QUEUE_LIMIT = 64;

export interface SerialTransportOptions {
  log?: Logger;
  /** Largest frame payload (one CBOR routing message). Both ends must agree. Default 64 KiB. */
  maxPayloadBytes?: number;
  /** Reliability for ports opened by `resolve` (the address cannot say). Default false. */
  reliable?: boolean;
  /** First delay before reopening a lost port, doubled per failed attempt. Default 500 ms. */
  reopenMinMs?: number;
  /** Longest delay between reopening attempts. Default 10 s. */
  reopenMaxMs?: number;
  /** Reliable links: base retransmission timeout (ReliableLinkOptions.retransmitMs). Default 1000. */
  retransmitMs?: number;
}

export interface SerialOpenOptions {
  baudRate: number;
  /** Reliability layer on (ReliableLink) or off (PlainLink). Must match the peer. Default false. */
  reliable?: boolean;
  /** Local workers that messages arriving on this port may reach. */
  expose?: AddressLike[];
  /**
   * A port that cannot be opened now (a board not plugged in yet) is not an error: the link is
   * made at once and opens the port as soon as it can, as it does for a port that was lost.
   * Default false: `open` rejects with CONNECT_FAILED.
   */
  waitForPort?: boolean;
}

export interface SerialPortEvent {
  path: string;
  sender: Address;
  reason: string;
}

export interface SerialLinkStats {
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  /** Times the port was reopened after being lost. */
  reopens: number;
  /** Frame reader: frames accepted, and runs of bytes dropped by reason (line noise). */
  framesAccepted: number;
  frameDrops: SerialDrops;
  /** Link layer (reliability) drops and counters. */
  linkDrops: LinkDrops;
  linkCounters: LinkCounters;
  /** Payloads that were not CBOR routing messages. */
  undecodable: number;
  /** Frames written while the port was down (reliable links send them again). */
  writesWhileDown: number;
  /** Bytes handed to the port but not yet written to the device (0 while the port is down). */
  pendingWriteBytes: number;
  /** Reliable links: payloads waiting for a window slot. */
  queuedPayloads: number;
}

interface LinkSettings {
  path: string;
  baudRate: number;
  reliable: boolean;
  maxPayloadBytes: number;
  reopenMinMs: number;
  reopenMaxMs: number;
  retransmitMs: number;
  waitForPort: boolean;
}

type TransportEvents = {
  /** A port failed (error or close) and will be reopened while the transport runs. */
  port_lost: [SerialPortEvent];
  /** A port was (re)opened. */
  port_open: [SerialPortEvent];
  /** A reliable link gave up on unacknowledged payloads. */
  link_failure: [SerialPortEvent & { lost: number }];
};

/**
 * keyhop's serial transport (docs/protocols/serial.md): one port = one peer. Every routing
 * message is CBOR-encoded exactly like a TCP frame body and carried as the payload of one serial
 * frame (COBS + CRC-32), through a PlainLink or a ReliableLink.
 *
 * Addresses: `6#<path>` or `6#<path>@<baud>`, e.g. `6#/dev/ttyUSB0@921600`. The suffix is only
 * taken as a baud rate when it is all digits after the last `@`; without it DEFAULT_BAUD_RATE
 * (115 200) is used. Resolving opens the port, or reuses the link already open on that path
 * whatever its baud rate.
 */
export class SerialTransport extends EventEmitter<TransportEvents> implements Transport {
  readonly type = SERIAL;
  readonly name = 'serial';
  private readonly log: Logger;
  private readonly options: SerialTransportOptions;
  private readonly links = new Map<string, Promise<SerialPortLink>>();
  private stopped = false;

  private constructor(
    private readonly router: Router,
    options: SerialTransportOptions,
  ) {
    super();
    this.options = options;
    this.log = (options.log ?? router.log ?? silentLogger).child({ transport: 'serial' });
  }

  /** Creates the transport and registers it with the router for `6#…` addresses. */
  static create(router: Router, options: SerialTransportOptions = {}): SerialTransport {
    const t = new SerialTransport(router, options);
    router.registerTransport(t);
    return t;
  }

  async resolve(address: Address): Promise<Address> {
    if (address.type !== SERIAL) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `${address} is not a serial address`);
    }
    const { path, baudRate } = parseSerialAddress(address.text);
    const link = await this.open(path, { baudRate, reliable: this.options.reliable ?? false });
    return link.sender;
  }

  /** Opens the port at `path`, or returns the link already open on it (adding `expose`). */
  open(path: string, options: SerialOpenOptions): Promise<SerialPortLink> {
    if (this.stopped) {
      return Promise.reject(new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'serial transport is stopped'));
    }
    const flows = this.router.flowControls;
    const existing = this.links.get(path);
    if (existing) {
      return existing.then((link) => {
        for (const a of options.expose ?? []) flows.addConsumer(link.flow, Address.from(a));
        return link;
      });
    }
    if (!Number.isInteger(options.baudRate) || options.baudRate <= 0) {
      return Promise.reject(
        new KeyhopError(ErrorCodes.CONFIG_INVALID, `serial baud rate must be a positive integer`),
      );
    }
    const settings: LinkSettings = {
      path,
      baudRate: options.baudRate,
      reliable: options.reliable ?? false,
      maxPayloadBytes: this.options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
      reopenMinMs: this.options.reopenMinMs ?? 500,
      reopenMaxMs: this.options.reopenMaxMs ?? 10_000,
      retransmitMs: this.options.retransmitMs ?? 1000,
      waitForPort: options.waitForPort ?? false,
    };
    const flow = flows.create();
    for (const a of options.expose ?? []) flows.addConsumer(flow, Address.from(a));
    const link = new SerialPortLink(this.router, settings, flow, this.log, this);
    const p = link.start().then(
      () => link,
      (e: unknown) => {
        link.close();
        throw e;
      },
    );
    this.links.set(path, p);
    p.then(
      (l) => l.onClose(() => this.links.get(path) === p && this.links.delete(path)),
      () => this.links.get(path) === p && this.links.delete(path),
    );
    return p;
  }

  /** Links that are open (their port may be momentarily down and reopening). */
  async linkList(): Promise<SerialPortLink[]> {
    const all = await Promise.allSettled([...this.links.values()]);
    return all.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const links = await this.linkList();
    await Promise.all(links.map((l) => l.close()));
  }
}

/** Splits `path[@baud]`; see SerialTransport. */
export function parseSerialAddress(text: string): { path: string; baudRate: number } {
  const at = text.lastIndexOf('@');
  if (at > 0 && /^\d+$/.test(text.slice(at + 1))) {
    const baudRate = Number(text.slice(at + 1));
    if (baudRate <= 0 || !Number.isSafeInteger(baudRate)) {
      throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `serial address "${text}": bad baud rate`);
    }
    return { path: text.slice(0, at), baudRate };
  }
  if (text.length === 0) throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, 'serial address is empty');
  return { path: text, baudRate: DEFAULT_BAUD_RATE };
}

/**
 * One open port = a sender worker (its address stands for the peer in routes) and a receiver
 * mailbox that routes decoded messages only to consumers of the link's flow. Drives the link
 * layer: start() once, re-armed timer on nextDeadline, byteTimeMs from the baud rate. A lost port
 * is reported and reopened with back-off until close().
 */
export class SerialPortLink {
  readonly sender = Address.random('serial_sender_');
  readonly receiver = Address.random('serial_receiver_');
  readonly path: string;
  readonly baudRate: number;
  readonly reliable: boolean;
  readonly flow: FlowId;
  private readonly reader: SerialFrameReader;
  private readonly link: PlainLink | ReliableLink;
  private readonly localInfo: readonly LocalInfo[];
  private readonly counts = {
    bytesIn: 0,
    bytesOut: 0,
    messagesIn: 0,
    messagesOut: 0,
    reopens: 0,
    undecodable: 0,
    writesWhileDown: 0,
  };
  private port: SerialPort | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private reopenDelay: number;
  private closed = false;
  private readonly closeListeners: (() => void)[] = [];
  /** The sender worker, when it waits for room in the reliable link's queue. */
  private readonly writersWaiting: (() => void)[] = [];

  constructor(
    private readonly router: Router,
    private readonly settings: LinkSettings,
    flow: FlowId,
    private readonly log: Logger,
    private readonly events: EventEmitter<TransportEvents>,
  ) {
    this.path = settings.path;
    this.baudRate = settings.baudRate;
    this.reliable = settings.reliable;
    this.flow = flow;
    this.reopenDelay = settings.reopenMinMs;
    this.reader = new SerialFrameReader({
      maxPayloadBytes: settings.maxPayloadBytes,
      onDrop: (reason, bytes) => this.log.debug({ path: this.path, reason, bytes }, 'serial bytes dropped'),
    });
    this.link = createSerialLink({
      reliable: settings.reliable,
      maxPayloadBytes: settings.maxPayloadBytes,
      retransmitMs: settings.retransmitMs,
      // 8N1: 10 bits per byte.
      byteTimeMs: Math.min(1000, 10_000 / settings.baudRate),
      send: (wire) => this.writeWire(wire),
      deliver: (payload) => this.onPayload(payload),
      onFailure: (f) => this.onLinkFailure(f),
    });
    const info: TransportInfo = { transport: 'serial', peer: this.path, sender: this.sender.toString() };
    this.localInfo = [{ type: TRANSPORT_INFO, data: info }];
  }

  /** Starts the workers and opens the port; rejects with CONNECT_FAILED if it cannot be opened. */
  async start(): Promise<void> {
    const router = this.router;
    await router.startWorker(this.sender, { handleMessage: (_ctx, m) => this.write(m) });
    await router.startWorker(
      this.receiver,
      { handleMessage: () => undefined },
      { incoming: denyAll, outgoing: flowControlled(router.flowControls, this.flow) },
    );
    try {
      await this.openPort();
    } catch (e) {
      if (!this.settings.waitForPort || this.closed) throw e;
      this.log.warn(
        { path: this.path, err: describeError(e) },
        'serial port not there yet; opening it when it appears',
      );
      this.scheduleReopen();
    }
    this.link.start();
    this.arm();
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  get isOpen(): boolean {
    return this.port !== undefined;
  }

  stats(): SerialLinkStats {
    return {
      ...this.counts,
      pendingWriteBytes: this.port?.writableLength ?? 0,
      queuedPayloads: this.link instanceof ReliableLink ? this.link.queued : 0,
      framesAccepted: this.reader.accepted,
      frameDrops: { ...this.reader.drops },
      linkDrops: { ...this.link.drops },
      linkCounters: { ...this.link.counters },
    };
  }

  private openPort(): Promise<void> {
    const port = new SerialPort({ path: this.path, baudRate: this.baudRate, autoOpen: false });
    return new Promise<void>((resolve, reject) => {
      port.open((err) => {
        if (err) {
          reject(
            new KeyhopError(
              ErrorCodes.CONNECT_FAILED,
              `cannot open serial port ${this.path}: ${err.message}`,
              {
                cause: err,
              },
            ),
          );
          return;
        }
        if (this.closed) {
          port.close();
          reject(new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `serial link ${this.path} is closed`));
          return;
        }
        this.port = port;
        this.reader.reset();
        if (!fixPollerEventMask(port) || !fixHangupRead(port)) {
          this.log.debug({ path: this.path }, 'serial binding has no unix poller; binding fixes not applied');
        }
        port.on('data', (chunk: Buffer) => this.onData(chunk));
        port.on('error', (e) => this.portLost(port, `port error: ${e.message}`));
        port.on('close', () => this.portLost(port, 'port closed'));
        this.log.info(
          { path: this.path, baudRate: this.baudRate, reliable: this.reliable },
          'serial port open',
        );
        this.events.emit('port_open', { path: this.path, sender: this.sender, reason: 'opened' });
        resolve();
      });
    });
  }

  private portLost(port: SerialPort, reason: string): void {
    if (this.port !== port) return;
    this.port = undefined;
    port.removeAllListeners('data');
    port.on('error', () => undefined);
    if (port.isOpen) port.close(() => undefined);
    this.reader.reset();
    if (this.closed) return;
    this.log.warn({ path: this.path, reason }, 'serial port lost; reopening');
    this.events.emit('port_lost', { path: this.path, sender: this.sender, reason });
    this.scheduleReopen();
  }

  private scheduleReopen(): void {
    if (this.closed || this.reopenTimer) return;
    const delay = this.reopenDelay;
    this.reopenDelay = Math.min(this.reopenDelay * 2, this.settings.reopenMaxMs);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      if (this.closed) return;
      this.openPort().then(
        () => {
          this.counts.reopens++;
          this.reopenDelay = this.settings.reopenMinMs;
        },
        (e: unknown) => {
          if (this.closed) return;
          this.log.debug(
            { path: this.path, err: describeError(e), retryMs: this.reopenDelay },
            'serial reopen failed',
          );
          this.scheduleReopen();
        },
      );
    }, delay);
    this.reopenTimer.unref();
  }

  /** (Re)arms the single timer for the link's next deadline. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const d = this.link.nextDeadline;
    if (d === undefined || this.closed) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.link.tick();
        this.arm();
        this.wakeWriters();
      },
      Math.max(0, d - performance.now()),
    );
    this.timer.unref();
  }

  private writeWire(wire: Uint8Array): void {
    const port = this.port;
    if (port === undefined) {
      this.counts.writesWhileDown++;
      return;
    }
    this.counts.bytesOut += wire.length;
    port.write(Buffer.from(wire.buffer, wire.byteOffset, wire.length));
  }

  /** The sender worker: pops itself, encodes, hands one payload to the link. */
  private async write(message: Message): Promise<void> {
    if (this.closed) {
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `serial link ${this.path} is closed`);
    }
    if (!this.reliable && this.port === undefined) {
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `serial port ${this.path} is down (reopening)`);
    }
    while (this.queueFull()) await new Promise<void>((resolve) => this.writersWaiting.push(resolve));
    if (this.closed) {
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `serial link ${this.path} is closed`);
    }
    // Whoever sends through this link may receive the answers that come back on it.
    const replyTo = message.returnRoute.next;
    if (replyTo?.isLocal && this.router.isRegistered(replyTo)) {
      this.router.flowControls.addConsumer(this.flow, replyTo);
    }
    const bytes = encodeCborFrame(message.withOnward(message.onward.step()).forWire());
    if (bytes.length > this.settings.maxPayloadBytes) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `serial routing message of ${bytes.length} bytes exceeds the ${this.settings.maxPayloadBytes}-byte frame limit`,
      );
    }
    try {
      this.link.write(bytes);
    } finally {
      this.arm();
    }
    this.counts.messagesOut++;
    const port = this.port;
    if (port && port.writableLength > WRITE_BUFFER_LIMIT) {
      await new Promise<void>((resolve) => {
        const done = () => {
          port.off('drain', done);
          port.off('close', done);
          resolve();
        };
        port.once('drain', done);
        port.once('close', done);
      });
    }
  }

  private queueFull(): boolean {
    return !this.closed && this.link instanceof ReliableLink && this.link.queued >= LINK_QUEUE_LIMIT;
  }

  private wakeWriters(): void {
    if (this.writersWaiting.length > 0 && !this.queueFull()) {
      for (const w of this.writersWaiting.splice(0)) w();
    }
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.counts.bytesIn += chunk.length;
    let frames: SerialFrame[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      // The reader never throws by design; never let line noise take the node down.
      this.log.warn({ path: this.path, err: describeError(e) }, 'serial read failed');
      return;
    }
    for (const f of frames) {
      if (this.closed) return;
      this.link.onFrame(f);
    }
    this.arm();
    this.wakeWriters();
  }

  private onPayload(payload: Uint8Array): void {
    let routed: Message | undefined;
    try {
      routed = receivedMessage(payload, 'serial routing message', this.sender, this.localInfo);
    } catch (e) {
      this.counts.undecodable++;
      this.log.debug({ path: this.path, err: describeError(e) }, 'undecodable serial payload dropped');
      return;
    }
    if (routed === undefined) return;
    this.counts.messagesIn++;
    this.router.send(this.receiver, routed).catch((e: unknown) => {
      this.log.debug({ path: this.path, err: describeError(e) }, 'message from serial peer not delivered');
    });
  }

  private onLinkFailure(f: LinkFailure): void {
    this.log.warn({ path: this.path, reason: f.reason, lost: f.lost.length }, f.message);
    this.events.emit('link_failure', {
      path: this.path,
      sender: this.sender,
      reason: f.message,
      lost: f.lost.length,
    });
  }

  /** Stops reopening, closes the port and stops both workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    this.timer = this.reopenTimer = undefined;
    this.link.close();
    this.wakeWriters();
    const port = this.port;
    this.port = undefined;
    if (port) {
      port.removeAllListeners('data');
      port.on('error', () => undefined);
      // Bounded: closing a PTY whose other end has gone can stall in the binding.
      await new Promise<void>((resolve) => {
        if (!port.isOpen) return resolve();
        const t = setTimeout(resolve, 1000);
        port.close(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.router.flowControls.remove(this.flow);
    await this.router.stopWorker(this.sender);
    await this.router.stopWorker(this.receiver);
    this.log.info({ path: this.path }, 'serial link closed');
    for (const l of this.closeListeners.splice(0)) l();
  }
}
