import type { SigningKeyType } from '../../vaults/provider.js';
import type { KeyId, SignatureVerifier, SigningPublicKey, SigningVault } from '../../vaults/vault.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { CLOCK_TOLERANCE_SECONDS, type Clock, DEFAULT_IDENTITY_TTL_SECONDS } from './clock.js';
import { bytesEqual, Identifier } from './identifier.js';
import {
  type Change,
  type ChangeData,
  decodeChangeHistory,
  encodeChangeHistory,
  MAX_CHANGES,
  openChangeData,
  sealChangeData,
} from './models.js';
import { checkNow, checkSignature, checkSignatureAsync, checkTtl, signDigest, vaultKey } from './signing.js';

/** A change whose signatures and link to the previous change were checked. */
export interface VerifiedChange {
  readonly change: Change;
  readonly data: ChangeData;
  /** ChangeHash: SHA-256 of `change.data`. */
  readonly hash: Uint8Array;
}

export interface VerifyIdentityOptions {
  verifier: SignatureVerifier;
  /**
   * Checks the latest primary key's window: `attestations_valid_from` ≤ now + 60 s and
   * `attestations_valid_until` ≥ now. `null` skips the time checks (to inspect an identity whose
   * key expired, for instance); Ockam itself checks times only on attestations.
   */
  clock: Clock | null;
  /** Rejects the history unless it is this identity's. */
  expectedIdentifier?: Identifier | string;
}

function invalid(detail: string): KeyhopError {
  return new KeyhopError(ErrorCodes.IDENTITY_INVALID, `identity: ${detail}`);
}

/**
 * A verified identity: its change history and identifier. Only `Identity.verify` and
 * `Identity.import` make one, so holding an Identity means its history checked out.
 */
export class Identity {
  private constructor(
    readonly identifier: Identifier,
    readonly changes: readonly VerifiedChange[],
  ) {}

  /**
   * Verifies a change history (Ockam's identity_verification.rs): every change is VersionedData
   * version 1 / ChangeData; the first has no previous_change and no previous_signature; every
   * later one links to the hash of the one before, has attestations_valid_from no earlier than
   * it, and carries a previous_signature by the previous primary key; every change is signed by
   * its own primary key; all signatures are over SHA-256 of the change's data bytes.
   *
   * Throws IDENTITY_INVALID, SIGNATURE_INVALID or DECODE_*.
   */
  static verify(changes: readonly Change[], options: VerifyIdentityOptions): Identity {
    return Identity.check(changes, options, (key, hash, signature, what) =>
      checkSignature(options.verifier, key, hash, signature, what),
    );
  }

  /**
   * Identity.verify with the signature checks off the JavaScript thread, all at once, when the
   * verifier can (SignatureVerifier.verifyAsync): for a service that verifies many histories.
   */
  static async verifyAsync(changes: readonly Change[], options: VerifyIdentityOptions): Promise<Identity> {
    const checks: Promise<void>[] = [];
    const identity = Identity.check(changes, options, (key, hash, signature, what) => {
      const p = checkSignatureAsync(options.verifier, key, hash, signature, what);
      p.catch(() => undefined);
      checks.push(p);
    });
    // In order, so that the first bad signature is the one reported.
    for (const c of checks) await c;
    return identity;
  }

  static async importAsync(changeHistory: Uint8Array, options: VerifyIdentityOptions): Promise<Identity> {
    return Identity.verifyAsync(decodeChangeHistory(changeHistory), options);
  }

  private static check(
    changes: readonly Change[],
    options: VerifyIdentityOptions,
    signatureCheck: (
      key: SigningPublicKey,
      hash: Uint8Array,
      signature: Change['signature'],
      what: string,
    ) => void,
  ): Identity {
    const { verifier } = options;
    if (changes.length === 0) throw invalid('empty change history');
    if (changes.length > MAX_CHANGES) {
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `identity: ${changes.length} changes, more than ${MAX_CHANGES}`,
      );
    }
    const verified: VerifiedChange[] = [];
    for (let i = 0; i < changes.length; i++) {
      const change = changes[i]!;
      const data = openChangeData(change.data);
      const hash = verifier.sha256(change.data);
      const what = `identity change ${i}`;
      if (data.attestationsValidUntil < data.attestationsValidFrom) {
        throw invalid(`change ${i} is valid until before it is valid from`);
      }
      const previous = verified[i - 1];
      if (!previous) {
        if (data.previousChange !== null) throw invalid('first change links to a previous change');
        if (change.previousSignature) throw invalid('first change has a previous_signature');
      } else {
        if (data.previousChange === null || !bytesEqual(data.previousChange, previous.hash)) {
          throw invalid(`change ${i} does not link to change ${i - 1}`);
        }
        if (data.attestationsValidFrom < previous.data.attestationsValidFrom) {
          throw invalid(`change ${i} is valid from before change ${i - 1}`);
        }
        if (!change.previousSignature) throw invalid(`change ${i} has no previous_signature`);
        signatureCheck(
          previous.data.primaryPublicKey,
          hash,
          change.previousSignature,
          `${what} previous_signature`,
        );
      }
      signatureCheck(data.primaryPublicKey, hash, change.signature, `${what} signature`);
      verified.push({ change, data, hash });
    }
    const identifier = Identifier.fromBytes(verified[0]!.hash);
    if (options.expectedIdentifier !== undefined) {
      const expected = Identifier.from(options.expectedIdentifier);
      if (!expected.equals(identifier)) throw invalid(`history is ${identifier}, expected ${expected}`);
    }
    if (options.clock) {
      const now = checkNow(options.clock.now());
      const latest = verified[verified.length - 1]!.data;
      if (latest.attestationsValidFrom > now + CLOCK_TOLERANCE_SECONDS) {
        throw invalid(
          `latest primary key is valid from ${latest.attestationsValidFrom}, in the future (now ${now})`,
        );
      }
      if (latest.attestationsValidUntil < now) {
        throw invalid(`latest primary key expired at ${latest.attestationsValidUntil} (now ${now})`);
      }
    }
    return new Identity(identifier, verified);
  }

  /** Decodes a CBOR ChangeHistory and verifies it. */
  static import(changeHistory: Uint8Array, options: VerifyIdentityOptions): Identity {
    return Identity.verify(decodeChangeHistory(changeHistory), options);
  }

  get latestChange(): VerifiedChange {
    return this.changes[this.changes.length - 1]!;
  }

  /** The key that currently signs for this identity (purpose keys, the next change). */
  get primaryPublicKey(): SigningPublicKey {
    return this.latestChange.data.primaryPublicKey;
  }

  get latestChangeHash(): Uint8Array {
    return this.latestChange.hash;
  }

  /** The CBOR ChangeHistory, as sent in secure-channel handshakes. */
  export(): Uint8Array {
    return encodeChangeHistory(this.changes.map((c) => c.change));
  }

  toString(): string {
    return this.identifier.toString();
  }
}

/** An identity this node controls: its verified history and the vault key of its latest change. */
export interface LocalIdentity {
  readonly identity: Identity;
  readonly vault: SigningVault;
  readonly keyId: KeyId;
}

export interface CreateIdentityOptions {
  vault: SigningVault;
  /** Hashes, and checks each signature the vault makes. */
  verifier: SignatureVerifier;
  clock: Clock;
  /** Key type of a new key; default Ed25519 (Ockam's default). Ignored when `keyId` is given. */
  keyType?: SigningKeyType;
  /** Use this existing vault key instead of generating one. */
  keyId?: KeyId;
  /** Validity of the primary key; default 10 years (3650 days). */
  ttlSeconds?: number;
}

/** Creates a new identity: one self-signed change, valid from now for `ttlSeconds`. */
export async function createIdentity(options: CreateIdentityOptions): Promise<LocalIdentity> {
  const { vault, verifier, clock } = options;
  const ttl = options.ttlSeconds ?? DEFAULT_IDENTITY_TTL_SECONDS;
  checkTtl(ttl, 'identity');
  const keyId = options.keyId ?? (await vault.generateSigningKey(options.keyType ?? 'Ed25519'));
  const key = await vaultKey(vault, keyId);
  const now = checkNow(clock.now());
  const data = sealChangeData({
    previousChange: null,
    primaryPublicKey: key,
    revokeAllPurposeKeys: false,
    attestationsValidFrom: now,
    attestationsValidUntil: now + ttl,
  });
  const signature = await signDigest(vault, keyId, key, verifier.sha256(data), verifier, 'identity change 0');
  const identity = Identity.verify([{ data, signature }], { verifier, clock });
  return { identity, vault, keyId };
}

export interface RotateIdentityOptions {
  verifier: SignatureVerifier;
  clock: Clock;
  /** Vault of the new key; default the current key's vault. */
  vault?: SigningVault;
  /** Key type of a new key; default the current key's type. Ignored when `keyId` is given. */
  keyType?: SigningKeyType;
  /** Use this existing key (in `vault`) instead of generating one. */
  keyId?: KeyId;
  ttlSeconds?: number;
  /** Marks purpose keys attested by earlier keys as revoked (they already stop verifying). */
  revokeAllPurposeKeys?: boolean;
}

/**
 * Rotates to a new primary key: appends a change signed by the new key, with a previous_signature
 * by the current one. The old key stays in its vault; delete it once nothing needs it.
 */
export async function rotateIdentity(
  local: LocalIdentity,
  options: RotateIdentityOptions,
): Promise<LocalIdentity> {
  const { verifier, clock } = options;
  const { identity } = local;
  const ttl = options.ttlSeconds ?? DEFAULT_IDENTITY_TTL_SECONDS;
  checkTtl(ttl, 'identity');
  if (identity.changes.length >= MAX_CHANGES) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `identity: already ${MAX_CHANGES} changes`);
  }
  const previous = identity.latestChange;
  const previousKey = await vaultKey(local.vault, local.keyId, previous.data.primaryPublicKey);
  const vault = options.vault ?? local.vault;
  const keyId = options.keyId ?? (await vault.generateSigningKey(options.keyType ?? previousKey.type));
  const key = await vaultKey(vault, keyId);
  const now = Math.max(checkNow(clock.now()), previous.data.attestationsValidFrom);
  const data = sealChangeData({
    previousChange: previous.hash,
    primaryPublicKey: key,
    revokeAllPurposeKeys: options.revokeAllPurposeKeys ?? false,
    attestationsValidFrom: now,
    attestationsValidUntil: now + ttl,
  });
  const digest = verifier.sha256(data);
  const what = `identity change ${identity.changes.length}`;
  const signature = await signDigest(vault, keyId, key, digest, verifier, what);
  const previousSignature = await signDigest(
    local.vault,
    local.keyId,
    previousKey,
    digest,
    verifier,
    `${what} previous_signature`,
  );
  const changes = [...identity.changes.map((c) => c.change), { data, signature, previousSignature }];
  return { identity: Identity.verify(changes, { verifier, clock }), vault, keyId };
}
