import type { CryptoProvider } from '../../vaults/provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { fromHex } from '../../vaults/software/store-header.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Clock } from '../identity/clock.js';
import { type Logger, silentLogger } from '../log.js';
import { RateLimitedLog } from '../log-rate-limit.js';
import { Address, type AddressLike } from '../routing/address.js';
import type { Context } from '../routing/context.js';
import type { FlowId } from '../routing/flow-control.js';
import { Message } from '../routing/message.js';
import { Route, type RouteLike, toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import { sourceKey } from '../transports/tcp/source-key.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transports/transport-info.js';
import {
  type ChannelIdentity,
  type ChannelTrustPolicy,
  type PeerIdentity,
  SECURE_CHANNEL_INFO,
  type SecureChannelInfo,
} from './channel-identity.js';
import type { ChannelStore, StoredChannel } from './channel-store.js';
import { CookieJar, type CookieSource } from './handshake-cookie.js';
import { MAX_WINDOW, WINDOW } from './replay-window.js';
import {
  type ChannelGate,
  type ChannelLimitKind,
  type ChannelPersistence,
  type ChannelSettings,
  SecureChannelEnd,
} from './secure-channel.js';

/** Ockam nodes listen for secure channels at `api`. */
export const DEFAULT_LISTENER = 'api';
const trustEveryone: ChannelTrustPolicy = Object.assign(() => true, { description: 'any identity' });

/** Defaults of the listener limits (docs/security.md, Denial of service, says why these). */
export const CHANNEL_LIMIT_DEFAULTS = {
  maxPendingHandshakes: 1024,
  maxHandshakesPerSource: 32,
  maxChannels: 10_000,
  maxChannelsPerPeer: 256,
  /** A quarter of maxPendingHandshakes when that is set and this is not. */
  cookieThreshold: 256,
  idleTimeoutMs: 600_000,
} as const;

/** Retries a listener has on their way out at once (sent, not yet taken by their next hop). */
const MAX_RETRIES_IN_FLIGHT = 256;

/** A peer's message rate through one channel: a token bucket. */
export interface MessageRate {
  /** Payload messages per second, on average. */
  perSecond: number;
  /** Messages at once (the bucket's size); default one second's worth, at least 1. */
  burst?: number;
}

/** What a listener lets peers hold; each defaults to CHANNEL_LIMIT_DEFAULTS (no message rate). */
export interface ChannelLimits {
  /** Handshakes in progress at once; further first messages are dropped unread. */
  maxPendingHandshakes?: number;
  /**
   * Of those, from one transport source (a TCP or UDP peer's IPv4 address or IPv6 /64, an MQTT
   * mailbox, …; through a relay, the relay's), or through one secure channel (its peer).
   */
  maxHandshakesPerSource?: number;
  /** Channels open at once (responder ends); a verified peer beyond is refused (CHANNEL_LIMIT). */
  maxChannels?: number;
  /** Of those, with one peer identity. */
  maxChannelsPerPeer?: number;
  /**
   * From this many handshakes in progress on, the listener is under load: a first message that
   * came over a transport without a valid cookie is answered with a Retry carrying one, and takes
   * no slot (docs/protocols/handshake-cookie.md). 0: always. Default a quarter of maxPendingHandshakes.
   */
  cookieThreshold?: number;
  /**
   * A channel end (either role, not persistent) that neither sent nor received anything for this
   * long closes. 0: never. Default 10 minutes.
   */
  idleTimeoutMs?: number;
  /** Payload messages from a peer over this rate are dropped (`rate_limited`), per channel. */
  messageRate?: MessageRate;
}

/** What the listeners refused and dropped (since created), and what they hold now. */
export interface SecureChannelsStats {
  /** Handshakes in progress now. */
  handshakesInProgress: number;
  /** Channels the listeners count now (open responder ends, restored ones included). */
  channelsOpen: number;
  /** First messages dropped: the listener had its maximum of handshakes in progress. */
  handshakesRefusedBusy: number;
  /** First messages dropped: their source had its maximum of handshakes in progress. */
  handshakesRefusedPerSource: number;
  /** Verified peers refused (CHANNEL_LIMIT): the listener had its maximum of channels open. */
  channelsRefusedListenerFull: number;
  /** Verified peers refused (CHANNEL_LIMIT): that identity had the maximum of channels open. */
  channelsRefusedPerPeer: number;
  /** Payload messages dropped for going over a channel's message rate. */
  messagesRateLimited: number;
  /** Channel ends (either role) closed because the connection or hop under them went away. */
  closedWithTransport: number;
  /** Channel ends (either role) closed after the idle timeout. */
  closedIdle: number;
  /** First messages answered with a Retry (the listener was under load; they carried no valid cookie). */
  retriesSent: number;
  /** First messages dropped under load without a Retry: too many Retries were still on their way out. */
  retriesSkipped: number;
  /** First messages whose cookie was valid (their source proved it receives at its return route). */
  cookiesAccepted: number;
  /** Responder handshakes that failed: no message 3 in time… */
  handshakesTimedOut: number;
  /** …a message that did not decode or authenticate, or an identity that did not verify… */
  handshakesInvalid: number;
  /** …or an initiator the trust policy refused. */
  handshakesRefusedTrust: number;
}

type LimitCounter = Exclude<
  keyof SecureChannelsStats,
  'handshakesInProgress' | 'channelsOpen' | 'closedWithTransport' | 'closedIdle'
>;

function zeroStats(): SecureChannelsStats {
  return {
    handshakesInProgress: 0,
    channelsOpen: 0,
    handshakesRefusedBusy: 0,
    handshakesRefusedPerSource: 0,
    channelsRefusedListenerFull: 0,
    channelsRefusedPerPeer: 0,
    messagesRateLimited: 0,
    closedWithTransport: 0,
    closedIdle: 0,
    retriesSent: 0,
    retriesSkipped: 0,
    cookiesAccepted: 0,
    handshakesTimedOut: 0,
    handshakesInvalid: 0,
    handshakesRefusedTrust: 0,
  };
}

function limitProblem(where: string, limits: ChannelLimits): string | undefined {
  for (const k of [
    'maxPendingHandshakes',
    'maxHandshakesPerSource',
    'maxChannels',
    'maxChannelsPerPeer',
  ] as const) {
    const v = limits[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1))
      return `${where}${k} must be a whole number >= 1, got ${v}`;
  }
  for (const k of ['cookieThreshold', 'idleTimeoutMs'] as const) {
    const v = limits[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
      return `${where}${k} must be a whole number >= 0, got ${v}`;
  }
  const r = limits.messageRate;
  if (r !== undefined) {
    if (typeof r.perSecond !== 'number' || !Number.isFinite(r.perSecond) || r.perSecond <= 0)
      return `${where}messageRate.perSecond must be a number > 0, got ${r.perSecond}`;
    if (r.burst !== undefined && (!Number.isSafeInteger(r.burst) || r.burst < 1))
      return `${where}messageRate.burst must be a whole number >= 1, got ${r.burst}`;
  }
  return undefined;
}

/** Where a first message came from, for the per-source limit (cached per connection's info). */
const sourceKeys = new WeakMap<object, string>();

function transportSource(t: TransportInfo): string {
  if (t.transport === 'tcp' || t.transport === 'udp') {
    const colon = t.peer.lastIndexOf(':');
    const host = colon > 0 ? t.peer.slice(0, colon).replace(/^\[(.*)\]$/, '$1') : t.peer;
    return `${t.transport}:${sourceKey(host)}`;
  }
  return `${t.transport}:${t.peer}`;
}

function handshakeSource(message: Message): string | undefined {
  const info = message.localInfo;
  // An index loop: this runs for every first message, refused ones included.
  for (let i = 0; i < info.length; i++) {
    const { type, data } = info[i]!;
    if (type !== TRANSPORT_INFO && type !== SECURE_CHANNEL_INFO) continue;
    if (typeof data !== 'object' || data === null) return undefined;
    let key = sourceKeys.get(data as object);
    if (key === undefined) {
      key =
        type === TRANSPORT_INFO
          ? transportSource(data as TransportInfo)
          : `channel:${(data as SecureChannelInfo).peer.identifier}`;
      sourceKeys.set(data as object, key);
    }
    return key;
  }
  return undefined;
}

/** Where a first message came over a transport from, as a cookie binds it (undefined: not over a transport). */
function cookieSource(message: Message): (CookieSource & { info: TransportInfo }) | undefined {
  const info = message.localInfo;
  for (let i = 0; i < info.length; i++) {
    if (info[i]!.type !== TRANSPORT_INFO) continue;
    const t = info[i]!.data as TransportInfo;
    if (typeof t !== 'object' || t === null) return undefined;
    return { source: `${t.transport}:${t.peer}`, returnRoute: message.returnRoute.step(), info: t };
  }
  return undefined;
}

export interface SecureChannelsOptions {
  identity: ChannelIdentity;
  provider?: CryptoProvider;
  log?: Logger;
  handshakeTimeoutMs?: number;
  /** Every channel of these closes this long after it opened. */
  maxLifetimeMs?: number;
  /** For credential expiry while channels are open (default: the system clock). */
  clock?: Clock;
  /**
   * How far behind and ahead of the highest nonce received a message may be (default 32, Ockam's).
   * Wider (queue mode, up to 65,536) for channels over queues that hold back or reorder more;
   * replays are still refused. Each end's own setting: the wire does not change.
   */
  receiveWindow?: number;
  /** Where persistent channels are kept (create/createListener with `persist`). */
  store?: ChannelStore;
  /**
   * Nonces a persistent channel reserves per write (default 16): after a crash it goes on after
   * the block, which the peer's receive window must reach (Ockam's reaches 32 ahead).
   */
  nonceBlock?: number;
  /** Limits of every listener, unless its own options say otherwise. */
  limits?: ChannelLimits;
}

export interface ListenerOptions extends ChannelLimits {
  /** Which verified peers may open a channel. Default: every peer with a valid identity. */
  trustPolicy?: ChannelTrustPolicy;
  /** Local workers that messages arriving through channels of this listener may reach. */
  expose?: AddressLike[];
  /** Channels of this listener outlive this process (kept in the store, restored by `restore`). */
  persist?: boolean;
}

export interface CreateOptions {
  trustPolicy?: ChannelTrustPolicy;
  confirm?: boolean;
  timeoutMs?: number;
  /** The channel outlives this process (kept in the store, restored by `restore`). */
  persist?: boolean;
}

/** What `restore` did with each stored channel. */
export interface RestoreReport {
  restored: SecureChannelEnd[];
  /** Channels dropped from the store, and why (peer no longer trusted, listener gone, …). */
  dropped: { id: string; peer: string; reason: string }[];
}

export interface SecureChannelListener {
  readonly address: Address;
  readonly flow: FlowId;
  readonly trustPolicy: ChannelTrustPolicy;
  /** The limits in force, defaults filled in. */
  readonly limits: Readonly<Required<Omit<ChannelLimits, 'messageRate'>>> & {
    readonly messageRate?: Readonly<Required<MessageRate>>;
  };
  expose(address: AddressLike): void;
  /** This listener's share of SecureChannels.stats(). */
  stats(): SecureChannelsStats;
  close(): Promise<void>;
}

/**
 * A listener's counts: handshakes in progress (in all, per source) and channels it admitted (in
 * all, per peer). Sources and peers are kept only while they hold something.
 */
class ListenerGate implements ChannelGate {
  pending = 0;
  channels = 0;
  readonly perSource = new Map<string, number>();
  readonly perPeer = new Map<string, number>();
  readonly counters = zeroStats();

  constructor(
    readonly address: Address,
    readonly limits: SecureChannelListener['limits'],
    private readonly totals: SecureChannelsStats,
    private readonly limitLog: RateLimitedLog,
  ) {}

  count(counter: LimitCounter): void {
    this.counters[counter]++;
    this.totals[counter]++;
  }

  /** Whether first messages without a valid cookie get a Retry instead of a slot now. */
  get underLoad(): boolean {
    return this.pending >= this.limits.cookieThreshold;
  }

  /** Whether a first message from `source` may take a handshake slot (when not, it was counted and logged). */
  mayStart(source: string | undefined): boolean {
    const l = this.limits;
    if (this.pending >= l.maxPendingHandshakes) {
      this.count('handshakesRefusedBusy');
      this.limitLog.write(
        'warn',
        'handshakes-busy',
        { listener: this.address.toString(), limit: l.maxPendingHandshakes },
        'secure-channel first message dropped: the listener has its maximum of handshakes in progress',
      );
      return false;
    }
    if (source !== undefined) {
      const n = this.perSource.get(source) ?? 0;
      if (n >= l.maxHandshakesPerSource) {
        this.count('handshakesRefusedPerSource');
        this.limitLog.write(
          'warn',
          'handshakes-per-source',
          { listener: this.address.toString(), source, limit: l.maxHandshakesPerSource },
          'secure-channel first message dropped: its source has the maximum of handshakes in progress',
        );
        return false;
      }
    }
    return true;
  }

  /** Takes a handshake slot (after mayStart). */
  startHandshake(source: string | undefined): void {
    if (source !== undefined) this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    this.pending++;
  }

  /** Counts a responder handshake that failed, by why. */
  failed(code: string): void {
    this.count(
      code === ErrorCodes.HANDSHAKE_TIMEOUT
        ? 'handshakesTimedOut'
        : code === ErrorCodes.TRUST_REFUSED
          ? 'handshakesRefusedTrust'
          : 'handshakesInvalid',
    );
  }

  endHandshake(source: string | undefined): void {
    this.pending--;
    if (source !== undefined) decrement(this.perSource, source);
  }

  admit(end: SecureChannelEnd, peer: PeerIdentity): ChannelLimitKind | undefined {
    const l = this.limits;
    const id = peer.identifier;
    const n = this.perPeer.get(id) ?? 0;
    let refused: ChannelLimitKind | undefined;
    if (this.channels >= l.maxChannels) refused = 'listener-full';
    else if (n >= l.maxChannelsPerPeer) refused = 'per-peer';
    if (refused === 'listener-full') {
      this.count('channelsRefusedListenerFull');
      this.limitLog.write(
        'warn',
        'listener-full',
        { listener: this.address.toString(), peer: id, limit: l.maxChannels },
        'secure channel refused: the listener has its maximum of channels open',
      );
      return refused;
    }
    if (refused === 'per-peer') {
      this.count('channelsRefusedPerPeer');
      this.limitLog.write(
        'warn',
        'per-peer',
        { listener: this.address.toString(), peer: id, limit: l.maxChannelsPerPeer },
        'secure channel refused: its peer has the maximum of channels open with this listener',
      );
      return refused;
    }
    this.hold(end, id, n);
    return undefined;
  }

  /** A restored channel counts without being refused: it was admitted by an earlier process. */
  adopt(end: SecureChannelEnd, peer: PeerIdentity): void {
    this.hold(end, peer.identifier, this.perPeer.get(peer.identifier) ?? 0);
  }

  private hold(end: SecureChannelEnd, id: string, n: number): void {
    this.channels++;
    this.perPeer.set(id, n + 1);
    end.onClose(() => {
      this.channels--;
      decrement(this.perPeer, id);
    });
  }

  rateLimited(end: SecureChannelEnd): void {
    this.count('messagesRateLimited');
    this.limitLog.write(
      'warn',
      'rate-limited',
      { listener: this.address.toString(), encryptor: end.encryptor.toString(), peer: end.peer?.identifier },
      'secure-channel messages dropped: their peer went over the message rate',
    );
  }

  stats(): SecureChannelsStats {
    return { ...this.counters, handshakesInProgress: this.pending, channelsOpen: this.channels };
  }
}

function decrement(m: Map<string, number>, key: string): void {
  const n = (m.get(key) ?? 1) - 1;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}

/**
 * Secure channels of one node and identity: listeners that answer handshakes, and channels this
 * node initiates. Any route works underneath: direct TCP, relays, UDP, another secure channel.
 */
export class SecureChannels {
  private readonly channels = new Map<string, SecureChannelEnd>();
  private readonly listenerMap = new Map<string, SecureChannelListener>();
  private readonly gates = new Map<string, ListenerGate>();
  private readonly provider: CryptoProvider;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly limitLog: RateLimitedLog;
  /** Counters of every listener this node ran, closed ones included. */
  private readonly totals = zeroStats();

  constructor(
    private readonly router: Router,
    private readonly options: SecureChannelsOptions,
  ) {
    this.provider = options.provider ?? nodeCrypto;
    this.log = (options.log ?? router.log ?? silentLogger).child({ component: 'secure-channel' });
    this.timeoutMs = options.handshakeTimeoutMs ?? 30_000;
    this.limitLog = new RateLimitedLog(this.log);
    // A channel ends with the first hop of its route: when the connection it runs over closes
    // (a peer killed, a link cut), nothing will ever arrive again, and an end left open would hold
    // its memory and its listener's slots for ever. Persistent ends outlive their connections.
    router.onWorkerStopped((stopped) => this.hopStopped(stopped));
    const problem = limitProblem('limits.', options.limits ?? {});
    if (problem) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `secure channels: ${problem}`);
    const b = options.nonceBlock;
    if (b !== undefined && (!Number.isInteger(b) || b < 1 || b > MAX_WINDOW)) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `nonceBlock must be a whole number from 1 to ${MAX_WINDOW}, got ${b}`,
      );
    }
    const w = options.receiveWindow;
    if (w !== undefined && (!Number.isInteger(w) || w < WINDOW || w > MAX_WINDOW)) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `receiveWindow must be a whole number from ${WINDOW} to ${MAX_WINDOW}, got ${w}`,
      );
    }
  }

  get identity(): ChannelIdentity {
    return this.options.identity;
  }

  /** What the listeners refused and dropped since this was created, and what they hold now. */
  stats(): SecureChannelsStats {
    const out = {
      ...this.totals,
      handshakesInProgress: 0,
      channelsOpen: 0,
      closedWithTransport: this.closedWithHop,
      closedIdle: this.closedIdle,
    };
    for (const g of this.gates.values()) {
      out.handshakesInProgress += g.pending;
      out.channelsOpen += g.channels;
    }
    return out;
  }

  /** The options' limits over the defaults, with `own` (a listener's) over both. */
  private listenerLimits(own: ChannelLimits): SecureChannelListener['limits'] {
    const problem = limitProblem('', own);
    if (problem) throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `secure-channel listener: ${problem}`);
    const base = this.options.limits ?? {};
    const pick = <K extends keyof typeof CHANNEL_LIMIT_DEFAULTS>(k: K): number =>
      own[k] ?? base[k] ?? CHANNEL_LIMIT_DEFAULTS[k];
    const rate = own.messageRate ?? base.messageRate;
    const maxPendingHandshakes = pick('maxPendingHandshakes');
    return {
      maxPendingHandshakes,
      maxHandshakesPerSource: pick('maxHandshakesPerSource'),
      maxChannels: pick('maxChannels'),
      maxChannelsPerPeer: pick('maxChannelsPerPeer'),
      cookieThreshold: own.cookieThreshold ?? base.cookieThreshold ?? Math.floor(maxPendingHandshakes / 4),
      idleTimeoutMs: pick('idleTimeoutMs'),
      ...(rate
        ? {
            messageRate: {
              perSecond: rate.perSecond,
              burst: rate.burst ?? Math.max(1, Math.ceil(rate.perSecond)),
            },
          }
        : {}),
    };
  }

  private settings(
    trustPolicy: ChannelTrustPolicy,
    confirm = true,
    timeoutMs = this.timeoutMs,
    persistence?: ChannelPersistence,
    gate?: ListenerGate,
  ): ChannelSettings {
    const rate = gate?.limits.messageRate;
    const idleTimeoutMs =
      gate?.limits.idleTimeoutMs ??
      this.options.limits?.idleTimeoutMs ??
      CHANNEL_LIMIT_DEFAULTS.idleTimeoutMs;
    if (idleTimeoutMs > 0 && !persistence) this.watchIdle(idleTimeoutMs);
    return {
      idleTimeoutMs,
      ...(persistence ? { persistence } : {}),
      ...(gate ? { gate } : {}),
      ...(rate ? { messageRate: rate } : {}),
      provider: this.provider,
      identity: this.options.identity,
      trustPolicy,
      handshakeTimeoutMs: timeoutMs,
      log: this.log,
      confirm,
      ...(this.options.maxLifetimeMs !== undefined ? { maxLifetimeMs: this.options.maxLifetimeMs } : {}),
      ...(this.options.receiveWindow !== undefined ? { receiveWindow: this.options.receiveWindow } : {}),
      ...(this.options.clock ? { now: () => this.options.clock!.now() } : {}),
    };
  }

  private persistence(persist: boolean | undefined, listener?: Address): ChannelPersistence | undefined {
    if (!persist) return undefined;
    const store = this.options.store;
    if (!store) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        'a persistent secure channel needs a channel store (a node with a home directory)',
      );
    }
    return {
      store,
      nonceBlock: BigInt(this.options.nonceBlock ?? 16),
      portableRoute: (r) => this.router.portableRoute(r),
      ...(listener ? { listener: listener.toString() } : {}),
    };
  }

  private hopStopped(stopped: readonly Address[]): void {
    if (this.channels.size === 0) return;
    const keys = new Set(stopped.map((a) => a.key));
    for (const end of [...this.channels.values()]) {
      const hop = end.remoteRoute.next;
      if (hop === undefined || !hop.isLocal || !keys.has(hop.key) || end.persistent) continue;
      this.closedWithHop++;
      void end.abandon(`the way to the peer closed (${hop})`);
    }
  }

  /** Channel ends closed because the first hop of their route stopped. */
  private closedWithHop = 0;
  private closedIdle = 0;
  private idleSweeper: NodeJS.Timeout | undefined;
  private idleSweepMs = 0;
  private lastIdleSweep = 0;

  /**
   * Runs the one idle sweep of this node's channels often enough for `timeoutMs`: a quarter of
   * the shortest idle timeout, 250 ms to 60 s. A flag per end (set by its traffic) and a sweep
   * instead of a timer per end: nothing on the data path but one store.
   */
  private watchIdle(timeoutMs: number): void {
    const period = Math.max(250, Math.min(60_000, Math.floor(timeoutMs / 4)));
    if (this.idleSweeper !== undefined && period >= this.idleSweepMs) return;
    clearInterval(this.idleSweeper);
    this.idleSweepMs = period;
    this.lastIdleSweep = performance.now();
    this.idleSweeper = setInterval(() => this.sweepIdle(), period);
    this.idleSweeper.unref();
  }

  private sweepIdle(): void {
    const now = performance.now();
    const elapsed = now - this.lastIdleSweep;
    this.lastIdleSweep = now;
    for (const end of this.channels.values()) {
      if (end.state !== 'open' || end.persistent) continue;
      if (end.active) {
        end.active = false;
        end.idleFor = 0;
        continue;
      }
      const limit = end.idleTimeoutMs;
      if (limit <= 0) continue;
      end.idleFor += elapsed;
      if (end.idleFor >= limit) {
        this.closedIdle++;
        this.log.debug(
          { encryptor: end.encryptor.toString(), idleMs: Math.round(end.idleFor) },
          'secure channel idle; closing it',
        );
        void end.close();
      }
    }
  }

  private track(end: SecureChannelEnd): void {
    this.channels.set(end.encryptor.key, end);
    end.onClose(() => this.channels.delete(end.encryptor.key));
  }

  /**
   * Opens a channel to the listener at `route` (e.g. `1#host:port => api`). Resolves once the
   * handshake is done, this end's trust policy accepts the responder, and (unless `confirm` is
   * false, for Ockam responders) the responder has accepted this identity; rejects with
   * TRUST_REFUSED saying which side refused whom.
   */
  async create(route: RouteLike, options: CreateOptions = {}): Promise<SecureChannelEnd> {
    const fc = this.router.flowControls;
    const end = new SecureChannelEnd(
      this.router,
      true,
      fc.create(),
      this.settings(
        options.trustPolicy ?? trustEveryone,
        options.confirm ?? true,
        options.timeoutMs,
        this.persistence(options.persist),
      ),
    );
    await end.start();
    this.track(end);
    try {
      await end.initiate(toRoute(route));
    } catch (e) {
      await end.close();
      throw e;
    }
    return end;
  }

  async createListener(
    address: AddressLike = DEFAULT_LISTENER,
    options: ListenerOptions = {},
  ): Promise<SecureChannelListener> {
    const listenerAddress = Address.from(address);
    const limits = this.listenerLimits(options);
    const gate = new ListenerGate(listenerAddress, limits, this.totals, this.limitLog);
    const fc = this.router.flowControls;
    const flow = fc.create();
    for (const a of options.expose ?? []) fc.addConsumer(flow, Address.from(a));
    const trustPolicy = options.trustPolicy ?? trustEveryone;
    const settings = this.settings(
      trustPolicy,
      true,
      this.timeoutMs,
      this.persistence(options.persist, listenerAddress),
      gate,
    );
    const router = this.router;
    const track = (end: SecureChannelEnd) => this.track(end);
    const cookies = new CookieJar(this.provider, listenerAddress.toString());
    let retriesInFlight = 0;
    const retrySettled = { settled: () => void retriesInFlight-- };
    /** Answers a first message with a Retry (no state kept), unless too many are on their way out. */
    const sendRetry = (message: Message, from: CookieSource): void => {
      if (retriesInFlight >= MAX_RETRIES_IN_FLIGHT) {
        gate.count('retriesSkipped');
        return;
      }
      retriesInFlight++;
      gate.count('retriesSent');
      router.post(
        listenerAddress,
        new Message(message.returnRoute, Route.of(listenerAddress), cookies.retry(from)),
        retrySettled,
      );
    };
    const accept = async (ctx: Context, message: Message, source: string | undefined): Promise<void> => {
      let end: SecureChannelEnd;
      try {
        end = new SecureChannelEnd(router, false, fc.create(flow), settings);
        await end.start();
      } catch (e) {
        gate.endHandshake(source);
        throw e;
      }
      end.whenOpen().then(
        () => gate.endHandshake(source),
        () => gate.endHandshake(source),
      );
      // The new channel's network address is reachable from wherever the listener is.
      fc.copyConsumer(ctx.address, end.remote);
      track(end);
      await end.acceptFirst(message);
    };
    await router.startWorker(listenerAddress, {
      // Not async: a first message over a limit is dropped with no end, no state and no promise.
      handleMessage(ctx: Context, message: Message): Promise<void> | undefined {
        const source = handshakeSource(message);
        if (!gate.mayStart(source)) return undefined;
        if (gate.underLoad) {
          // Only what came over a transport needs proving; through a channel its peer is known.
          const from = cookieSource(message);
          if (from !== undefined) {
            if (!cookies.check(message.payload, from)) {
              sendRetry(message, from);
              return undefined;
            }
            gate.count('cookiesAccepted');
            from.info.reachable?.();
          }
        }
        gate.startHandshake(source);
        return accept(ctx, message, source);
      },
    });
    const listener: SecureChannelListener = {
      address: listenerAddress,
      flow,
      trustPolicy,
      limits,
      expose: (a) => fc.addConsumer(flow, Address.from(a)),
      stats: () => gate.stats(),
      close: async () => {
        this.listenerMap.delete(listenerAddress.key);
        this.gates.delete(listenerAddress.key);
        await router.stopWorker(listenerAddress);
      },
    };
    this.listenerMap.set(listenerAddress.key, listener);
    this.gates.set(listenerAddress.key, gate);
    this.log.info({ listener: listenerAddress.toString(), ...limits }, 'secure-channel listener started');
    return listener;
  }

  listeners(): SecureChannelListener[] {
    return [...this.listenerMap.values()];
  }

  list(): SecureChannelEnd[] {
    return [...this.channels.values()];
  }

  get(encryptor: AddressLike): SecureChannelEnd {
    const end = this.channels.get(Address.from(encryptor).key);
    if (!end)
      throw new KeyhopError(ErrorCodes.ADDRESS_UNKNOWN, `no secure channel with encryptor ${encryptor}`);
    return end;
  }

  async close(encryptor: AddressLike): Promise<void> {
    await this.get(encryptor).close();
  }

  /**
   * Checks every open channel's peer again (after a revocation list or known history changed):
   * channels whose peers are no longer trusted close. Returns how many closed.
   */
  async revalidateAll(why?: string): Promise<number> {
    const results = await Promise.all(
      this.list()
        .filter((c) => c.state === 'open')
        .map((c) => c.revalidate(why)),
    );
    return results.filter((open) => !open).length;
  }

  /**
   * Brings back the channels kept in the store by an earlier process, without handshakes. Each
   * peer's presentation is verified again as things stand now (credentials expired meanwhile,
   * revocations) and must satisfy the trust policy: the listener's for channels it accepted (create
   * listeners first), `initiatorPolicy` for channels this node opened. A channel that fails is
   * dropped from the store and reported.
   */
  async restore(initiatorPolicy: ChannelTrustPolicy = trustEveryone): Promise<RestoreReport> {
    const store = this.options.store;
    const report: RestoreReport = { restored: [], dropped: [] };
    if (!store) return report;
    for (const stored of store.channels()) {
      if (this.channels.has(Address.parse(stored.id).key)) continue;
      try {
        report.restored.push(await this.restoreOne(stored, initiatorPolicy));
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        report.dropped.push({ id: stored.id, peer: stored.peer.identifier, reason });
        this.log.warn(
          { encryptor: stored.id, peer: stored.peer.identifier, reason },
          'stored secure channel not restored; dropped from the store',
        );
        await store.remove(stored.id).catch(() => undefined);
      }
    }
    return report;
  }

  private async restoreOne(
    stored: StoredChannel,
    initiatorPolicy: ChannelTrustPolicy,
  ): Promise<SecureChannelEnd> {
    const fc = this.router.flowControls;
    const identity = this.options.identity;
    let listener: SecureChannelListener | undefined;
    if (stored.role === 'responder') {
      listener =
        stored.listener === undefined ? undefined : this.listenerMap.get(Address.parse(stored.listener).key);
      if (!listener) {
        throw new KeyhopError(
          ErrorCodes.ADDRESS_UNKNOWN,
          `its listener ${stored.listener ?? '(none)'} is not running on this node`,
        );
      }
    }
    // Checked as hex when the store read them.
    const bytes = (h: string) => fromHex(h)!;
    let peer: PeerIdentity = await identity.verifyPeer(
      bytes(stored.peer.presentation),
      bytes(stored.peer.staticKey),
    );
    const refresh = stored.peer.refresh;
    if (refresh && identity.verifyRefresh) {
      peer = await identity.verifyRefresh(peer, bytes(refresh.changeHistory), refresh.credentials.map(bytes));
    }
    if (peer.identifier !== stored.peer.identifier)
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the stored presentation names another identity');
    const policy = listener?.trustPolicy ?? initiatorPolicy;
    if (!(await policy(peer))) {
      throw new KeyhopError(
        ErrorCodes.TRUST_REFUSED,
        `${peer.identifier} is refused by this node's trust policy now${policy.description ? ` (it accepts ${policy.description})` : ''}`,
      );
    }
    const persistence = this.persistence(true, listener?.address)!;
    const gate = listener ? this.gates.get(listener.address.key) : undefined;
    const end = new SecureChannelEnd(
      this.router,
      stored.role === 'initiator',
      fc.create(listener?.flow),
      this.settings(policy, true, this.timeoutMs, persistence, gate),
      { stored, peer },
    );
    await end.start();
    gate?.adopt(end, peer);
    // Ciphertext from the peer reaches this end again: through the listener's exposure, or (for
    // an end this node opened) as an answer to the transport it last used.
    if (listener) fc.copyConsumer(listener.address, end.remote);
    const first = end.remoteRoute.next;
    if (first && !first.isLocal) await this.router.admit(first, end.remote).catch(() => false);
    this.track(end);
    this.log.info(
      { encryptor: stored.id, peer: peer.identifier, route: stored.route },
      'secure channel restored',
    );
    return end;
  }

  /** Closes every channel (telling peers), except persistent ones, which are kept for the next process. */
  async shutdown(): Promise<void> {
    clearInterval(this.idleSweeper);
    this.idleSweeper = undefined;
    for (const end of [...this.channels.values()]) await (end.persistent ? end.suspend() : end.close());
    for (const l of [...this.listenerMap.values()]) await l.close();
  }
}
