import type { SignatureVerifier } from '../../vaults/vault.js';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from '../channel/channel-identity.js';
import type { SecureChannels } from '../channel/secure-channels.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import type { Clock } from '../identity/clock.js';
import { Identity } from '../identity/identity.js';
import type { CredentialAndPurposeKey } from '../identity/models.js';
import { trustIdentifiers } from '../identity/trust.js';
import type { Logger } from '../log.js';
import type { Message } from '../routing/message.js';
import { Route, type RouteLike, toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import type { Worker } from '../routing/worker.js';
import type { Authority } from './authority.js';
import { AUTHORITY_ADDRESS, ask, EnrollmentRefused, failure } from './client.js';
import {
  type AuthorityRequest,
  decodeAuthorityRequest,
  encodeAnswer,
  encodeAuthorityRequest,
} from './codec.js';
import { checkCredential } from './device.js';
import { requestWorker } from './request-worker.js';

/**
 * The authority as a service (`authority`), reached through a secure channel to the authority's
 * node: the channel authenticated the member, so its identifier and history come from there.
 * Requests: enroll with a one-time code, renew a credential, fetch the revocation list (the list
 * is signed, so it is served without a channel too). Requests are handled concurrently (bounded)
 * so that the journal commits many decisions in one write.
 */
export function authorityWorker(
  authority: Authority,
  o: { log?: Logger; concurrency?: number } = {},
): Worker {
  return requestWorker(
    (m) => answer(authority, m, o.log),
    o.concurrency === undefined ? {} : { concurrency: o.concurrency },
  );
}

async function answer(authority: Authority, message: Message, log: Logger | undefined): Promise<Uint8Array> {
  let request: AuthorityRequest;
  try {
    request = decodeAuthorityRequest(message.payload);
  } catch (e) {
    return failure(e, 'DECODE_INVALID');
  }
  const info = message.info<SecureChannelInfo>(SECURE_CHANNEL_INFO);
  try {
    if (request.kind === 'revocations') {
      const list = await authority.revocations();
      return encodeAnswer({ ok: true, value: list.version >= request.have ? list.bytes : null });
    }
    if (info === undefined) {
      throw new EnrollmentRefused(
        'secure_channel_required',
        'enrollment and renewal go through a secure channel to the authority',
      );
    }
    const changes = info.peer.identity?.changes.length ?? 1;
    const credential =
      request.kind === 'enroll'
        ? await authority.enrollWithCode(info.peer.identifier, changes, request.code)
        : await authority.credentialFor(info.peer.identifier, changes);
    return encodeAnswer({ ok: true, value: credential });
  } catch (e) {
    if (!isKeyhopError(e))
      log?.error({ err: describeError(e), kind: request.kind }, 'authority request failed');
    return failure(e, 'INTERNAL');
  }
}

// ---- the member's side ------------------------------------------------------------------------------

export interface MemberOptions {
  channels: SecureChannels;
  router: Router;
  /** The authority as the member trusts it (a ticket's history, or the enrollment record). */
  authority: Identity;
  /** Route to the authority node's secure-channel listener (e.g. `1#ca.example:4000 => api`). */
  route: RouteLike;
  subject: string;
  verifier: SignatureVerifier;
  clock: Clock;
  timeoutMs?: number;
}

/**
 * Opens a secure channel to the authority's node (only that identity is accepted at the other
 * end), asks one request through it, closes it.
 */
async function throughChannel(o: MemberOptions, request: AuthorityRequest): Promise<Uint8Array | null> {
  const channel = await o.channels.create(o.route, {
    trustPolicy: trustIdentifiers([o.authority.identifier]),
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
  });
  try {
    return await ask(
      o.router,
      Route.of(channel.encryptor, AUTHORITY_ADDRESS),
      encodeAuthorityRequest(request),
      o.timeoutMs,
    );
  } finally {
    await channel.close();
  }
}

function credentialFrom(value: Uint8Array | null, o: MemberOptions): CredentialAndPurposeKey {
  if (value === null) throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the authority sent no credential');
  return checkCredential(value, o);
}

/** One-time-code enrollment (Ockam's `project enroll`): the code for a checked credential. */
export async function enrollWithCode(o: MemberOptions, code: Uint8Array): Promise<CredentialAndPurposeKey> {
  return credentialFrom(await throughChannel(o, { kind: 'enroll', code }), o);
}

/** A member's fresh credential (renewal). */
export async function renewCredential(o: MemberOptions): Promise<CredentialAndPurposeKey> {
  return credentialFrom(await throughChannel(o, { kind: 'credential' }), o);
}

/**
 * The authority's signed revocation list from `route` (a route ending at an `authority` worker,
 * asked directly, or at a secure-channel listener, asked through a channel), unless it has
 * nothing at or above version `have`. The caller checks the list (RevocationState.accept).
 */
export async function fetchRevocationsFromAuthority(
  o: Omit<MemberOptions, 'subject'> & { subject?: string },
  have: number,
): Promise<Uint8Array | null> {
  const route = toRoute(o.route);
  if (route.last?.text === AUTHORITY_ADDRESS)
    return ask(o.router, route, encodeAuthorityRequest({ kind: 'revocations', have }), o.timeoutMs);
  return throughChannel({ ...o, subject: o.subject ?? '' }, { kind: 'revocations', have });
}

/** The identity in a change history (a ticket's, an enrollment record's), verified. */
export function authorityIdentity(history: Uint8Array, verifier: SignatureVerifier, clock: Clock): Identity {
  try {
    return Identity.import(history, { verifier, clock });
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.IDENTITY_INVALID,
      `the authority's identity does not verify: ${describeError(e)}`,
      {
        cause: e,
      },
    );
  }
}
