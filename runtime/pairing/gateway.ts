import type { SecureChannelEnd } from '../channel/secure-channel.js';
import type { SecureChannels } from '../channel/secure-channels.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { Route, type RouteLike, toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import type { PairedPeer, PairedStore } from './paired-store.js';
import {
  decodePairingMessage,
  encodePairingMessage,
  PAIRING_LISTENER,
  PAIRING_SERVICE,
  type PairingMessage,
  pairingCommitment,
  pairingNonce,
  shortAuthenticationString,
} from './protocol.js';

/** What the gateway's person is asked to compare. */
export interface DeviceCandidate {
  sas: string;
  /** The device's identifier, authenticated by the secure channel. */
  identifier: string;
  name: string;
}

export interface GatewayPairingOptions {
  channels: SecureChannels;
  store: PairedStore;
  /** The name this gateway tells the device. */
  name: string;
  /** The device's pairing listener behind its link. Default PAIRING_LISTENER (`pairing_api`). */
  listener?: string;
  /**
   * Shows the code (and identifier) and returns the person's answer. Not called when
   * `expectIdentifier` is given: the label check replaces the comparison.
   */
  confirm?: (candidate: DeviceCandidate) => Promise<boolean>;
  /** The identifier printed on the device's label / QR code; any other device is refused. */
  expectIdentifier?: string;
  /** Extra fields stored with the device (its BLE address, relay alias). */
  record?: Partial<Pick<PairedPeer, 'bleAddress' | 'relayAlias'>>;
  /** Budget for the whole exchange, the person's answer included. Default 120 s. */
  timeoutMs?: number;
  log?: Logger;
}

export interface PairingResult {
  paired: boolean;
  identifier: string;
  name: string;
  sas: string;
  /** Why not, when not paired. */
  reason?: string;
  peer?: PairedPeer;
}

/**
 * The gateway's side of pairing: opens a secure channel to the device over `deviceRoute` (e.g. a
 * BLE peer's sender), runs the commitment exchange, has the code compared (or the label checked),
 * and stores the device only if both sides accepted. A mismatch, a refusal or a timeout stores
 * nothing; the channel is closed in every case.
 */
export async function pairDevice(
  router: Router,
  deviceRoute: RouteLike,
  options: GatewayPairingOptions,
): Promise<PairingResult> {
  const log = (options.log ?? router.log ?? silentLogger).child({ component: 'pairing' });
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  const remaining = () => Math.max(1, deadline - Date.now());
  const expect = options.expectIdentifier;
  const channel: SecureChannelEnd = await options.channels.create(
    toRoute(deviceRoute).append(options.listener ?? PAIRING_LISTENER),
    expect === undefined ? {} : { trustPolicy: (peer) => peer.identifier === expect },
  );
  const ctx = await router.context();
  const to = Route.of(channel.encryptor, PAIRING_SERVICE);
  const send = (m: PairingMessage) => ctx.send(to, encodePairingMessage(m));
  const receive = async (): Promise<PairingMessage> => {
    for (;;) {
      const msg = await ctx.receive(remaining()).catch(() => {
        throw new KeyhopError(ErrorCodes.TIMEOUT, 'the device did not answer in time');
      });
      try {
        const m = decodePairingMessage(msg.payload);
        if (m.type === 'abort')
          throw new KeyhopError(ErrorCodes.TRUST_REFUSED, `device aborted: ${m.reason}`);
        return m;
      } catch (e) {
        if (isKeyhopError(e, ErrorCodes.TRUST_REFUSED)) throw e;
        log.debug({ err: describeError(e) }, 'undecodable pairing answer dropped');
      }
    }
  };
  const identifier = channel.peer!.identifier;
  let name = '';
  let sas = '';
  try {
    const na = pairingNonce();
    await send({ type: 'commit', commit: pairingCommitment(na), name: options.name });
    const nonce = await receive();
    if (nonce.type !== 'nonce')
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, `expected NONCE, got ${nonce.type}`);
    name = nonce.name;
    await send({ type: 'reveal', nonce: na });
    sas = shortAuthenticationString(channel.handshakeHash!, na, nonce.nonce);
    let accepted: boolean;
    if (expect !== undefined) {
      accepted = true; // the channel's trust policy already checked the label's identifier
    } else if (options.confirm !== undefined) {
      accepted = await Promise.race([
        options.confirm({ sas, identifier, name }).catch(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), remaining()).unref()),
      ]);
    } else {
      throw new KeyhopError(ErrorCodes.USAGE, 'pairing needs confirm() or expectIdentifier');
    }
    await send({ type: 'confirm', accepted });
    if (!accepted) return { paired: false, identifier, name, sas, reason: 'not confirmed on the gateway' };
    const done = await receive();
    if (done.type !== 'done')
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, `expected DONE, got ${done.type}`);
    if (!done.accepted) return { paired: false, identifier, name, sas, reason: 'refused on the device' };
    const peer: PairedPeer = {
      identifier,
      role: 'device',
      name,
      pairedAt: new Date().toISOString(),
      ...options.record,
    };
    await options.store.add(peer);
    log.info({ device: identifier, name }, 'paired with device');
    return { paired: true, identifier, name, sas, peer };
  } catch (e) {
    await send({ type: 'abort', reason: isKeyhopError(e) ? e.code : 'error' }).catch(() => undefined);
    if (isKeyhopError(e) && (e.code === ErrorCodes.TIMEOUT || e.code === ErrorCodes.TRUST_REFUSED)) {
      return { paired: false, identifier, name, sas, reason: e.message };
    }
    throw e;
  } finally {
    await ctx.stop();
    await channel.close();
  }
}
