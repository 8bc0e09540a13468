import type { CryptoProvider } from '../../vaults/provider.js';
import type { DhKey } from '../../vaults/vault.js';
import { HandshakeState } from './noise/handshake-state.js';

/**
 * Ockam's secure-channel handshake (ockam.md §3.2): Noise XX over X25519, AES-256-GCM and SHA-256,
 * with the 32-byte protocol name used as is and an empty prologue. Message 1 carries no payload;
 * messages 2 and 3 carry the identities.
 */
export const OCKAM_PROTOCOL_NAME = 'OCKAM_XX_25519_AES256_GCM_SHA256';
export const OCKAM_SUITE = { pattern: 'XX', dh: '25519', cipher: 'AESGCM', hash: 'SHA256' } as const;

export function ockamHandshake(
  provider: CryptoProvider,
  initiator: boolean,
  staticKey: DhKey,
): HandshakeState {
  return new HandshakeState({
    provider,
    protocolName: OCKAM_PROTOCOL_NAME,
    suite: OCKAM_SUITE,
    initiator,
    s: staticKey,
  });
}

/**
 * Ockam deviates from Noise's Split(): the initiator encrypts with k2 and decrypts with k1, the
 * responder the other way round (Handshake::set_final_state; pinned by the C vectors).
 */
export function ockamSplit(
  hs: HandshakeState,
  initiator: boolean,
): { encrypt: Uint8Array; decrypt: Uint8Array } {
  const { c1, c2 } = hs.split();
  const k1 = c1.exportKey()!;
  const k2 = c2.exportKey()!;
  c1.destroy();
  c2.destroy();
  return initiator ? { encrypt: k2, decrypt: k1 } : { encrypt: k1, decrypt: k2 };
}
