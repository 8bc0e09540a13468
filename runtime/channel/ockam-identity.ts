import { createHash } from 'node:crypto';
import type { DhKey, SecureChannelVault, SignatureVerifier } from '../../vaults/vault.js';
import { CborReader } from '../codec/cbor.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import { CborWriter } from '../identity/cbor-writer.js';
import { CLOCK_TOLERANCE_SECONDS, type Clock } from '../identity/clock.js';
import { type VerifiedCredential, verifyCredential } from '../identity/credentials.js';
import { Identity, type LocalIdentity } from '../identity/identity.js';
import {
  type CredentialAndPurposeKey,
  type PurposeKeyAttestation,
  readChangeHistory,
  readCredentialAndPurposeKey,
  readPurposeKeyAttestation,
  writeChange,
  writeCredentialAndPurposeKey,
  writePurposeKeyAttestation,
} from '../identity/models.js';
import { attestSecureChannelKey, verifySecureChannelKey } from '../identity/purpose-keys.js';
import { type Logger, silentLogger } from '../log.js';
import type { ChannelIdentity, PeerChecks, PeerIdentity } from './channel-identity.js';

/** SHA-256 over the change history and each credential, length-prefixed: what a peer presented. */
function presentationDigest(changeHistory: Uint8Array, credentials: readonly Uint8Array[]): string {
  const h = createHash('sha256');
  for (const part of [changeHistory, ...credentials]) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(part.length);
    h.update(len).update(part);
  }
  return h.digest('hex');
}

/** Verified presentations kept (a gateway sees this many distinct peer nodes between evictions). */
const VERIFIED_CACHE_ENTRIES = 1024;

interface VerifiedPresentation {
  readonly identity: Identity;
  readonly presented: readonly CredentialAndPurposeKey[];
  readonly credentials: readonly VerifiedCredential[];
  readonly presentation: string;
  /** Unix seconds between which the time checks of the verification hold. */
  readonly validFrom: number;
  readonly validTo: number;
  shared: { peer: PeerIdentity; counted: boolean[] } | undefined;
}

/** Most credentials a peer may present in one handshake. */
const MAX_CREDENTIALS = 8;

export interface OckamChannelIdentityOptions {
  local: LocalIdentity;
  /** Where the X25519 static key lives (the software vault on every board). */
  secureChannelVault: SecureChannelVault;
  verifier: SignatureVerifier;
  clock: Clock;
  /** This identity's own credentials, presented in the handshake. */
  credentials?: CredentialAndPurposeKey[];
  /** Authorities whose credentials about peers are believed. */
  authorities?: Identity[];
  /** Known histories and revocations (the node's trust state). */
  checks?: PeerChecks;
  log?: Logger;
}

/**
 * The Ockam handshake payload (ockam.md §3.3): CBOR
 * `IdentityAndCredentials [change_history, purpose_key_attestation, [CredentialAndPurposeKey…]]`.
 * The attestation binds the X25519 static key that Noise proves possession of to the identity;
 * there is no signature over the handshake hash.
 */
export class OckamChannelIdentity implements ChannelIdentity {
  private payload: Uint8Array;
  private readonly log: Logger;

  private constructor(
    readonly staticKey: DhKey,
    private readonly attestation: PurposeKeyAttestation,
    private readonly options: OckamChannelIdentityOptions,
  ) {
    this.log = options.log ?? silentLogger;
    this.payload = this.encodePayload();
  }

  /** Generates an X25519 static key in the vault and attests it with the identity's primary key. */
  static async create(options: OckamChannelIdentityOptions): Promise<OckamChannelIdentity> {
    const keyId = await options.secureChannelVault.generateStaticX25519();
    const staticKey = await options.secureChannelVault.staticX25519(keyId);
    const attestation = await attestSecureChannelKey(options.local, staticKey.publicKey, {
      verifier: options.verifier,
      clock: options.clock,
    });
    return new OckamChannelIdentity(staticKey, attestation, options);
  }

  get identifier(): string {
    return this.options.local.identity.identifier.toString();
  }

  handshakePayload(): Uint8Array {
    return this.payload;
  }

  /** Replaces the credentials presented from now on (push them to open channels with refreshCredentials). */
  setCredentials(credentials: CredentialAndPurposeKey[]): void {
    this.options.credentials = credentials;
    this.payload = this.encodePayload();
    this.refresh = undefined;
  }

  private encodePayload(): Uint8Array {
    const w = new CborWriter();
    w.array(3);
    this.writeHistory(w);
    writePurposeKeyAttestation(w, this.attestation);
    this.writeCredentials(w);
    return w.finish();
  }

  private writeHistory(w: CborWriter): void {
    const changes = this.options.local.identity.changes;
    w.array(changes.length);
    for (const c of changes) writeChange(w, c.change);
  }

  private writeCredentials(w: CborWriter): void {
    const credentials = this.options.credentials ?? [];
    w.array(credentials.length);
    for (const c of credentials) writeCredentialAndPurposeKey(w, c);
  }

  async verifyPeer(payload: Uint8Array, remoteStatic: Uint8Array): Promise<PeerIdentity> {
    // The same presentation for the same static key (every channel a peer node opens presents
    // exactly the same bytes) is verified once: its signatures, while the time checks still hold.
    // What can change without the bytes changing (known histories, revocations) is checked again.
    const key = this.cacheKey(payload, remoteStatic);
    const now = this.options.clock.now();
    const hit = this.verified.get(key);
    if (hit !== undefined && now >= hit.validFrom && now <= hit.validTo) {
      await this.options.checks?.checkIdentity(hit.identity);
      return this.fromCache(hit);
    }
    if (hit !== undefined) this.verified.delete(key);
    const r = new CborReader(payload, 'IdentityAndCredentials');
    r.array(3, 3);
    const changes = readChangeHistory(r);
    const attestation = readPurposeKeyAttestation(r, 'IdentityAndCredentials attestation');
    const n = r.array(MAX_CREDENTIALS);
    const presented: CredentialAndPurposeKey[] = [];
    for (let i = 0; i < n; i++) presented.push(readCredentialAndPurposeKey(r));
    r.end();
    const { verifier, clock } = this.options;
    const identity = Identity.verify(changes, { verifier, clock });
    const attested = verifySecureChannelKey(attestation, remoteStatic, { identity, verifier, clock });
    await this.options.checks?.checkIdentity(identity);
    const h = new CborWriter();
    h.array(changes.length);
    for (const c of changes) writeChange(h, c);
    const encoded = presented.map((c) => {
      const w = new CborWriter();
      writeCredentialAndPurposeKey(w, c);
      return w.finish();
    });
    const presentation = presentationDigest(h.finish(), encoded);
    const verified = this.verifyCredentials(identity, presented);
    // Cached only when every credential verified (a failing one is logged each time, as before).
    if (verified.every((v) => v !== undefined)) {
      const latest = identity.latestChange.data;
      const credentials = verified as VerifiedCredential[];
      const entry: VerifiedPresentation = {
        identity,
        presented,
        credentials,
        presentation,
        validFrom: Math.max(latest.attestationsValidFrom, attested.createdAt) - CLOCK_TOLERANCE_SECONDS,
        validTo: Math.min(
          latest.attestationsValidUntil,
          attested.expiresAt,
          ...credentials.map((c) => c.expiresAt),
        ),
        shared: undefined,
      };
      if (this.verified.size >= VERIFIED_CACHE_ENTRIES) {
        this.verified.delete(this.verified.keys().next().value!);
      }
      this.verified.set(key, entry);
      return this.fromCache(entry);
    }
    return { ...this.assemble(identity, presented, verified), presentation };
  }

  /** Presentations verified already, by cacheKey (oldest first, at most VERIFIED_CACHE_ENTRIES). */
  private readonly verified = new Map<string, VerifiedPresentation>();

  private cacheKey(payload: Uint8Array, remoteStatic: Uint8Array): string {
    const h = createHash('sha256').update(remoteStatic).update(payload);
    // Credentials verify against the authorities trusted now.
    for (const a of this.options.authorities ?? []) h.update(a.identifier.bytes);
    return h.digest('base64');
  }

  /**
   * The peer of a verified presentation: one object shared by every channel with the same
   * presentation, as long as the same credentials count (a revocation makes a new one).
   */
  private fromCache(entry: VerifiedPresentation): PeerIdentity {
    const refusals = entry.credentials.map((c) => this.refusal(c));
    const shared = entry.shared;
    if (shared !== undefined && refusals.every((r, i) => (r === undefined) === shared.counted[i])) {
      return shared.peer;
    }
    const peer = {
      ...this.assemble(entry.identity, entry.presented, entry.credentials),
      presentation: entry.presentation,
    };
    entry.shared = { peer, counted: refusals.map((r) => r === undefined) };
    return peer;
  }

  private refusal(v: VerifiedCredential): string | undefined {
    return this.options.checks?.credentialRefusal(v);
  }

  private peerWith(identity: Identity, presented: readonly CredentialAndPurposeKey[]): PeerIdentity {
    return this.assemble(identity, presented, this.verifyCredentials(identity, presented));
  }

  /** Each presented credential verified against the trusted authorities, or undefined (logged). */
  private verifyCredentials(
    identity: Identity,
    presented: readonly CredentialAndPurposeKey[],
  ): (VerifiedCredential | undefined)[] {
    const { verifier, clock } = this.options;
    return presented.map((c) => {
      try {
        return verifyCredential(c, {
          authorities: this.options.authorities ?? [],
          subject: identity.identifier,
          verifier,
          clock,
        });
      } catch (e) {
        // As in Ockam: a credential that does not verify is logged, and the peer simply has no attributes from it.
        this.log.info(
          { peer: identity.identifier.toString(), err: describeError(e) },
          'peer credential not accepted',
        );
        return undefined;
      }
    });
  }

  /** The peer with the verified credentials that are not refused (revoked, a stale list). */
  private assemble(
    identity: Identity,
    presented: readonly CredentialAndPurposeKey[],
    verified: readonly (VerifiedCredential | undefined)[],
  ): PeerIdentity {
    const credentials: VerifiedCredential[] = [];
    let validUntil: number | undefined;
    for (const v of verified) {
      if (v === undefined) continue;
      const refusal = this.refusal(v);
      if (refusal !== undefined) {
        this.log.info(
          { peer: identity.identifier.toString(), credential: v.id, reason: refusal },
          'peer credential refused',
        );
        continue;
      }
      credentials.push(v);
      validUntil = validUntil === undefined ? v.expiresAt : Math.min(validUntil, v.expiresAt);
    }
    const attributes: Record<string, string> = {};
    for (const c of credentials) for (const [k, v] of c.attributesText) attributes[k] = v;
    return {
      identifier: identity.identifier.toString(),
      credentials,
      attributes,
      identity,
      presented,
      ...(validUntil === undefined ? {} : { validUntil }),
    };
  }

  async reverify(peer: PeerIdentity): Promise<PeerIdentity> {
    if (peer.identity === undefined || peer.presented === undefined) return peer;
    await this.options.checks?.checkIdentity(peer.identity);
    const now = this.peerWith(peer.identity, peer.presented);
    return peer.presentation === undefined ? now : { ...now, presentation: peer.presentation };
  }

  async verifyRefresh(
    peer: PeerIdentity,
    changeHistory: Uint8Array,
    credentials: Uint8Array[],
  ): Promise<PeerIdentity> {
    // The same presentation again (a responder's acceptance notice): verified already.
    const digest = presentationDigest(changeHistory, credentials);
    if (peer.presentation !== undefined && digest === peer.presentation) return peer;
    const { verifier, clock } = this.options;
    const r = new CborReader(changeHistory, 'RefreshCredentials change history');
    const identity = Identity.verify(readChangeHistory(r), {
      verifier,
      clock,
      expectedIdentifier: peer.identifier,
    });
    r.end();
    await this.options.checks?.checkIdentity(identity);
    if (credentials.length > MAX_CREDENTIALS) {
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `RefreshCredentials: more than ${MAX_CREDENTIALS} credentials`,
      );
    }
    const presented = credentials.map((c) => {
      const cr = new CborReader(c, 'RefreshCredentials credential');
      const v = readCredentialAndPurposeKey(cr);
      cr.end();
      return v;
    });
    return { ...this.peerWith(identity, presented), presentation: digest };
  }

  refreshPayload(): { changeHistory: Uint8Array; credentials: Uint8Array[] } {
    // Made once per presentation (every responder sends it as its acceptance notice); callers
    // only read it.
    this.refresh ??= this.encodeRefresh();
    return this.refresh;
  }

  private refresh: { changeHistory: Uint8Array; credentials: Uint8Array[] } | undefined;

  private encodeRefresh(): { changeHistory: Uint8Array; credentials: Uint8Array[] } {
    const h = new CborWriter();
    this.writeHistory(h);
    const credentials = (this.options.credentials ?? []).map((c) => {
      const w = new CborWriter();
      writeCredentialAndPurposeKey(w, c);
      return w.finish();
    });
    return { changeHistory: h.finish(), credentials };
  }
}
