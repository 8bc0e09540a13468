import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { SoftwareVault } from '../../vaults/software/software-vault.js';
import { OckamChannelIdentity } from '../channel/ockam-identity.js';
import { SecureChannels } from '../channel/secure-channels.js';
import { authorityIdentity, enrollWithCode } from '../enrollment/authority-service.js';
import type { Ticket } from '../enrollment/codec.js';
import type { PendingEnrollment } from '../enrollment/device.js';
import { collectAnswer, DirectoryClient, leaveRequest } from '../enrollment/directory-client.js';
import { SealedFile } from '../enrollment/sealed-file.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { type Clock, systemClock } from '../identity/clock.js';
import type { Identity } from '../identity/identity.js';
import { attributesAsText, type CredentialAndPurposeKey, openCredentialData } from '../identity/models.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Router } from '../routing/router.js';
import {
  DEFAULT_IDENTITY,
  type EnrollmentRecord,
  IdentityStore,
  issuerOf,
  type StoredIdentity,
} from './identity-store.js';
import { PASSPHRASE_ENV } from './vault-registry.js';

/**
 * A device's enrollment, as `keyhop enroll` runs it (alone or for a whole manifest): with a
 * ticket, over a secure channel to the authority's node (one-time code); or, with a ticket and a
 * directory, through the directory while the authority may be offline (X3DH: the sealed request
 * is left, the answer collected later; a re-run picks up the request it left). The credential
 * and the enrollment record go into the identity file, where the device's node finds them to
 * renew the credential and follow the authority's revocations.
 */

export type EnrollOutcome = 'enrolled' | 'already' | 'pending';

export interface EnrollResult {
  outcome: EnrollOutcome;
  identity: string;
  identifier: string;
  authority: string;
  via: 'ticket' | 'x3dh';
  expiresAt: string | null;
  attributes: Record<string, string>;
}

export interface EnrollDeviceOptions {
  router: Router;
  home: string;
  /** Identity name in `home` (default `default`, created when missing; any other must exist). */
  identity?: string;
  ticket: Ticket;
  /** Route to an enrollment directory: X3DH through it instead of a channel to the ticket's route. */
  directory?: string;
  /** How long to wait for the authority's answer through the directory (default 0: leave the request). */
  waitMs?: number;
  /** Enroll again even when the identity holds a valid credential from this authority. */
  force?: boolean;
  clock?: Clock;
  log?: Logger;
  timeoutMs?: number;
  /** Told when a new identity was made (its identifier). */
  onCreated?: (identifier: string) => void;
}

interface PendingFile {
  authority: string;
  directory: string;
  requestId: string;
  responseKey: string;
  createdAt: number;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pendingPath(home: string, name: string): string {
  return join(home, 'identities', `${name}.enrollment-pending.json`);
}

function checkPending(v: unknown): PendingFile {
  const p = v as Partial<PendingFile>;
  for (const k of ['authority', 'directory', 'requestId', 'responseKey'] as const)
    if (typeof p?.[k] !== 'string') throw new Error(`pending enrollment: no ${k}`);
  if (typeof p.createdAt !== 'number') throw new Error('pending enrollment: no createdAt');
  return p as PendingFile;
}

function describe(
  stored: StoredIdentity,
  authority: Identity,
  outcome: EnrollOutcome,
  via: 'ticket' | 'x3dh',
  credential: CredentialAndPurposeKey | undefined,
): EnrollResult {
  const data = credential ? openCredentialData(credential.credential.data) : undefined;
  const attributes = data ? Object.fromEntries(attributesAsText(data.attributes)) : {};
  return {
    outcome,
    identity: stored.name,
    identifier: stored.file.identifier,
    authority: authority.identifier.toString(),
    via,
    expiresAt: data ? new Date(data.expiresAt * 1000).toISOString() : null,
    attributes,
  };
}

/** The identity's current credential from `authority`, if it is still valid. */
function currentCredential(
  stored: StoredIdentity,
  authority: string,
  now: number,
): CredentialAndPurposeKey | undefined {
  return stored.credentials.find(
    (c) => issuerOf(c) === authority && openCredentialData(c.credential.data).expiresAt > now,
  );
}

export async function enrollDevice(o: EnrollDeviceOptions): Promise<EnrollResult> {
  const clock = o.clock ?? systemClock;
  const name = o.identity ?? DEFAULT_IDENTITY;
  const store = new IdentityStore(o.home, clock);
  try {
    let stored: StoredIdentity;
    if (await store.exists(name)) stored = await store.load(name);
    else if (name === DEFAULT_IDENTITY) {
      stored = await store.create(name);
      o.onCreated?.(stored.file.identifier);
    } else {
      throw new KeyhopError(
        ErrorCodes.IDENTITY_NOT_FOUND,
        `no identity "${name}" (create it with: keyhop identity create ${name})`,
      );
    }
    const authority = authorityIdentity(o.ticket.authority, store.verifier, clock);
    const authorityId = authority.identifier.toString();
    const via = o.directory !== undefined ? 'x3dh' : 'ticket';
    const held = currentCredential(stored, authorityId, clock.now());
    if (held && !o.force && stored.file.enrollment?.authority === hex(o.ticket.authority))
      return describe(stored, authority, 'already', via, held);
    if (o.ticket.expiresAt <= clock.now()) {
      throw new KeyhopError(
        ErrorCodes.CREDENTIAL_EXPIRED,
        `the ticket expired at ${new Date(o.ticket.expiresAt * 1000).toISOString()}: ask the authority for a new one`,
      );
    }
    const credential =
      o.directory !== undefined
        ? await throughDirectory(o, store, stored, authority, o.directory, clock)
        : await throughChannel(o, store, stored, authority, clock);
    if (credential === undefined) return describe(stored, authority, 'pending', via, undefined);
    const enrollment: EnrollmentRecord = {
      authority: hex(o.ticket.authority),
      route: via === 'ticket' ? o.ticket.route : null,
      directory: o.directory ?? null,
      via,
      at: clock.now(),
    };
    await store.keepCredential(name, credential, enrollment);
    return describe(stored, authority, 'enrolled', via, credential);
  } finally {
    await store.close();
  }
}

async function throughChannel(
  o: EnrollDeviceOptions,
  _store: IdentityStore,
  stored: StoredIdentity,
  authority: Identity,
  clock: Clock,
): Promise<CredentialAndPurposeKey> {
  const channelIdentity = await OckamChannelIdentity.create({
    local: stored.local,
    secureChannelVault: SoftwareVault.inMemory(),
    verifier: _store.verifier,
    clock,
    credentials: stored.credentials,
    log: o.log ?? silentLogger,
  });
  const channels = new SecureChannels(o.router, { identity: channelIdentity, log: o.log ?? silentLogger });
  try {
    return await enrollWithCode(
      {
        channels,
        router: o.router,
        authority,
        route: o.ticket.route,
        subject: stored.file.identifier,
        verifier: _store.verifier,
        clock,
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      },
      o.ticket.code,
    );
  } finally {
    await channels.shutdown();
  }
}

async function throughDirectory(
  o: EnrollDeviceOptions,
  store: IdentityStore,
  stored: StoredIdentity,
  authority: Identity,
  directory: string,
  clock: Clock,
): Promise<CredentialAndPurposeKey | undefined> {
  const client = new DirectoryClient(o.router, directory, o.timeoutMs);
  const path = pendingPath(o.home, stored.name);
  const passphrase = process.env[PASSPHRASE_ENV] || undefined;
  const authorityId = authority.identifier.toString();
  // The request left by an earlier run, if it is for this authority at this directory.
  let pending: PendingEnrollment | undefined;
  const previous = await SealedFile.open(path, passphrase, checkPending).catch((e: unknown) => {
    if ((e as { code?: string }).code === 'KEY_STORE_LOCKED') throw e;
    return undefined;
  });
  previous?.file.close();
  if (previous && previous.content.authority === authorityId && previous.content.directory === directory) {
    pending = {
      authority: authorityId,
      requestId: unhex(previous.content.requestId),
      responseKey: unhex(previous.content.responseKey),
      createdAt: previous.content.createdAt,
    };
  }
  const member = {
    local: stored.local,
    anchor: authority,
    authority,
    subject: stored.file.identifier,
    provider: nodeCrypto,
    verifier: store.verifier,
    clock,
  };
  if (pending === undefined) {
    pending = await leaveRequest(client, { ...member, token: o.ticket.code });
    await unlink(path).catch(() => undefined);
    const file = await SealedFile.create<PendingFile>(
      path,
      {
        authority: authorityId,
        directory,
        requestId: hex(pending.requestId),
        responseKey: hex(pending.responseKey),
        createdAt: pending.createdAt,
      },
      passphrase,
    );
    file.close();
  }
  const deadline = Date.now() + (o.waitMs ?? 0);
  let delay = 250;
  for (;;) {
    const credential = await collectAnswer(client, pending, member).catch(async (e: unknown) => {
      // The authority refused: this request is done with.
      if ((e as { reason?: string }).reason !== undefined) await unlink(path).catch(() => undefined);
      throw e;
    });
    if (credential !== undefined) {
      await unlink(path).catch(() => undefined);
      return credential;
    }
    if (Date.now() + delay > deadline) return undefined;
    await sleep(delay);
    delay = Math.min(delay * 2, 5000);
  }
}
