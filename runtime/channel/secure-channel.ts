import type { Bytes, CryptoProvider } from '../../vaults/provider.js';
import { fromHex, toHex } from '../../vaults/software/store-header.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AccessRequest } from '../routing/access-control.js';
import { Address } from '../routing/address.js';
import type { Context } from '../routing/context.js';
import type { FlowId } from '../routing/flow-control.js';
import { type LocalInfo, Message } from '../routing/message.js';
import { Route } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import type { Worker } from '../routing/worker.js';
import { TRANSPORT_INFO, type TransportInfo } from '../transports/transport-info.js';
import {
  type ChannelIdentity,
  type ChannelTrustPolicy,
  type PeerIdentity,
  SECURE_CHANNEL_INFO,
  type SecureChannelInfo,
} from './channel-identity.js';
import type { ChannelStore, StoredChannel } from './channel-store.js';
import { DataDecryptor, DataEncryptor } from './data-cipher.js';
import { parseRetry } from './handshake-cookie.js';
import { decodeChannelMessage, encodeChannelMessage, encodeChannelMessageParts } from './messages.js';
import type { HandshakeState } from './noise/handshake-state.js';
import { ockamHandshake, ockamSplit } from './ockam-xx.js';

/** Tells the transport a message came over that its source showed it receives what is sent there. */
function markReachable(message: Message): void {
  for (const { type, data } of message.localInfo) {
    if (type === TRANSPORT_INFO) (data as TransportInfo).reachable?.();
  }
}

export interface ChannelSettings {
  provider: CryptoProvider;
  identity: ChannelIdentity;
  trustPolicy: ChannelTrustPolicy;
  handshakeTimeoutMs: number;
  log: Logger;
  /**
   * Initiator: the channel counts as created only once the responder has accepted this identity,
   * shown by its first authenticated message (a keyhop responder sends an acceptance notice at
   * once, and Close when its trust policy refuses). Off for responders that never confirm (Ockam
   * nodes): then a refusal shows only when the first message goes unanswered.
   */
  confirm: boolean;
  /** Closes the channel this long after it opened (the initiator's node opens a new one if it wants). */
  maxLifetimeMs?: number;
  /** Receive window in nonces (default 32; wider = queue mode). */
  receiveWindow?: number;
  /** Unix seconds, for credential expiry while open (default: the system clock). */
  now?: () => number;
  /** Keeps the channel across restarts of this process (docs/protocols/channel-store.md). */
  persistence?: ChannelPersistence;
  /** Responder: the listener's channel limits, asked once the initiator is verified and trusted. */
  gate?: ChannelGate;
  /** Payload messages from the peer above this rate are dropped (`rate_limited`). Default: no limit. */
  messageRate?: { perSecond: number; burst: number };
  /** Closed by SecureChannels' idle sweep after this long without traffic (0 or absent: never). */
  idleTimeoutMs?: number;
}

/** Which of a listener's channel limits refused a channel. */
export type ChannelLimitKind = 'listener-full' | 'per-peer';

/** A listener's limits as its responder ends see them (SecureChannels implements it). */
export interface ChannelGate {
  /**
   * Takes a slot for `end`, whose initiator `peer` was verified and trusted (given back when the
   * end closes), or says which limit refuses it.
   */
  admit(end: SecureChannelEnd, peer: PeerIdentity): ChannelLimitKind | undefined;
  /** A payload message over the end's rate was dropped. */
  rateLimited(end: SecureChannelEnd): void;
  /** The handshake failed (`code` says why; limit refusals are counted by admit). */
  failed(code: string): void;
}

/** Retries (handshake-cookie.md) an initiator follows before it gives up on a busy listener. */
const MAX_RETRIES = 2;

/**
 * A token bucket: `burst` messages at once, refilled at `perSecond`. One per channel end with a
 * message rate; ends without one have none (the data path then costs one branch).
 */
export class RateBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;

  constructor(
    perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.perMs = perSecond / 1000;
    this.tokens = burst;
    this.last = now();
  }

  /** Takes one token if there is one. */
  take(): boolean {
    const t = this.now();
    const tokens = Math.min(this.burst, this.tokens + (t - this.last) * this.perMs);
    this.last = t;
    if (tokens < 1) {
      this.tokens = tokens;
      return false;
    }
    this.tokens = tokens - 1;
    return true;
  }
}

const monotonicNow = (): number => performance.now();

/**
 * Refusals for a limit are a Close (Ockam's `[2, []]`) whose padding names the limit: Ockam peers
 * ignore padding, a keyhop initiator reports CHANNEL_LIMIT instead of TRUST_REFUSED.
 */
function closeNaming(text: string): Uint8Array {
  const t = new TextEncoder().encode(text);
  return Uint8Array.of(0x82, 0x82, 0x02, 0x80, 0x40 | t.length, ...t);
}
export const LIMIT_CLOSES: Readonly<Record<ChannelLimitKind, Uint8Array>> = Object.freeze({
  'listener-full': closeNaming('listener-full'),
  'per-peer': closeNaming('peer-limit'),
});

function limitOfClose(plaintext: Uint8Array): ChannelLimitKind | undefined {
  for (const kind of ['listener-full', 'per-peer'] as const) {
    const c = LIMIT_CLOSES[kind];
    if (plaintext.length === c.length && Buffer.from(plaintext).equals(c)) return kind;
  }
  return undefined;
}

export interface ChannelPersistence {
  store: ChannelStore;
  /**
   * Nonces reserved per write: after a crash the channel goes on after the block, so the peer's
   * receive window must reach this far ahead (Ockam's reaches 32).
   */
  nonceBlock: bigint;
  /** The route with this node's transport workers replaced by transport addresses (they outlive it). */
  portableRoute(route: Route): Route;
  /** Responder: the listener that accepted the channel. */
  listener?: string;
}

/** A stored channel and its peer verified again, for SecureChannelEnd.restore. */
export interface RestoredChannel {
  stored: StoredChannel;
  peer: PeerIdentity;
}

const NOOP = (): void => undefined;
const SETTLED: Promise<void> = Promise.resolve();
/** The drop counters of a channel end that dropped nothing (shared, never written). */
const NO_DROPS: Record<ChannelDropReason, number> = Object.freeze({
  truncated: 0,
  replayed_or_stale: 0,
  tampered: 0,
  undecodable: 0,
  not_open: 0,
  undeliverable: 0,
  empty_route: 0,
  rate_limited: 0,
});

class ChannelStats {
  sent = 0;
  received = 0;
  dropped: Record<ChannelDropReason, number> = NO_DROPS;
}

/** Messages an end may have routed and not yet seen handled by their next hop (sendWindowed). */
const WINDOW = 32;

/**
 * One direction's window (sendWindowed): what it routed that the next hop has not handled yet,
 * and the mailbox waiting for room. The router's `done` for those messages (an object, not a
 * closure per message).
 */
class SendWindow {
  inFlight = 0;
  open: (() => void) | undefined;
  posting = false;
  postError: unknown;

  constructor(private readonly end: SecureChannelEnd) {}

  settled(e?: unknown): void {
    this.inFlight--;
    if (e !== undefined) {
      if (this.posting) this.postError = e;
      else this.end.undeliverable(e);
    }
    if (this.open !== undefined && this.inFlight <= WINDOW / 2) {
      const open = this.open;
      this.open = undefined;
      open();
    }
  }

  /** Lets a mailbox waiting for room go on (the channel closed). */
  release(): void {
    this.open?.();
    this.open = undefined;
  }
}

export type ChannelState = 'handshake' | 'open' | 'closed';

/** Why a message that reached a channel end was dropped instead of delivered. */
export type ChannelDropReason =
  | 'truncated'
  | 'replayed_or_stale'
  | 'tampered'
  | 'undecodable'
  | 'not_open'
  | 'undeliverable'
  | 'empty_route'
  | 'rate_limited';

/**
 * One end of an Ockam secure channel. Three local addresses:
 * - `remote` receives handshake messages and ciphertext from the network (Ockam's decryptor_remote);
 * - `encryptor` is where local workers send: `[encryptor, …rest]` arrives at the other end as `[…rest]`;
 * - `internal` is the sender of decrypted messages, flow-controlled: only workers exposed to this
 *   channel (or to the listener that spawned it), or that sent through it, receive them.
 */
export class SecureChannelEnd implements Worker {
  readonly remote: Address;
  readonly encryptor: Address;
  readonly internal: Address;
  readonly createdAt: number;
  state: ChannelState = 'handshake';
  peer: PeerIdentity | undefined;
  /** Noise's handshake hash once open: the same at both ends, a value to bind to this channel. */
  get handshakeHash(): Uint8Array | undefined {
    const h = this.hash;
    return h === undefined ? undefined : new Uint8Array(Buffer.from(h, 'latin1'));
  }
  /**
   * The handshake hash's bytes as a latin1 string: kept for the channel's life, where a 32-byte
   * Uint8Array with its own ArrayBuffer costs some 180 bytes per end.
   */
  private hash: string | undefined;
  /** Where ciphertext goes: the return route of the peer's latest authenticated message. */
  remoteRoute: Route = Route.EMPTY;
  /** Messages sent and received, and dropped by reason (made at the first drop: most channels never drop one). */
  readonly stats = new ChannelStats();
  private hs: HandshakeState | undefined;
  private encryptorState: DataEncryptor | undefined;
  private decryptorState: DataDecryptor | undefined;
  private highestNonce = -1n;
  /** Local info of decrypted messages, built once per peer identity (it changes only on a credential refresh). */
  private cachedInfo: readonly LocalInfo[] | undefined;
  private returnToMe: Route | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lifetimeTimer: NodeJS.Timeout | undefined;
  private ctx: Context | undefined;
  private opened: Promise<void>;
  private resolveOpened!: () => void;
  private rejectOpened!: (e: KeyhopError) => void;
  /** Initiator: the responder's first authenticated message arrived (it accepted us). */
  accepted = false;
  private acceptance: Promise<void>;
  private resolveAcceptance!: () => void;
  private rejectAcceptance!: (e: KeyhopError) => void;
  private closeListeners: (() => void)[] | undefined;
  /** What the peer presented in the handshake and its latest refresh: verified again on restore. */
  private presentation: { payload: Uint8Array; staticKey: Uint8Array } | undefined;
  private refreshed: { changeHistory: Uint8Array; credentials: Uint8Array[] } | undefined;
  /** Persistent channels: nonces below this are reserved on disk (a restored encryptor resumes here). */
  private durableUntil = 0n;
  private reserving: Promise<void> | undefined;
  /** Local workers that sent through the channel (they may receive what comes back; kept across restarts). */
  private repliers: Set<string> | undefined;
  private suspended = false;
  /**
   * Two windows and two mailboxes, one per direction: ciphertext going out may wait for a full
   * socket while what comes in is still decrypted and delivered. With one of each, two ends
   * flooding each other (both sockets full, both connections paused because their received
   * messages waited behind blocked sends) would wait for each other for ever.
   */
  // Made at first use: a channel that carries nothing costs neither.
  private outWindow: SendWindow | undefined;
  private inWindow: SendWindow | undefined;
  /** The store holds this channel (it opened, or it was restored). */
  private inStore = false;
  /** Only with a message rate. */
  private readonly rate: RateBucket | undefined;
  /** Retries followed in this handshake. */
  private retries = 0;
  /** Something was sent or received since the idle sweep last looked (SecureChannels' idle timeout). */
  active = false;
  /** Milliseconds the idle sweep has seen this end without traffic. */
  idleFor = 0;

  constructor(
    private readonly router: Router,
    readonly initiator: boolean,
    readonly flow: FlowId,
    private readonly settings: ChannelSettings,
    restored?: RestoredChannel,
  ) {
    const s = restored?.stored;
    const r = settings.messageRate;
    this.rate = r === undefined ? undefined : new RateBucket(r.perSecond, r.burst);
    this.remote = s ? Address.parse(s.remote) : Address.random('sc_remote_');
    this.encryptor = s ? Address.parse(s.id) : Address.random('sc_encryptor_');
    this.internal = s ? Address.parse(s.internal) : Address.random('sc_internal_');
    this.createdAt = s?.createdAt ?? Date.now();
    this.opened = new Promise((resolve, reject) => {
      this.resolveOpened = resolve;
      this.rejectOpened = reject;
    });
    this.opened.catch(() => undefined);
    this.acceptance = new Promise((resolve, reject) => {
      this.resolveAcceptance = resolve;
      this.rejectAcceptance = reject;
    });
    this.acceptance.catch(() => undefined);
    if (restored) {
      this.resume(restored);
      return;
    }
    if (!initiator || !settings.confirm) this.accept();
    this.hs = ockamHandshake(settings.provider, initiator, settings.identity.staticKey);
  }

  /** A channel kept by a process that stopped goes on where it was, without a handshake. */
  private resume({ stored: s, peer }: RestoredChannel): void {
    const provider = this.settings.provider;
    const encryptor = DataEncryptor.restore(
      provider,
      { key: hexBytes(s.encryptor.key), nonce: BigInt(s.encryptor.nonce), rekeying: s.encryptor.rekeying },
      BigInt(s.encryptor.resumeAt),
    );
    const d = s.decryptor;
    const decryptor = DataDecryptor.restore(provider, {
      rekeying: d.rekeying,
      window: { size: d.window.size, highest: BigInt(d.window.highest), seen: BigInt(`0x${d.window.seen}`) },
      bucket: BigInt(d.bucket),
      keys: d.keys.map(([b, k]) => [BigInt(b), hexBytes(k)]),
    });
    this.encryptorState = encryptor;
    this.decryptorState = decryptor;
    // Nothing at or beyond resumeAt was used: the next send reserves a block from there.
    this.durableUntil = encryptor.nextNonce;
    this.highestNonce = BigInt(d.window.highest);
    this.peer = peer;
    this.presentation = { payload: hexBytes(s.peer.presentation), staticKey: hexBytes(s.peer.staticKey) };
    if (s.peer.refresh) {
      this.refreshed = {
        changeHistory: hexBytes(s.peer.refresh.changeHistory),
        credentials: s.peer.refresh.credentials.map(hexBytes),
      };
    }
    this.hash = Buffer.from(s.handshakeHash, 'hex').toString('latin1');
    this.remoteRoute = Route.parse(s.route);
    this.repliers = new Set(s.consumers);
    this.state = 'open';
    this.inStore = true;
    this.accept();
    this.resolveOpened();
    this.resolveOpened = this.rejectOpened = NOOP;
    this.opened = SETTLED;
  }

  /** After this long without traffic (either way) the channel closes; 0: never. */
  get idleTimeoutMs(): number {
    return this.settings.idleTimeoutMs ?? 0;
  }

  /** Whether this channel is kept across restarts. */
  get persistent(): boolean {
    return this.settings.persistence !== undefined;
  }

  /** Registers the workers and arms the handshake timeout. */
  async start(): Promise<void> {
    for (const r of this.repliers ?? []) this.router.flowControls.addConsumer(this.flow, Address.parse(r));
    // Inbound (remote, internal) and outbound (encryptor) mailboxes; access control is
    // allowIncoming/allowOutgoing for both.
    this.ctx = await this.router.startWorker([this.remote, this.internal], this);
    try {
      await this.router.startWorker(this.encryptor, this);
    } catch (e) {
      await this.router.stopWorker(this.remote);
      throw e;
    }
    if (this.state === 'open') {
      this.armLifetime();
      return;
    }
    this.timer = setTimeout(() => this.timedOut(), this.settings.handshakeTimeoutMs);
    this.timer.unref();
  }

  private armLifetime(): void {
    const max = this.settings.maxLifetimeMs;
    if (max === undefined) return;
    this.lifetimeTimer = setTimeout(
      () => {
        this.settings.log.info(
          { encryptor: this.encryptor.toString(), peer: this.peer?.identifier },
          'secure channel reached its maximum lifetime; closing it',
        );
        void this.close();
      },
      Math.max(0, this.createdAt + max - Date.now()),
    );
    this.lifetimeTimer.unref();
  }

  private timedOut(): void {
    this.timer = undefined;
    if (this.state === 'handshake') {
      const ms = this.settings.handshakeTimeoutMs;
      this.fail(
        new KeyhopError(
          ErrorCodes.HANDSHAKE_TIMEOUT,
          this.initiator
            ? `no secure-channel listener answered at ${this.remoteRoute} within ${ms} ms (none there, not exposed to this connection, or the route is wrong)`
            : `handshake not complete within ${ms} ms`,
        ),
      );
    } else if (this.state === 'open' && !this.accepted) {
      this.rejectAcceptance(
        new KeyhopError(
          ErrorCodes.HANDSHAKE_TIMEOUT,
          `the responder ${this.peer?.identifier} did not confirm the channel within ${this.settings.handshakeTimeoutMs} ms (refused silently, or an Ockam node: those never confirm; create the channel without confirmation for them)`,
        ),
      );
      void this.stop();
    }
  }

  private accept(): void {
    this.accepted = true;
    this.resolveAcceptance();
    this.resolveAcceptance = this.rejectAcceptance = NOOP;
    // Settled: one shared promise instead of this one and its reactions (memory per open channel).
    this.acceptance = SETTLED;
    if (this.state === 'open') {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /**
   * Initiator: sends message 1 along `route` (to a listener) and waits until the channel is open
   * and (with `confirm`) the responder has accepted this identity.
   */
  async initiate(route: Route): Promise<void> {
    this.remoteRoute = route;
    const m1 = this.hs!.writeMessage();
    await this.ctx!.send(route, m1);
    await this.opened;
    await this.acceptance;
  }

  /** Resolves when the channel is open; rejects with the handshake's failure. */
  whenOpen(): Promise<void> {
    return this.opened;
  }

  onClose(listener: () => void): void {
    if (this.state === 'closed') {
      listener();
      return;
    }
    // Exact-size arrays: a first push would give every open channel 17 slots.
    this.closeListeners = this.closeListeners ? this.closeListeners.concat(listener) : [listener];
  }

  // Not async: the data path returns a promise only when it must wait (a full window, a write
  // to the store), so most messages cost no promise and no extra microtask here.
  handleMessage(ctx: Context, message: Message): Promise<void> | undefined {
    this.active = true;
    const next = message.onward.next;
    if (next === this.encryptor || next?.equals(this.encryptor)) return this.encryptAndSend(message);
    if (this.state === 'open') return this.decryptAndDeliver(message);
    return this.fromRemote(ctx, message);
  }

  /** Responder: message 1 as handed over by the listener. */
  async acceptFirst(message: Message): Promise<void> {
    await this.fromRemote(this.ctx!, message);
  }

  private async fromRemote(ctx: Context, message: Message): Promise<void> {
    if (this.state === 'open') return this.decryptAndDeliver(message);
    if (this.state === 'closed') return;
    try {
      await this.handshakeStep(ctx, message);
    } catch (e) {
      this.fail(
        isKeyhopError(e) ? e : new KeyhopError(ErrorCodes.HANDSHAKE_FAILED, describeError(e), { cause: e }),
      );
    }
  }

  private async handshakeStep(ctx: Context, message: Message): Promise<void> {
    let hs = this.hs!;
    const index = hs.messageIndex;
    if (!this.initiator && index === 0) {
      hs.readMessage(message.payload);
      this.remoteRoute = message.returnRoute;
      await ctx.send(this.remoteRoute, hs.writeMessage(this.settings.identity.handshakePayload()));
      return;
    }
    if (this.initiator && index === 1) {
      // A busy keyhop listener answers message 1 with a Retry: message 1 again, with its cookie
      // as the payload (hashed into the handshake like any message 1 payload), from a fresh state.
      const cookie = parseRetry(message.payload);
      if (cookie !== undefined) {
        if (++this.retries > MAX_RETRIES) {
          throw new KeyhopError(
            ErrorCodes.HANDSHAKE_FAILED,
            `the listener at ${this.remoteRoute} is under load and answered ${MAX_RETRIES} first messages with a Retry`,
          );
        }
        hs = ockamHandshake(this.settings.provider, true, this.settings.identity.staticKey);
        this.hs = hs;
        await ctx.send(this.remoteRoute, hs.writeMessage(cookie));
        return;
      }
    }
    const payload = hs.readMessage(message.payload);
    // Kept only by persistent ends (verified again on restore): a few hundred bytes per channel.
    if (this.settings.persistence) {
      this.presentation = { payload: payload.slice(), staticKey: hs.remoteStaticPublicKey!.slice() };
    }
    let peer: PeerIdentity;
    try {
      peer = await this.settings.identity.verifyPeer(payload, hs.remoteStaticPublicKey!);
    } catch (e) {
      // Noise authenticated the initiator's static key; its identity did not verify (or this node
      // refuses its history): tell it, as for a trust refusal, rather than leave it waiting.
      if (!this.initiator) await this.sendRefusal(ctx, message.returnRoute, hs);
      throw e;
    }
    if (!(await this.settings.trustPolicy(peer))) {
      // A responder has the session keys now: it tells the initiator, authenticated, that it was
      // refused (Close), so the initiator need not wait for a timeout to find out.
      if (!this.initiator) await this.sendRefusal(ctx, message.returnRoute, hs);
      const policy = this.settings.trustPolicy.description;
      throw new KeyhopError(
        ErrorCodes.TRUST_REFUSED,
        `${this.initiator ? 'the responder' : 'the initiator'} ${peer.identifier} is refused by this node's trust policy${policy ? ` (it accepts ${policy})` : ''}`,
      );
    }
    // Message 3 answered our message 2, sent along its return route: its source receives there.
    if (!this.initiator) markReachable(message);
    const limit = this.initiator ? undefined : this.settings.gate?.admit(this, peer);
    if (limit !== undefined) {
      await this.sendRefusal(ctx, message.returnRoute, hs, LIMIT_CLOSES[limit]);
      throw new KeyhopError(
        ErrorCodes.CHANNEL_LIMIT,
        limit === 'listener-full'
          ? `channel from ${peer.identifier} refused: the listener has its maximum of channels open`
          : `channel from ${peer.identifier} refused: that identity has the listener's maximum of channels per peer open`,
      );
    }
    this.peer = peer;
    this.remoteRoute = message.returnRoute;
    if (this.initiator)
      await ctx.send(this.remoteRoute, hs.writeMessage(this.settings.identity.handshakePayload()));
    this.hash = Buffer.from(hs.handshakeHash).toString('latin1');
    const keys = ockamSplit(hs, this.initiator);
    this.hs = undefined;
    // Raw keys are kept only where the store needs them; otherwise they live on in the prepared
    // keys alone (memory per channel, and fewer copies of secrets in the JavaScript heap).
    const keep = this.settings.persistence !== undefined;
    this.encryptorState = new DataEncryptor(this.settings.provider, keys.encrypt, true, keep);
    this.decryptorState = new DataDecryptor(
      this.settings.provider,
      keys.decrypt,
      true,
      this.settings.receiveWindow ?? 32,
      keep,
    );
    const p = this.settings.persistence;
    if (p) {
      // On disk before the first use of its keys: a crash from here on cannot lose the channel.
      this.durableUntil = p.nonceBlock;
      await p.store.save(this.stored());
      this.inStore = true;
    }
    this.state = 'open';
    if (this.accepted) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.armLifetime();
    this.settings.log.info(
      { encryptor: this.encryptor.toString(), peer: peer.identifier, initiator: this.initiator },
      'secure channel open',
    );
    this.resolveOpened();
    // Settled: the settle functions and this promise give way to one shared resolved promise.
    this.resolveOpened = this.rejectOpened = NOOP;
    this.opened = SETTLED;
    // The acceptance notice: the responder's current presentation, as RefreshCredentials (a
    // message every Ockam peer understands). A keyhop initiator reports the channel created on it.
    if (!this.initiator) {
      await this.sendEncrypted(
        encodeChannelMessage({ kind: 'refresh_credentials', ...this.settings.identity.refreshPayload() }),
        false,
      ).catch((e: unknown) =>
        this.settings.log.debug({ err: describeError(e) }, 'acceptance notice not sent'),
      );
    }
  }

  /** Responder that refused the initiator: one encrypted Close under the keys the handshake made. */
  private async sendRefusal(
    ctx: Context,
    route: Route,
    hs: HandshakeState,
    close: Uint8Array = encodeChannelMessage({ kind: 'close' }),
  ): Promise<void> {
    try {
      const keys = ockamSplit(hs, false);
      const encryptor = new DataEncryptor(this.settings.provider, keys.encrypt);
      const wire = encryptor.encrypt(close);
      encryptor.destroy();
      new DataDecryptor(this.settings.provider, keys.decrypt).destroy();
      await ctx.send(route, wire);
    } catch (e) {
      this.settings.log.debug({ err: describeError(e) }, 'refusal not sent');
    }
  }

  private decryptAndDeliver(message: Message): Promise<void> | undefined {
    let plaintext: Uint8Array;
    let nonce: bigint;
    try {
      ({ plaintext, nonce } = this.decryptorState!.decrypt(message.payload));
    } catch (e) {
      const code = (e as KeyhopError).code;
      this.drop(
        code === 'DECODE_TRUNCATED'
          ? 'truncated'
          : code === 'NONCE_REJECTED'
            ? 'replayed_or_stale'
            : 'tampered',
        e,
      );
      return;
    }
    let m: ReturnType<typeof decodeChannelMessage>;
    try {
      m = decodeChannelMessage(plaintext);
    } catch (e) {
      this.drop('undecodable', e);
      return;
    }
    // Any authenticated message from the responder means it accepted us, except a Close first.
    if (!this.accepted && m.kind !== 'close') this.accept();
    // Roaming: the responder follows the newest authenticated message's way back.
    if (nonce > this.highestNonce) {
      this.highestNonce = nonce;
      if (!this.initiator) this.remoteRoute = message.returnRoute;
    }
    this.stats.received++;
    if (this.rate !== undefined && m.kind === 'payload' && !this.rate.take()) {
      this.overRate();
      return;
    }
    const until = this.peer?.validUntil;
    if (
      m.kind === 'payload' &&
      this.settings.persistence === undefined &&
      (until === undefined || this.now() <= until)
    ) {
      if (m.onward.isEmpty) {
        this.drop('empty_route');
        return;
      }
      return this.deliver(m.onward, m.returnRoute, m.payload);
    }
    return this.deliverChecked(m, m.kind === 'close' && !this.accepted ? limitOfClose(plaintext) : undefined);
  }

  /** Delivers what came out of the channel to its destination, in the window of the next hops. */
  private deliver(onward: Route, returnRoute: Route, payload: Uint8Array): Promise<void> | undefined {
    const inner = new Message(onward, returnRoute.prepend(this.encryptor), payload, this.peerInfo());
    try {
      return this.sendWindowed(this.internal, inner);
    } catch (e) {
      this.drop('undeliverable', e);
      return undefined;
    }
  }

  /**
   * The rest of decryptAndDeliver when it must wait: persistence, an expired credential, control
   * messages. `limit`: a Close that refused this (initiator) end for a listener limit.
   */
  private async deliverChecked(
    m: ReturnType<typeof decodeChannelMessage>,
    limit?: ChannelLimitKind,
  ): Promise<void> {
    const p = this.settings.persistence;
    if (p) {
      // The window moved: on disk before anything is delivered, so that no restart (or crash) can
      // make this end accept the same message again.
      try {
        await p.store.save(this.stored());
      } catch (e) {
        this.drop('undeliverable', e);
        return;
      }
    }
    switch (m.kind) {
      case 'payload': {
        if (m.onward.isEmpty) {
          this.drop('empty_route');
          return;
        }
        // A credential that expired while the channel was open no longer counts: check the peer
        // again before delivering (it may lose attributes, or the channel if its trust needed them).
        const until = this.peer?.validUntil;
        if (until !== undefined && this.now() > until && !(await this.revalidate('a credential expired'))) {
          this.drop('not_open');
          return;
        }
        await this.deliver(m.onward, m.returnRoute, m.payload);
        return;
      }
      case 'refresh_credentials': {
        const verify = this.settings.identity.verifyRefresh;
        if (!verify || this.peer === undefined) return;
        try {
          const refreshed = await verify.call(
            this.settings.identity,
            this.peer,
            m.changeHistory,
            m.credentials,
          );
          // The same presentation again (the acceptance notice) changes nothing.
          if (refreshed === this.peer) return;
          if (!(await this.trusts(refreshed))) {
            this.settings.log.warn(
              { peer: refreshed.identifier },
              'refreshed credentials no longer satisfy the trust policy; closing the channel',
            );
            await this.close();
            return;
          }
          this.peer = refreshed;
          if (p) {
            this.refreshed = {
              changeHistory: m.changeHistory.slice(),
              credentials: m.credentials.map((c) => c.slice()),
            };
          }
          this.cachedInfo = undefined;
          if (p) await p.store.save(this.stored()).catch(() => undefined);
          this.settings.log.info({ peer: this.peer.identifier }, 'peer credentials refreshed');
        } catch (e) {
          this.settings.log.warn(
            { peer: this.peer?.identifier, err: describeError(e) },
            'refreshed credentials rejected',
          );
        }
        return;
      }
      case 'close':
        if (!this.accepted) {
          this.rejectAcceptance(
            limit === undefined
              ? new KeyhopError(
                  ErrorCodes.TRUST_REFUSED,
                  `the responder ${this.peer?.identifier} refused this node's identity ${this.settings.identity.identifier} (its trust policy)`,
                )
              : new KeyhopError(
                  ErrorCodes.CHANNEL_LIMIT,
                  limit === 'listener-full'
                    ? `the responder ${this.peer?.identifier} refused the channel: its listener has its maximum of channels open`
                    : `the responder ${this.peer?.identifier} refused the channel: this identity (${this.settings.identity.identifier}) has the listener's maximum of channels per peer open there`,
                ),
          );
        }
        this.settings.log.info({ encryptor: this.encryptor.toString() }, 'peer closed the secure channel');
        await this.stop();
        return;
    }
  }

  private now(): number {
    return this.settings.now?.() ?? Math.floor(Date.now() / 1000);
  }

  private async trusts(peer: PeerIdentity): Promise<boolean> {
    try {
      return await this.settings.trustPolicy(peer);
    } catch {
      return false;
    }
  }

  /**
   * Checks the peer again as things stand now (expired credentials, revocations, histories this
   * node learned since): it keeps the channel with what still counts, or loses it when the trust
   * policy no longer accepts it. Resolves to whether the channel is still open.
   */
  async revalidate(why = 'checked again'): Promise<boolean> {
    const reverify = this.settings.identity.reverify;
    if (this.state !== 'open' || this.peer === undefined || !reverify) return this.state === 'open';
    let now: PeerIdentity | undefined;
    try {
      now = await reverify.call(this.settings.identity, this.peer);
    } catch (e) {
      this.settings.log.warn(
        { peer: this.peer.identifier, err: describeError(e), why },
        'peer refused on a second check; closing the channel',
      );
    }
    if (now !== undefined && !(await this.trusts(now))) {
      this.settings.log.warn(
        { peer: now.identifier, why },
        'peer no longer satisfies the trust policy; closing the channel',
      );
      now = undefined;
    }
    if (now === undefined) {
      await this.close();
      return false;
    }
    if (this.state !== 'open') return false;
    this.peer = now;
    this.cachedInfo = undefined;
    return true;
  }

  private peerInfo(): readonly LocalInfo[] {
    if (this.cachedInfo === undefined) {
      const info: SecureChannelInfo = {
        peer: this.peer!,
        encryptor: this.encryptor.toString(),
        handshakeHash: this.handshakeHash!,
      };
      this.cachedInfo = [{ type: SECURE_CHANNEL_INFO, data: info }];
    }
    return this.cachedInfo;
  }

  private encryptAndSend(message: Message): Promise<void> | undefined {
    if (this.state !== 'open') {
      this.drop('not_open');
      throw new KeyhopError(ErrorCodes.CHANNEL_CLOSED, `secure channel ${this.encryptor} is ${this.state}`);
    }
    // Whoever sends through the channel may receive the answers that come back through it.
    const replyTo = message.returnRoute.next;
    if (replyTo?.isLocal && this.router.isRegistered(replyTo)) {
      this.router.flowControls.addConsumer(this.flow, replyTo);
      if (this.settings.persistence) {
        this.repliers ??= new Set();
        this.repliers.add(replyTo.toString());
      }
    }
    return this.encryptOut(
      encodeChannelMessageParts({
        kind: 'payload',
        onward: message.onward.step(),
        returnRoute: message.returnRoute,
        payload: message.payload,
      }),
    );
  }

  /**
   * Encrypts and sends to the peer; `wait`: until the next hop has handled it (back-pressure).
   * Messages sent while this end is handling one of its own deliveries must not wait: the next
   * hop may be the very worker this end is waiting for (a channel inside a channel).
   */
  private async sendEncrypted(plaintext: Bytes, wait = true): Promise<void> {
    const p = this.settings.persistence;
    while (p && this.encryptorState && this.encryptorState.nextNonce >= this.durableUntil) {
      this.reserving ??= this.reserveNonces(p);
      await this.reserving;
    }
    const message = this.seal(plaintext);
    if (wait) await this.sendAndWait(this.remote, message);
    else await this.router.send(this.remote, message);
  }

  /**
   * The data path's sendEncrypted: no promise unless it has to wait, for a persistent end's nonce
   * reservation or for room in the window of the next hop.
   */
  private encryptOut(plaintext: Bytes): Promise<void> | undefined {
    const p = this.settings.persistence;
    // A persistent end uses only nonces reserved on disk; checked and used in one synchronous step.
    if (p && this.encryptorState && this.encryptorState.nextNonce >= this.durableUntil) {
      return this.reserveThenSend(p, plaintext);
    }
    return this.sendWindowed(this.remote, this.seal(plaintext));
  }

  private async reserveThenSend(p: ChannelPersistence, plaintext: Bytes): Promise<void> {
    while (this.encryptorState && this.encryptorState.nextNonce >= this.durableUntil) {
      this.reserving ??= this.reserveNonces(p);
      await this.reserving;
    }
    await this.encryptOut(plaintext);
  }

  /** The next data message to the peer, encrypted (synchronous: nonces are used in order). */
  private seal(plaintext: Bytes): Message {
    if (!this.encryptorState)
      throw new KeyhopError(ErrorCodes.CHANNEL_CLOSED, `secure channel ${this.encryptor} is ${this.state}`);
    const wire = this.encryptorState.encrypt(plaintext);
    this.stats.sent++;
    this.returnToMe ??= Route.of(this.remote);
    return new Message(this.remoteRoute, this.returnToMe, wire);
  }

  private async reserveNonces(p: ChannelPersistence): Promise<void> {
    try {
      const until = this.encryptorState!.nextNonce + p.nonceBlock;
      await p.store.save(this.stored(until));
      this.durableUntil = until;
    } finally {
      this.reserving = undefined;
    }
  }

  /** This channel as the store keeps it; `resumeAt`: where a restored encryptor goes on. */
  private stored(resumeAt = this.durableUntil): StoredChannel {
    const e = this.encryptorState!.snapshot();
    const d = this.decryptorState!.snapshot();
    const p = this.settings.persistence!;
    const out: StoredChannel = {
      id: this.encryptor.toString(),
      role: this.initiator ? 'initiator' : 'responder',
      remote: this.remote.toString(),
      internal: this.internal.toString(),
      ...(p.listener !== undefined ? { listener: p.listener } : {}),
      consumers: [...(this.repliers ?? [])],
      route: p.portableRoute(this.remoteRoute).toString(),
      handshakeHash: Buffer.from(this.hash!, 'latin1').toString('hex'),
      peer: {
        identifier: this.peer!.identifier,
        staticKey: toHex(this.presentation!.staticKey),
        presentation: toHex(this.presentation!.payload),
        ...(this.refreshed
          ? {
              refresh: {
                changeHistory: toHex(this.refreshed.changeHistory),
                credentials: this.refreshed.credentials.map(toHex),
              },
            }
          : {}),
      },
      encryptor: {
        key: toHex(e.key),
        nonce: e.nonce.toString(),
        resumeAt: (resumeAt > e.nonce ? resumeAt : e.nonce).toString(),
        rekeying: e.rekeying,
      },
      decryptor: {
        rekeying: d.rekeying,
        window: { size: d.window.size, highest: d.window.highest.toString(), seen: evenHex(d.window.seen) },
        bucket: d.bucket.toString(),
        keys: d.keys.map(([b, k]) => [b.toString(), toHex(k)]),
      },
      createdAt: this.createdAt,
    };
    e.key.fill(0);
    for (const [, k] of d.keys) k.fill(0);
    return out;
  }

  /**
   * Persistent channel, process stopping: writes its exact state and stops its workers without
   * telling the peer, which keeps the channel; a later process restores it (SecureChannels.restore).
   */
  async suspend(): Promise<void> {
    const p = this.settings.persistence;
    if (!p || this.state !== 'open') return this.close();
    // Wait for a reservation being written, then keep the exact next nonce: no gap after a clean stop.
    await this.reserving?.catch(() => undefined);
    await p.store.save(this.stored(this.encryptorState!.nextNonce));
    this.suspended = true;
    await this.stop();
  }

  /** Routes `message` and resolves once the next hop has handled it (for Close and other control messages). */
  private sendAndWait(from: Address, message: Message): Promise<void> {
    return new Promise((resolve, reject) => {
      this.router.post(from, message, (e) => (e === undefined ? resolve() : reject(e)));
    });
  }

  /**
   * Routes `message` and returns at once while fewer than WINDOW messages this end sent are still
   * unhandled by their next hop; otherwise resolves once the next hops caught up to WINDOW / 2.
   * That keeps back-pressure across the channel (a slow consumer or a full socket holds this end,
   * and so the connection it reads from) without a promise and a round of microtasks per message.
   * Throws what routing fails with at once; a later failure (the next hop's handler) is a drop.
   */
  private sendWindowed(from: Address, message: Message): Promise<void> | undefined {
    let w: SendWindow;
    if (from === this.internal) {
      this.inWindow ??= new SendWindow(this);
      w = this.inWindow;
    } else {
      this.outWindow ??= new SendWindow(this);
      w = this.outWindow;
    }
    w.inFlight++;
    w.posting = true;
    this.router.post(from, message, w);
    w.posting = false;
    const e = w.postError;
    if (e !== undefined) {
      w.postError = undefined;
      throw e;
    }
    if (w.inFlight < WINDOW) return undefined;
    return new Promise((resolve) => {
      w.open = resolve;
    });
  }

  /** A message a window routed failed at its next hop. */
  undeliverable(e: unknown): void {
    this.drop('undeliverable', e);
  }

  /** Nothing may be sent to `internal` (it only sends). */
  allowIncoming(r: AccessRequest): boolean {
    return !r.to.equals(this.internal);
  }

  /** Only what leaves from `internal` (decrypted messages) is flow-controlled. */
  allowOutgoing(r: AccessRequest): boolean {
    return !r.from.equals(this.internal) || this.router.flowControls.isConsumer(r.to, this.flow);
  }

  /** Pushes renewed credentials to the peer (RefreshCredentials). */
  async refreshCredentials(): Promise<void> {
    const refresh = this.settings.identity.refreshPayload?.();
    if (!refresh || this.state !== 'open') return;
    await this.sendEncrypted(encodeChannelMessage({ kind: 'refresh_credentials', ...refresh }));
  }

  /** Counted, not logged per message: a flood would flood the log (the gate logs, rate-limited). */
  private overRate(): void {
    if (this.stats.dropped === NO_DROPS) this.stats.dropped = { ...NO_DROPS };
    this.stats.dropped.rate_limited++;
    this.settings.gate?.rateLimited(this);
  }

  private drop(reason: ChannelDropReason, e?: unknown): void {
    if (this.stats.dropped === NO_DROPS) this.stats.dropped = { ...NO_DROPS };
    this.stats.dropped[reason]++;
    this.settings.log.debug(
      { encryptor: this.encryptor.toString(), reason, err: e === undefined ? undefined : describeError(e) },
      'secure channel message dropped',
    );
  }

  private fail(e: KeyhopError): void {
    if (this.state !== 'handshake') return;
    this.rejectAcceptance(e);
    // Limit refusals are logged by the listener, at most once per 10 s.
    if (e.code !== ErrorCodes.CHANNEL_LIMIT) {
      if (!this.initiator) this.settings.gate?.failed(e.code);
      this.settings.log.warn(
        { remote: this.remote.toString(), initiator: this.initiator, code: e.code, reason: e.message },
        'secure channel handshake failed',
      );
    }
    this.rejectOpened(e);
    void this.stop();
  }

  /**
   * Closes this end without telling the peer: the way to it is gone (its connection closed), so
   * a Close could not arrive; its own end goes the same way or times out.
   */
  async abandon(why: string): Promise<void> {
    if (this.state === 'closed') return;
    this.settings.log.info({ encryptor: this.encryptor.toString(), why }, 'secure channel closed');
    await this.stop();
  }

  /** Closes this end: tells the peer (if open), then stops the workers. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'open') {
      try {
        await this.sendEncrypted(encodeChannelMessage({ kind: 'close' }));
      } catch (e) {
        this.settings.log.debug({ err: describeError(e) }, 'could not send Close');
      }
    }
    await this.stop();
  }

  private async stop(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'handshake' || !this.accepted) {
      const e = new KeyhopError(ErrorCodes.CHANNEL_CLOSED, 'secure channel closed during its handshake');
      this.rejectOpened(e);
      this.rejectAcceptance(e);
    }
    this.state = 'closed';
    // A mailbox waiting for room in a window goes on (and finds the channel closed).
    this.outWindow?.release();
    this.inWindow?.release();
    clearTimeout(this.timer);
    clearTimeout(this.lifetimeTimer);
    this.hs = undefined;
    this.encryptorState?.destroy();
    this.decryptorState?.destroy();
    this.encryptorState = undefined;
    this.decryptorState = undefined;
    await this.router.stopWorker(this.remote);
    await this.router.stopWorker(this.encryptor);
    this.router.flowControls.remove(this.flow);
    // Closed for good (by either end, or refused on a second check): the store forgets it.
    const p = this.settings.persistence;
    if (p && this.inStore && !this.suspended) {
      await p.store
        .remove(this.encryptor.toString())
        .catch((e: unknown) =>
          this.settings.log.warn({ err: describeError(e) }, 'closed channel not removed from the store'),
        );
    }
    const listeners = this.closeListeners ?? [];
    this.closeListeners = undefined;
    for (const l of listeners) l();
  }

  describe(): Record<string, unknown> {
    return {
      encryptor: this.encryptor.toString(),
      remote: this.remote.toString(),
      role: this.initiator ? 'initiator' : 'responder',
      state: this.state,
      persistent: this.persistent,
      accepted: this.accepted,
      peer: this.peer?.identifier ?? null,
      attributes: this.peer?.attributes ?? {},
      remoteRoute: this.remoteRoute.toString(),
      createdAt: new Date(this.createdAt).toISOString(),
      ...this.stats,
    };
  }
}

function evenHex(n: bigint): string {
  const h = n.toString(16);
  return h.length % 2 ? `0${h}` : h;
}

/** A stored channel's byte strings were checked as hex when the store read them. */
function hexBytes(h: string): Uint8Array {
  return fromHex(h)!;
}
