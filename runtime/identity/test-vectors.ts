/**
 * TEST ONLY (not exported from index.ts): Ockam vectors the identity tests use beyond
 * test/vectors/ockam/identity.json, and a signer for a vector's fixed secret key (the software
 * vault generates keys but, by design, imports none).
 */
import type { CryptoProvider, SigningKeyType } from '../../vaults/provider.js';
import type { KeyId, SigningPublicKey, SigningVault } from '../../vaults/vault.js';
import { CborReader } from '../codec/cbor.js';
import { ErrorCodes, KeyhopError } from '../errors.js';

/** A SigningVault over a CryptoProvider holding imported secrets in memory. */
export class SeededSigningVault implements SigningVault {
  readonly backend = 'seeded-test';
  private readonly keys = new Map<KeyId, { type: SigningKeyType; secret: Uint8Array }>();

  constructor(private readonly provider: CryptoProvider) {}

  /** Imports a raw secret (Ed25519 seed or P-256 scalar). */
  importKey(type: SigningKeyType, secret: Uint8Array): KeyId {
    const id = `seeded-${this.keys.size + 1}`;
    this.keys.set(id, { type, secret: secret.slice() });
    return id;
  }

  async generateSigningKey(type: SigningKeyType): Promise<KeyId> {
    return this.importKey(type, this.provider.signingGenerate(type).privateKey);
  }

  private key(keyId: KeyId): { type: SigningKeyType; secret: Uint8Array } {
    const k = this.keys.get(keyId);
    if (!k) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no key ${keyId}`);
    return k;
  }

  async publicKey(keyId: KeyId): Promise<SigningPublicKey> {
    const k = this.key(keyId);
    return { type: k.type, bytes: this.provider.signingPublicKey(k.type, k.secret) };
  }

  async sign(keyId: KeyId, data: Uint8Array): Promise<Uint8Array> {
    const k = this.key(keyId);
    return this.provider.sign(k.type, k.secret, data);
  }

  async deleteKey(keyId: KeyId): Promise<void> {
    this.keys.delete(keyId);
  }

  async listKeys(): Promise<KeyId[]> {
    return [...this.keys.keys()];
  }
}

/**
 * Ockam vector: a secure-channel RefreshCredentials plaintext encoded by Rust, from
 * build-trust/ockam @ fb8fb64c, implementations/elixir/ockam/ockam/test/ockam/secure_channel/
 * messages_test.exs (Apache-2.0). `[[1, [[change_history, [[credential, attestation]]]]], h'']`:
 * the subject's one-change history, and one credential (4 attributes) with the issuer's
 * credential-signing attestation. The issuer's own change history is not included.
 */
export const REFRESH_CREDENTIALS_HEX =
  '828201818281825837830101583285f682008158208bd01513a019c95d96553015b1b0a3014e7bd67c7f3c8e6223e839111041f8d6f41a659c99fd1a78689cfd820081584067118992d037593809f8b217641aed54dc983f2847f95b2068207c3647beb73a60b0e14012c14bfee487c880f0f74d9f8a7d7abd3ef333f2f90f097ef366900c81828258e183010358dc855820904192e6e480915e0d1256d3abf9c3c9c67bc2b4c41ffca77550d8a3f12fbb1e5820904192e6e480915e0d1256d3abf9c3c9c67bc2b4c41ffca77550d8a3f12fbb1e8201a44b6f636b616d2d72656c6179412a4a6f636b616d2d726f6c6548656e726f6c6c65724a70726f6a6563745f6964582437363764343631632d393835312d346330622d626663362d3664333333346235626363325074727573745f636f6e746578745f6964582437363764343631632d393835312d346330622d626663362d3664333333346235626363321a659ca3cf1a659ca3ed8200815840cf27a0a3052c53b1f27bf7776ca95c7dcdd7a0f493cc5b1e30f9d35712bb8fde16f69065aa9f70b3689a8f1b7b05fc13e6e807efa719031d1a415d25b61c360b82587c8301025877855820b1fea1775d75079abdb1e78b96921fa9ec340bc2b5aa70f37e65342d859cf5505820b1fea1775d75079abdb1e78b96921fa9ec340bc2b5aa70f37e65342d859cf5508201818200815820389852b0f4fee7b6b962442a924d1672c56b8813fb846a50da80db7e1bbe41591a659c9a2f1a6f029baf8200815840adf4a66e097de839d3539694a6c6a82a978ff009205df8bf7eb03b9990958b7c4e7037fd9d365cf220a2757ed60f0542f47965d8b9f354fd950841ce6630460640';

/** The change history and the CredentialAndPurposeKey items of REFRESH_CREDENTIALS_HEX. */
export function splitRefreshCredentials(): {
  changeHistory: Uint8Array;
  credentialAndPurposeKey: Uint8Array;
} {
  const r = new CborReader(Buffer.from(REFRESH_CREDENTIALS_HEX, 'hex'), 'RefreshCredentials vector');
  r.array(2, 2);
  r.array(2, 2);
  if (r.uint(255) !== 1) throw new Error('not RefreshCredentials');
  r.array(1, 1);
  r.array(2, 2);
  const changeHistory = r.rawItem().slice();
  r.array(1, 1);
  const credentialAndPurposeKey = r.rawItem().slice();
  r.bytesValue(0);
  r.end();
  return { changeHistory, credentialAndPurposeKey };
}

/**
 * Ockam vector: an Ed25519 identity with its secret key, from build-trust/ockam @ fb8fb64c,
 * implementations/elixir/ockam/ockam/test/ockam/identity_test.exs (Apache-2.0), as hex.
 */
export const ELIXIR_IDENTITY = {
  /** Ed25519 seed. */
  secret: '71807486987f97d8683017b98fdcb0f119c0f7a7a1dc06d6a58d7dc9ed9d5716',
  changeHistory:
    '81825837830101583285f682008158206d1565d9b7fcc3080cf20a2425a5e950dcc5f1e9fa8941977cc298a865073071f41a65563f171a782242178200815840755d958e25e54cdfea7caf7488ce30435f0fe26b4e7f098ca501327af6b04c9e2dc497d894ed71de48a2073b7e6c7ad17985933e8af9ba92f94a58adb088940a',
  identifier: 'I10253701dafcc65a621ad9fb4097cb327c541de78827713320b749cbbdbd2e9f',
  /** attestations_valid_from (2023-11-16T16:11:03Z); valid_until is 3650 days later. */
  createdAt: 0x65563f17,
};
