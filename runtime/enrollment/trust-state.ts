import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SignatureVerifier } from '../../vaults/vault.js';
import type { PeerChecks } from '../channel/channel-identity.js';
import type { Clock } from '../identity/clock.js';
import type { VerifiedCredential } from '../identity/credentials.js';
import type { Identity } from '../identity/identity.js';
import type { RevocationList } from './codec.js';
import { KnownIdentities } from './known-identities.js';
import { RevocationState } from './revocation-state.js';

/**
 * A node's trust state: the change histories it has seen and its authorities' revocation lists,
 * as the checks its secure channels run on every peer (PeerChecks). Kept under `dir`
 * (`nodes/<name>/trust/`), or in memory.
 */
export class TrustState implements PeerChecks {
  private constructor(
    readonly known: KnownIdentities,
    readonly revocations: RevocationState,
  ) {}

  static async open(
    dir: string | undefined,
    o: { verifier: SignatureVerifier; clock: Clock },
  ): Promise<TrustState> {
    if (dir !== undefined) await mkdir(dir, { recursive: true, mode: 0o700 });
    const known = await KnownIdentities.open(
      dir === undefined ? undefined : join(dir, 'known-identities.log'),
    );
    try {
      const revocations = await RevocationState.open(
        dir === undefined ? undefined : join(dir, 'revocations.log'),
        o,
      );
      return new TrustState(known, revocations);
    } catch (e) {
      await known.close();
      throw e;
    }
  }

  checkIdentity(identity: Identity): Promise<void> {
    return this.known.observe(identity);
  }

  credentialRefusal(credential: VerifiedCredential): string | undefined {
    return this.revocations.refusal(credential);
  }

  /**
   * Takes a signed revocation list of `authority` (see RevocationState.accept); a newer one also
   * raises the known minimum history of every identity it says rotated. Returns the list when it
   * was newer than the one held.
   */
  async acceptRevocations(bytes: Uint8Array, authority: Identity): Promise<RevocationList | undefined> {
    const list = await this.revocations.accept(bytes, authority);
    if (list !== undefined)
      for (const r of list.rotations) await this.known.requireChanges(r.identifier, r.changes);
    return list;
  }

  describe(): Record<string, unknown> {
    return { knownIdentities: this.known.counters, revocations: this.revocations.describe() };
  }

  async close(): Promise<void> {
    await this.known.close();
    await this.revocations.close();
  }
}
