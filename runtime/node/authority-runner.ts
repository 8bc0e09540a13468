import { Authority } from '../enrollment/authority.js';
import { authorityWorker } from '../enrollment/authority-service.js';
import { AUTHORITY_ADDRESS } from '../enrollment/client.js';
import { DirectoryClient, publishAt, serveMailbox } from '../enrollment/directory-client.js';
import { describeError } from '../errors.js';
import { systemClock } from '../identity/clock.js';
import type { LocalIdentity } from '../identity/identity.js';
import type { Logger } from '../log.js';
import type { Router } from '../routing/router.js';
import type { AuthorityServiceConfig } from './config.js';
import type { IdentityStore } from './identity-store.js';
import { Backoff } from './retry.js';

interface DirectoryState {
  route: string;
  state: 'starting' | 'up' | 'retrying';
  published: number;
  handled: number;
  lastRoundAt: number | null;
  lastError: string | null;
}

/**
 * An authority served by a node: the `authority` worker (one-time codes, renewals and revocation
 * lists through secure channels to this node), and, for every enrollment directory in its
 * config, a round every `publishIntervalSeconds`: publish the bundle, fresh one-time prekeys and
 * the revocation list, then work through the mailbox (requests left while the authority was
 * offline) and leave the answers. A directory that cannot be reached is retried with back-off.
 */
export class AuthorityRunner {
  private readonly directories: DirectoryState[];

  private constructor(
    readonly authority: Authority,
    private readonly config: AuthorityServiceConfig,
    private readonly router: Router,
    private readonly log: Logger,
  ) {
    this.directories = (config.directories ?? []).map((route) => ({
      route,
      state: 'starting',
      published: 0,
      handled: 0,
      lastRoundAt: null,
      lastError: null,
    }));
  }

  static async start(o: {
    config: AuthorityServiceConfig;
    home: string;
    node: string;
    local: LocalIdentity;
    store: IdentityStore;
    router: Router;
    log: Logger;
    later: (delay: number, fn: () => void) => void;
  }): Promise<AuthorityRunner> {
    const authority = await Authority.open({
      home: o.home,
      name: o.config.name,
      local: o.local,
      issuer: await o.store.issuer(o.config.name),
      verifier: o.store.verifier,
      clock: systemClock,
      owner: o.node,
      ...(process.env.KEYHOP_VAULT_PASSPHRASE ? { passphrase: process.env.KEYHOP_VAULT_PASSPHRASE } : {}),
      ...(o.config.credentialTtlSeconds !== undefined
        ? { credentialTtlSeconds: o.config.credentialTtlSeconds }
        : {}),
    });
    const runner = new AuthorityRunner(authority, o.config, o.router, o.log);
    try {
      await o.router.startWorker(AUTHORITY_ADDRESS, authorityWorker(authority, { log: o.log }));
    } catch (e) {
      await authority.close();
      throw e;
    }
    const intervalMs = (o.config.publishIntervalSeconds ?? 60) * 1000;
    for (const d of runner.directories) {
      const backoff = new Backoff(1000, intervalMs);
      const loop = async () => {
        const ok = await runner.round(d);
        if (ok) backoff.reset();
        o.later(ok ? intervalMs : backoff.next(), () => void loop());
      };
      // The first round now: a node that reports ready has published.
      await loop();
    }
    return runner;
  }

  /** One round at a directory: publish, then work through the mailbox. */
  async round(d: DirectoryState): Promise<boolean> {
    const client = new DirectoryClient(this.router, d.route);
    try {
      d.published += await publishAt(client, this.authority, this.config.prekeys ?? 100);
      const handled = await serveMailbox(client, this.authority, this.log);
      d.handled += handled;
      d.state = 'up';
      d.lastError = null;
      d.lastRoundAt = Date.now();
      if (handled > 0) this.log.info({ directory: d.route, handled }, 'enrollment requests answered');
      return true;
    } catch (e) {
      const first = d.lastError === null;
      d.state = 'retrying';
      d.lastError = describeError(e);
      this.log[first ? 'warn' : 'debug'](
        { directory: d.route, err: d.lastError },
        'enrollment directory round failed; retrying',
      );
      return false;
    }
  }

  /** Runs a round at every directory now (after a revocation, `authority publish`). */
  async publishNow(): Promise<{ route: string; ok: boolean; error: string | null }[]> {
    const out = [];
    for (const d of this.directories) {
      const ok = await this.round(d);
      out.push({ route: d.route, ok, error: d.lastError });
    }
    return out;
  }

  describe(): Record<string, unknown> {
    const tickets = this.authority.ticketList();
    return {
      name: this.config.name,
      identifier: this.authority.identifier,
      members: this.authority.memberList().length,
      tickets: {
        valid: tickets.filter((t) => t.state === 'valid').length,
        total: tickets.length,
      },
      ...this.authority.counters,
      directories: this.directories.map((d) => ({
        ...d,
        lastRoundAt: d.lastRoundAt === null ? null : new Date(d.lastRoundAt).toISOString(),
      })),
    };
  }

  async stop(): Promise<void> {
    await this.authority.close();
  }
}
