import type { SignatureVerifier, SigningPublicKey } from '../../vaults/vault.js';
import { type ErrorCode, ErrorCodes, KeyhopError } from '../errors.js';
import { CLOCK_TOLERANCE_SECONDS, type Clock, DEFAULT_PURPOSE_KEY_TTL_SECONDS } from './clock.js';
import { bytesEqual } from './identifier.js';
import type { Identity, LocalIdentity } from './identity.js';
import {
  openPurposeKeyAttestationData,
  type PurposeKeyAttestation,
  type PurposeKeyAttestationData,
  type PurposePublicKey,
  sealPurposeKeyAttestationData,
  X25519_PUBLIC_KEY_LENGTH,
} from './models.js';
import { checkNow, checkSignature, checkTtl, signDigest, vaultKey } from './signing.js';

export interface AttestOptions {
  verifier: SignatureVerifier;
  clock: Clock;
  /** Default 5 years (1825 days); never beyond the primary key's attestations_valid_until. */
  ttlSeconds?: number;
}

/**
 * Attests a purpose key with the identity's latest primary key: PurposeKeyAttestationData
 * {subject, subject_latest_change_hash, public_key, created_at = now, expires_at = now + ttl},
 * clamped to the primary key's window so that it verifies.
 */
export async function attestPurposeKey(
  local: LocalIdentity,
  publicKey: PurposePublicKey,
  options: AttestOptions,
): Promise<PurposeKeyAttestation> {
  const { verifier } = options;
  const { identity } = local;
  const ttl = options.ttlSeconds ?? DEFAULT_PURPOSE_KEY_TTL_SECONDS;
  checkTtl(ttl, 'purpose key');
  const latest = identity.latestChange;
  const key = await vaultKey(local.vault, local.keyId, latest.data.primaryPublicKey);
  const createdAt = Math.max(checkNow(options.clock.now()), latest.data.attestationsValidFrom);
  const expiresAt = Math.min(createdAt + ttl, latest.data.attestationsValidUntil);
  if (expiresAt < createdAt) {
    throw new KeyhopError(
      ErrorCodes.IDENTITY_INVALID,
      `identity ${identity}: primary key expired, rotate it first`,
    );
  }
  const data = sealPurposeKeyAttestationData({
    subject: identity.identifier,
    subjectLatestChangeHash: latest.hash,
    publicKey,
    createdAt,
    expiresAt,
  });
  const signature = await signDigest(
    local.vault,
    local.keyId,
    key,
    verifier.sha256(data),
    verifier,
    'purpose key attestation',
  );
  return { data, signature };
}

/** Attests the X25519 static key of this node's secure channels. */
export function attestSecureChannelKey(
  local: LocalIdentity,
  x25519PublicKey: Uint8Array,
  options: AttestOptions,
): Promise<PurposeKeyAttestation> {
  if (x25519PublicKey.length !== X25519_PUBLIC_KEY_LENGTH) {
    return Promise.reject(
      new KeyhopError(ErrorCodes.KEY_INVALID, `X25519 public key of ${x25519PublicKey.length} bytes`),
    );
  }
  return attestPurposeKey(local, { purpose: 'SecureChannelStatic', x25519: x25519PublicKey }, options);
}

/** Attests a key that will sign credentials (Ed25519 or P-256, in any vault). */
export function attestCredentialSigningKey(
  local: LocalIdentity,
  publicKey: SigningPublicKey,
  options: AttestOptions,
): Promise<PurposeKeyAttestation> {
  return attestPurposeKey(local, { purpose: 'CredentialSigning', publicKey }, options);
}

export interface VerifyPurposeKeyOptions {
  /** The subject's verified identity (from the same handshake, or known beforehand). */
  identity: Identity;
  verifier: SignatureVerifier;
  clock: Clock;
  /** Rejects an attestation for the other purpose. */
  purpose?: PurposePublicKey['purpose'];
}

/** Failure codes: a purpose key of a peer is part of its identity; of an issuer, of a credential. */
export interface AttestationCodes {
  invalid: ErrorCode;
  expired: ErrorCode;
}

const IDENTITY_CODES: AttestationCodes = {
  invalid: ErrorCodes.IDENTITY_INVALID,
  expired: ErrorCodes.IDENTITY_INVALID,
};

/** @internal Shared with credential verification, which reports with credential codes. */
export function checkPurposeKeyAttestation(
  attestation: PurposeKeyAttestation,
  options: VerifyPurposeKeyOptions,
  codes: AttestationCodes,
): PurposeKeyAttestationData {
  const { identity, verifier } = options;
  const fail = (code: ErrorCode, detail: string): never => {
    throw new KeyhopError(code, `purpose key attestation: ${detail}`);
  };
  const d = openPurposeKeyAttestationData(attestation.data);
  if (!d.subject.equals(identity.identifier)) {
    fail(codes.invalid, `subject ${d.subject} is not ${identity.identifier}`);
  }
  const latest = identity.latestChange;
  // Only attestations by the latest primary key are accepted (as in Ockam): rotating the
  // primary key retires every purpose key attested before.
  if (!bytesEqual(d.subjectLatestChangeHash, latest.hash)) {
    fail(codes.invalid, "not made with the subject's latest change");
  }
  if (options.purpose && d.publicKey.purpose !== options.purpose) {
    fail(codes.invalid, `a ${d.publicKey.purpose} key, expected ${options.purpose}`);
  }
  if (d.expiresAt < d.createdAt) fail(codes.invalid, 'expires before it is created');
  if (d.createdAt < latest.data.attestationsValidFrom || d.expiresAt > latest.data.attestationsValidUntil) {
    fail(codes.invalid, "validity is outside the primary key's window");
  }
  const now = checkNow(options.clock.now());
  if (d.createdAt > now + CLOCK_TOLERANCE_SECONDS) {
    fail(codes.invalid, `created at ${d.createdAt}, in the future (now ${now})`);
  }
  if (d.expiresAt < now) fail(codes.expired, `expired at ${d.expiresAt} (now ${now})`);
  checkSignature(
    verifier,
    latest.data.primaryPublicKey,
    verifier.sha256(attestation.data),
    attestation.signature,
    'purpose key attestation',
  );
  return d;
}

/**
 * Verifies a purpose key attestation against its subject's identity: subject and latest change
 * hash match, created_at ≥ the primary key's attestations_valid_from and expires_at ≤ its
 * attestations_valid_until, created_at ≤ now + 60 s, expires_at ≥ now, signature by the latest
 * primary key over SHA-256 of the data bytes.
 *
 * Throws IDENTITY_INVALID, SIGNATURE_INVALID or DECODE_*.
 */
export function verifyPurposeKeyAttestation(
  attestation: PurposeKeyAttestation,
  options: VerifyPurposeKeyOptions,
): PurposeKeyAttestationData {
  return checkPurposeKeyAttestation(attestation, options, IDENTITY_CODES);
}

/**
 * What a secure channel checks in a handshake: the attestation is valid, for a secure-channel
 * static key, and that key is the Noise static key `x25519PublicKey` the peer proved it holds.
 */
export function verifySecureChannelKey(
  attestation: PurposeKeyAttestation,
  x25519PublicKey: Uint8Array,
  options: Omit<VerifyPurposeKeyOptions, 'purpose'>,
): PurposeKeyAttestationData {
  const d = verifyPurposeKeyAttestation(attestation, { ...options, purpose: 'SecureChannelStatic' });
  if (d.publicKey.purpose !== 'SecureChannelStatic' || !bytesEqual(d.publicKey.x25519, x25519PublicKey)) {
    throw new KeyhopError(
      ErrorCodes.IDENTITY_INVALID,
      "purpose key attestation: the attested key is not the peer's secure channel static key",
    );
  }
  return d;
}
