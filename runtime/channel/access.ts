import { type AbacSubject, abacAccessControl, type Policy } from '../identity/abac.js';
import type { AccessControl } from '../routing/access-control.js';
import { SECURE_CHANNEL_INFO, type SecureChannelInfo } from './channel-identity.js';

/** The ABAC subject of a message that came out of a secure channel; undefined for any other. */
export function channelSubject(info: SecureChannelInfo | undefined): AbacSubject | undefined {
  if (!info) return undefined;
  const { peer } = info;
  return {
    identifier: peer.identifier,
    attributes: (peer.credentials?.length ?? 0) > 0 ? peer.attributes : undefined,
  };
}

/**
 * Incoming access control for a worker: only messages that arrived through a secure channel whose
 * authenticated peer satisfies `policy` (e.g. `(= subject.role "device")`, or the shorthand
 * `role_admin and fleet_f1`). Messages from anywhere else are refused.
 */
export function channelPolicy(policy: Policy | string): AccessControl {
  return abacAccessControl(policy, ({ message }) =>
    channelSubject(message.info<SecureChannelInfo>(SECURE_CHANNEL_INFO)),
  );
}
