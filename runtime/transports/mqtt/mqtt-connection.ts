import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { type IClientOptions, type IPublishPacket, MqttClient } from 'mqtt';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { denyAll, flowControlled } from '../../routing/access-control.js';
import { Address, type AddressLike } from '../../routing/address.js';
import { decodeCborFrame, encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import type { FlowId } from '../../routing/flow-control.js';
import type { Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import { acquireLock } from '../../state-lock.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transport-info.js';
import { type DataFrame, decodeFrame, encodeAck, encodeData, FrameKind } from './frame.js';
import { Inbox, type InboxLimits } from './inbox.js';
import {
  type BrokerEndpoint,
  checkBrokerName,
  checkMailboxName,
  checkTopicPrefix,
  inboxFilter,
  mailboxAddress,
  mailboxTopic,
  parseBrokerUrl,
  senderOfTopic,
} from './mailbox-address.js';
import {
  DEFAULT_OUTBOX_LIMITS,
  Outbox,
  type OutboxEntry,
  type OutboxLimits,
  type SendStream,
} from './outbox.js';
import { StateLog } from './state-log.js';

export interface MqttTls {
  /** PEM of the CA that signed the broker's certificate (a path or the bytes). */
  ca?: string | Uint8Array;
  /** Client certificate and key (PEM), for brokers that authenticate clients by certificate. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Default true. */
  rejectUnauthorized?: boolean;
}

export interface MqttConnectionOptions {
  /** `mqtt://host:port` or `mqtts://host:port`; several for a cluster (tried in turn). */
  urls: string[];
  /** This node's mailbox on the broker. */
  mailbox: string;
  /** The broker's name in addresses (`7#<broker>/<mailbox>`). Default: host:port of the first URL. */
  broker?: string;
  /**
   * 5, 4 (MQTT 3.1.1) or 'auto' (default): MQTT 5, and 3.1.1 when the broker refuses it (aedes,
   * RabbitMQ before 3.13, NATS), kept once a connection succeeds.
   */
  protocolVersion?: 4 | 5 | 'auto';
  /** Default: the mailbox name, so a broker ACL can use %c. */
  clientId?: string;
  username?: string;
  password?: string;
  tls?: MqttTls;
  /** Topic prefix, default `keyhop`. */
  topicPrefix?: string;
  /** MQTT 5 session expiry (s). Default 7 days. */
  sessionExpirySeconds?: number;
  /** Where the durable outbox and delivery cursors live; without it they are kept in memory only. */
  stateDir?: string;
  /** fsync the state file after every write batch (default: every 200 ms). */
  fsyncEveryBatch?: boolean;
  outbox?: Partial<OutboxLimits>;
  inbox?: Partial<InboxLimits>;
  /** First wait before republishing unacknowledged messages (doubles up to maxRetransmitMs). */
  retransmitMs?: number;
  maxRetransmitMs?: number;
  /** Reconnect back-off: first and largest wait. Defaults 250 ms and 30 s. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** open() fails with CONNECT_FAILED when the first connection takes longer (default 10 s); 0 = don't wait. */
  connectTimeoutMs?: number;
  /** Local workers that messages from any mailbox may reach. */
  expose?: AddressLike[];
  /** Received messages handed to local workers and not yet handled, beyond which reading pauses. */
  maxInFlight?: number;
  /** Largest routing message sent or accepted (default 1 MiB; at most 16 MiB). */
  maxMessageBytes?: number;
  log: Logger;
}

/** Why a received frame or a message was dropped (each counted). */
export type MqttDropReason =
  | 'undecodable_frame'
  | 'undecodable_message'
  | 'bad_topic'
  | 'retained'
  | 'duplicate'
  | 'reorder_full'
  | 'not_exposed'
  | 'unknown_stream'
  | 'outbox_full'
  | 'too_large'
  | 'expired'
  | 'skipped';

export interface MqttConnectionStats {
  connected: boolean;
  /** Why the last connection attempt failed or the connection dropped, if it did. */
  lastError: string | null;
  connects: number;
  messagesIn: number;
  messagesOut: number;
  publishes: number;
  retransmits: number;
  acksIn: number;
  acksOut: number;
  outbox: { messages: number; bytes: number; streams: number };
  inbox: { streams: number; heldMessages: number; heldBytes: number };
  drops: Record<MqttDropReason, number>;
  stateFileBytes: number;
}

interface Peer {
  readonly remote: string;
  readonly sender: Address;
  readonly receiver: Address;
  readonly flow: FlowId;
  ready: Promise<void>;
}

const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
/**
 * CONNACK codes that refuse the credentials or the client: 3.1.1's 2 (identifier rejected), 4 (bad
 * user name or password), 5 (not authorized); MQTT 5's 0x85, 0x86, 0x87, 0x8C (bad authentication
 * method).
 */
const AUTH_REFUSALS = new Set([2, 4, 5, 0x85, 0x86, 0x87, 0x8c]);
/** Node's codes for a TLS handshake that failed on certificates (ours refused, or theirs untrusted). */
const TLS_REFUSAL = /^(ERR_SSL_|ERR_TLS_CERT|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/;

/**
 * One mailbox on one broker (or cluster): an mqtt.js client with a persistent session, the
 * store-and-forward streams to and from other mailboxes (outbox.ts, inbox.ts), and per remote
 * mailbox a sender worker (what `7#broker/remote` resolves to) and a receiver worker (where its
 * messages enter the router). See docs/protocols/mqtt.md.
 */
export class MqttConnection {
  readonly broker: string;
  readonly mailbox: string;
  /** This mailbox's address, as other nodes write it. */
  readonly address: Address;
  /** Flow of the mailbox: its consumers may receive messages from every remote mailbox. */
  readonly flow: FlowId;
  /** host:port of every broker URL (addresses may name the broker so). */
  readonly hostPorts: string[];
  private readonly endpoints: BrokerEndpoint[];
  private readonly prefix: string;
  private readonly log: Logger;
  private readonly outboxLimits: OutboxLimits;
  /** Made by openState, with the state file when there is one. */
  private outbox!: Outbox;
  private readonly inbox: Inbox;
  private readonly peers = new Map<string, Peer>();
  private readonly maxMessageBytes: number;
  private readonly maxInFlight: number;
  private readonly retransmitMs: number;
  private readonly maxRetransmitMs: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private client: MqttClient | undefined;
  private stateLog: StateLog | undefined;
  private releaseLock: (() => Promise<void>) | undefined;
  private readonly pumping = new Set<SendStream>();
  private readonly pumpAgain = new Set<SendStream>();
  private readonly trimming = new Set<SendStream>();
  private readonly pendingAcks = new Map<string, { remote: string; stream: Uint8Array; acked: number }>();
  private tickScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private inFlight = 0;
  private paused: (() => void)[] = [];
  private compacting = false;
  private stopped = false;
  /** Taken offline on purpose (disconnect()): no reconnection until reconnect(). */
  private offline = false;
  private connectedOnce = false;
  private autoVersion = false;
  private sameServerAgain = false;
  private connackSeen = false;
  private v5Properties: IClientOptions['properties'];
  private lastError: string | undefined;
  private readonly counters = {
    connects: 0,
    messagesIn: 0,
    messagesOut: 0,
    publishes: 0,
    retransmits: 0,
    acksIn: 0,
    acksOut: 0,
  };
  private readonly drops: Record<MqttDropReason, number> = {
    undecodable_frame: 0,
    undecodable_message: 0,
    bad_topic: 0,
    retained: 0,
    duplicate: 0,
    reorder_full: 0,
    not_exposed: 0,
    unknown_stream: 0,
    outbox_full: 0,
    too_large: 0,
    expired: 0,
    skipped: 0,
  };

  private constructor(
    private readonly router: Router,
    private readonly options: MqttConnectionOptions,
    outboxLimits: OutboxLimits,
  ) {
    this.endpoints = options.urls.map(parseBrokerUrl);
    this.hostPorts = this.endpoints.map((e) => e.hostPort);
    this.broker = checkBrokerName(options.broker ?? this.hostPorts[0]!);
    this.mailbox = checkMailboxName(options.mailbox);
    this.address = mailboxAddress(this.broker, this.mailbox);
    this.prefix = checkTopicPrefix(options.topicPrefix ?? 'keyhop');
    this.log = options.log.child({ broker: this.broker, mailbox: this.mailbox });
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.maxInFlight = options.maxInFlight ?? 1024;
    this.retransmitMs = options.retransmitMs ?? 10_000;
    this.maxRetransmitMs = options.maxRetransmitMs ?? 120_000;
    this.reconnectMinMs = options.reconnectMinMs ?? 250;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 30_000;
    this.reconnectDelay = this.reconnectMinMs;
    this.outboxLimits = outboxLimits;
    this.inbox = new Inbox(options.inbox);
    this.flow = router.flowControls.create();
    for (const a of options.expose ?? []) router.flowControls.addConsumer(this.flow, Address.from(a));
  }

  /** Checks the options, opens the state file, connects (see connectTimeoutMs) and subscribes. */
  static async open(router: Router, options: MqttConnectionOptions): Promise<MqttConnection> {
    checkOptions(options);
    const limits = { ...DEFAULT_OUTBOX_LIMITS, ...options.outbox };
    const c = new MqttConnection(router, options, limits);
    try {
      await c.openState();
      await c.connect();
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  private async openState(): Promise<void> {
    const dir = this.options.stateDir;
    if (dir === undefined) {
      this.outbox = new Outbox(this.outboxLimits, this.retransmitMs, undefined);
      return;
    }
    const base = join(dir, `${this.broker.replace(/[^A-Za-z0-9_.-]/g, '_')}.${this.mailbox}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    this.releaseLock = await acquireLock(`${base}.lock`, `MQTT state of mailbox ${this.mailbox}`, null);
    const { log, replayed } = await StateLog.open(`${base}.state`, {
      log: this.log,
      fsyncEveryBatch: this.options.fsyncEveryBatch ?? false,
    });
    this.stateLog = log;
    const outbox = new Outbox(this.outboxLimits, this.retransmitMs, log);
    outbox.restore(replayed.streams);
    this.outbox = outbox;
    this.inbox.restore(replayed.cursors);
    const kept = outbox.stats();
    if (kept.messages > 0 || replayed.cursors.length > 0) {
      this.log.info(
        { messages: kept.messages, streams: kept.streams, cursors: replayed.cursors.length },
        'MQTT store-and-forward state restored',
      );
    }
  }

  private connect(): Promise<void> {
    const o = this.options;
    const tls = o.tls ?? {};
    const v5 = (o.protocolVersion ?? 'auto') !== 4;
    this.autoVersion = (o.protocolVersion ?? 'auto') === 'auto';
    const clientOptions: IClientOptions = {
      protocolVersion: v5 ? 5 : 4,
      clientId: o.clientId ?? this.mailbox,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 30,
      resubscribe: false,
      ...(o.username === undefined ? {} : { username: o.username }),
      ...(o.password === undefined ? {} : { password: o.password }),
      ...(v5
        ? {
            properties: {
              sessionExpiryInterval: o.sessionExpirySeconds ?? 7 * 24 * 3600,
              maximumPacketSize: this.maxMessageBytes + 64 * 1024,
            },
          }
        : {}),
    };
    this.v5Properties = clientOptions.properties;
    const ca = tls.ca === undefined ? undefined : pem(tls.ca);
    const cert = tls.cert === undefined ? undefined : pem(tls.cert);
    const key = tls.key === undefined ? undefined : pem(tls.key);
    let attempt = 0;
    // Our own stream builder: the cluster's URLs in turn, and Nagle off (a request/reply over
    // QoS 1 otherwise waits on delayed ACKs, ~40 ms a hop).
    const streamBuilder = () => {
      // A retry in the other protocol version goes to the same server, not the next one.
      const endpoints = this.endpoints;
      const {
        host,
        port,
        tls: secure,
      } = endpoints[(this.sameServerAgain ? attempt - 1 : attempt++) % endpoints.length]!;
      this.sameServerAgain = false;
      const socket = secure
        ? tlsConnect({
            host,
            port,
            servername: isIpLiteral(host) ? undefined : host,
            ca,
            cert,
            key,
            rejectUnauthorized: tls.rejectUnauthorized ?? true,
          })
        : netConnect({ host, port });
      socket.setNoDelay(true);
      return socket;
    };
    const client = new MqttClient(streamBuilder, clientOptions);
    this.client = client;
    client.handleMessage = (packet, done) => this.onPublish(packet, done);
    client.on('packetreceive', (p) => {
      if (p.cmd === 'connack') this.connackSeen = true;
    });
    client.on('connect', (connack) => this.onConnect(connack.sessionPresent));
    client.on('close', () => this.onClose());
    client.on('error', (e) => {
      this.lastError = describeError(e);
      this.log.warn({ err: this.lastError }, 'MQTT client error');
    });
    this.timer = setInterval(() => this.onTimer(), Math.max(50, Math.min(this.retransmitMs / 4, 1000)));
    this.timer.unref();
    const timeout = o.connectTimeoutMs ?? 10_000;
    if (timeout === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        client.off('connect', ok);
        reject(
          new KeyhopError(
            ErrorCodes.CONNECT_FAILED,
            `cannot connect to MQTT broker ${o.urls.join(', ')} within ${timeout} ms` +
              (this.lastError ? `: ${this.lastError}` : ''),
          ),
        );
      }, timeout);
      const ok = () => {
        clearTimeout(timer);
        client.off('error', refused);
        resolve();
      };
      // The broker said no to these credentials (or this client): trying again will not help.
      const refused = (e: Error & { code?: unknown }) => {
        const tlsRefusal = typeof e.code === 'string' && TLS_REFUSAL.test(e.code);
        if (!AUTH_REFUSALS.has(e.code as number) && !tlsRefusal) return;
        clearTimeout(timer);
        client.off('connect', ok);
        client.off('error', refused);
        reject(
          new KeyhopError(
            ErrorCodes.CONNECT_FAILED,
            `MQTT broker ${o.urls.join(', ')} refused the connection: ${e.message}`,
          ),
        );
      };
      client.once('connect', ok);
      client.on('error', refused);
    });
  }

  private onConnect(sessionPresent: boolean): void {
    this.counters.connects++;
    if (this.autoVersion) {
      this.autoVersion = false;
      this.log.info(
        { protocolVersion: this.client!.options.protocolVersion },
        'MQTT protocol version chosen',
      );
    }
    this.connectedOnce = true;
    this.reconnectDelay = this.reconnectMinMs;
    this.lastError = undefined;
    this.log.info({ sessionPresent }, 'MQTT connected');
    const resume = () => {
      for (const s of this.outbox.streams()) {
        // What was published but not acknowledged goes again (the receiver drops duplicates):
        // mqtt.js resends only what the broker did not PUBACK, and some brokers PUBACK and drop.
        s.lastProgress = 0;
        this.pump(s);
      }
    };
    if (sessionPresent) {
      resume();
      return;
    }
    this.client!.subscribe(inboxFilter(this.prefix, this.mailbox), { qos: 1 }, (e, granted) => {
      const refused = granted?.some((g) => g.qos === 128);
      if (e || refused) {
        this.lastError = e ? describeError(e) : 'subscription refused (broker ACL?)';
        this.log.error({ err: this.lastError }, 'MQTT subscribe failed');
        return;
      }
      resume();
    });
  }

  private onClose(): void {
    if (this.stopped || this.offline) return;
    const refusedVersion = !this.connackSeen || /protocol version/i.test(this.lastError ?? '');
    this.connackSeen = false;
    if (this.autoVersion && this.client && refusedVersion) {
      // No CONNACK at all (RabbitMQ 3.10 closes the socket) or "unacceptable protocol version"
      // (aedes, NATS): try the other version next time.
      const o = this.client.options;
      if (o.protocolVersion === 5) {
        o.protocolVersion = 4;
        delete o.properties;
      } else {
        o.protocolVersion = 5;
        if (this.v5Properties) o.properties = this.v5Properties;
      }
      if (o.protocolVersion === 4 && !this.reconnectTimer) {
        this.sameServerAgain = true;
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = undefined;
          if (!this.stopped) this.client?.reconnect();
        }, 0);
        return;
      }
    }
    if (this.connectedOnce) this.log.info({ err: this.lastError }, 'MQTT disconnected');
    if (this.reconnectTimer) return;
    // Exponential back-off with jitter, so a fleet does not reconnect in step after an outage.
    const delay = Math.round(this.reconnectDelay * (0.5 + Math.random() / 2));
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopped) this.client?.reconnect();
    }, delay);
    this.reconnectTimer.unref();
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Resolves true once connected, or false after `ms` (the connection keeps trying). */
  connectedWithin(ms: number): Promise<boolean> {
    const client = this.client;
    if (!client || this.connected) return Promise.resolve(this.connected);
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        client.off('connect', ok);
        resolve(v);
      };
      const ok = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      client.on('connect', ok);
    });
  }

  /** Lets messages from every remote mailbox reach `address`. */
  expose(address: AddressLike): void {
    this.router.flowControls.addConsumer(this.flow, Address.from(address));
  }

  /** The sender worker for `remote` (created on first use). */
  async senderFor(remote: string): Promise<Address> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'MQTT connection is closed');
    const peer = this.peerFor(checkMailboxName(remote));
    await peer.ready;
    return peer.sender;
  }

  /** The remote mailbox whose sender worker is `local`, if it is one of this connection's. */
  mailboxOfSender(local: Address): string | undefined {
    for (const p of this.peers.values()) if (p.sender.equals(local)) return p.remote;
    return undefined;
  }

  /** Per remote mailbox, the local workers its messages may reach (they sent to it, or were admitted). */
  admissions(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const p of this.peers.values()) out.set(p.remote, this.router.flowControls.consumerKeys(p.flow));
    return out;
  }

  /** Admits again what `admissions()` of an earlier connection of this mailbox listed. */
  async readmit(admissions: Map<string, string[]>): Promise<void> {
    for (const [remote, keys] of admissions) {
      const peer = this.peerFor(remote);
      await peer.ready;
      for (const k of keys) this.router.flowControls.addConsumerKey(peer.flow, k);
    }
  }

  /** Lets messages from the mailbox `remote` reach `local` (as if `local` had sent to it). */
  async admit(remote: string, local: Address): Promise<void> {
    if (this.stopped) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'MQTT connection is closed');
    const peer = this.peerFor(checkMailboxName(remote));
    await peer.ready;
    this.router.flowControls.addConsumer(peer.flow, local);
  }

  private peerFor(remote: string): Peer {
    const existing = this.peers.get(remote);
    if (existing) return existing;
    const router = this.router;
    const peer: Peer = {
      remote,
      sender: Address.random('mqtt_sender_'),
      receiver: Address.random('mqtt_receiver_'),
      flow: router.flowControls.create(this.flow),
      ready: Promise.resolve(),
    };
    peer.ready = (async () => {
      await router.startWorker(peer.sender, { handleMessage: (_ctx, m) => this.send(peer, m) });
      await router.startWorker(
        peer.receiver,
        { handleMessage: () => undefined },
        { incoming: denyAll, outgoing: flowControlled(router.flowControls, peer.flow) },
      );
    })();
    this.peers.set(remote, peer);
    return peer;
  }

  /** The sender worker: pops itself, keeps the message in the outbox, publishes when the window allows. */
  private send(peer: Peer, message: Message): void {
    if (this.stopped) throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, 'MQTT connection is closed');
    // Whoever sends through this peer may receive the answers that come back from it.
    const replyTo = message.returnRoute.next;
    if (replyTo?.isLocal && this.router.isRegistered(replyTo)) {
      this.router.flowControls.addConsumer(peer.flow, replyTo);
    }
    const bytes = encodeCborFrame(message.withOnward(message.onward.step()));
    if (bytes.length > this.maxMessageBytes) {
      this.drops.too_large++;
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `MQTT routing message of ${bytes.length} bytes exceeds ${this.maxMessageBytes}`,
      );
    }
    let stream: SendStream;
    try {
      ({ stream } = this.outbox.push(peer.remote, bytes, Date.now()));
    } catch (e) {
      if (isKeyhopError(e, ErrorCodes.OUTBOX_FULL)) this.drops.outbox_full++;
      throw e;
    }
    this.counters.messagesOut++;
    this.pump(stream);
    this.scheduleTrim(stream);
  }

  /** Once the state file has the messages waiting outside the window, their bytes leave memory. */
  private scheduleTrim(stream: SendStream): void {
    const log = this.stateLog;
    if (!log || this.trimming.has(stream)) return;
    if (stream.entries.length <= stream.published + this.outbox.limits.window) return;
    this.trimming.add(stream);
    void log.flush().then(() => {
      this.trimming.delete(stream);
      this.trim(stream);
    });
  }

  /** Publishes what the window of `stream` allows (reading back from the state file what it must). */
  private pump(stream: SendStream): void {
    if (this.pumping.has(stream)) {
      this.pumpAgain.add(stream);
      return;
    }
    this.pumping.add(stream);
    void this.pumpLoop(stream).finally(() => {
      this.pumping.delete(stream);
      if (this.pumpAgain.delete(stream)) this.pump(stream);
    });
  }

  private async pumpLoop(stream: SendStream): Promise<void> {
    try {
      for (;;) {
        if (this.stopped || !this.connected) return;
        const entries = this.outbox.publishable(stream);
        if (entries.length === 0) return;
        if (entries.some((e) => e.bytes === undefined)) {
          // Acknowledgements may arrive while reading: look again at what the window holds then.
          await this.load(entries);
          continue;
        }
        this.corked(() => {
          for (const e of entries) this.publish(stream, e);
        });
        this.outbox.markPublished(stream, entries, Date.now());
        this.trim(stream);
      }
    } catch (e) {
      this.log.warn({ remote: stream.remote, err: describeError(e) }, 'MQTT outbox could not publish');
    }
  }

  /** Reads back the bytes of entries that wait only in the state file. */
  private async load(entries: OutboxEntry[]): Promise<void> {
    const missing = entries.filter((e) => e.bytes === undefined);
    if (missing.length === 0) return;
    const log = this.stateLog!;
    const first = missing[0]!;
    const last = missing[missing.length - 1]!;
    const span = last.offset + last.size - first.offset;
    if (span > 0 && span <= 8 * 1024 * 1024 && missing.every((e) => e.offset >= first.offset)) {
      const chunk = await log.read(first.offset, span);
      for (const e of missing)
        e.bytes = chunk.subarray(e.offset - first.offset, e.offset - first.offset + e.size);
      return;
    }
    for (const e of missing) e.bytes = await log.read(e.offset, e.size);
  }

  /** Drops the in-memory bytes of entries outside the window once the file has them. */
  private trim(stream: SendStream): void {
    if (!this.stateLog) return;
    const keep = stream.published + this.outbox.limits.window;
    for (let i = keep; i < stream.entries.length; i++) {
      const e = stream.entries[i]!;
      if (e.bytes !== undefined && e.offset >= 0) e.bytes = undefined;
    }
  }

  /**
   * Runs `fn` with the socket corked until the next tick, so a burst of publishes leaves in one
   * writev instead of one system call per packet part.
   */
  private corked(fn: () => void): void {
    const stream = this.client?.stream as
      | { cork?: () => void; uncork?: () => void; writableCorked?: number }
      | undefined;
    if (!stream?.cork || !stream.uncork) {
      fn();
      return;
    }
    stream.cork();
    try {
      fn();
    } finally {
      process.nextTick(() => stream.uncork?.());
    }
  }

  private publish(stream: SendStream, e: OutboxEntry): void {
    const payload = encodeData(stream.id, e.seq, stream.base, e.bytes!);
    this.counters.publishes++;
    this.client!.publish(
      mailboxTopic(this.prefix, stream.remote, this.mailbox),
      asBuffer(payload),
      { qos: 1 },
      (err) => {
        if (err && !this.stopped)
          this.log.debug({ err: describeError(err) }, 'MQTT publish not acknowledged');
      },
    );
  }

  private onTimer(): void {
    if (this.stopped) return;
    const now = Date.now();
    for (const { stream, expired } of this.outbox.expire(now)) {
      this.drops.expired += expired;
      this.log.warn({ remote: stream.remote, expired }, 'MQTT outbox gave up messages older than maxAgeMs');
      this.pump(stream);
    }
    if (this.connected) {
      for (const s of this.outbox.streams()) {
        if (this.pumping.has(s)) continue;
        // Something waits outside the window although there is room: a read from the state file
        // failed (say, during a compaction); try again.
        if (s.entries.length > s.published && s.published < this.outbox.limits.window) this.pump(s);
        if (s.published === 0) continue;
        if (now - s.lastProgress < s.retransmitMs) continue;
        // No acknowledgement for a while: publish the window again (the receiver drops duplicates).
        for (let i = 0; i < s.published; i++) {
          const e = s.entries[i]!;
          if (e.bytes === undefined) break;
          this.publish(s, e);
          this.counters.retransmits++;
        }
        s.lastProgress = now;
        s.retransmitMs = Math.min(s.retransmitMs * 2, this.maxRetransmitMs);
      }
    }
    this.maybeCompact();
  }

  private maybeCompact(): void {
    const log = this.stateLog;
    if (!log || this.compacting) return;
    const live = this.outbox.stats().bytes;
    if (log.bytes < 16 * 1024 * 1024 || log.bytes < 4 * live) return;
    this.compacting = true;
    log
      .compact({ streams: this.outbox.live(), cursors: this.inbox.cursors() })
      .catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'MQTT state file not compacted'))
      .finally(() => {
        this.compacting = false;
      });
  }

  private onPublish(packet: IPublishPacket, done: (e?: Error) => void): void {
    try {
      this.receive(packet);
    } catch (e) {
      // Nothing in receive throws by design; a broker's packet must never take the node down.
      this.log.warn({ err: describeError(e) }, 'MQTT message handling failed');
    }
    if (this.inFlight < this.maxInFlight) done();
    else this.paused.push(() => done());
  }

  private receive(packet: IPublishPacket): void {
    if (packet.retain) {
      // keyhop never publishes retained messages; one on a keyhop topic is garbage left there.
      this.drop('retained', packet.topic);
      return;
    }
    const from = senderOfTopic(this.prefix, this.mailbox, packet.topic);
    if (from === undefined) {
      this.drop('bad_topic', packet.topic);
      return;
    }
    const payload = packet.payload;
    const bytes =
      typeof payload === 'string'
        ? Buffer.from(payload)
        : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    let frame: ReturnType<typeof decodeFrame>;
    try {
      frame = decodeFrame(bytes, this.maxMessageBytes);
    } catch (e) {
      this.drop('undecodable_frame', from, describeError(e));
      return;
    }
    if (frame.kind === FrameKind.ACK) {
      this.counters.acksIn++;
      const r = this.outbox.ack(frame.stream, frame.acked, Date.now());
      if (r === undefined) this.drop('unknown_stream', from);
      else if (r.removed > 0) this.pump(r.stream);
      return;
    }
    this.onData(from, frame);
  }

  private onData(from: string, frame: DataFrame): void {
    const r = this.inbox.accept(from, frame);
    if (r.duplicate) this.drops.duplicate++;
    if (r.refused) this.drops.reorder_full++;
    if (r.skipped > 0) {
      this.drops.skipped += r.skipped;
      this.log.warn({ from, skipped: r.skipped }, 'MQTT sender gave up messages before they arrived');
    }
    for (const body of r.deliver) this.deliver(from, body);
    if (r.ack !== undefined) {
      this.pendingAcks.set(r.key, {
        remote: from,
        stream: frame.stream.slice(),
        acked: r.ack,
      });
      this.scheduleTick();
    }
  }

  private deliver(from: string, body: Uint8Array): void {
    let message: Message;
    try {
      message = decodeCborFrame(body, 'MQTT routing message');
    } catch (e) {
      this.drop('undecodable_message', from, describeError(e));
      return;
    }
    const next = message.onward.next;
    if (next === undefined) return; // nothing to deliver to
    let peer = this.peers.get(from);
    if (peer === undefined) {
      // A new mailbox may only reach what is exposed: check before creating any state.
      if (!next.isLocal || !this.router.flowControls.isConsumer(next, this.flow)) {
        this.drop('not_exposed', from, `${next} is not exposed on ${this.address}`);
        return;
      }
      peer = this.peerFor(from);
    }
    const info: TransportInfo = {
      transport: 'mqtt',
      peer: `${this.broker}/${from}`,
      sender: peer.sender.toString(),
    };
    const routed = message
      .withReturn(message.returnRoute.prepend(peer.sender))
      .withLocalInfo({ type: TRANSPORT_INFO, data: info });
    this.counters.messagesIn++;
    this.inFlight++;
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      this.inFlight--;
      if (this.inFlight < this.maxInFlight) {
        const resume = this.paused;
        this.paused = [];
        for (const f of resume) f();
      }
    };
    const p = peer;
    p.ready
      .then(() => this.router.send(p.receiver, routed, settle))
      .catch((e: unknown) => {
        settle();
        this.log.debug({ from, err: describeError(e) }, 'message from MQTT mailbox not delivered');
      });
  }

  private scheduleTick(): void {
    if (this.tickScheduled) return;
    this.tickScheduled = true;
    setImmediate(() => {
      this.tickScheduled = false;
      this.sendAcks();
    });
  }

  /** Persists the cursors that moved, then acknowledges (so a restart re-delivers as little as possible). */
  private sendAcks(): void {
    const acks = [...this.pendingAcks.values()];
    this.pendingAcks.clear();
    const publish = () => {
      const client = this.client;
      if (this.stopped || !client) return;
      this.corked(() => {
        for (const a of acks) {
          this.counters.acksOut++;
          const topic = mailboxTopic(this.prefix, a.remote, this.mailbox);
          client.publish(topic, asBuffer(encodeAck(a.stream, a.acked)), { qos: 1 });
        }
      });
    };
    const log = this.stateLog;
    if (!log) {
      publish();
      return;
    }
    for (const c of this.inbox.takeDirty()) log.cursor(c.from, c.stream, c.next);
    log.flush().then(publish, publish);
  }

  private drop(reason: MqttDropReason, from: string, detail?: string): void {
    this.drops[reason]++;
    this.log.debug({ from, reason, detail }, 'MQTT frame dropped');
  }

  stats(): MqttConnectionStats {
    const held = this.inbox.held;
    return {
      connected: this.connected,
      lastError: this.lastError ?? null,
      ...this.counters,
      outbox: this.outbox.stats(),
      inbox: { streams: this.inbox.streamCount, heldMessages: held.messages, heldBytes: held.bytes },
      drops: { ...this.drops },
      stateFileBytes: this.stateLog?.bytes ?? 0,
    };
  }

  private async endClient(): Promise<void> {
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      // Connected: not forced, so acknowledgements already handed to the client still leave.
      // Otherwise mqtt.js would queue the DISCONNECT until a connection that never comes.
      const force = !client.connected;
      const t = setTimeout(() => {
        client.stream?.destroy();
        resolve();
      }, 2_000);
      client.end(force, () => {
        clearTimeout(t);
        client.stream?.destroy();
        resolve();
      });
    });
  }

  /**
   * Leaves the broker on purpose and stays offline (a device powering its radio down): the
   * session stays at the broker, messages for this mailbox wait there, messages from it wait in
   * the outbox, and the workers and their routes stay. `reconnect()` comes back.
   */
  async disconnect(): Promise<void> {
    if (this.stopped || this.offline) return;
    this.offline = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    await this.endClient();
  }

  /** Comes back after disconnect() (the session resumes where it was). */
  reconnect(): void {
    if (this.stopped || !this.offline) return;
    this.offline = false;
    this.client?.reconnect();
  }

  /** Writes the state file, leaves the broker (the session stays for the next run) and stops the workers. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const f of this.paused) f();
    this.paused = [];
    const log = this.stateLog;
    if (log) {
      for (const c of this.inbox.takeDirty()) log.cursor(c.from, c.stream, c.next);
    }
    await this.endClient();
    for (const p of this.peers.values()) {
      this.router.flowControls.remove(p.flow);
      await this.router.stopWorker(p.sender).catch(() => undefined);
      await this.router.stopWorker(p.receiver).catch(() => undefined);
    }
    this.peers.clear();
    this.router.flowControls.remove(this.flow);
    await log
      ?.close()
      .catch((e: unknown) => this.log.warn({ err: describeError(e) }, 'MQTT state file not closed'));
    await this.releaseLock?.();
    this.log.info('MQTT connection closed');
  }
}

/** The same bytes as a Buffer, without a copy (`Buffer.from(uint8Array)` copies). */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function pem(v: string | Uint8Array): Buffer {
  if (typeof v !== 'string') return Buffer.from(v);
  if (v.includes('-----BEGIN')) return Buffer.from(v, 'utf8');
  try {
    return readFileSync(v);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `cannot read ${v}: ${describeError(e)}`, { cause: e });
  }
}

function checkOptions(o: MqttConnectionOptions): void {
  const invalid = (why: string) => new KeyhopError(ErrorCodes.CONFIG_INVALID, `MQTT: ${why}`);
  if (!Array.isArray(o.urls) || o.urls.length === 0) throw invalid('give at least one broker URL');
  for (const u of o.urls) parseBrokerUrl(u);
  checkMailboxName(o.mailbox);
  if (o.protocolVersion !== undefined && ![4, 5, 'auto'].includes(o.protocolVersion)) {
    throw invalid(`protocolVersion must be 4 (MQTT 3.1.1), 5 or 'auto', got ${String(o.protocolVersion)}`);
  }
  const positive: [string, number | undefined][] = [
    ['retransmitMs', o.retransmitMs],
    ['maxRetransmitMs', o.maxRetransmitMs],
    ['reconnectMinMs', o.reconnectMinMs],
    ['reconnectMaxMs', o.reconnectMaxMs],
    ['maxInFlight', o.maxInFlight],
    ['maxMessageBytes', o.maxMessageBytes],
    ['outbox.maxMessages', o.outbox?.maxMessages],
    ['outbox.maxBytes', o.outbox?.maxBytes],
    ['outbox.window', o.outbox?.window],
    ['outbox.windowBytes', o.outbox?.windowBytes],
    ['inbox.maxStreams', o.inbox?.maxStreams],
    ['inbox.maxHeldPerStream', o.inbox?.maxHeldPerStream],
    ['inbox.maxHeldBytes', o.inbox?.maxHeldBytes],
  ];
  for (const [name, v] of positive) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1))
      throw invalid(`${name} must be a positive integer, got ${v}`);
  }
  for (const [name, v] of [
    ['outbox.maxAgeMs', o.outbox?.maxAgeMs],
    ['connectTimeoutMs', o.connectTimeoutMs],
  ] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
      throw invalid(`${name} must be >= 0, got ${v}`);
  }
  if (o.maxMessageBytes !== undefined && o.maxMessageBytes > MAX_MESSAGE_BYTES) {
    throw invalid(`maxMessageBytes must be at most ${MAX_MESSAGE_BYTES}`);
  }
}
