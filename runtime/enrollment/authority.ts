import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CryptoProvider } from '../../vaults/provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import type { DhKey, SignatureVerifier } from '../../vaults/vault.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { type CredentialIssuer, issueCredential } from '../identity/credentials.js';
import { Identity, type LocalIdentity } from '../identity/identity.js';
import { encodeCredentialAndPurposeKey } from '../identity/models.js';
import { signDigest } from '../identity/signing.js';
import { acquireLock } from '../state-lock.js';
import { EnrollmentRefused } from './client.js';
import {
  type BundleCore,
  decodeRequestBody,
  decodeRequestHeader,
  decodeSealedRequest,
  encodeAckBody,
  encodeBundleCore,
  encodeRevocationList,
  encodeSealedResponse,
  encodeSigned,
  type OneTimePrekey,
  type Publication,
  type RevocationList,
  type Signed,
  type Ticket,
} from './codec.js';
import { Journal } from './journal.js';
import { encodeResponseBody, PROOF_LABEL, requestIdOf, sessionKeys, X3DH_INFO } from './protocol.js';
import { SealedFile } from './sealed-file.js';
import { decodeKey, encodeKey, x3dhResponder } from './x3dh.js';

/**
 * An enrollment authority: issues credentials to devices that prove they may have them, with a
 * one-time code (Ockam's ticket flow, over a secure channel to the authority's node) or an X3DH
 * enrollment request left in a directory while the authority was offline; renews members'
 * credentials; revokes identities and credentials in a signed, versioned list.
 *
 * State under `KEYHOP_HOME/authorities/<name>/`: `journal.log` (everything that happened, durable
 * before any answer leaves: tickets made and used, members, one-time prekeys used, revocations)
 * and `prekeys.json`, the X3DH private keys, sealed when the authority was created with a
 * passphrase (docs/protocols/enrollment.md, docs/security.md).
 */

const DAY = 86_400;

export interface AuthorityCounters {
  enrolled: number;
  renewed: number;
  refused: Record<string, number>;
  dropped: Record<string, number>;
}

interface TicketState {
  readonly id: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly uses: number;
  used: number;
  withdrawn: boolean;
}

export interface Member {
  readonly identifier: string;
  attributes: Readonly<Record<string, string>>;
  readonly enrolledAt: number;
  readonly via: 'ticket' | 'x3dh';
  /** Changes in the longest change history seen of it: an older one is refused. */
  changes: number;
}

type Record_ =
  | {
      t: 'ticket';
      id: string;
      attributes: Record<string, string>;
      createdAt: number;
      expiresAt: number;
      uses: number;
    }
  | { t: 'ticket-used'; id: string }
  | { t: 'ticket-withdrawn'; id: string }
  | {
      t: 'member';
      identifier: string;
      attributes: Record<string, string>;
      at: number;
      via: 'ticket' | 'x3dh';
      changes: number;
    }
  | { t: 'renewed'; identifier: string; changes: number }
  | { t: 'opk-used'; id: number }
  | { t: 'opk-published'; upTo: number }
  | { t: 'revoke-identity'; identifier: string; at: number }
  | { t: 'revoke-credential'; id: string; at: number }
  | { t: 'rotation'; identifier: string; changes: number };

interface KeyPairHex {
  id: number;
  private: string;
  public: string;
}

interface Prekeys {
  identity: KeyPairHex;
  signed: (KeyPairHex & { createdAt: number; expiresAt: number; retireAt: number | null })[];
  oneTime: { next: number; keys: [number, string][] };
}

function checkRecord(v: unknown): Record_ {
  const r = v as Record_ | null;
  if (typeof r !== 'object' || r === null || typeof (r as { t?: unknown }).t !== 'string')
    throw new Error('not a record');
  return r;
}

function checkPrekeys(v: unknown): Prekeys {
  const p = v as Prekeys | null;
  if (!p?.identity || !Array.isArray(p.signed) || !Array.isArray(p.oneTime?.keys))
    throw new Error('not prekeys');
  return p;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

export { EnrollmentRefused };

export interface AuthorityOpenOptions {
  home: string;
  name: string;
  local: LocalIdentity;
  issuer: CredentialIssuer;
  verifier: SignatureVerifier;
  clock?: Clock;
  provider?: CryptoProvider;
  /** Seals the prekeys (create), or opens them (open): KEYHOP_VAULT_PASSPHRASE. */
  passphrase?: string;
  /** Validity of issued credentials; default 30 days. */
  credentialTtlSeconds?: number;
  /** A revocation list is valid this long after it is signed; default 7 days. */
  revocationValiditySeconds?: number;
  /** The node that serves this authority (named in its lock, so that commands can ask it). */
  owner?: string | null;
}

export class Authority {
  readonly counters: AuthorityCounters = { enrolled: 0, renewed: 0, refused: {}, dropped: {} };
  private readonly tickets = new Map<string, TicketState>();
  private readonly members = new Map<string, Member>();
  private readonly usedOpks = new Set<number>();
  private publishedUpTo = 0;
  private readonly revokedIdentities = new Map<string, number>();
  private readonly revokedCredentials = new Map<string, number>();
  private readonly rotations = new Map<string, number>();
  private revocationVersion = 1; // 0 means "no list" to verifiers and directories
  private signedRevocations: { version: number; bytes: Uint8Array; issuedAt: number } | undefined;
  /** Private keys as DhKeys, made once (the provider caches the imported key objects). */
  private readonly dhKeys = new Map<string, DhKey>();
  private prekeysDirty = false;
  private readonly provider: CryptoProvider;
  private readonly clock: Clock;

  private constructor(
    private readonly o: AuthorityOpenOptions,
    private readonly journal: Journal<Record_>,
    private readonly prekeyFile: SealedFile<Prekeys>,
    private prekeys: Prekeys,
    private readonly unlock: () => Promise<void>,
  ) {
    this.provider = o.provider ?? nodeCrypto;
    this.clock = o.clock ?? systemClock;
  }

  get identifier(): string {
    return this.o.local.identity.identifier.toString();
  }

  get identity(): Identity {
    return this.o.local.identity;
  }

  static directory(home: string, name: string): string {
    return join(home, 'authorities', name);
  }

  /** Makes the authority's state: X3DH identity and signed prekey, `prekeys` one-time prekeys. */
  static async create(o: AuthorityOpenOptions & { prekeys?: number }): Promise<Authority> {
    const dir = Authority.directory(o.home, o.name);
    if (await Authority.exists(o.home, o.name))
      throw new KeyhopError(ErrorCodes.AUTHORITY_EXISTS, `authority "${o.name}" exists (${dir})`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return Authority.locked(o, dir, (unlock) => Authority.make(o, dir, unlock));
  }

  /** Runs `open` holding the authority's lock (released again if it fails). */
  private static async locked(
    o: AuthorityOpenOptions,
    dir: string,
    open: (unlock: () => Promise<void>) => Promise<Authority>,
  ): Promise<Authority> {
    const unlock = await acquireLock(join(dir, 'lock'), `authority "${o.name}"`, o.owner ?? null);
    try {
      return await open(unlock);
    } catch (e) {
      await unlock();
      throw e;
    }
  }

  /** Whether authority `name` has state under `home`. */
  static async exists(home: string, name: string): Promise<boolean> {
    return stat(join(Authority.directory(home, name), 'prekeys.json')).then(
      () => true,
      () => false,
    );
  }

  private static async make(
    o: AuthorityOpenOptions & { prekeys?: number },
    dir: string,
    unlock: () => Promise<void>,
  ): Promise<Authority> {
    const provider = o.provider ?? nodeCrypto;
    const now = (o.clock ?? systemClock).now();
    const pair = (id: number): KeyPairHex => {
      const k = provider.dhGenerate('25519');
      return { id, private: hex(k.privateKey), public: hex(k.publicKey) };
    };
    const prekeys: Prekeys = {
      identity: pair(0),
      signed: [{ ...pair(1), createdAt: now, expiresAt: now + 30 * DAY, retireAt: null }],
      oneTime: { next: 1, keys: [] },
    };
    const file = await SealedFile.create(join(dir, 'prekeys.json'), prekeys, o.passphrase);
    const { journal } = await Journal.open(join(dir, 'journal.log'), checkRecord);
    const authority = new Authority(o, journal, file, prekeys, unlock);
    if ((o.prekeys ?? 100) > 0) await authority.addOneTimePrekeys(o.prekeys ?? 100);
    return authority;
  }

  static async open(o: AuthorityOpenOptions): Promise<Authority> {
    const dir = Authority.directory(o.home, o.name);
    if (!(await Authority.exists(o.home, o.name))) {
      throw new KeyhopError(
        ErrorCodes.AUTHORITY_NOT_FOUND,
        `no authority "${o.name}" here (create it with: keyhop authority create ${o.name})`,
      );
    }
    return Authority.locked(o, dir, (unlock) => Authority.load(o, dir, unlock));
  }

  private static async load(
    o: AuthorityOpenOptions,
    dir: string,
    unlock: () => Promise<void>,
  ): Promise<Authority> {
    const { file, content } = await SealedFile.open(
      join(dir, 'prekeys.json'),
      o.passphrase,
      checkPrekeys,
      `: set KEYHOP_VAULT_PASSPHRASE to the passphrase of authority "${o.name}"`,
    );
    const { journal, records } = await Journal.open(join(dir, 'journal.log'), checkRecord);
    const a = new Authority(o, journal, file, content, unlock);
    for (const r of records) a.apply(r);
    // One-time prekeys the journal says were used go from the file now (a crash may have left them).
    if (a.prekeys.oneTime.keys.some(([id]) => a.usedOpks.has(id))) {
      a.prekeysDirty = true;
      await a.flushPrekeys();
    }
    return a;
  }

  private apply(r: Record_): void {
    switch (r.t) {
      case 'ticket':
        this.tickets.set(r.id, { ...r, used: 0, withdrawn: false });
        break;
      case 'ticket-used': {
        const t = this.tickets.get(r.id);
        if (t) t.used++;
        break;
      }
      case 'ticket-withdrawn': {
        const t = this.tickets.get(r.id);
        if (t) t.withdrawn = true;
        break;
      }
      case 'member':
        this.members.set(r.identifier, {
          identifier: r.identifier,
          attributes: r.attributes,
          enrolledAt: r.at,
          via: r.via,
          changes: r.changes,
        });
        break;
      case 'renewed': {
        // A member that renews with a longer history rotated its key: the revocation list says so,
        // so that verifiers that never saw the new history refuse the old key too.
        const m = this.members.get(r.identifier);
        if (m && r.changes > m.changes) {
          m.changes = r.changes;
          this.rotations.set(r.identifier, Math.max(this.rotations.get(r.identifier) ?? 0, r.changes));
          this.revocationVersion++;
        }
        break;
      }
      case 'opk-used':
        this.usedOpks.add(r.id);
        break;
      case 'opk-published':
        this.publishedUpTo = Math.max(this.publishedUpTo, r.upTo);
        break;
      case 'revoke-identity':
        this.revokedIdentities.set(r.identifier, r.at);
        this.revocationVersion++;
        break;
      case 'revoke-credential':
        this.revokedCredentials.set(r.id, r.at);
        this.revocationVersion++;
        break;
      case 'rotation':
        this.rotations.set(r.identifier, Math.max(this.rotations.get(r.identifier) ?? 0, r.changes));
        this.revocationVersion++;
        break;
    }
  }

  private async record(r: Record_): Promise<void> {
    this.apply(r);
    await this.journal.append(r);
  }

  // ---- tickets -----------------------------------------------------------------------------------

  /** A one-time code granting `attributes`, valid `ttlSeconds`, for `uses` enrollments. */
  async createTicket(o: {
    attributes: Readonly<Record<string, string>>;
    ttlSeconds?: number;
    uses?: number;
    route: string;
  }): Promise<{ id: string; ticket: Ticket }> {
    const ttl = o.ttlSeconds ?? DAY;
    const uses = o.uses ?? 1;
    if (!Number.isSafeInteger(ttl) || ttl <= 0)
      throw new KeyhopError(ErrorCodes.USAGE, 'ticket ttl must be whole seconds > 0');
    if (!Number.isSafeInteger(uses) || uses < 1 || uses > 1_000_000) {
      throw new KeyhopError(ErrorCodes.USAGE, 'ticket uses must be 1..1000000');
    }
    const code = this.provider.randomBytes(32);
    const id = ticketId(code);
    const now = this.clock.now();
    await this.record({
      t: 'ticket',
      id,
      attributes: { ...o.attributes },
      createdAt: now,
      expiresAt: now + ttl,
      uses,
    });
    return { id, ticket: { authority: this.identity.export(), route: o.route, code, expiresAt: now + ttl } };
  }

  async withdrawTicket(id: string): Promise<void> {
    const t = this.tickets.get(id);
    if (!t) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no ticket ${id} at authority ${this.o.name}`);
    await this.record({ t: 'ticket-withdrawn', id });
  }

  ticketList(): readonly (TicketState & { state: string })[] {
    const now = this.clock.now();
    return [...this.tickets.values()].map((t) => ({ ...t, state: ticketState(t, now) }));
  }

  /** Takes one use of the ticket whose code this is (synchronously, before anything awaits). */
  private takeTicket(code: Uint8Array): TicketState {
    const t = this.tickets.get(ticketId(code));
    const state = t === undefined ? 'unknown' : ticketState(t, this.clock.now());
    if (t === undefined || state !== 'valid') {
      throw new EnrollmentRefused(
        `ticket_${state}`,
        state === 'unknown' ? 'this code is not one of the authority\u2019s' : `this code is ${state}`,
      );
    }
    t.used++;
    return t;
  }

  // ---- members and credentials -------------------------------------------------------------------

  memberList(): readonly Member[] {
    return [...this.members.values()];
  }

  private checkStanding(identifier: string, changes: number): void {
    if (this.revokedIdentities.has(identifier))
      throw new EnrollmentRefused('revoked', `identity ${identifier} is revoked`);
    const known = Math.max(this.members.get(identifier)?.changes ?? 0, this.rotations.get(identifier) ?? 0);
    if (changes < known) {
      throw new EnrollmentRefused(
        'history_older',
        `identity ${identifier} presented ${changes} changes, older than the ${known} this authority knows`,
      );
    }
  }

  private async issue(identifier: string, attributes: Readonly<Record<string, string>>): Promise<Uint8Array> {
    const credential = await issueCredential(this.o.issuer, {
      subject: identifier,
      attributes,
      ttlSeconds: this.o.credentialTtlSeconds ?? 30 * DAY,
      verifier: this.o.verifier,
      clock: this.clock,
    });
    return encodeCredentialAndPurposeKey(credential);
  }

  /**
   * One-time-code enrollment: `identifier` (authenticated by the secure channel it came through,
   * with `changes` in its history) presents `code`. Returns the credential (CredentialAndPurposeKey
   * CBOR); EnrollmentRefused when the code is unknown, used up, expired or withdrawn, or the
   * identity is revoked.
   */
  async enrollWithCode(identifier: string, changes: number, code: Uint8Array): Promise<Uint8Array> {
    try {
      this.checkStanding(identifier, changes);
      const ticket = this.takeTicket(code);
      let credential: Uint8Array;
      try {
        credential = await this.issue(identifier, ticket.attributes);
      } catch (e) {
        ticket.used--;
        throw e;
      }
      await this.enrolled(identifier, ticket, 'ticket', changes);
      return credential;
    } catch (e) {
      this.countRefusal(e);
      throw e;
    }
  }

  /** Records (durably) that `ticket` was used by a new member. */
  private async enrolled(
    identifier: string,
    ticket: TicketState,
    via: 'ticket' | 'x3dh',
    changes: number,
  ): Promise<void> {
    const member: Record_ = {
      t: 'member',
      identifier,
      attributes: { ...ticket.attributes },
      at: this.clock.now(),
      via,
      changes,
    };
    this.apply(member);
    await Promise.all([
      this.journal.append({ t: 'ticket-used', id: ticket.id }),
      this.journal.append(member),
    ]);
    this.counters.enrolled++;
  }

  /** A fresh credential for a member (renewal), with the attributes it enrolled with. */
  async credentialFor(identifier: string, changes: number): Promise<Uint8Array> {
    try {
      const member = this.members.get(identifier);
      if (!member)
        throw new EnrollmentRefused('not_member', `${identifier} is not a member of this authority`);
      this.checkStanding(identifier, changes);
      const credential = await this.issue(identifier, member.attributes);
      if (changes > member.changes) await this.record({ t: 'renewed', identifier, changes });
      this.counters.renewed++;
      return credential;
    } catch (e) {
      this.countRefusal(e);
      throw e;
    }
  }

  private countRefusal(e: unknown): void {
    const reason =
      e instanceof EnrollmentRefused ? e.reason : isKeyhopError(e) ? e.code.toLowerCase() : 'internal';
    this.counters.refused[reason] = (this.counters.refused[reason] ?? 0) + 1;
  }

  private drop(reason: string): undefined {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
    return undefined;
  }

  // ---- revocation --------------------------------------------------------------------------------

  async revokeIdentity(identifier: string): Promise<void> {
    if (!/^I[0-9a-f]{64}$/.test(identifier))
      throw new KeyhopError(ErrorCodes.USAGE, `"${identifier}" is not an identifier`);
    if (this.revokedIdentities.has(identifier)) return;
    await this.record({ t: 'revoke-identity', identifier, at: this.clock.now() });
  }

  async revokeCredential(id: string): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(id))
      throw new KeyhopError(ErrorCodes.USAGE, `"${id}" is not a credential id (64 hex digits)`);
    if (this.revokedCredentials.has(id)) return;
    await this.record({ t: 'revoke-credential', id, at: this.clock.now() });
  }

  /** `identifier` rotated its key: histories with fewer than `changes` changes are refused everywhere. */
  async recordRotation(identifier: string, changes: number): Promise<void> {
    if ((this.rotations.get(identifier) ?? 0) >= changes) return;
    await this.record({ t: 'rotation', identifier, changes });
  }

  /** The signed revocation list (re-signed when it changed or half its validity has passed). */
  async revocations(): Promise<{ version: number; bytes: Uint8Array }> {
    const now = this.clock.now();
    const validity = this.o.revocationValiditySeconds ?? 7 * DAY;
    const s = this.signedRevocations;
    if (s && s.version === this.revocationVersion && now - s.issuedAt < validity / 2) return s;
    const list: RevocationList = {
      authority: this.identifier,
      version: this.revocationVersion,
      issuedAt: now,
      nextUpdate: now + validity,
      identifiers: [...this.revokedIdentities].map(([identifier, at]) => ({ identifier, at })),
      credentials: [...this.revokedCredentials].map(([id, at]) => ({ id, at })),
      rotations: [...this.rotations].map(([identifier, changes]) => ({ identifier, changes })),
    };
    const body = encodeRevocationList(list);
    const bytes = encodeSigned({ body, signature: await this.signPrimary(body, 'revocation list') });
    this.signedRevocations = { version: list.version, bytes, issuedAt: now };
    return this.signedRevocations;
  }

  /** Signs `body` with the authority's primary key (what directories check publications against). */
  signBody(body: Uint8Array, what: string): Promise<Uint8Array> {
    return this.signPrimary(body, what);
  }

  /** The id of a sealed request (undefined for bytes that are not one). */
  requestIdOf(bytes: Uint8Array): Uint8Array | undefined {
    try {
      return requestIdOf(this.provider, decodeSealedRequest(bytes).header);
    } catch {
      return undefined;
    }
  }

  private async signPrimary(body: Uint8Array, what: string): Promise<Uint8Array> {
    const { local, verifier } = this.o;
    const s = await signDigest(
      local.vault,
      local.keyId,
      local.identity.primaryPublicKey,
      verifier.sha256(body),
      verifier,
      what,
    );
    return s.bytes;
  }

  // ---- X3DH prekeys --------------------------------------------------------------------------------

  /** Generates `count` more one-time prekeys (kept until published and used). */
  async addOneTimePrekeys(count: number): Promise<void> {
    const ot = this.prekeys.oneTime;
    for (let i = 0; i < count; i++) {
      const k = this.provider.dhGenerate('25519');
      ot.keys.push([ot.next++, hex(k.privateKey)]);
    }
    this.prekeysDirty = true;
    await this.flushPrekeys();
  }

  /** One-time prekeys that were made but not yet handed to a directory. */
  get unpublishedPrekeys(): number {
    return this.prekeys.oneTime.keys.filter(([id]) => id > this.publishedUpTo).length;
  }

  /**
   * A new signed prekey; the previous one stays usable for `graceSeconds` (requests made with it
   * may still be on their way), then its private key is deleted.
   */
  async rotateSignedPrekey(graceSeconds = 7 * DAY): Promise<number> {
    const now = this.clock.now();
    const current = this.currentSignedPrekey();
    current.retireAt = now + graceSeconds;
    const k = this.provider.dhGenerate('25519');
    const id = Math.max(...this.prekeys.signed.map((s) => s.id)) + 1;
    this.prekeys.signed.push({
      id,
      private: hex(k.privateKey),
      public: hex(k.publicKey),
      createdAt: now,
      expiresAt: now + 30 * DAY,
      retireAt: null,
    });
    this.prekeysDirty = true;
    await this.flushPrekeys();
    return id;
  }

  private currentSignedPrekey(): Prekeys['signed'][number] {
    const current = this.prekeys.signed.find((s) => s.retireAt === null);
    if (!current)
      throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, 'the authority has no current signed prekey');
    return current;
  }

  /**
   * What to hand a directory: the signed bundle (X3DH identity key and current signed prekey, signed
   * by the authority's primary key) and `fresh` one-time prekeys never published before (made on
   * demand). Each one-time prekey goes to one directory only.
   */
  async publication(fresh = 100): Promise<Publication> {
    if (this.unpublishedPrekeys < fresh) await this.addOneTimePrekeys(fresh - this.unpublishedPrekeys);
    const spk = this.currentSignedPrekey();
    const core: BundleCore = {
      authority: this.identifier,
      ik: encodeKey(unhex(this.prekeys.identity.public)),
      spkId: spk.id,
      spk: encodeKey(unhex(spk.public)),
      createdAt: spk.createdAt,
      expiresAt: spk.expiresAt,
    };
    const body = encodeBundleCore(core);
    const bundle = encodeSigned({ body, signature: await this.signPrimary(body, 'prekey bundle') });
    const prekeys: OneTimePrekey[] = this.prekeys.oneTime.keys
      .filter(([id]) => id > this.publishedUpTo)
      .slice(0, fresh)
      .map(([id, priv]) => ({ id, key: encodeKey(this.provider.dhPublicKey('25519', unhex(priv))) }));
    if (prekeys.length > 0) {
      const upTo = Math.max(this.publishedUpTo, ...prekeys.map((p) => p.id));
      await this.record({ t: 'opk-published', upTo });
    }
    return { bundle, prekeys, publishedAt: this.clock.now() };
  }

  private dhKey(privHex: string): DhKey {
    let k = this.dhKeys.get(privHex);
    if (!k) {
      const priv = unhex(privHex);
      const provider = this.provider;
      k = { publicKey: provider.dhPublicKey('25519', priv), dh: (peer) => provider.dh('25519', priv, peer) };
      this.dhKeys.set(privHex, k);
    }
    return k;
  }

  /** Rewrites the prekey file without used one-time prekeys and retired signed prekeys. */
  async flushPrekeys(): Promise<void> {
    if (!this.prekeysDirty) return;
    this.prekeysDirty = false;
    const now = this.clock.now();
    const ot = this.prekeys.oneTime;
    for (const [id, priv] of ot.keys) if (this.usedOpks.has(id)) this.dhKeys.delete(priv);
    this.prekeys = {
      ...this.prekeys,
      signed: this.prekeys.signed.filter((s) => s.retireAt === null || s.retireAt > now),
      oneTime: { next: ot.next, keys: ot.keys.filter(([id]) => !this.usedOpks.has(id)) },
    };
    await this.prekeyFile.write(this.prekeys);
  }

  // ---- X3DH requests -------------------------------------------------------------------------------

  /**
   * Handles one sealed enrollment request (from a directory's mailbox). Returns the sealed response
   * for the device's mailbox: a credential, or a refusal it can read; undefined when the request
   * cannot be answered at all (not for this authority, an unknown or used prekey, a ciphertext
   * that does not open: counted in `counters.dropped`). Everything it recorded is durable first.
   */
  async processRequest(bytes: Uint8Array): Promise<Uint8Array | undefined> {
    let sealed: ReturnType<typeof decodeSealedRequest>;
    let header: ReturnType<typeof decodeRequestHeader>;
    try {
      sealed = decodeSealedRequest(bytes);
      header = decodeRequestHeader(sealed.header);
    } catch {
      return this.drop('undecodable');
    }
    if (header.authority !== this.identifier) return this.drop('other_authority');
    const spk = this.prekeys.signed.find((s) => s.id === header.spkId);
    if (!spk || (spk.retireAt !== null && spk.retireAt <= this.clock.now()))
      return this.drop('unknown_signed_prekey');
    let opk: DhKey | undefined;
    if (header.opkId !== null) {
      const entry = this.prekeys.oneTime.keys.find(([id]) => id === header.opkId);
      // Used once already (a replay, or a directory that handed it out twice): never again.
      if (this.usedOpks.has(header.opkId)) return this.drop('prekey_reused');
      if (!entry) return this.drop('unknown_prekey');
      opk = this.dhKey(entry[1]);
    }
    let keys: { request: Uint8Array; response: Uint8Array };
    let ad: Uint8Array;
    try {
      const ikA = decodeKey(header.ik, 'IK_A');
      const ekA = decodeKey(header.ek, 'EK_A');
      const x = x3dhResponder({
        provider: this.provider,
        ikB: this.dhKey(this.prekeys.identity.private),
        spkB: this.dhKey(spk.private),
        ...(opk ? { opkB: opk } : {}),
        ikA,
        ekA,
        info: X3DH_INFO,
      });
      keys = sessionKeys(this.provider, x.sk);
      x.sk.fill(0);
      ad = concat(x.ad, sealed.header);
    } catch {
      return this.drop('bad_keys');
    }
    let plain: Uint8Array;
    try {
      plain = this.provider.aeadDecrypt('AESGCM', keys.request, ZERO_NONCE, ad, sealed.ciphertext);
    } catch {
      return this.drop('undecryptable');
    }
    // From here the one-time prekey is spent whatever follows (nothing above awaited, so no other
    // request can have taken it meanwhile), and that is on disk before any answer leaves.
    let spent: Promise<void> = Promise.resolve();
    if (header.opkId !== null) {
      this.usedOpks.add(header.opkId);
      this.prekeysDirty = true;
      spent = this.journal.append({ t: 'opk-used', id: header.opkId });
    }
    const requestId = requestIdOf(this.provider, sealed.header);
    let body: Uint8Array;
    try {
      const credential = await this.admit(sealed.header, plain);
      body = encodeResponseBody({ ok: true, credential });
    } catch (e) {
      this.countRefusal(e);
      const reason = e instanceof EnrollmentRefused ? e.reason : isKeyhopError(e) ? e.code : 'internal';
      body = encodeResponseBody({ ok: false, code: reason, message: describeError(e) });
    }
    await spent;
    const ciphertext = this.provider.aeadEncrypt('AESGCM', keys.response, ZERO_NONCE, requestId, body);
    keys.request.fill(0);
    keys.response.fill(0);
    return encodeSealedResponse({ requestId, ciphertext });
  }

  /** Checks who the device is and what it may have; records it as a member; returns its credential. */
  private async admit(headerBytes: Uint8Array, plain: Uint8Array): Promise<Uint8Array> {
    const body = decodeRequestBody(plain);
    const { verifier } = this.o;
    let device: Identity;
    try {
      // Off the JavaScript thread where the verifier can: an authority verifies two signatures
      // per enrollment (the history and the proof) and keeps both cores busy that way.
      device = await Identity.importAsync(body.changeHistory, { verifier, clock: this.clock });
    } catch (e) {
      throw new EnrollmentRefused(
        'identity_invalid',
        `the device's identity does not verify: ${describeError(e)}`,
      );
    }
    const digest = createHash('sha256').update(PROOF_LABEL).update(headerBytes).digest();
    const key = device.primaryPublicKey;
    let proven = false;
    try {
      proven = verifier.verifyAsync
        ? await verifier.verifyAsync(key, new Uint8Array(digest), body.proof)
        : verifier.verify(key, new Uint8Array(digest), body.proof);
    } catch {
      proven = false;
    }
    if (!proven) {
      throw new EnrollmentRefused(
        'proof_invalid',
        'the proof is not signed by the identity\u2019s current primary key',
      );
    }
    const identifier = device.identifier.toString();
    this.checkStanding(identifier, device.changes.length);
    if (body.token === null) {
      // A member renews through the mailbox, while the authority may be offline: same attributes.
      const member = this.members.get(identifier);
      if (!member)
        throw new EnrollmentRefused(
          'token_required',
          'an enrollment needs a one-time code from the authority',
        );
      const renewed = await this.issue(identifier, member.attributes);
      if (device.changes.length > member.changes)
        await this.record({ t: 'renewed', identifier, changes: device.changes.length });
      this.counters.renewed++;
      return renewed;
    }
    const ticket = this.takeTicket(body.token);
    for (const [k, v] of Object.entries(body.attributes)) {
      if (ticket.attributes[k] !== v) {
        ticket.used--;
        throw new EnrollmentRefused('attributes_refused', `the code does not grant ${k}=${v}`);
      }
    }
    let credential: Uint8Array;
    try {
      credential = await this.issue(identifier, ticket.attributes);
    } catch (e) {
      ticket.used--;
      throw e;
    }
    await this.enrolled(identifier, ticket, 'x3dh', device.changes.length);
    return credential;
  }

  /** The signed acknowledgement a directory needs to forget handled requests. */
  async acknowledgement(requestIds: readonly Uint8Array[]): Promise<Signed> {
    const body = encodeAckBody(requestIds, this.clock.now());
    return { body, signature: await this.signPrimary(body, 'acknowledgement') };
  }

  async close(): Promise<void> {
    await this.flushPrekeys().catch(() => undefined);
    await this.journal.close();
    this.prekeyFile.close();
    await this.unlock();
  }
}

const ZERO_NONCE = new Uint8Array(12);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A ticket's id: hex SHA-256 of its code (the authority keeps no code, only this). */
export function ticketId(code: Uint8Array): string {
  return createHash('sha256').update(code).digest('hex');
}

function ticketState(t: TicketState, now: number): string {
  if (t.withdrawn) return 'withdrawn';
  if (t.used >= t.uses) return 'used';
  if (t.expiresAt <= now) return 'expired';
  return 'valid';
}
