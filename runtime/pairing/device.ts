import { timingSafeEqual } from 'node:crypto';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from '../channel/channel-identity.js';
import { describeError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import type { AccessControl } from '../routing/access-control.js';
import type { Context } from '../routing/context.js';
import type { Message } from '../routing/message.js';
import type { Route } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import type { PairedPeer, PairedStore } from './paired-store.js';
import {
  decodePairingMessage,
  encodePairingMessage,
  PAIRING_SERVICE,
  type PairingMessage,
  pairingCommitment,
  pairingNonce,
  shortAuthenticationString,
} from './protocol.js';

/** What the device's person (or policy) is asked to approve. */
export interface PairingRequest {
  /** The 6-digit code to compare with the gateway's. */
  sas: string;
  /** The gateway's identifier, authenticated by the secure channel. */
  identifier: string;
  /** The name the gateway gave (not authenticated beyond the channel). */
  name: string;
}

export interface DevicePairingOptions {
  store: PairedStore;
  /** The name this device tells gateways. */
  name: string;
  /** Shows the code and waits for the person (a button, a display), or a policy's answer. */
  confirm: (request: PairingRequest) => Promise<boolean>;
  /** Accepting pairings now. Default: while no gateway is stored. */
  pairable?: boolean;
  /** A pairing not finished in this time is dropped (nothing stored). Default 120 s. */
  timeoutMs?: number;
  onPaired?: (peer: PairedPeer) => void;
  onPairableChange?: (pairable: boolean) => void;
  log?: Logger;
}

interface Session {
  encryptor: string;
  identifier: string;
  gatewayName: string;
  handshakeHash: Uint8Array;
  commit: Uint8Array;
  deviceNonce: Uint8Array;
  state: 'committed' | 'comparing' | 'finishing';
  local?: boolean;
  remote?: boolean;
  replyTo: Route;
  timer: NodeJS.Timeout;
}

/** Only messages that came out of a secure channel. */
const throughChannel: AccessControl = ({ message }) =>
  message.info<SecureChannelInfo>(SECURE_CHANNEL_INFO) !== undefined;

/**
 * Incoming access control for a device's own workers: only peers it paired with (a gateway, or
 * whoever the gateway's relay lets through with an identity the device paired with).
 */
export function pairedPeersOnly(store: PairedStore): AccessControl {
  return ({ message }) => {
    const info = message.info<SecureChannelInfo>(SECURE_CHANNEL_INFO);
    return info !== undefined && store.has(info.peer.identifier);
  };
}

/**
 * The device's side of pairing (runtime/pairing/protocol.ts), as the worker `pairing`. One pairing
 * at a time; the gateway is stored only when the person on each side accepted the same code.
 */
export class DevicePairing {
  private session: Session | undefined;
  private pairableNow: boolean;
  private readonly log: Logger;
  /** Pairings that ended, by outcome (for tests and status). */
  readonly outcomes = { paired: 0, rejected: 0, aborted: 0, timedOut: 0, badCommitment: 0 };

  private constructor(
    private readonly router: Router,
    private readonly options: DevicePairingOptions,
  ) {
    this.pairableNow = options.pairable ?? options.store.list('gateway').length === 0;
    this.log = (options.log ?? router.log ?? silentLogger).child({ component: 'pairing' });
  }

  static async start(router: Router, options: DevicePairingOptions): Promise<DevicePairing> {
    const p = new DevicePairing(router, options);
    await router.startWorker(
      PAIRING_SERVICE,
      { handleMessage: (ctx, m) => p.handle(ctx, m) },
      { incoming: throughChannel },
    );
    return p;
  }

  get pairable(): boolean {
    return this.pairableNow;
  }

  /** Opens or closes pairing (e.g. a long press re-opens it on a paired device). */
  setPairable(pairable: boolean): void {
    if (pairable === this.pairableNow) return;
    this.pairableNow = pairable;
    this.options.onPairableChange?.(pairable);
  }

  get busy(): boolean {
    return this.session !== undefined;
  }

  private async handle(ctx: Context, message: Message): Promise<void> {
    const info = message.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)!;
    let m: PairingMessage;
    try {
      m = decodePairingMessage(message.payload);
    } catch (e) {
      this.log.debug({ err: describeError(e) }, 'undecodable pairing message dropped');
      return;
    }
    const s = this.session;
    const mine = s !== undefined && s.encryptor === info.encryptor;
    if (m.type === 'commit') {
      if (!this.pairableNow)
        return this.send(ctx, message.returnRoute, { type: 'abort', reason: 'not pairable' });
      if (s !== undefined) return this.send(ctx, message.returnRoute, { type: 'abort', reason: 'busy' });
      const timeoutMs = this.options.timeoutMs ?? 120_000;
      const session: Session = {
        encryptor: info.encryptor,
        identifier: info.peer.identifier,
        gatewayName: m.name,
        handshakeHash: info.handshakeHash,
        commit: m.commit,
        deviceNonce: pairingNonce(),
        state: 'committed',
        replyTo: message.returnRoute,
        timer: setTimeout(() => this.end(session, 'timedOut', 'timeout'), timeoutMs),
      };
      session.timer.unref();
      this.session = session;
      await this.send(ctx, session.replyTo, {
        type: 'nonce',
        nonce: session.deviceNonce,
        name: this.options.name,
      });
      return;
    }
    if (!mine) return;
    s.replyTo = message.returnRoute;
    switch (m.type) {
      case 'reveal': {
        if (s.state !== 'committed') return;
        const expected = pairingCommitment(m.nonce);
        if (!timingSafeEqual(expected, s.commit)) {
          this.log.warn({ gateway: s.identifier }, 'pairing commitment does not match: aborted');
          await this.end(s, 'badCommitment', 'commitment mismatch');
          return;
        }
        s.state = 'comparing';
        const sas = shortAuthenticationString(s.handshakeHash, m.nonce, s.deviceNonce);
        this.options.confirm({ sas, identifier: s.identifier, name: s.gatewayName }).then(
          (ok) => this.decide(s, 'local', ok === true),
          () => this.decide(s, 'local', false),
        );
        return;
      }
      case 'confirm':
        if (s.state !== 'comparing') return;
        this.decide(s, 'remote', m.accepted);
        return;
      case 'abort':
        await this.end(s, 'aborted');
        return;
      default:
        return;
    }
  }

  private decide(s: Session, side: 'local' | 'remote', accepted: boolean): void {
    if (this.session !== s || s.state !== 'comparing') return;
    s[side] = accepted;
    if (s.local === false || s.remote === false) {
      void this.finish(s, false);
    } else if (s.local === true && s.remote === true) {
      void this.finish(s, true);
    }
  }

  private async finish(s: Session, accepted: boolean): Promise<void> {
    s.state = 'finishing';
    const ctx = await this.router.context();
    try {
      if (!accepted) {
        await this.send(ctx, s.replyTo, { type: 'done', accepted: false });
        await this.end(s, 'rejected');
        return;
      }
      const peer: PairedPeer = {
        identifier: s.identifier,
        role: 'gateway',
        name: s.gatewayName,
        pairedAt: new Date().toISOString(),
      };
      await this.options.store.add(peer);
      await this.send(ctx, s.replyTo, { type: 'done', accepted: true });
      await this.end(s, 'paired');
      this.setPairable(false);
      this.log.info({ gateway: peer.identifier }, 'paired with gateway');
      this.options.onPaired?.(peer);
    } catch (e) {
      this.log.warn({ err: describeError(e) }, 'pairing could not be completed');
      await this.end(s, 'aborted', 'device error');
    } finally {
      await ctx.stop();
    }
  }

  private async end(
    s: Session,
    outcome: keyof DevicePairing['outcomes'],
    abortReason?: string,
  ): Promise<void> {
    if (this.session !== s) return;
    this.session = undefined;
    clearTimeout(s.timer);
    this.outcomes[outcome]++;
    if (abortReason !== undefined) {
      const ctx = await this.router.context();
      await this.send(ctx, s.replyTo, { type: 'abort', reason: abortReason });
      await ctx.stop();
    }
  }

  private async send(ctx: Context, to: Route, m: PairingMessage): Promise<void> {
    await ctx.send(to, encodePairingMessage(m)).catch((e: unknown) => {
      this.log.debug({ err: describeError(e) }, 'pairing message not sent');
    });
  }
}
