import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SignatureVerifier } from '../../vaults/vault.js';
import { describeError, ErrorCodes, isKeyhopError } from '../errors.js';
import { CborWriter } from '../identity/cbor-writer.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { Identity } from '../identity/identity.js';
import type { Logger } from '../log.js';
import type { Worker } from '../routing/worker.js';
import { EnrollmentRefused, failure } from './client.js';
import {
  type DirectoryRequest,
  decodeAckBody,
  decodeBundleCore,
  decodeDirectoryRequest,
  decodePublication,
  decodeRequestHeader,
  decodeRevocationList,
  decodeSealedRequest,
  decodeSealedResponse,
  decodeSigned,
  encodeAnswer,
  encodeBytesList,
  encodeFetchedBundle,
  LIMITS,
  type OneTimePrekey,
} from './codec.js';
import { checkSignedBy } from './device.js';
import { Journal } from './journal.js';
import { requestWorker } from './request-worker.js';

/**
 * The enrollment directory: a service any node can run (a relay node is a good place) that keeps,
 * for authorities that may be offline, what devices need and what they leave behind: each
 * authority's signed prekey bundle and pool of one-time prekeys (each handed out once, durably),
 * its mailbox of sealed enrollment requests, the sealed answers waiting for devices, and its latest
 * revocation list. It can read none of it and forge none of it: requests and answers are sealed
 * end to end, bundles, acknowledgements and revocation lists are signed by the authority, whose
 * identity the directory pins the first time it sees it (a later history must extend it).
 * Everything it accepts is durable (journal) before it answers. Protocol:
 * docs/protocols/enrollment.md.
 */

export interface DirectoryLimits {
  authorities: number;
  prekeysPerAuthority: number;
  requestsPerAuthority: number;
  /** Bytes of pending requests of one authority. */
  requestBytesPerAuthority: number;
  replies: number;
  /** How long answers wait for their device. */
  replyTtlSeconds: number;
}

export const DEFAULT_DIRECTORY_LIMITS: DirectoryLimits = {
  authorities: 100,
  prekeysPerAuthority: 100_000,
  requestsPerAuthority: 100_000,
  requestBytesPerAuthority: 256 * 1024 * 1024,
  replies: 200_000,
  replyTtlSeconds: 30 * 86_400,
};

interface Entry {
  history: Uint8Array;
  identity: Identity;
  bundle: Uint8Array | null;
  publishedAt: number;
  prekeys: OneTimePrekey[];
  /** The highest one-time prekey id ever accepted: ids only grow, so a replayed publication adds none twice. */
  prekeyHigh: number;
  requests: Map<string, Uint8Array>;
  requestBytes: number;
  revocations: { version: number; bytes: Uint8Array } | null;
}

type Rec =
  | { t: 'authority'; history: string }
  | { t: 'publish'; id: string; bundle: string; prekeys: [number, string][]; at: number }
  | { t: 'taken'; id: string; opk: number }
  | { t: 'request'; id: string; rid: string; bytes: string }
  | { t: 'acked'; id: string; rids: string[]; at: number }
  | { t: 'reply'; rid: string; bytes: string; at: number }
  | { t: 'revocations'; id: string; version: number; bytes: string };

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

export interface DirectoryCounters {
  requests: Record<string, number>;
  refused: Record<string, number>;
}

export class Directory {
  readonly counters: DirectoryCounters = { requests: {}, refused: {} };
  private readonly entries = new Map<string, Entry>();
  /** Request id → authority, for requests pending or answered; answers are accepted only for these. */
  private readonly known = new Map<string, string>();
  private readonly replies = new Map<string, { at: number; items: Uint8Array[] }>();

  private constructor(
    private readonly journal: Journal<Rec>,
    private readonly verifier: SignatureVerifier,
    private readonly clock: Clock,
    readonly limits: DirectoryLimits,
    private readonly log: Logger | undefined,
    /** The authorities that may publish here (any, when unset: the first history of each is pinned). */
    private readonly allowed: ReadonlySet<string> | undefined,
  ) {}

  /** Opens (creating) the directory's state in `dir`. */
  static async open(
    dir: string,
    o: {
      verifier: SignatureVerifier;
      clock?: Clock;
      limits?: Partial<DirectoryLimits>;
      log?: Logger;
      authorities?: readonly string[];
    },
  ): Promise<Directory> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const { journal, records } = await Journal.open(join(dir, 'directory.log'), (v) => {
      if (typeof (v as { t?: unknown })?.t !== 'string') throw new Error('not a record');
      return v as Rec;
    });
    const d = new Directory(
      journal,
      o.verifier,
      o.clock ?? systemClock,
      { ...DEFAULT_DIRECTORY_LIMITS, ...o.limits },
      o.log,
      o.authorities?.length ? new Set(o.authorities) : undefined,
    );
    for (const r of records) d.apply(r);
    return d;
  }

  private apply(r: Rec): void {
    switch (r.t) {
      case 'authority': {
        const history = unhex(r.history);
        const identity = Identity.import(history, { verifier: this.verifier, clock: null });
        const id = identity.identifier.toString();
        const e = this.entries.get(id);
        if (e) {
          e.history = history;
          e.identity = identity;
        } else {
          this.entries.set(id, {
            history,
            identity,
            bundle: null,
            publishedAt: 0,
            prekeys: [],
            prekeyHigh: 0,
            requests: new Map(),
            requestBytes: 0,
            revocations: null,
          });
        }
        break;
      }
      case 'publish': {
        const e = this.entries.get(r.id);
        if (!e) break;
        e.bundle = unhex(r.bundle);
        e.publishedAt = r.at;
        for (const [id, key] of r.prekeys) {
          if (id <= e.prekeyHigh) continue;
          e.prekeys.push({ id, key: unhex(key) });
          e.prekeyHigh = id;
        }
        break;
      }
      case 'taken': {
        const e = this.entries.get(r.id);
        if (e) e.prekeys = e.prekeys.filter((p) => p.id !== r.opk);
        break;
      }
      case 'request': {
        const e = this.entries.get(r.id);
        if (!e || e.requests.has(r.rid)) break;
        const bytes = unhex(r.bytes);
        e.requests.set(r.rid, bytes);
        e.requestBytes += bytes.length;
        this.known.set(r.rid, r.id);
        break;
      }
      case 'acked': {
        const e = this.entries.get(r.id);
        if (!e) break;
        for (const rid of r.rids) {
          const b = e.requests.get(rid);
          if (b) e.requestBytes -= b.length;
          e.requests.delete(rid);
        }
        break;
      }
      case 'reply': {
        const list = this.replies.get(r.rid) ?? { at: r.at, items: [] };
        list.items.push(unhex(r.bytes));
        this.replies.set(r.rid, list);
        break;
      }
      case 'revocations': {
        const e = this.entries.get(r.id);
        if (e && (e.revocations === null || r.version > e.revocations.version)) {
          e.revocations = { version: r.version, bytes: unhex(r.bytes) };
        }
        break;
      }
    }
  }

  private async record(r: Rec): Promise<void> {
    this.apply(r);
    await this.journal.append(r);
  }

  private refuse(reason: string, code: keyof typeof ErrorCodes, message: string): never {
    throw new EnrollmentRefused(reason, message, ErrorCodes[code]);
  }

  private entry(id: string): Entry {
    const e = this.entries.get(id);
    if (!e) this.refuse('unknown_authority', 'KEY_NOT_FOUND', `no authority ${id} has published here`);
    return e;
  }

  /**
   * The authority whose history this is, checked against the pinned one: a first history is taken
   * as it is (once what it signed verifies: see `adopt`); a later one must extend the pinned one
   * (rotation), never replace it.
   */
  private check(history: Uint8Array): { identity: Identity; entry: Entry | undefined } {
    let identity: Identity;
    try {
      identity = Identity.import(history, { verifier: this.verifier, clock: this.clock });
    } catch (e) {
      this.refuse(
        'identity_invalid',
        'IDENTITY_INVALID',
        `the authority's identity does not verify: ${describeError(e)}`,
      );
    }
    const entry = this.entries.get(identity.identifier.toString());
    if (!entry) {
      if (this.allowed && !this.allowed.has(identity.identifier.toString()))
        this.refuse('not_allowed', 'TRUST_REFUSED', `authority ${identity.identifier} may not publish here`);
      if (this.entries.size >= this.limits.authorities)
        this.refuse('full', 'DECODE_LIMIT', 'this directory serves as many authorities as it may');
      return { identity, entry };
    }
    if (identity.changes.length < entry.identity.changes.length) return { identity: entry.identity, entry };
    const extends_ = entry.identity.changes.every(
      (c, i) => Buffer.compare(c.hash, identity.changes[i]!.hash) === 0,
    );
    if (!extends_)
      this.refuse(
        'history_conflict',
        'IDENTITY_INVALID',
        `authority ${identity.identifier} presented a history that conflicts with the pinned one`,
      );
    return { identity, entry };
  }

  /** Pins (or moves forward) the authority's history once something it signed has verified. */
  private async adopt(history: Uint8Array, checked: ReturnType<Directory['check']>): Promise<Entry> {
    if (!checked.entry || checked.identity.changes.length > checked.entry.identity.changes.length)
      await this.record({ t: 'authority', history: hex(history) });
    return this.entries.get(checked.identity.identifier.toString())!;
  }

  /** Handles one directory request; returns the answer's bytes (AuthorityAnswer). */
  async handle(bytes: Uint8Array): Promise<Uint8Array> {
    let m: DirectoryRequest;
    try {
      m = decodeDirectoryRequest(bytes);
    } catch (e) {
      this.counters.refused.undecodable = (this.counters.refused.undecodable ?? 0) + 1;
      return failure(e, 'DECODE_INVALID');
    }
    this.counters.requests[m.op] = (this.counters.requests[m.op] ?? 0) + 1;
    try {
      return encodeAnswer({ ok: true, value: await this.operate(m) });
    } catch (e) {
      const reason = e instanceof EnrollmentRefused ? e.reason : isKeyhopError(e) ? e.code : 'internal';
      this.counters.refused[reason] = (this.counters.refused[reason] ?? 0) + 1;
      if (!isKeyhopError(e)) this.log?.error({ err: describeError(e), op: m.op }, 'directory request failed');
      return failure(e, 'INTERNAL');
    }
  }

  private async operate(m: DirectoryRequest): Promise<Uint8Array | null> {
    switch (m.op) {
      case 'publish': {
        const checked = this.check(m.authority);
        checkSignedBy(checked.identity, m.publication, this.verifier, 'publication');
        const p = decodePublication(m.publication.body);
        if (p.publishedAt < (checked.entry?.publishedAt ?? 0))
          this.refuse('stale_publication', 'DECODE_INVALID', 'an older publication than the one kept');
        const signedBundle = decodeSigned(p.bundle, 'prekey bundle', 4096);
        checkSignedBy(checked.identity, signedBundle, this.verifier, 'prekey bundle');
        const core = decodeBundleCore(signedBundle.body);
        if (core.authority !== checked.identity.identifier.toString())
          this.refuse('bundle_mismatch', 'DECODE_INVALID', 'the bundle is for another authority');
        const e = await this.adopt(m.authority, checked);
        const room = this.limits.prekeysPerAuthority - e.prekeys.length;
        const prekeys = p.prekeys
          .filter((k) => k.id > e.prekeyHigh)
          .sort((x, y) => x.id - y.id)
          .slice(0, Math.max(0, room));
        await this.record({
          t: 'publish',
          id: core.authority,
          bundle: hex(p.bundle),
          prekeys: prekeys.map((k) => [k.id, hex(k.key)]),
          at: p.publishedAt,
        });
        // How many one-time prekeys are on offer now: the authority tops up to what it wants.
        return new CborWriter().uint(e.prekeys.length).finish();
      }
      case 'fetch': {
        const e = this.entry(m.authority);
        if (e.bundle === null)
          this.refuse('no_bundle', 'KEY_NOT_FOUND', `authority ${m.authority} has no bundle here`);
        const prekey = e.prekeys[0] ?? null;
        // Handed out once: durable before the answer.
        if (prekey) await this.record({ t: 'taken', id: m.authority, opk: prekey.id });
        return encodeFetchedBundle({ authority: e.history, bundle: e.bundle, prekey });
      }
      case 'deposit': {
        const header = decodeRequestHeader(decodeSealedRequest(m.request).header);
        const e = this.entry(header.authority);
        const rid = hex(this.verifier.sha256(decodeSealedRequest(m.request).header));
        if (e.requests.has(rid)) return unhex(rid);
        if (
          e.requests.size >= this.limits.requestsPerAuthority ||
          e.requestBytes + m.request.length > this.limits.requestBytesPerAuthority
        ) {
          this.refuse('mailbox_full', 'DECODE_LIMIT', `the mailbox of authority ${header.authority} is full`);
        }
        await this.record({ t: 'request', id: header.authority, rid, bytes: hex(m.request) });
        return unhex(rid);
      }
      case 'collect': {
        const e = this.entry(m.authority);
        return encodeBytesList([...e.requests.values()].slice(0, m.max));
      }
      case 'ack': {
        const e = this.entry(m.authority);
        checkSignedBy(e.identity, m.acknowledgement, this.verifier, 'acknowledgement');
        // Replaying an old acknowledgement only forgets requests the authority already handled.
        const ack = decodeAckBody(m.acknowledgement.body);
        await this.record({ t: 'acked', id: m.authority, rids: ack.requestIds.map(hex), at: ack.at });
        return null;
      }
      case 'reply': {
        const r = decodeSealedResponse(m.response);
        const rid = hex(r.requestId);
        if (!this.known.has(rid))
          this.refuse('unknown_request', 'KEY_NOT_FOUND', 'no request with that id was left here');
        const list = this.replies.get(rid);
        if ((list?.items.length ?? 0) >= LIMITS.repliesPerRequest)
          this.refuse('replies_full', 'DECODE_LIMIT', 'that request has all the answers it may have');
        if (!list && this.replies.size >= this.limits.replies)
          this.refuse('full', 'DECODE_LIMIT', 'this directory holds as many answers as it may');
        await this.record({ t: 'reply', rid, bytes: hex(m.response), at: this.clock.now() });
        return null;
      }
      case 'poll': {
        const list = this.replies.get(hex(m.requestId));
        if (list && list.at + this.limits.replyTtlSeconds < this.clock.now()) {
          this.replies.delete(hex(m.requestId));
          return encodeBytesList([]);
        }
        return encodeBytesList(list?.items ?? []);
      }
      case 'put-revocations': {
        const checked = this.check(m.authority);
        const signed = decodeSigned(m.list, 'revocation list');
        checkSignedBy(checked.identity, signed, this.verifier, 'revocation list');
        const list = decodeRevocationList(signed.body);
        if (list.authority !== checked.identity.identifier.toString())
          this.refuse('list_mismatch', 'DECODE_INVALID', 'the list is for another authority');
        const e = await this.adopt(m.authority, checked);
        if (e.revocations !== null && list.version < e.revocations.version) {
          this.refuse(
            'rollback',
            'DECODE_INVALID',
            `version ${list.version} is older than the kept ${e.revocations.version}`,
          );
        }
        await this.record({
          t: 'revocations',
          id: list.authority,
          version: list.version,
          bytes: hex(m.list),
        });
        return null;
      }
      case 'get-revocations': {
        const e = this.entry(m.authority);
        return e.revocations !== null && e.revocations.version >= m.have ? e.revocations.bytes : null;
      }
    }
  }

  /** Pending requests and prekeys on offer per authority (for `node show`). */
  describe(): Record<string, unknown> {
    return {
      authorities: [...this.entries].map(([id, e]) => ({
        authority: id,
        prekeys: e.prekeys.length,
        pendingRequests: e.requests.size,
        revocationVersion: e.revocations?.version ?? null,
      })),
      answersWaiting: this.replies.size,
      ...this.counters,
    };
  }

  async close(): Promise<void> {
    await this.journal.close();
  }
}

/**
 * The directory as a worker (`enrollment_directory`): one request in, its answer back along the
 * return route. Requests are handled concurrently (up to `concurrency`) so that the journal can
 * commit many in one write; each takes what it needs from memory before its first await, so two
 * devices never get the same one-time prekey.
 */
export function directoryWorker(directory: Directory, concurrency = 64): Worker {
  return requestWorker((m) => directory.handle(m.payload), { concurrency, close: () => directory.close() });
}
