import type { CryptoProvider } from '../../vaults/provider.js';
import type { SignatureVerifier } from '../../vaults/vault.js';
import { CborReader } from '../codec/cbor.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import type { Clock } from '../identity/clock.js';
import type { Identity, LocalIdentity } from '../identity/identity.js';
import type { CredentialAndPurposeKey } from '../identity/models.js';
import type { Logger } from '../log.js';
import { type Route, type RouteLike, toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import type { Authority } from './authority.js';
import { ask, DIRECTORY_ADDRESS } from './client.js';
import {
  decodeBytesList,
  decodeFetchedBundle,
  encodeDirectoryRequest,
  encodePublication,
  type FetchedBundle,
  LIMITS,
  type Signed,
} from './codec.js';
import { type AnswerOptions, openResponse, type PendingEnrollment, prepareEnrollment } from './device.js';

/** Talks to the enrollment directory at `route` (the route to its node; the service name is added). */
export class DirectoryClient {
  readonly route: Route;

  constructor(
    private readonly router: Router,
    route: RouteLike,
    private readonly timeoutMs = 10_000,
  ) {
    const r = toRoute(route);
    this.route = r.last?.text === DIRECTORY_ADDRESS ? r : r.append(DIRECTORY_ADDRESS);
  }

  private call(request: Parameters<typeof encodeDirectoryRequest>[0]): Promise<Uint8Array | null> {
    return ask(this.router, this.route, encodeDirectoryRequest(request), this.timeoutMs);
  }

  /** Publishes; returns how many one-time prekeys the directory has on offer now. */
  async publish(authority: Uint8Array, publication: Signed): Promise<number> {
    const v = await this.call({ op: 'publish', authority, publication });
    if (v === null) return 0;
    const r = new CborReader(v, 'prekeys on offer');
    const n = r.uint(LIMITS.prekeysPerPublish * 1000);
    r.end();
    return n;
  }

  async fetch(authority: string): Promise<FetchedBundle> {
    const v = await this.call({ op: 'fetch', authority });
    if (v === null) throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the directory sent no bundle');
    return decodeFetchedBundle(v);
  }

  async deposit(request: Uint8Array): Promise<Uint8Array> {
    const v = await this.call({ op: 'deposit', request });
    if (v === null || v.length !== LIMITS.requestId)
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the directory sent no request id');
    return v;
  }

  async collect(authority: string, max = 100): Promise<Uint8Array[]> {
    const v = await this.call({ op: 'collect', authority, max });
    return decodeBytesList(v ?? new Uint8Array([0x80]), LIMITS.batch, LIMITS.request, 'collected requests');
  }

  async ack(authority: string, acknowledgement: Signed): Promise<void> {
    await this.call({ op: 'ack', authority, acknowledgement });
  }

  async reply(response: Uint8Array): Promise<void> {
    await this.call({ op: 'reply', response });
  }

  async poll(requestId: Uint8Array): Promise<Uint8Array[]> {
    const v = await this.call({ op: 'poll', requestId });
    return decodeBytesList(v ?? new Uint8Array([0x80]), LIMITS.repliesPerRequest, LIMITS.response, 'answers');
  }

  async putRevocations(authority: Uint8Array, list: Uint8Array): Promise<void> {
    await this.call({ op: 'put-revocations', authority, list });
  }

  async getRevocations(authority: string, have: number): Promise<Uint8Array | null> {
    return this.call({ op: 'get-revocations', authority, have });
  }
}

/**
 * Publishes the authority's bundle at a directory and tops its one-time prekeys up to `keep` on
 * offer, and leaves the current revocation list there. Returns how many prekeys it published.
 */
export async function publishAt(client: DirectoryClient, authority: Authority, keep = 100): Promise<number> {
  const publish = async (fresh: number) => {
    const p = await authority.publication(fresh);
    const body = encodePublication(p);
    const onOffer = await client.publish(authority.identity.export(), {
      body,
      signature: await authority.signBody(body, 'publication'),
    });
    return { onOffer, published: p.prekeys.length };
  };
  const first = await publish(0);
  let published = 0;
  if (first.onOffer < keep)
    published = (await publish(Math.min(keep - first.onOffer, LIMITS.prekeysPerPublish))).published;
  await client.putRevocations(authority.identity.export(), (await authority.revocations()).bytes);
  return published;
}

/**
 * Works through the authority's mailbox at a directory: every request is processed (durably), its
 * answer left for the device, and the handled requests acknowledged. Returns how many were handled.
 */
export async function serveMailbox(
  client: DirectoryClient,
  authority: Authority,
  log?: Logger,
  batch = 100,
): Promise<number> {
  let handled = 0;
  for (;;) {
    const requests = await client.collect(authority.identifier, batch);
    if (requests.length === 0) return handled;
    const answers = await Promise.all(requests.map((r) => authority.processRequest(r)));
    for (const a of answers) {
      if (a === undefined) continue;
      await client
        .reply(a)
        .catch((e: unknown) =>
          log?.warn({ err: describeError(e) }, 'enrollment answer not left at the directory'),
        );
    }
    await authority.flushPrekeys();
    const ids = requests
      .map((r) => authority.requestIdOf(r))
      .filter((id): id is Uint8Array => id !== undefined);
    await client.ack(authority.identifier, await authority.acknowledgement(ids));
    handled += requests.length;
  }
}

/** The device's enrollment through a directory: fetch a bundle, leave the sealed request. */
export async function leaveRequest(
  client: DirectoryClient,
  o: {
    local: LocalIdentity;
    anchor: Identity;
    token: Uint8Array | null;
    attributes?: Readonly<Record<string, string>>;
    provider: CryptoProvider;
    verifier: SignatureVerifier;
    clock: Clock;
  },
): Promise<PendingEnrollment> {
  const fetched = await client.fetch(o.anchor.identifier.toString());
  const { request, pending } = await prepareEnrollment({ ...o, fetched });
  const rid = await client.deposit(request);
  if (Buffer.compare(rid, pending.requestId) !== 0) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the directory filed the request under another id');
  }
  return pending;
}

/**
 * The answer to a pending enrollment, if the authority has left one: the credential, or the
 * authority's refusal (TRUST_REFUSED). Undefined while there is none. Answers that are not the
 * authority's (they do not open) are skipped.
 */
export async function collectAnswer(
  client: DirectoryClient,
  pending: PendingEnrollment,
  o: AnswerOptions,
): Promise<CredentialAndPurposeKey | undefined> {
  let refusal: KeyhopError | undefined;
  for (const answer of await client.poll(pending.requestId)) {
    try {
      return openResponse(pending, answer, o);
    } catch (e) {
      if (e instanceof KeyhopError && e.code === ErrorCodes.TRUST_REFUSED) refusal = e;
    }
  }
  if (refusal) throw refusal;
  return undefined;
}
