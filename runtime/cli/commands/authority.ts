import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Authority } from '../../enrollment/authority.js';
import { authorityOp, type TicketRow } from '../../enrollment/authority-admin.js';
import { DirectoryClient, publishAt, serveMailbox } from '../../enrollment/directory-client.js';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import { systemClock } from '../../identity/clock.js';
import { controlCall } from '../../node/control-client.js';
import { IdentityStore } from '../../node/identity-store.js';
import { keyhopHome, nodePaths } from '../../node/paths.js';
import { PASSPHRASE_ENV } from '../../node/vault-registry.js';
import { Router } from '../../routing/router.js';
import { lockOwner } from '../../state-lock.js';
import { TcpTransport } from '../../transports/tcp/tcp-transport.js';
import { print } from '../output.js';
import { announceVaultCreated, parseAttributes } from './identity.js';
import { secondsOption } from './node.js';

interface Common {
  home?: string;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function positive(text: string | undefined, option: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new KeyhopError(ErrorCodes.USAGE, `${option} must be a whole number 1..${max}`);
  return n;
}

const passphrase = () => process.env[PASSPHRASE_ENV] || undefined;

/** Opens authority `name` in this process (its identity and credential-signing key from the store). */
async function openAuthority(
  home: string,
  name: string,
): Promise<{ authority: Authority; store: IdentityStore }> {
  const store = new IdentityStore(home, systemClock);
  try {
    if (!(await Authority.exists(home, name))) {
      throw new KeyhopError(
        ErrorCodes.AUTHORITY_NOT_FOUND,
        `no authority "${name}" here (create it with: keyhop authority create ${name})`,
      );
    }
    const stored = await store.load(name);
    const authority = await Authority.open({
      home,
      name,
      local: stored.local,
      issuer: await store.issuer(name),
      verifier: store.verifier,
      ...(passphrase() ? { passphrase: passphrase()! } : {}),
    });
    return { authority, store };
  } catch (e) {
    await store.close();
    throw e;
  }
}

/**
 * Runs an administration operation on authority `name`: through the node that serves it when one
 * runs (its lock names it), else on the authority's state directly.
 */
async function withAuthority(
  o: Common,
  name: string,
  op: string,
  params: Record<string, unknown>,
): Promise<unknown> {
  const home = keyhopHome(o.home);
  const owner = await lockOwner(join(Authority.directory(home, name), 'lock'));
  if (owner?.node)
    return controlCall(nodePaths(home, owner.node).control, `authority.${op}`, params, 120_000);
  const { authority, store } = await openAuthority(home, name);
  try {
    return await authorityOp(authority, op, params);
  } finally {
    await authority.close();
    await store.close();
  }
}

interface ManifestDevice {
  name: string;
  attributes?: Record<string, string>;
  ticket?: string;
  [k: string]: unknown;
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new KeyhopError(ErrorCodes.USAGE, `cannot read ${what} ${path}: ${describeError(e)}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `${what} ${path} is not JSON: ${describeError(e)}`);
  }
}

/** Writes a file that holds secrets (tickets): 0600, atomically. */
async function writeSecretFile(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await rename(tmp, path);
}

export function registerAuthorityCommands(program: Command): void {
  const authority = program
    .command('authority')
    .description(
      'enrollment authorities: tickets (one-time codes), X3DH prekey bundles, members, revocation',
    );

  authority
    .command('create')
    .description(
      'create authority <name>: its identity (made in --vault unless it exists) and its enrollment state (X3DH prekeys sealed with KEYHOP_VAULT_PASSPHRASE when set)',
    )
    .argument('<name>', 'authority name (also the name of its identity)')
    .option('--vault <vault>', 'vault for a new identity (default: the default vault)')
    .option('--prekeys <n>', 'one-time prekeys to make now (more are made as they are published)', '100')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { vault?: string; prekeys: string }>();
      const home = keyhopHome(o.home);
      const prekeys = Number(o.prekeys);
      if (!Number.isInteger(prekeys) || prekeys < 0 || prekeys > 100_000)
        throw new KeyhopError(ErrorCodes.USAGE, '--prekeys must be 0..100000');
      if (await Authority.exists(home, name))
        throw new KeyhopError(
          ErrorCodes.AUTHORITY_EXISTS,
          `authority "${name}" exists (keyhop authority show ${name})`,
        );
      const store = new IdentityStore(home, systemClock, { onCreated: announceVaultCreated });
      try {
        const stored = (await store.exists(name))
          ? await store.load(name)
          : await store.create(name, o.vault ? { vault: o.vault } : {});
        const a = await Authority.create({
          home,
          name,
          local: stored.local,
          issuer: await store.issuer(name),
          verifier: store.verifier,
          prekeys,
          ...(passphrase() ? { passphrase: passphrase()! } : {}),
        });
        const history = Buffer.from(a.identity.export()).toString('hex');
        await a.close();
        print(
          o,
          { name, identifier: a.identifier, changeHistory: history, sealed: passphrase() !== undefined },
          (d) =>
            `authority ${d.name}: ${d.identifier}\nits change history (what devices and verifiers trust):\n${d.changeHistory}`,
        );
      } finally {
        await store.close();
      }
    });

  authority
    .command('show')
    .description('show an authority: identifier, change history, members, tickets, revocation list version')
    .argument('<name>', 'authority name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const d = (await withAuthority(o, name, 'show', {})) as {
        identifier: string;
        changeHistory: string;
        members: number;
        revocationVersion: number;
        tickets: { valid: number; total: number };
      };
      print(
        o,
        { name, ...d },
        (x) =>
          `authority ${name}: ${x.identifier}\nmembers: ${x.members}\ntickets: ${x.tickets.valid} valid of ${x.tickets.total}\nrevocation list version: ${x.revocationVersion}\nchange history: ${x.changeHistory}`,
      );
    });

  const ticket = authority.command('ticket').description('one-time enrollment codes of an authority');
  ticket
    .command('create')
    .description(
      'create tickets: each carries the authority, the route to its node and a one-time code granting the attributes (secret: give each to its device only)',
    )
    .argument('<name>', 'authority name')
    .option('--attribute <key=value>', 'attribute the ticket grants (repeatable)', collect)
    .option('--ttl <seconds>', 'validity (units s, m, h, d)', '1d')
    .option('--uses <n>', 'enrollments one ticket allows', '1')
    .option('--count <n>', 'tickets to make', '1')
    .option(
      '--route <route>',
      "route to the authority node's secure-channel listener (default, when a node serves it: its first TCP listener)",
    )
    .option(
      '--manifest <file>',
      'one ticket per device of a manifest ({"devices":[{"name","attributes"}]}); written to --out',
    )
    .option('--out <file>', 'with --manifest: the manifest with a ticket per device (mode 0600)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<
        Common & {
          attribute?: string[];
          ttl: string;
          uses: string;
          count: string;
          route?: string;
          manifest?: string;
          out?: string;
        }
      >();
      const base = {
        ttlSeconds: secondsOption(o.ttl, '--ttl'),
        uses: positive(o.uses, '--uses', 1_000_000),
        ...(o.route ? { route: o.route } : {}),
      };
      if (o.manifest) {
        if (!o.out) throw new KeyhopError(ErrorCodes.USAGE, '--manifest needs --out <file> for the tickets');
        const manifest = (await readJson(o.manifest, 'manifest')) as { devices?: unknown };
        if (!Array.isArray(manifest?.devices))
          throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'the manifest needs "devices": [{ "name": … }]');
        const devices = manifest.devices as ManifestDevice[];
        const out: ManifestDevice[] = [];
        for (const [i, d] of devices.entries()) {
          if (typeof d?.name !== 'string' || d.name.length === 0)
            throw new KeyhopError(ErrorCodes.DECODE_INVALID, `manifest devices[${i}] needs a "name"`);
          const attributes = { ...parseAttributes(o.attribute), ...(d.attributes ?? {}) };
          const [row] = (await withAuthority(o, name, 'ticket.create', {
            ...base,
            attributes,
          })) as TicketRow[];
          out.push({ ...d, ticket: row!.ticket });
        }
        await writeSecretFile(o.out, `${JSON.stringify({ ...manifest, devices: out }, null, 2)}\n`);
        print(o, { tickets: out.length, out: o.out }, (d) => `${d.tickets} tickets written to ${d.out}`);
        return;
      }
      const rows = (await withAuthority(o, name, 'ticket.create', {
        ...base,
        attributes: parseAttributes(o.attribute),
        count: positive(o.count, '--count', 100_000),
      })) as TicketRow[];
      print(o, rows, (r) => r.map((t) => t.ticket).join('\n'));
    });

  ticket
    .command('list')
    .description(
      'list the tickets of an authority (ids, not codes) and their state: valid, used, expired, withdrawn',
    )
    .argument('<name>', 'authority name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const rows = (await withAuthority(o, name, 'ticket.list', {})) as {
        id: string;
        state: string;
        used: number;
        uses: number;
        expiresAt: string;
        attributes: Record<string, string>;
      }[];
      print(o, rows, (r) =>
        r.length === 0
          ? 'no tickets'
          : r
              .map(
                (t) =>
                  `${t.id.slice(0, 16)}  ${t.state.padEnd(9)} ${t.used}/${t.uses}  until ${t.expiresAt}  ${Object.entries(
                    t.attributes,
                  )
                    .map(([k, v]) => `${k}=${v}`)
                    .join(' ')}`,
              )
              .join('\n'),
      );
    });

  ticket
    .command('withdraw')
    .description('withdraw a ticket: its code enrolls nobody from now on')
    .argument('<name>', 'authority name')
    .argument('<id>', 'ticket id (keyhop authority ticket list --json)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, id: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const r = await withAuthority(o, name, 'ticket.withdraw', { id });
      print(o, r, () => `ticket ${id} withdrawn`);
    });

  authority
    .command('members')
    .description('list the identities enrolled with an authority and the attributes they hold')
    .argument('<name>', 'authority name')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const rows = (await withAuthority(o, name, 'members', {})) as {
        identifier: string;
        via: string;
        enrolledAt: string;
        attributes: Record<string, string>;
      }[];
      print(o, rows, (r) =>
        r.length === 0
          ? 'no members'
          : r
              .map(
                (m) =>
                  `${m.identifier}  ${m.via.padEnd(6)} ${m.enrolledAt}  ${Object.entries(m.attributes)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(' ')}`,
              )
              .join('\n'),
      );
    });

  authority
    .command('revoke')
    .description(
      'revoke an identity (all its credentials, its renewals) or one credential: the next signed revocation list carries it (a node serving the authority publishes it at once)',
    )
    .argument('<name>', 'authority name')
    .option('--identity <identifier>', 'the identity to revoke (I…)')
    .option('--credential <id>', 'the credential to revoke (hex SHA-256 of its data)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { identity?: string; credential?: string }>();
      const r = (await withAuthority(o, name, 'revoke', {
        ...(o.identity ? { identifier: o.identity } : {}),
        ...(o.credential ? { credential: o.credential } : {}),
      })) as { version: number };
      print(o, r, (x) => `revoked ${o.identity ?? o.credential}; revocation list version ${x.version}`);
    });

  authority
    .command('sync')
    .description(
      'for an authority that is offline most of the time: publish its prekey bundle, fresh one-time prekeys and revocation list at enrollment directories, and answer the requests devices left there',
    )
    .argument('<name>', 'authority name')
    .requiredOption(
      '--directory <route>',
      'route to a node running an enrollment directory (repeatable)',
      collect,
    )
    .option('--prekeys <n>', 'one-time prekeys to keep on offer at each directory', '100')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { directory: string[]; prekeys: string }>();
      const home = keyhopHome(o.home);
      const owner = await lockOwner(join(Authority.directory(home, name), 'lock'));
      if (owner?.node) {
        const r = await controlCall(nodePaths(home, owner.node).control, 'authority.publish', {}, 120_000);
        print(o, r, () => `node ${owner.node} published authority ${name} at its directories`);
        return;
      }
      const keep = positive(o.prekeys, '--prekeys', 10_000) ?? 100;
      const { authority: a, store } = await openAuthority(home, name);
      const router = new Router({ name: 'keyhop-authority-sync' });
      TcpTransport.create(router);
      try {
        const rows = [];
        for (const route of o.directory) {
          const client = new DirectoryClient(router, route);
          const published = await publishAt(client, a, keep);
          const answered = await serveMailbox(client, a);
          rows.push({ directory: route, published, answered });
        }
        print(o, rows, (r) =>
          r
            .map((x) => `${x.directory}: ${x.published} prekeys published, ${x.answered} requests answered`)
            .join('\n'),
        );
      } finally {
        await router.shutdown();
        await a.close();
        await store.close();
      }
    });
}
