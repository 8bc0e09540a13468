import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Authority } from './authority.js';
import { encodeTicket } from './codec.js';

/**
 * The administration of an authority as named operations with JSON parameters and results, the
 * same whether the CLI opens the authority itself or asks the node that serves it (control API
 * `authority.<op>`).
 */

const iso = (s: number) => new Date(s * 1000).toISOString();

function attributes(v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new KeyhopError(ErrorCodes.USAGE, 'attributes must be an object of strings');
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new KeyhopError(ErrorCodes.USAGE, `attribute ${k} must be a string`);
    out[k] = x;
  }
  return out;
}

function int(v: unknown, what: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new KeyhopError(ErrorCodes.USAGE, `${what} must be a whole number ${min}..${max}`);
  return v;
}

function text(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new KeyhopError(ErrorCodes.USAGE, `${what} is required`);
  return v;
}

export interface TicketRow {
  id: string;
  ticket: string;
  attributes: Record<string, string>;
  uses: number;
  expiresAt: string;
}

export const AUTHORITY_OPS = [
  'show',
  'ticket.create',
  'ticket.list',
  'ticket.withdraw',
  'members',
  'revoke',
] as const;
export type AuthorityOp = (typeof AUTHORITY_OPS)[number];

export async function authorityOp(a: Authority, op: string, p: Record<string, unknown>): Promise<unknown> {
  switch (op as AuthorityOp) {
    case 'show': {
      const tickets = a.ticketList();
      const list = await a.revocations();
      return {
        identifier: a.identifier,
        changeHistory: Buffer.from(a.identity.export()).toString('hex'),
        members: a.memberList().length,
        tickets: { valid: tickets.filter((t) => t.state === 'valid').length, total: tickets.length },
        revocationVersion: list.version,
        counters: a.counters,
      };
    }
    case 'ticket.create': {
      const count = int(p.count, 'count', 1, 100_000) ?? 1;
      const ttlSeconds = int(p.ttlSeconds, 'ttlSeconds', 1, 10 * 365 * 86_400);
      const uses = int(p.uses, 'uses', 1, 1_000_000);
      const route = text(p.route, 'route (of the authority node\u2019s secure-channel listener)');
      const attrs = attributes(p.attributes);
      const rows: TicketRow[] = [];
      for (let i = 0; i < count; i++) {
        const { id, ticket } = await a.createTicket({
          attributes: attrs,
          route,
          ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
          ...(uses !== undefined ? { uses } : {}),
        });
        rows.push({
          id,
          ticket: encodeTicket(ticket),
          attributes: attrs,
          uses: uses ?? 1,
          expiresAt: iso(ticket.expiresAt),
        });
      }
      return rows;
    }
    case 'ticket.list':
      return a.ticketList().map((t) => ({
        id: t.id,
        state: t.state,
        attributes: t.attributes,
        used: t.used,
        uses: t.uses,
        createdAt: iso(t.createdAt),
        expiresAt: iso(t.expiresAt),
      }));
    case 'ticket.withdraw': {
      const id = text(p.id, 'id');
      await a.withdrawTicket(id);
      return { id, withdrawn: true };
    }
    case 'members':
      return a.memberList().map((m) => ({ ...m, enrolledAt: iso(m.enrolledAt) }));
    case 'revoke': {
      const identifier = p.identifier;
      const credential = p.credential;
      if ((identifier === undefined) === (credential === undefined))
        throw new KeyhopError(
          ErrorCodes.USAGE,
          'revoke one identity (identifier) or one credential (credential id)',
        );
      if (identifier !== undefined) await a.revokeIdentity(text(identifier, 'identifier'));
      else await a.revokeCredential(text(credential, 'credential'));
      const list = await a.revocations();
      return { revoked: identifier ?? credential, version: list.version };
    }
    default:
      throw new KeyhopError(ErrorCodes.USAGE, `unknown authority operation "${op}"`);
  }
}
