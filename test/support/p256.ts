import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';

/**
 * Checks a hardware vault's P-256 signature (raw r ‖ s over SHA-256(data), S not normalised) with
 * two independent verifiers: @noble/curves on the digest (prehash and low-S checks off, as a TPM's
 * or token's high-S signatures need) and node:crypto (OpenSSL) on the data.
 */
export function verifyP256Both(
  pub: Uint8Array,
  data: Uint8Array,
  sig: Uint8Array,
): { noble: boolean; node: boolean } {
  const digest = createHash('sha256').update(data).digest();
  const noble = p256.verify(sig, digest, pub, { prehash: false, lowS: false });
  const key = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: Buffer.from(pub.subarray(1, 33)).toString('base64url'),
      y: Buffer.from(pub.subarray(33)).toString('base64url'),
    },
    format: 'jwk',
  });
  const node = nodeVerify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
  return { noble, node };
}
