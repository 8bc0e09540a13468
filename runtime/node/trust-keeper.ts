import { nodeCrypto } from '../../vaults/software/node-provider.js';
import type { SignatureVerifier } from '../../vaults/vault.js';
import type { OckamChannelIdentity } from '../channel/ockam-identity.js';
import type { SecureChannels } from '../channel/secure-channels.js';
import { fetchRevocationsFromAuthority, renewCredential } from '../enrollment/authority-service.js';
import { DIRECTORY_ADDRESS, EnrollmentRefused } from '../enrollment/client.js';
import type { PendingEnrollment } from '../enrollment/device.js';
import { collectAnswer, DirectoryClient, leaveRequest } from '../enrollment/directory-client.js';
import type { TrustState } from '../enrollment/trust-state.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import type { Clock } from '../identity/clock.js';
import type { Identity, LocalIdentity } from '../identity/identity.js';
import { type CredentialAndPurposeKey, openCredentialData } from '../identity/models.js';
import type { Logger } from '../log.js';
import { toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import { type EnrollmentRecord, type IdentityStore, issuerOf } from './identity-store.js';
import { Backoff } from './retry.js';

/** Where a node fetches an authority's revocation list from. */
export interface RevocationSource {
  authority: Identity;
  /** A route ending at an enrollment directory or an authority worker, or at a secure-channel listener. */
  route: string;
}

export interface TrustKeeperOptions {
  router: Router;
  channels: () => SecureChannels;
  channelIdentity: () => OckamChannelIdentity;
  trust: TrustState;
  verifier: SignatureVerifier;
  clock: Clock;
  log: Logger;
  /** Runs `fn` after `delay` ms unless the node stopped (the node's timer set). */
  later: (delay: number, fn: () => void) => void;
}

/** A credential is renewed once this share of its lifetime has passed. */
const RENEW_AT = 0.8;
const MAX_DELAY_MS = 2 ** 31 - 1;

interface RenewalState {
  state: 'waiting' | 'renewing' | 'pending' | 'retrying' | 'refused';
  expiresAt: number | null;
  nextAt: number | null;
  renewals: number;
  lastError: string | null;
}

/**
 * Keeps a node's trust current while it runs: fetches its authorities' revocation lists and, when
 * one changes, checks every open channel again (a revoked peer loses its channel); renews the
 * node's own credential before it expires and pushes the new one into every open channel
 * (RefreshCredentials), without a restart.
 */
export class TrustKeeper {
  private readonly sources: {
    source: RevocationSource;
    lastError: string | null;
    fetchedAt: number | null;
  }[] = [];
  private renewal: RenewalState | undefined;

  constructor(private readonly o: TrustKeeperOptions) {}

  // ---- revocations ----------------------------------------------------------------------------

  /** Fetches each source's list now (one attempt), then every `intervalMs`. */
  async followRevocations(sources: readonly RevocationSource[], intervalMs: number): Promise<void> {
    for (const source of sources) {
      this.o.trust.revocations.track(source.authority.identifier.toString());
      const entry = { source, lastError: null as string | null, fetchedAt: null as number | null };
      this.sources.push(entry);
      const poll = async () => {
        await this.fetchRevocations(entry);
        this.o.later(intervalMs, () => void poll());
      };
      await poll();
    }
  }

  private async fetchRevocations(entry: (typeof this.sources)[number]): Promise<void> {
    const { authority, route } = entry.source;
    const id = authority.identifier.toString();
    const held = this.o.trust.revocations.list(id);
    // Ask for the same version again only when the held list is past half its validity (the
    // authority re-signs it then); otherwise only for a newer one.
    const fresh = held !== undefined && this.o.clock.now() < (held.issuedAt + held.nextUpdate) / 2;
    const have = held === undefined ? 0 : held.version + (fresh ? 1 : 0);
    try {
      const last = toRoute(route).last?.text;
      let bytes: Uint8Array | null;
      if (last === DIRECTORY_ADDRESS) {
        bytes = await new DirectoryClient(this.o.router, route).getRevocations(id, have);
      } else {
        bytes = await fetchRevocationsFromAuthority(
          {
            channels: this.o.channels(),
            router: this.o.router,
            authority,
            route,
            verifier: this.o.verifier,
            clock: this.o.clock,
          },
          have,
        );
      }
      entry.fetchedAt = this.o.clock.now();
      entry.lastError = null;
      if (bytes === null) return;
      const list = await this.o.trust.acceptRevocations(bytes, authority);
      if (list === undefined) return;
      const closed = await this.o.channels().revalidateAll(`revocation list ${list.version} of ${id}`);
      this.o.log.info(
        {
          authority: id,
          version: list.version,
          revokedIdentities: list.identifiers.length,
          revokedCredentials: list.credentials.length,
          channelsClosed: closed,
        },
        'revocation list updated',
      );
    } catch (e) {
      const first = entry.lastError === null;
      entry.lastError = describeError(e);
      this.o.log[first ? 'warn' : 'debug'](
        { authority: id, from: route, err: entry.lastError },
        'revocation list not fetched; trying again later',
      );
    }
  }

  // ---- the node's own credential ----------------------------------------------------------------

  /**
   * Renews the credential `name` holds from its enrollment authority before it expires: through a
   * secure channel to the authority's node when the enrollment names one, else through the
   * enrollment directory (X3DH, the authority may be offline).
   */
  keepCredential(o: {
    store: IdentityStore;
    name: string;
    local: LocalIdentity;
    enrollment: EnrollmentRecord;
    authority: Identity;
    credentials: readonly CredentialAndPurposeKey[];
  }): void {
    const authorityId = o.authority.identifier.toString();
    const state: RenewalState = {
      state: 'waiting',
      expiresAt: null,
      nextAt: null,
      renewals: 0,
      lastError: null,
    };
    this.renewal = state;
    const backoff = new Backoff(1000, 10 * 60_000);
    let pending: PendingEnrollment | undefined;
    let current = o.credentials.find((c) => issuerOf(c) === authorityId);

    // Only the latest scheduled attempt runs (a renewal asked for now cancels the one planned).
    let generation = 0;
    const schedule = (delayMs: number) => {
      const delay = Math.max(0, Math.min(delayMs, MAX_DELAY_MS));
      state.nextAt = Math.floor(Date.now() / 1000 + delay / 1000);
      const mine = ++generation;
      this.o.later(delay, () => {
        if (mine === generation) void attempt();
      });
    };
    const scheduleFromCredential = () => {
      if (current === undefined) return schedule(0);
      const data = openCredentialData(current.credential.data);
      state.expiresAt = data.expiresAt;
      const at = data.createdAt + RENEW_AT * (data.expiresAt - data.createdAt);
      schedule((at - this.o.clock.now()) * 1000);
    };
    const member = () => ({
      local: o.local,
      anchor: o.authority,
      authority: o.authority,
      subject: o.local.identity.identifier.toString(),
      provider: nodeCrypto,
      verifier: this.o.verifier,
      clock: this.o.clock,
    });

    const attempt = async () => {
      state.state = pending ? 'pending' : 'renewing';
      try {
        let credential: CredentialAndPurposeKey | undefined;
        if (o.enrollment.route !== null) {
          credential = await renewCredential({
            channels: this.o.channels(),
            router: this.o.router,
            route: o.enrollment.route,
            ...member(),
          });
        } else if (o.enrollment.directory !== null) {
          const client = new DirectoryClient(this.o.router, o.enrollment.directory);
          pending ??= await leaveRequest(client, { ...member(), token: null });
          credential = await collectAnswer(client, pending, member());
          if (credential === undefined) {
            state.state = 'pending';
            // The authority answers when it next works through its mailbox.
            schedule(backoff.next());
            return;
          }
          pending = undefined;
        } else {
          state.state = 'refused';
          state.lastError = 'the enrollment names no route to the authority or directory';
          return;
        }
        const kept = await o.store.keepCredential(o.name, credential);
        current = credential;
        this.o.channelIdentity().setCredentials(kept);
        const open = this.o
          .channels()
          .list()
          .filter((c) => c.state === 'open');
        await Promise.all(open.map((c) => c.refreshCredentials().catch(() => undefined)));
        state.renewals++;
        state.lastError = null;
        state.state = 'waiting';
        backoff.reset();
        this.o.log.info(
          {
            authority: authorityId,
            expiresAt: new Date(
              openCredentialData(credential.credential.data).expiresAt * 1000,
            ).toISOString(),
            channelsRefreshed: open.length,
          },
          'credential renewed',
        );
        scheduleFromCredential();
      } catch (e) {
        pending = undefined;
        state.lastError = describeError(e);
        // A refusal (revoked, not a member) does not get better by asking again soon.
        const refused = e instanceof EnrollmentRefused;
        state.state = refused ? 'refused' : 'retrying';
        this.o.log[refused ? 'error' : 'warn'](
          { authority: authorityId, err: state.lastError },
          refused ? 'credential renewal refused by the authority' : 'credential renewal failed; retrying',
        );
        schedule(refused ? 3600_000 : backoff.next());
      }
    };
    this.renewNow = async () => {
      generation++;
      await attempt();
      if (state.lastError !== null)
        throw new KeyhopError(ErrorCodes.TRUST_REFUSED, `renewal failed: ${state.lastError}`);
      return this.describe().renewal as Record<string, unknown>;
    };
    scheduleFromCredential();
  }

  /** Renews the node's credential now (set by keepCredential). */
  renewNow: (() => Promise<Record<string, unknown>>) | undefined;

  describe(): Record<string, unknown> {
    return {
      ...this.o.trust.describe(),
      revocationSources: this.sources.map((s) => ({
        authority: s.source.authority.identifier.toString(),
        from: s.source.route,
        fetchedAt: s.fetchedAt === null ? null : new Date(s.fetchedAt * 1000).toISOString(),
        lastError: s.lastError,
      })),
      renewal:
        this.renewal === undefined
          ? null
          : {
              ...this.renewal,
              expiresAt:
                this.renewal.expiresAt === null
                  ? null
                  : new Date(this.renewal.expiresAt * 1000).toISOString(),
              nextAt:
                this.renewal.nextAt === null ? null : new Date(this.renewal.nextAt * 1000).toISOString(),
            },
    };
  }
}

/** Where an enrolled identity's authority publishes revocations: its directory, else its node. */
export function enrollmentRevocationRoute(e: EnrollmentRecord): string | null {
  if (e.directory !== null) {
    const r = toRoute(e.directory);
    return (r.last?.text === DIRECTORY_ADDRESS ? r : r.append(DIRECTORY_ADDRESS)).toString();
  }
  if (e.route !== null) return e.route;
  return null;
}
