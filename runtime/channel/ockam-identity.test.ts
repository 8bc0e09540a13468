import { describe, expect, it } from 'vitest';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';
import type { SigningPublicKey } from '../../vaults/vault.js';
import type { Clock } from '../identity/clock.js';
import { createCredentialIssuer, issueCredential, type VerifiedCredential } from '../identity/credentials.js';
import { createIdentity } from '../identity/identity.js';
import type { PeerChecks } from './channel-identity.js';
import { OckamChannelIdentity } from './ockam-identity.js';

/** A verifier that counts its signature checks. */
class CountingVerifier extends SoftwareVerifier {
  checks = 0;
  override verify(publicKey: SigningPublicKey, data: Uint8Array, signature: Uint8Array): boolean {
    this.checks++;
    return super.verify(publicKey, data, signature);
  }
}

async function setup() {
  let now = Math.floor(Date.now() / 1000);
  const clock: Clock = { now: () => now };
  const verifier = new CountingVerifier(nodeCrypto);
  const vault = SoftwareVault.inMemory({ provider: nodeCrypto });
  const authority = await createIdentity({ vault, verifier, clock });
  const issuer = await createCredentialIssuer(authority, { verifier, clock });
  const peerLocal = await createIdentity({ vault, verifier, clock });
  const credential = await issueCredential(issuer, {
    subject: peerLocal.identity.identifier,
    attributes: { role: 'sensor' },
    ttlSeconds: 3600,
    verifier,
    clock,
  });
  const peer = await OckamChannelIdentity.create({
    local: peerLocal,
    secureChannelVault: vault,
    verifier,
    clock,
    credentials: [credential],
  });
  const revoked = new Set<string>();
  const checks: PeerChecks = {
    checkIdentity: async () => undefined,
    credentialRefusal: (v: VerifiedCredential) => (revoked.has(v.id) ? 'revoked' : undefined),
  };
  const me = await OckamChannelIdentity.create({
    local: await createIdentity({ vault, verifier, clock }),
    secureChannelVault: vault,
    verifier,
    clock,
    authorities: [authority.identity],
    checks,
  });
  return {
    peer,
    me,
    verifier,
    revoked,
    advance: (s: number) => {
      now += s;
    },
  };
}

describe('OckamChannelIdentity: verified presentations are cached', () => {
  it('verifies the signatures of a presentation once and gives every channel of that peer the same peer object', async () => {
    const { peer, me, verifier } = await setup();
    const payload = peer.handshakePayload();
    const first = await me.verifyPeer(payload, peer.staticKey.publicKey);
    const signatures = verifier.checks;
    expect(signatures).toBeGreaterThan(0);
    expect(first.attributes).toEqual({ role: 'sensor' });
    const second = await me.verifyPeer(payload, peer.staticKey.publicKey);
    expect(verifier.checks).toBe(signatures);
    expect(second).toBe(first);
  });

  it('still refuses the same presentation for another static key', async () => {
    const { peer, me } = await setup();
    await me.verifyPeer(peer.handshakePayload(), peer.staticKey.publicKey);
    const other = new Uint8Array(peer.staticKey.publicKey);
    other[0]! ^= 1;
    await expect(me.verifyPeer(peer.handshakePayload(), other)).rejects.toMatchObject({
      code: 'IDENTITY_INVALID',
    });
  });

  it('applies a revocation to a cached presentation at once, and verifies again once a credential expired', async () => {
    const { peer, me, verifier, revoked, advance } = await setup();
    const payload = peer.handshakePayload();
    const first = await me.verifyPeer(payload, peer.staticKey.publicKey);
    revoked.add(first.credentials![0]!.id);
    const afterRevocation = await me.verifyPeer(payload, peer.staticKey.publicKey);
    expect(afterRevocation.attributes).toEqual({});
    expect(afterRevocation).not.toBe(first);
    revoked.clear();
    // Past the credential's expiry: not from the cache (the signatures are checked again) and the
    // expired credential no longer counts.
    advance(3601);
    const signatures = verifier.checks;
    const expired = await me.verifyPeer(payload, peer.staticKey.publicKey);
    expect(verifier.checks).toBeGreaterThan(signatures);
    expect(expired.attributes).toEqual({});
  });
});
