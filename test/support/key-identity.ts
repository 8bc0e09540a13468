import type { ChannelIdentity, PeerIdentity } from '../../runtime/channel/channel-identity.js';
import { generateDhKey } from '../../runtime/channel/noise/dh-key.js';
import type { CryptoProvider } from '../../vaults/provider.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * A stand-in identity for the channel mechanics: its identifier is the hash of its static key and
 * its payload is its name. The real Ockam identities are tested in test/integration/secure-channel.test.ts.
 */
export function keyIdentity(provider: CryptoProvider, name: string): ChannelIdentity {
  const staticKey = generateDhKey(provider, '25519');
  const id = (k: Uint8Array) => `I${Buffer.from(provider.hash('SHA256', k)).toString('hex')}`;
  return {
    identifier: id(staticKey.publicKey),
    staticKey,
    handshakePayload: () => enc.encode(name),
    verifyPeer: async (payload, rs): Promise<PeerIdentity> => ({
      identifier: id(rs),
      attributes: { name: dec.decode(payload) },
    }),
    refreshPayload: () => ({ changeHistory: enc.encode(name), credentials: [] }),
  };
}
