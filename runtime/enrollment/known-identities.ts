import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { Journal } from './journal.js';

/**
 * The change histories this node has seen, by identifier (Ockam's rule, docs/security.md): a peer
 * whose history conflicts with the known one (a fork) or is older (a strict prefix: the peer, or a
 * thief with a rotated-away key, presents the history as it was before a rotation) is refused. A
 * longer history that extends the known one (a rotation) replaces it. Authorities can also say,
 * in their revocation lists, how many changes an identity has at least (`requireChanges`), so a
 * node that never saw the rotation still refuses the old key.
 *
 * Kept in a journal (one line per first sight or rotation, durable before the handshake goes on);
 * without a path, in memory.
 */

type Rec = { id: string; h: string[] } | { id: string; min: number };

export interface KnownIdentitiesCounters {
  known: number;
  refusedOlder: number;
  refusedConflict: number;
  refusedBelowRotation: number;
}

export class KnownIdentities {
  readonly counters: KnownIdentitiesCounters = {
    known: 0,
    refusedOlder: 0,
    refusedConflict: 0,
    refusedBelowRotation: 0,
  };
  private readonly histories = new Map<string, string[]>();
  private readonly minimum = new Map<string, number>();

  private constructor(
    private readonly journal: Journal<Rec> | undefined,
    readonly maxIdentities: number,
  ) {}

  static async open(path?: string, maxIdentities = 1_000_000): Promise<KnownIdentities> {
    if (path === undefined) return new KnownIdentities(undefined, maxIdentities);
    const { journal, records } = await Journal.open<Rec>(path, (v) => {
      const r = v as Partial<{ id: unknown; h: unknown; min: unknown }>;
      if (typeof r?.id !== 'string' || (!Array.isArray(r.h) && typeof r.min !== 'number'))
        throw new Error('not a known-identity record');
      return v as Rec;
    });
    const k = new KnownIdentities(journal, maxIdentities);
    for (const r of records) k.apply(r);
    // Rewrite the journal as one line per identity when it has grown well past that.
    if (records.length > 2 * (k.histories.size + k.minimum.size) + 1000) {
      await journal.compact([
        ...[...k.histories].map(([id, h]) => ({ id, h })),
        ...[...k.minimum].map(([id, min]) => ({ id, min })),
      ]);
    }
    return k;
  }

  private apply(r: Rec): void {
    if ('h' in r) this.histories.set(r.id, r.h);
    else this.minimum.set(r.id, Math.max(this.minimum.get(r.id) ?? 0, r.min));
    this.counters.known = this.histories.size;
  }

  /** How many changes the known history of `identifier` has (0: never seen). */
  changesOf(identifier: string): number {
    return this.histories.get(identifier)?.length ?? 0;
  }

  /**
   * Checks `identity` (already verified) against what is known, and records it when it is new or
   * extends the known history. Throws IDENTITY_INVALID for an older or conflicting history.
   */
  async observe(identity: Identity): Promise<void> {
    const id = identity.identifier.toString();
    const hashes = identity.changes.map((c) => Buffer.from(c.hash).toString('hex'));
    const min = this.minimum.get(id) ?? 0;
    if (hashes.length < min) {
      this.counters.refusedBelowRotation++;
      throw new KeyhopError(
        ErrorCodes.IDENTITY_INVALID,
        `identity ${id} presented ${hashes.length} changes, but its authority says it rotated to ${min} or more: an old key`,
      );
    }
    const known = this.histories.get(id);
    if (known !== undefined) {
      const common = Math.min(known.length, hashes.length);
      for (let i = 0; i < common; i++) {
        if (known[i] !== hashes[i]) {
          this.counters.refusedConflict++;
          throw new KeyhopError(
            ErrorCodes.IDENTITY_INVALID,
            `identity ${id} presented a change history that conflicts with the one this node knows (change ${i + 1} differs)`,
          );
        }
      }
      if (hashes.length < known.length) {
        this.counters.refusedOlder++;
        throw new KeyhopError(
          ErrorCodes.IDENTITY_INVALID,
          `identity ${id} presented ${hashes.length} changes, older than the ${known.length} this node knows: a rotated-away key`,
        );
      }
      if (hashes.length === known.length) return;
    } else if (this.histories.size >= this.maxIdentities) {
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `this node knows ${this.maxIdentities} identities, as many as it may keep`,
      );
    }
    const r: Rec = { id, h: hashes };
    this.apply(r);
    await this.journal?.append(r);
  }

  /** An authority says `identifier` has at least `changes` changes (it rotated). */
  async requireChanges(identifier: string, changes: number): Promise<void> {
    if ((this.minimum.get(identifier) ?? 0) >= changes) return;
    const r: Rec = { id: identifier, min: changes };
    this.apply(r);
    await this.journal?.append(r);
  }

  async close(): Promise<void> {
    await this.journal?.close();
  }
}
