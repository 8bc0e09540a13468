import type { KeyId, SignatureVerifier, SigningPublicKey, SigningVault } from '../../vaults/vault.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { bytesEqual } from './identifier.js';
import { SIGNATURE_LENGTH, type Signature } from './models.js';

/**
 * Checks `signature` by `key` over `digest` (the 32-byte SHA-256 of a VersionedData): the
 * signature's algorithm must be the key's, and the verifier must accept it. SIGNATURE_INVALID
 * otherwise, whatever the verifier threw.
 */
export function checkSignature(
  verifier: SignatureVerifier,
  key: SigningPublicKey,
  digest: Uint8Array,
  signature: Signature,
  what: string,
): void {
  checkSignatureType(key, signature, what);
  let ok = false;
  try {
    ok = verifier.verify(key, digest, signature.bytes);
  } catch {
    ok = false;
  }
  if (!ok) throw new KeyhopError(ErrorCodes.SIGNATURE_INVALID, `${what}: signature does not verify`);
}

function checkSignatureType(key: SigningPublicKey, signature: Signature, what: string): void {
  if (signature.type !== key.type) {
    throw new KeyhopError(
      ErrorCodes.SIGNATURE_INVALID,
      `${what}: ${signature.type} signature for a ${key.type} key`,
    );
  }
}

/** checkSignature, with the verification off the JavaScript thread when the verifier can. */
export async function checkSignatureAsync(
  verifier: SignatureVerifier,
  key: SigningPublicKey,
  digest: Uint8Array,
  signature: Signature,
  what: string,
): Promise<void> {
  if (!verifier.verifyAsync) return checkSignature(verifier, key, digest, signature, what);
  checkSignatureType(key, signature, what);
  let ok = false;
  try {
    ok = await verifier.verifyAsync(key, digest, signature.bytes);
  } catch {
    ok = false;
  }
  if (!ok) throw new KeyhopError(ErrorCodes.SIGNATURE_INVALID, `${what}: signature does not verify`);
}

/**
 * Signs `digest` with a vault key and checks the result with the software verifier before it is
 * used: a hardware signer that returns a wrongly converted signature (DER instead of r ‖ s, say)
 * is caught here rather than by the peer.
 */
export async function signDigest(
  vault: SigningVault,
  keyId: KeyId,
  key: SigningPublicKey,
  digest: Uint8Array,
  verifier: SignatureVerifier,
  what: string,
): Promise<Signature> {
  const bytes = await vault.sign(keyId, digest);
  if (!(bytes instanceof Uint8Array) || bytes.length !== SIGNATURE_LENGTH) {
    throw new KeyhopError(
      ErrorCodes.SIGNATURE_INVALID,
      `${what}: vault ${vault.backend} returned a ${bytes?.length}-byte signature, expected ${SIGNATURE_LENGTH}`,
    );
  }
  const signature: Signature = { type: key.type, bytes: bytes.slice() };
  await checkSignatureAsync(verifier, key, digest, signature, `${what} (vault ${vault.backend})`);
  return signature;
}

export function sameKey(a: SigningPublicKey, b: SigningPublicKey): boolean {
  return a.type === b.type && bytesEqual(a.bytes, b.bytes);
}

/** A key's public half from a vault, checked to be `expected` when one is given. */
export async function vaultKey(
  vault: SigningVault,
  keyId: KeyId,
  expected?: SigningPublicKey,
): Promise<SigningPublicKey> {
  const key = await vault.publicKey(keyId);
  if (expected && !sameKey(key, expected)) {
    throw new KeyhopError(
      ErrorCodes.KEY_INVALID,
      `vault ${vault.backend} key ${keyId} is not the identity's current primary key`,
    );
  }
  return key;
}

export function checkTtl(ttlSeconds: number, what: string): void {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `${what}: ttl ${ttlSeconds} is not a positive whole number of seconds`,
    );
  }
}

export function checkNow(now: number): number {
  if (!Number.isSafeInteger(now) || now < 0) {
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `clock: ${now} is not a whole number of UTC seconds`);
  }
  return now;
}
