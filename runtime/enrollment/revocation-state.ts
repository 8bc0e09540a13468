import type { SignatureVerifier } from '../../vaults/vault.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Clock } from '../identity/clock.js';
import type { VerifiedCredential } from '../identity/credentials.js';
import type { Identity } from '../identity/identity.js';
import { EnrollmentRefused } from './client.js';
import { decodeRevocationList, decodeSigned, type RevocationList } from './codec.js';
import { checkSignedBy } from './device.js';
import { Journal } from './journal.js';

/**
 * What a verifier knows about its authorities' revocations: the latest signed list of each
 * authority it tracks. keyhop's choice (docs/security.md): signed, versioned lists that every
 * verifier fetches (from the authority or from a directory) and that expire. A credential from a
 * tracked authority is refused when its subject or the credential itself is on the list, and
 * when the list is stale (past its `nextUpdate`: whoever keeps the verifier from the authority
 * cannot keep a revoked credential alive longer than one list's validity). An authority that is
 * not tracked (no revocation source configured) is not checked.
 *
 * Lists only move forward: a lower version, or the same version signed earlier, is refused
 * (`rollback`); nothing refused is stored. Kept in a journal; without a path, in memory.
 */

interface Held {
  list: RevocationList;
  bytes: Uint8Array;
  identities: Set<string>;
  credentials: Set<string>;
}

type Rec = { a: string; list: string };

export interface RevocationCounters {
  accepted: number;
  refusedLists: Record<string, number>;
  /** Credentials refused because of a list, by reason. */
  refusedCredentials: Record<string, number>;
}

export class RevocationState {
  readonly counters: RevocationCounters = { accepted: 0, refusedLists: {}, refusedCredentials: {} };
  private readonly held = new Map<string, Held>();
  private readonly tracked = new Set<string>();

  private constructor(
    private readonly journal: Journal<Rec> | undefined,
    private readonly verifier: SignatureVerifier,
    private readonly clock: Clock,
  ) {}

  static async open(
    path: string | undefined,
    o: { verifier: SignatureVerifier; clock: Clock },
  ): Promise<RevocationState> {
    if (path === undefined) return new RevocationState(undefined, o.verifier, o.clock);
    const { journal, records } = await Journal.open<Rec>(
      path,
      (v) => {
        const r = v as Partial<Rec>;
        if (typeof r?.a !== 'string' || typeof r.list !== 'string')
          throw new Error('not a revocation record');
        return v as Rec;
      },
      { maxLine: 16 * 1024 * 1024 },
    );
    const s = new RevocationState(journal, o.verifier, o.clock);
    // Written by this node after checking; read back as they are (the signature was checked then).
    for (const r of records) {
      const bytes = new Uint8Array(Buffer.from(r.list, 'hex'));
      s.keep(decodeRevocationList(decodeSigned(bytes, 'revocation list').body), bytes);
    }
    if (records.length > 2 * s.held.size + 100) {
      await journal.compact([...s.held].map(([a, h]) => ({ a, list: Buffer.from(h.bytes).toString('hex') })));
    }
    return s;
  }

  private keep(list: RevocationList, bytes: Uint8Array): void {
    this.held.set(list.authority, {
      list,
      bytes,
      identities: new Set(list.identifiers.map((e) => e.identifier)),
      credentials: new Set(list.credentials.map((e) => e.id)),
    });
  }

  /** Credentials of `authority` are checked against its lists from now on. */
  track(authority: string): void {
    this.tracked.add(authority);
  }

  isTracked(authority: string): boolean {
    return this.tracked.has(authority);
  }

  /** The version held for `authority` (0: none). */
  versionOf(authority: string): number {
    return this.held.get(authority)?.list.version ?? 0;
  }

  list(authority: string): RevocationList | undefined {
    return this.held.get(authority)?.list;
  }

  private refuseList(reason: string, code: keyof typeof ErrorCodes, message: string): never {
    this.counters.refusedLists[reason] = (this.counters.refusedLists[reason] ?? 0) + 1;
    throw new EnrollmentRefused(reason, message, ErrorCodes[code]);
  }

  /**
   * Takes a signed list from `authority` (its verified identity: the latest key signs). Returns
   * the list when it is newer than the one held (and keeps it, durably), undefined when it is the
   * one held; refuses (typed, counted, nothing kept) an unsigned or mis-signed list, one for
   * another authority, one rolled back, one already stale.
   */
  async accept(bytes: Uint8Array, authority: Identity): Promise<RevocationList | undefined> {
    const id = authority.identifier.toString();
    let signed: ReturnType<typeof decodeSigned>;
    let list: RevocationList;
    try {
      signed = decodeSigned(bytes, 'revocation list');
      list = decodeRevocationList(signed.body);
    } catch (e) {
      this.counters.refusedLists.undecodable = (this.counters.refusedLists.undecodable ?? 0) + 1;
      throw e;
    }
    try {
      checkSignedBy(authority, signed, this.verifier, 'revocation list');
    } catch (e) {
      this.counters.refusedLists.signature = (this.counters.refusedLists.signature ?? 0) + 1;
      throw e;
    }
    if (list.authority !== id)
      this.refuseList('other_authority', 'TRUST_REFUSED', `the list is ${list.authority}'s, not ${id}'s`);
    const held = this.held.get(id)?.list;
    if (held !== undefined) {
      if (list.version < held.version || (list.version === held.version && list.issuedAt < held.issuedAt)) {
        this.refuseList(
          'rollback',
          'TRUST_REFUSED',
          `revocation list version ${list.version} (issued ${list.issuedAt}) is older than the held ${held.version} (issued ${held.issuedAt})`,
        );
      }
      if (list.version === held.version && list.issuedAt === held.issuedAt) return undefined;
    }
    if (list.nextUpdate < this.clock.now())
      this.refuseList(
        'stale',
        'CREDENTIAL_EXPIRED',
        `the revocation list of ${id} is stale (its next update was due)`,
      );
    this.keep(list, bytes);
    this.counters.accepted++;
    await this.journal?.append({ a: id, list: Buffer.from(bytes).toString('hex') });
    return list;
  }

  /**
   * Why `credential` must not count, or undefined when it may: its subject or itself revoked by
   * its issuer, or the issuer's list stale. Untracked issuers are not checked.
   */
  refusal(credential: VerifiedCredential): string | undefined {
    const issuer = credential.issuer.toString();
    if (!this.tracked.has(issuer)) return undefined;
    const held = this.held.get(issuer);
    let reason: string | undefined;
    if (held === undefined) reason = undefined;
    else if (held.identities.has(credential.subject.toString())) reason = 'identity_revoked';
    else if (held.credentials.has(credential.id)) reason = 'credential_revoked';
    else if (held.list.nextUpdate < this.clock.now()) reason = 'list_stale';
    if (reason !== undefined)
      this.counters.refusedCredentials[reason] = (this.counters.refusedCredentials[reason] ?? 0) + 1;
    return reason;
  }

  /** Whether any tracked authority revoked `identifier` itself. */
  isRevoked(identifier: string): boolean {
    for (const [a, h] of this.held) if (this.tracked.has(a) && h.identities.has(identifier)) return true;
    return false;
  }

  /** Seconds until the first held list goes stale (undefined: none held). */
  nextStaleAt(): number | undefined {
    let at: number | undefined;
    for (const [a, h] of this.held) {
      if (!this.tracked.has(a)) continue;
      at = at === undefined ? h.list.nextUpdate : Math.min(at, h.list.nextUpdate);
    }
    return at;
  }

  describe(): Record<string, unknown> {
    return {
      authorities: [...this.tracked].map((a) => {
        const l = this.held.get(a)?.list;
        return {
          authority: a,
          version: l?.version ?? null,
          issuedAt: l ? new Date(l.issuedAt * 1000).toISOString() : null,
          nextUpdate: l ? new Date(l.nextUpdate * 1000).toISOString() : null,
          revokedIdentities: l?.identifiers.length ?? 0,
          revokedCredentials: l?.credentials.length ?? 0,
        };
      }),
      ...this.counters,
    };
  }

  async close(): Promise<void> {
    await this.journal?.close();
  }
}

/** Throws CREDENTIAL_REVOKED-like TRUST_REFUSED for a revoked credential (for one-off checks). */
export function checkNotRevoked(state: RevocationState, credential: VerifiedCredential): void {
  const reason = state.refusal(credential);
  if (reason !== undefined)
    throw new KeyhopError(ErrorCodes.TRUST_REFUSED, `credential ${credential.id} refused: ${reason}`);
}
