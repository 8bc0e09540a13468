import { ErrorCodes, KeyhopError } from '../errors.js';
import { type AbacSubject, Policy } from './abac.js';
import type { Clock } from './clock.js';
import type { VerifiedCredential } from './credentials.js';
import { Identifier } from './identifier.js';
import type { Identity } from './identity.js';

/**
 * Trust policies decide whether a secure channel accepts an authenticated peer (Ockam's
 * secure_channel/trust_policy: TrustEveryone, TrustIdentifier, TrustMultiIdentifiers, All/Any),
 * plus a credential policy combining trusted authorities with an ABAC policy.
 */

/** A peer whose identity (and any credentials) the secure channel has verified. */
export interface AuthenticatedPeer {
  readonly identifier: Identifier | string;
  /** Credentials the peer presented that verified (against the channel's authorities). */
  readonly credentials?: readonly VerifiedCredential[];
}

/**
 * Whether a peer may have a channel. `description` says what the policy accepts, in words a refusal
 * message can quote ("identifier I…", "a credential from authority I… satisfying …").
 */
export type TrustPolicy = ((peer: AuthenticatedPeer) => boolean) & { readonly description?: string };

function described(check: (peer: AuthenticatedPeer) => boolean, description: string): TrustPolicy {
  return Object.assign(check, { description });
}

/** Anyone who proves an identity. */
export const trustEveryone: TrustPolicy = described(() => true, 'any identity');

/** Only these identifiers (`I…` text or Identifier). Invalid text throws IDENTITY_INVALID now. */
export function trustIdentifiers(identifiers: readonly (Identifier | string)[]): TrustPolicy {
  const allowed = new Set(identifiers.map((i) => Identifier.from(i).toString()));
  return described(
    (peer) => {
      try {
        return allowed.has(Identifier.from(peer.identifier).toString());
      } catch {
        return false;
      }
    },
    allowed.size === 1 ? `only identifier ${[...allowed][0]}` : `only identifiers ${[...allowed].join(', ')}`,
  );
}

const describe = (p: TrustPolicy) => p.description ?? 'a custom check';

export function trustAll(...policies: TrustPolicy[]): TrustPolicy {
  return described((peer) => policies.every((p) => p(peer)), policies.map(describe).join(' and '));
}

export function trustAny(...policies: TrustPolicy[]): TrustPolicy {
  return described((peer) => policies.some((p) => p(peer)), policies.map(describe).join(', or '));
}

type AuthorityRef = Identifier | string | Identity;

function authorityKey(a: AuthorityRef): string {
  return typeof a === 'string' || a instanceof Identifier
    ? Identifier.from(a).toString()
    : a.identifier.toString();
}

/**
 * The ABAC subject of a peer: its identifier and the text attributes of its credentials about
 * itself from one of `authorities` that have not expired by `clock` (later credentials win on a
 * repeated key). No such credential: no attributes (`subject.has_credential` false).
 */
export function peerSubject(
  peer: AuthenticatedPeer,
  authorities: readonly AuthorityRef[],
  clock?: Clock,
): AbacSubject {
  const trusted = new Set(authorities.map(authorityKey));
  const id = canonical(peer.identifier);
  const now = clock?.now();
  let attributes: Map<string, string> | undefined;
  for (const c of peer.credentials ?? []) {
    if (!trusted.has(c.issuer.toString()) || c.subject.toString() !== id) continue;
    if (now !== undefined && c.expiresAt < now) continue;
    attributes ??= new Map();
    for (const [k, v] of c.attributesText) attributes.set(k, v);
  }
  return attributes === undefined ? { identifier: id } : { identifier: id, attributes };
}

/** The `I…` text of an identifier, lowercase; text that is not one is kept as is (it matches nothing). */
function canonical(id: Identifier | string): string {
  try {
    return Identifier.from(id).toString();
  } catch {
    return String(id);
  }
}

export interface CredentialTrustOptions {
  /** Authorities whose credentials count (identifiers or verified identities). */
  authorities: readonly AuthorityRef[];
  /** ABAC policy the credential attributes must satisfy; none: any valid credential will do. */
  policy?: Policy | string;
  /** Skips credentials that expired since they were verified. */
  clock?: Clock;
}

/**
 * Peers holding a credential about themselves from one of `authorities` (still valid), whose
 * attributes satisfy `policy`. A policy string is parsed now (POLICY_INVALID if it is not one).
 */
export function trustCredential(options: CredentialTrustOptions): TrustPolicy {
  const policy = typeof options.policy === 'string' ? Policy.parse(options.policy) : options.policy;
  const authorities = [...options.authorities];
  const from =
    authorities.length === 1
      ? `authority ${authorityKey(authorities[0]!)}`
      : `one of the authorities ${authorities.map(authorityKey).join(', ')}`;
  return described(
    (peer) => {
      const subject = peerSubject(peer, authorities, options.clock);
      if (subject.attributes === undefined) return false;
      return policy === undefined || policy.evaluate(subject);
    },
    `a credential from ${from}${policy === undefined ? '' : ` satisfying ${policy.toString()}`}`,
  );
}

/** Throws TRUST_REFUSED unless `policy` accepts `peer`. */
export function checkTrust(policy: TrustPolicy, peer: AuthenticatedPeer): void {
  let ok = false;
  try {
    ok = policy(peer);
  } catch {
    ok = false;
  }
  if (!ok) throw new KeyhopError(ErrorCodes.TRUST_REFUSED, `peer ${String(peer.identifier)} is not trusted`);
}
