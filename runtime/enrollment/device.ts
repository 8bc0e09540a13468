import { createHash } from 'node:crypto';
import type { CryptoProvider } from '../../vaults/provider.js';
import type { SignatureVerifier } from '../../vaults/vault.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import { CLOCK_TOLERANCE_SECONDS, type Clock } from '../identity/clock.js';
import { verifyCredential } from '../identity/credentials.js';
import { Identity, type LocalIdentity } from '../identity/identity.js';
import { type CredentialAndPurposeKey, decodeCredentialAndPurposeKey } from '../identity/models.js';
import { signDigest } from '../identity/signing.js';
import { EnrollmentRefused } from './client.js';
import {
  type BundleCore,
  decodeBundleCore,
  decodeSealedResponse,
  decodeSigned,
  encodeRequestBody,
  encodeRequestHeader,
  encodeSealedRequest,
  type FetchedBundle,
} from './codec.js';
import { decodeResponseBody, PROOF_LABEL, requestIdOf, sessionKeys, X3DH_INFO } from './protocol.js';
import { decodeKey, encodeKey, x3dhInitiator } from './x3dh.js';

/**
 * The device's side of enrollment: check an authority's prekey bundle, make the sealed X3DH
 * request, open the answer; check a credential an authority returned.
 */

const ZERO_NONCE = new Uint8Array(12);

/** What a device keeps between leaving its request and collecting the answer (a secret: sealed on disk). */
export interface PendingEnrollment {
  readonly authority: string;
  readonly requestId: Uint8Array;
  readonly responseKey: Uint8Array;
  readonly createdAt: number;
}

/**
 * The authority's current identity as a bundle presents it, checked against the device's trust
 * anchor: the same identifier, and a history that extends the anchor's (an authority that rotated
 * its key since the device was made is still recognised; an older or different one is not).
 */
export function authorityFrom(
  anchor: Identity,
  presented: Uint8Array,
  o: { verifier: SignatureVerifier; clock: Clock },
): Identity {
  let current: Identity;
  try {
    current = Identity.import(presented, {
      verifier: o.verifier,
      clock: o.clock,
      expectedIdentifier: anchor.identifier,
    });
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.TRUST_REFUSED,
      `the bundle is not from authority ${anchor.identifier}: ${describeError(e)}`,
    );
  }
  if (current.changes.length < anchor.changes.length) return anchor;
  const same = anchor.changes.every((c, i) => Buffer.compare(c.hash, current.changes[i]!.hash) === 0);
  if (!same)
    throw new KeyhopError(
      ErrorCodes.TRUST_REFUSED,
      `authority ${anchor.identifier} presented a history that conflicts with the one this device trusts`,
    );
  return current;
}

/** Verifies a signed body made by `identity`'s latest primary key (signature over SHA-256(body)). */
export function checkSignedBy(
  identity: Identity,
  signed: { body: Uint8Array; signature: Uint8Array },
  verifier: SignatureVerifier,
  what: string,
): void {
  let ok = false;
  try {
    ok = verifier.verify(identity.primaryPublicKey, verifier.sha256(signed.body), signed.signature);
  } catch {
    ok = false;
  }
  if (!ok)
    throw new KeyhopError(ErrorCodes.SIGNATURE_INVALID, `${what}: not signed by ${identity.identifier}`);
}

/** The checked bundle: signed by the authority, for the authority, not expired. */
export function checkBundle(
  authority: Identity,
  fetched: FetchedBundle,
  o: { verifier: SignatureVerifier; clock: Clock },
): BundleCore {
  const signed = decodeSigned(fetched.bundle, 'prekey bundle', 4096);
  checkSignedBy(authority, signed, o.verifier, 'prekey bundle');
  const core = decodeBundleCore(signed.body);
  if (core.authority !== authority.identifier.toString()) {
    throw new KeyhopError(
      ErrorCodes.TRUST_REFUSED,
      `the prekey bundle is for ${core.authority}, not ${authority.identifier}`,
    );
  }
  const now = o.clock.now();
  if (core.expiresAt < now)
    throw new KeyhopError(
      ErrorCodes.CREDENTIAL_EXPIRED,
      `the signed prekey expired at ${core.expiresAt} (now ${now})`,
    );
  if (core.createdAt > now + CLOCK_TOLERANCE_SECONDS)
    throw new KeyhopError(ErrorCodes.TRUST_REFUSED, 'the signed prekey is from the future');
  return core;
}

export interface PrepareOptions {
  /** The device's identity: its primary key signs the proof (any vault: software, ATECC608, TPM, PKCS#11). */
  local: LocalIdentity;
  /** The authority as the device trusts it (from its image or ticket). */
  anchor: Identity;
  fetched: FetchedBundle;
  /** A one-time code from the authority (a ticket's code). */
  token: Uint8Array | null;
  /** Attributes the device asks for; the authority grants only what the code allows. */
  attributes?: Readonly<Record<string, string>>;
  provider: CryptoProvider;
  verifier: SignatureVerifier;
  clock: Clock;
}

/** Makes the sealed enrollment request to leave in the authority's mailbox. */
export async function prepareEnrollment(
  o: PrepareOptions,
): Promise<{ request: Uint8Array; pending: PendingEnrollment }> {
  const authority = authorityFrom(o.anchor, o.fetched.authority, o);
  const core = checkBundle(authority, o.fetched, o);
  const { provider } = o;
  // IK_A is made for this enrollment: the device's Ockam identity vouches for it by signing the
  // header that holds it (the proof), which works whatever vault holds the identity's key.
  const ik = provider.dhGenerate('25519');
  const ek = provider.dhGenerate('25519');
  const header = encodeRequestHeader({
    authority: core.authority,
    ik: encodeKey(ik.publicKey),
    ek: encodeKey(ek.publicKey),
    spkId: core.spkId,
    opkId: o.fetched.prekey?.id ?? null,
  });
  const x = x3dhInitiator({
    provider,
    ikA: { publicKey: ik.publicKey, dh: (p) => provider.dh('25519', ik.privateKey, p) },
    ekA: { publicKey: ek.publicKey, dh: (p) => provider.dh('25519', ek.privateKey, p) },
    ikB: decodeKey(core.ik, 'IK_B'),
    spkB: decodeKey(core.spk, 'SPK_B'),
    ...(o.fetched.prekey ? { opkB: decodeKey(o.fetched.prekey.key, 'OPK_B') } : {}),
    info: X3DH_INFO,
  });
  ik.privateKey.fill(0);
  ek.privateKey.fill(0);
  const keys = sessionKeys(provider, x.sk);
  x.sk.fill(0);
  const digest = new Uint8Array(createHash('sha256').update(PROOF_LABEL).update(header).digest());
  const { local, verifier } = o;
  const proof = await signDigest(
    local.vault,
    local.keyId,
    local.identity.primaryPublicKey,
    digest,
    verifier,
    'enrollment proof',
  );
  const body = encodeRequestBody({
    changeHistory: local.identity.export(),
    proof: proof.bytes,
    token: o.token,
    attributes: o.attributes ?? {},
  });
  const ad = new Uint8Array(x.ad.length + header.length);
  ad.set(x.ad);
  ad.set(header, x.ad.length);
  const ciphertext = provider.aeadEncrypt('AESGCM', keys.request, ZERO_NONCE, ad, body);
  keys.request.fill(0);
  return {
    request: encodeSealedRequest({ header, ciphertext }),
    pending: {
      authority: core.authority,
      requestId: requestIdOf(provider, header),
      responseKey: keys.response,
      createdAt: o.clock.now(),
    },
  };
}

/**
 * Opens the authority's answer to `pending`: the credential (checked: issued by the authority, about
 * this device, valid now), or the authority's refusal as a TRUST_REFUSED KeyhopError naming its
 * reason. Answers that are not for this request or do not open are DECODE_INVALID / AEAD_FAILED.
 */
/** What reading an authority's answer needs: whom it is from, whom it is about, how to check it. */
export interface AnswerOptions {
  authority: Identity;
  subject: string;
  provider: CryptoProvider;
  verifier: SignatureVerifier;
  clock: Clock;
}

export function openResponse(
  pending: PendingEnrollment,
  bytes: Uint8Array,
  o: AnswerOptions,
): CredentialAndPurposeKey {
  const sealed = decodeSealedResponse(bytes);
  if (Buffer.compare(sealed.requestId, pending.requestId) !== 0) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the answer is for another request');
  }
  const plain = o.provider.aeadDecrypt(
    'AESGCM',
    pending.responseKey,
    ZERO_NONCE,
    pending.requestId,
    sealed.ciphertext,
  );
  const body = decodeResponseBody(plain);
  if (!body.ok)
    throw new EnrollmentRefused(
      body.code,
      `authority ${o.authority.identifier} refused the enrollment (${body.code}): ${body.message}`,
    );
  return checkCredential(body.credential, o);
}

/** A credential an authority returned, checked before it is kept. */
export function checkCredential(
  bytes: Uint8Array,
  o: { authority: Identity; subject: string; verifier: SignatureVerifier; clock: Clock },
): CredentialAndPurposeKey {
  const credential = decodeCredentialAndPurposeKey(bytes);
  verifyCredential(credential, {
    authorities: [o.authority],
    subject: o.subject,
    verifier: o.verifier,
    clock: o.clock,
  });
  return credential;
}
