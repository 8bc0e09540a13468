import type { DhKey } from '../../vaults/vault.js';
import type { VerifiedCredential } from '../identity/credentials.js';
import type { Identity } from '../identity/identity.js';
import type { CredentialAndPurposeKey } from '../identity/models.js';

/** What a secure channel learned about the other end, once its handshake payload verified. */
export interface PeerIdentity {
  /** Ockam identifier, `I` + 64 hex characters. */
  readonly identifier: string;
  /** Credentials the peer presented that verified against this node's trusted authorities. */
  readonly credentials?: readonly VerifiedCredential[];
  /** Text attributes of those credentials (later credentials win on a repeated key). */
  readonly attributes: Readonly<Record<string, string>>;
  /**
   * A digest of what the peer presented (its change history and credentials), so that the same
   * presentation pushed again (a responder's acceptance notice) is recognised without verifying
   * every signature a second time.
   */
  readonly presentation?: string;
  /** The verified identity (its change history), when the channel identity keeps it. */
  readonly identity?: Identity;
  /** What the peer presented, kept so that its credentials can be checked again (expiry, revocation). */
  readonly presented?: readonly CredentialAndPurposeKey[];
  /** Unix seconds when the first credential that counts expires: the peer must be checked again then. */
  readonly validUntil?: number;
}

/**
 * What a node knows beyond a peer's own presentation (runtime/enrollment): the change histories
 * it has seen (a rotated-away key is refused) and its authorities' revocation lists.
 */
export interface PeerChecks {
  /** Throws (IDENTITY_INVALID) for a history that must be refused; remembers it otherwise. */
  checkIdentity(identity: Identity): Promise<void>;
  /** Why a verified credential must not count (revoked, its authority's list stale), or undefined. */
  credentialRefusal(credential: VerifiedCredential): string | undefined;
}

/**
 * The identity side of a channel end, kept apart from the channel mechanics: it supplies this
 * end's X25519 static key and handshake payload, and verifies the peer's. The Ockam
 * implementation (ockam-identity.ts) carries CBOR IdentityAndCredentials.
 */
export interface ChannelIdentity {
  readonly identifier: string;
  /** The X25519 static key that this identity's purpose-key attestation vouches for. */
  readonly staticKey: DhKey;
  /** Payload of handshake message 2 (responder) or 3 (initiator). */
  handshakePayload(): Uint8Array;
  /**
   * Verifies the peer's payload and that it vouches for `remoteStatic` (the Noise `rs`); throws a
   * KeyhopError (IDENTITY_INVALID, CREDENTIAL_INVALID, ...) if not.
   */
  verifyPeer(payload: Uint8Array, remoteStatic: Uint8Array): Promise<PeerIdentity>;
  /** Verifies credentials pushed in-channel (RefreshCredentials) for an already known peer. */
  verifyRefresh?(
    peer: PeerIdentity,
    changeHistory: Uint8Array,
    credentials: Uint8Array[],
  ): Promise<PeerIdentity>;
  /**
   * This end's current change history and credentials, pushed in-channel (RefreshCredentials):
   * when they were renewed, and by a responder as its acceptance notice right after the handshake.
   */
  refreshPayload(): { changeHistory: Uint8Array; credentials: Uint8Array[] };
  /**
   * The peer as it stands now: its credentials checked again (expired or revoked ones no longer
   * count), its history against what this node knows. Throws when the peer must be refused.
   */
  reverify?(peer: PeerIdentity): Promise<PeerIdentity>;
}

/**
 * Decides whether a verified peer may have a channel at all. `description` says what it checks,
 * for the one line that tells a user which check refused whom.
 */
export type ChannelTrustPolicy = ((peer: PeerIdentity) => boolean | Promise<boolean>) & {
  readonly description?: string;
};

/** Local info every message decrypted by a channel carries (never sent on the wire). */
export const SECURE_CHANNEL_INFO = 'keyhop.secure_channel';

export interface SecureChannelInfo {
  readonly peer: PeerIdentity;
  /** Local address of the channel's encryptor: where answers to the peer go. */
  readonly encryptor: string;
  /** The channel's Noise handshake hash (channel binding, e.g. for a pairing code). */
  readonly handshakeHash: Uint8Array;
}
