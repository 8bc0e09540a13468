import type { PeerChecks } from '../../runtime/channel/channel-identity.js';
import { OckamChannelIdentity } from '../../runtime/channel/ockam-identity.js';
import { SecureChannels } from '../../runtime/channel/secure-channels.js';
import { type Clock, systemClock } from '../../runtime/identity/clock.js';
import type { Identity } from '../../runtime/identity/identity.js';
import { createIdentity, type LocalIdentity } from '../../runtime/identity/identity.js';
import type { CredentialAndPurposeKey } from '../../runtime/identity/models.js';
import { Router } from '../../runtime/routing/router.js';
import { TcpTransport } from '../../runtime/transports/tcp/tcp-transport.js';
import type { CryptoProvider, SigningKeyType } from '../../vaults/provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { SoftwareVault, SoftwareVerifier } from '../../vaults/software/software-vault.js';

export interface TestNode {
  router: Router;
  tcp: TcpTransport;
  vault: SoftwareVault;
  verifier: SoftwareVerifier;
  local: LocalIdentity;
  channelIdentity: OckamChannelIdentity;
  channels: SecureChannels;
}

/** A router with TCP, a software vault, an Ockam identity and secure channels: what the integration tests build on. */
export async function testNode(
  name: string,
  options: {
    provider?: CryptoProvider;
    keyType?: SigningKeyType;
    credentials?: CredentialAndPurposeKey[];
    authorities?: Identity[];
    local?: LocalIdentity;
    checks?: PeerChecks;
    clock?: Clock;
    maxLifetimeMs?: number;
  } = {},
): Promise<TestNode> {
  const provider = options.provider ?? nodeCrypto;
  const router = new Router({ name });
  const tcp = TcpTransport.create(router);
  const vault = SoftwareVault.inMemory({ provider });
  const verifier = new SoftwareVerifier(provider);
  const local =
    options.local ??
    (await createIdentity({ vault, verifier, clock: systemClock, keyType: options.keyType ?? 'Ed25519' }));
  const channelIdentity = await OckamChannelIdentity.create({
    local,
    secureChannelVault: vault,
    verifier,
    clock: options.clock ?? systemClock,
    credentials: options.credentials ?? [],
    authorities: options.authorities ?? [],
    ...(options.checks ? { checks: options.checks } : {}),
  });
  const channels = new SecureChannels(router, {
    identity: channelIdentity,
    provider,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.maxLifetimeMs !== undefined ? { maxLifetimeMs: options.maxLifetimeMs } : {}),
  });
  return { router, tcp, vault, verifier, local, channelIdentity, channels };
}
