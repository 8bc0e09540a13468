import type { SigningKeyType } from '../../vaults/provider.js';
import type { KeyId, SignatureVerifier, SigningPublicKey, SigningVault } from '../../vaults/vault.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { CLOCK_TOLERANCE_SECONDS, type Clock, DEFAULT_CREDENTIAL_TTL_SECONDS } from './clock.js';
import { CHANGE_HASH_LENGTH, Identifier } from './identifier.js';
import type { Identity, LocalIdentity } from './identity.js';
import {
  type Attributes,
  attributesAsText,
  type CredentialAndPurposeKey,
  makeAttributes,
  makeBinaryAttributes,
  openCredentialData,
  openPurposeKeyAttestationData,
  type PurposeKeyAttestation,
  type PurposeKeyAttestationData,
  sealCredentialData,
} from './models.js';
import { attestCredentialSigningKey, checkPurposeKeyAttestation } from './purpose-keys.js';
import { checkNow, checkSignature, checkTtl, signDigest } from './signing.js';

/** An authority able to issue credentials: its identity and an attested credential-signing key. */
export interface CredentialIssuer {
  readonly identity: Identity;
  readonly attestation: PurposeKeyAttestation;
  readonly attestationData: PurposeKeyAttestationData;
  /** Vault and key id of the credential-signing key (not of the primary key). */
  readonly vault: SigningVault;
  readonly keyId: KeyId;
}

export interface CreateIssuerOptions {
  verifier: SignatureVerifier;
  clock: Clock;
  /** Vault of the credential-signing key; default the identity's vault. */
  vault?: SigningVault;
  /** Type of a new credential-signing key; default Ed25519. Ignored when `keyId` is given. */
  keyType?: SigningKeyType;
  keyId?: KeyId;
  /** Validity of the signing key's attestation; default 5 years. */
  ttlSeconds?: number;
}

/** Makes `local` a credential issuer: a new credential-signing key, attested by its primary key. */
export async function createCredentialIssuer(
  local: LocalIdentity,
  options: CreateIssuerOptions,
): Promise<CredentialIssuer> {
  const vault = options.vault ?? local.vault;
  const keyId = options.keyId ?? (await vault.generateSigningKey(options.keyType ?? 'Ed25519'));
  const publicKey = await vault.publicKey(keyId);
  const attestation = await attestCredentialSigningKey(local, publicKey, {
    verifier: options.verifier,
    clock: options.clock,
    ttlSeconds: options.ttlSeconds,
  });
  return {
    identity: local.identity,
    attestation,
    attestationData: openPurposeKeyAttestationData(attestation.data),
    vault,
    keyId,
  };
}

export interface IssueCredentialOptions {
  subject: Identifier | string;
  /** The subject's latest ChangeHash as the issuer knows it (Ockam's issuer sets it). */
  subjectLatestChangeHash?: Uint8Array;
  /** Text attributes (UTF-8), or Attributes for binary values. */
  attributes: Readonly<Record<string, string>> | ReadonlyMap<string, string> | Attributes;
  /** CredentialSchemaIdentifier when `attributes` is text; default 0. */
  schema?: number;
  /** Default 30 days; never beyond the signing key's attestation. */
  ttlSeconds?: number;
  verifier: SignatureVerifier;
  clock: Clock;
}

function isAttributes(a: IssueCredentialOptions['attributes']): a is Attributes {
  return (
    !(a instanceof Map) &&
    Array.isArray((a as Attributes).entries) &&
    typeof (a as Attributes).schema === 'number'
  );
}

/** Issues a credential about `subject`, signed with the issuer's credential-signing key. */
export async function issueCredential(
  issuer: CredentialIssuer,
  options: IssueCredentialOptions,
): Promise<CredentialAndPurposeKey> {
  const { verifier } = options;
  const ttl = options.ttlSeconds ?? DEFAULT_CREDENTIAL_TTL_SECONDS;
  checkTtl(ttl, 'credential');
  const pk = issuer.attestationData;
  if (pk.publicKey.purpose !== 'CredentialSigning') {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, 'issuer: the attested key is not a credential-signing key');
  }
  const signingKey: SigningPublicKey = pk.publicKey.publicKey;
  const attributes = isAttributes(options.attributes)
    ? makeBinaryAttributes(options.attributes.entries, options.attributes.schema)
    : makeAttributes(options.attributes, options.schema ?? 0);
  const hash = options.subjectLatestChangeHash ?? null;
  if (hash !== null && hash.length !== CHANGE_HASH_LENGTH) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `subject_latest_change_hash of ${hash.length} bytes`);
  }
  const createdAt = Math.max(checkNow(options.clock.now()), pk.createdAt);
  const expiresAt = Math.min(createdAt + ttl, pk.expiresAt);
  if (expiresAt < createdAt) {
    throw new KeyhopError(
      ErrorCodes.CREDENTIAL_EXPIRED,
      "issuer: the credential-signing key's attestation expired",
    );
  }
  const data = sealCredentialData({
    subject: Identifier.from(options.subject),
    subjectLatestChangeHash: hash,
    attributes,
    createdAt,
    expiresAt,
  });
  const signature = await signDigest(
    issuer.vault,
    issuer.keyId,
    signingKey,
    verifier.sha256(data),
    verifier,
    'credential',
  );
  return { credential: { data, signature }, purposeKeyAttestation: issuer.attestation };
}

/** What a verified credential says. */
export interface VerifiedCredential {
  /** Hex SHA-256 of the credential's data bytes: how a revocation list names it. */
  readonly id: string;
  /** The authority that issued it. */
  readonly issuer: Identifier;
  readonly subject: Identifier;
  readonly subjectLatestChangeHash: Uint8Array | null;
  readonly attributes: Attributes;
  /** The attributes that are UTF-8 text, what ABAC policies see. */
  readonly attributesText: ReadonlyMap<string, string>;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The issuer's credential-signing key attestation. */
  readonly purposeKey: PurposeKeyAttestationData;
}

export interface VerifyCredentialOptions {
  /** Verified identities of the trusted authorities. */
  authorities: readonly Identity[];
  /** Rejects a credential about anyone else. */
  subject?: Identifier | string;
  verifier: SignatureVerifier;
  clock: Clock;
}

/**
 * Verifies a credential with its issuer's purpose key attestation (Ockam's
 * credentials_verification.rs): the attestation's subject is one of `authorities` and verifies
 * against that authority's identity (latest change, windows, signature); its key is a
 * credential-signing key; the credential is signed by that key over SHA-256 of its data bytes,
 * is VersionedData version 1 / CredentialData, has a subject (the expected one if given), lies
 * within the attestation's window, was created at most 60 s in the future, and has not expired.
 *
 * Throws CREDENTIAL_INVALID, CREDENTIAL_EXPIRED, SIGNATURE_INVALID or DECODE_*.
 */
export function verifyCredential(
  credentialAndPurposeKey: CredentialAndPurposeKey,
  options: VerifyCredentialOptions,
): VerifiedCredential {
  const { verifier } = options;
  const invalid = (detail: string): never => {
    throw new KeyhopError(ErrorCodes.CREDENTIAL_INVALID, `credential: ${detail}`);
  };
  const { credential, purposeKeyAttestation } = credentialAndPurposeKey;
  const claimed = openPurposeKeyAttestationData(purposeKeyAttestation.data);
  const authority = options.authorities.find((a) => a.identifier.equals(claimed.subject));
  if (!authority) invalid(`issuer ${claimed.subject} is not a trusted authority`);
  const pk = checkPurposeKeyAttestation(
    purposeKeyAttestation,
    { identity: authority!, verifier, clock: options.clock, purpose: 'CredentialSigning' },
    { invalid: ErrorCodes.CREDENTIAL_INVALID, expired: ErrorCodes.CREDENTIAL_EXPIRED },
  );
  if (pk.publicKey.purpose !== 'CredentialSigning')
    return invalid('issuer key is not a credential-signing key');
  checkSignature(
    verifier,
    pk.publicKey.publicKey,
    verifier.sha256(credential.data),
    credential.signature,
    'credential',
  );
  const d = openCredentialData(credential.data);
  if (d.subject === null) return invalid('no subject');
  if (options.subject !== undefined) {
    const expected = Identifier.from(options.subject);
    if (!d.subject.equals(expected)) invalid(`subject ${d.subject} is not ${expected}`);
  }
  if (d.expiresAt < d.createdAt) invalid('expires before it is created');
  if (d.createdAt < pk.createdAt || d.expiresAt > pk.expiresAt) {
    invalid("validity is outside the issuer's credential-signing key window");
  }
  const now = checkNow(options.clock.now());
  if (d.createdAt > now + CLOCK_TOLERANCE_SECONDS)
    invalid(`created at ${d.createdAt}, in the future (now ${now})`);
  if (d.expiresAt < now) {
    throw new KeyhopError(
      ErrorCodes.CREDENTIAL_EXPIRED,
      `credential: expired at ${d.expiresAt} (now ${now})`,
    );
  }
  return {
    id: credentialId(credential.data, verifier),
    issuer: pk.subject,
    subject: d.subject,
    subjectLatestChangeHash: d.subjectLatestChangeHash,
    attributes: d.attributes,
    attributesText: attributesAsText(d.attributes),
    createdAt: d.createdAt,
    expiresAt: d.expiresAt,
    purposeKey: pk,
  };
}

/** A credential's id: hex SHA-256 of its data bytes (the VersionedData that the issuer signed). */
export function credentialId(data: Uint8Array, verifier: SignatureVerifier): string {
  return Buffer.from(verifier.sha256(data)).toString('hex');
}
