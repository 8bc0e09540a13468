import type { CryptoProvider } from '../../vaults/provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { fromHex } from '../../vaults/software/store-header.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Clock } from '../identity/clock.js';
import { type Logger, silentLogger } from '../log.js';
import { Address, type AddressLike } from '../routing/address.js';
import type { Context } from '../routing/context.js';
import type { FlowId } from '../routing/flow-control.js';
import type { Message } from '../routing/message.js';
import { type RouteLike, toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import type { ChannelIdentity, ChannelTrustPolicy, PeerIdentity } from './channel-identity.js';
import type { ChannelStore, StoredChannel } from './channel-store.js';
import { MAX_WINDOW, WINDOW } from './replay-window.js';
import { type ChannelPersistence, type ChannelSettings, SecureChannelEnd } from './secure-channel.js';

/** Ockam nodes listen for secure channels at `api`. */
export const DEFAULT_LISTENER = 'api';
const trustEveryone: ChannelTrustPolicy = Object.assign(() => true, { description: 'any identity' });

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
}

export interface ListenerOptions {
  /** Which verified peers may open a channel. Default: every peer with a valid identity. */
  trustPolicy?: ChannelTrustPolicy;
  /** Local workers that messages arriving through channels of this listener may reach. */
  expose?: AddressLike[];
  /** Handshakes in progress at once; further first messages are dropped. */
  maxPendingHandshakes?: number;
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
  expose(address: AddressLike): void;
  close(): Promise<void>;
}

/**
 * Secure channels of one node and identity: listeners that answer handshakes, and channels this
 * node initiates. Any route works underneath: direct TCP, relays, UDP, another secure channel.
 */
export class SecureChannels {
  private readonly channels = new Map<string, SecureChannelEnd>();
  private readonly listenerMap = new Map<string, SecureChannelListener>();
  private readonly provider: CryptoProvider;
  private readonly log: Logger;
  private readonly timeoutMs: number;

  constructor(
    private readonly router: Router,
    private readonly options: SecureChannelsOptions,
  ) {
    this.provider = options.provider ?? nodeCrypto;
    this.log = (options.log ?? router.log ?? silentLogger).child({ component: 'secure-channel' });
    this.timeoutMs = options.handshakeTimeoutMs ?? 30_000;
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

  private settings(
    trustPolicy: ChannelTrustPolicy,
    confirm = true,
    timeoutMs = this.timeoutMs,
    persistence?: ChannelPersistence,
  ): ChannelSettings {
    return {
      ...(persistence ? { persistence } : {}),
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
    const fc = this.router.flowControls;
    const flow = fc.create();
    for (const a of options.expose ?? []) fc.addConsumer(flow, Address.from(a));
    const trustPolicy = options.trustPolicy ?? trustEveryone;
    const settings = this.settings(
      trustPolicy,
      true,
      this.timeoutMs,
      this.persistence(options.persist, listenerAddress),
    );
    const maxPending = options.maxPendingHandshakes ?? 1024;
    let pending = 0;
    const router = this.router;
    const log = this.log;
    const track = (end: SecureChannelEnd) => this.track(end);
    await router.startWorker(listenerAddress, {
      async handleMessage(ctx: Context, message: Message): Promise<void> {
        if (pending >= maxPending) {
          log.warn(
            { listener: listenerAddress.toString() },
            'too many handshakes in progress; first message dropped',
          );
          return;
        }
        const end = new SecureChannelEnd(router, false, fc.create(flow), settings);
        await end.start();
        // The new channel's network address is reachable from wherever the listener is.
        fc.copyConsumer(ctx.address, end.remote);
        track(end);
        pending++;
        end.whenOpen().then(
          () => pending--,
          () => pending--,
        );
        await end.acceptFirst(message);
      },
    });
    const listener: SecureChannelListener = {
      address: listenerAddress,
      flow,
      trustPolicy,
      expose: (a) => fc.addConsumer(flow, Address.from(a)),
      close: async () => {
        this.listenerMap.delete(listenerAddress.key);
        await router.stopWorker(listenerAddress);
      },
    };
    this.listenerMap.set(listenerAddress.key, listener);
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
    const end = new SecureChannelEnd(
      this.router,
      stored.role === 'initiator',
      fc.create(listener?.flow),
      this.settings(policy, true, this.timeoutMs, persistence),
      { stored, peer },
    );
    await end.start();
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
    for (const end of [...this.channels.values()]) await (end.persistent ? end.suspend() : end.close());
    for (const l of [...this.listenerMap.values()]) await l.close();
  }
}
