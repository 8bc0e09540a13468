import { resolve } from 'node:path';
import type { Command } from 'commander';
import { describeLinkSpec } from '../../../vaults/atecc608/link-spec.js';
import { ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import { Policy } from '../../identity/abac.js';
import { systemClock } from '../../identity/clock.js';
import { verifyCredential } from '../../identity/credentials.js';
import { Identity } from '../../identity/identity.js';
import {
  attributesAsText,
  decodeCredentialAndPurposeKey,
  encodeCredentialAndPurposeKey,
  openCredentialData,
  openPurposeKeyAttestationData,
} from '../../identity/models.js';
import { IdentityStore } from '../../node/identity-store.js';
import { keyhopHome } from '../../node/paths.js';
import {
  createAtecc608Vault,
  createHardwareVault,
  createSoftwareVault,
  encryptSoftwareVault,
  listVaults,
  PASSPHRASE_ENV,
} from '../../node/vault-registry.js';
import { addLinkOptions, type LinkOptions, linkSpecFrom } from '../atecc608-link-options.js';
import { print } from '../output.js';

interface Common {
  home?: string;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Stores opened by the running command; closed after it so hardware vaults release their devices. */
const opened: IdentityStore[] = [];

/** The one line a first use of the default vault prints (on stderr: stdout stays the result). */
export function announceVaultCreated(info: { name: string; encrypted: boolean }): void {
  process.stderr.write(
    info.encrypted
      ? `keyhop: created vault "${info.name}" (software, private keys encrypted at rest)\n`
      : `keyhop: created vault "${info.name}" (software, private keys in clear on disk, mode 0600; to encrypt them, set KEYHOP_VAULT_PASSPHRASE and run keyhop vault encrypt ${info.name})\n`,
  );
}

function store(o: Common): IdentityStore {
  const s = new IdentityStore(keyhopHome(o.home), systemClock, { onCreated: announceVaultCreated });
  opened.push(s);
  return s;
}

export async function closeIdentityStores(): Promise<void> {
  await Promise.all(opened.splice(0).map((s) => s.close()));
}

/** `key=value` options as attributes. */
export function parseAttributes(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of list ?? []) {
    const i = a.indexOf('=');
    if (i <= 0) throw new KeyhopError(ErrorCodes.USAGE, `attribute "${a}" is not key=value`);
    out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

function unhex(s: string, what: string): Uint8Array {
  const t = s.trim();
  if (!/^([0-9a-f]{2})+$/i.test(t))
    throw new KeyhopError(ErrorCodes.USAGE, `${what} must be hex (an even number of 0-9a-f)`);
  return new Uint8Array(Buffer.from(t, 'hex'));
}

/** A credential as `credential issue` printed it (hex CBOR). */
function credentialArg(text: string) {
  const bytes = unhex(text, 'the credential');
  try {
    return decodeCredentialAndPurposeKey(bytes);
  } catch (e) {
    if (!isKeyhopError(e)) throw e;
    throw new KeyhopError(
      e.code,
      `that is not a credential (${e.message}): give the hex that keyhop credential issue printed`,
    );
  }
}

/** An identity given by name (in KEYHOP_HOME) or as a change history in hex. */
async function identityArg(o: Common, ref: string): Promise<Identity> {
  if (/^([0-9a-f]{2}){32,}$/i.test(ref)) {
    return Identity.import(unhex(ref, 'change history'), { verifier: store(o).verifier, clock: null });
  }
  return (await store(o).load(ref)).local.identity;
}

function describeCredential(c: ReturnType<typeof verifyCredential>): {
  issuer: string;
  subject: string;
  attributes: Record<string, string>;
  createdAt: string;
  expiresAt: string;
} {
  return {
    issuer: c.issuer.toString(),
    subject: c.subject.toString(),
    attributes: Object.fromEntries(c.attributesText),
    createdAt: new Date(c.createdAt * 1000).toISOString(),
    expiresAt: new Date(c.expiresAt * 1000).toISOString(),
  };
}

export function registerIdentityCommands(program: Command): void {
  const vault = program
    .command('vault')
    .description('vaults in KEYHOP_HOME: software key stores and hardware (docs/vaults/)');
  addLinkOptions(vault.command('create'))
    .description(
      'create a vault: software (KEYHOP_VAULT_PASSPHRASE encrypts its keys at rest), a provisioned ATECC608, a TPM 2.0 or a PKCS#11 token',
    )
    .argument('[name]', 'vault name', 'default')
    .option('--backend <backend>', 'software, atecc608, tpm or pkcs11', 'software')
    .option(
      '--tcti <conf>',
      'TPM: TCTI configuration (default device:/dev/tpmrm0; swtpm:host=…,port=… for swtpm)',
    )
    .option('--persist', 'TPM: make new keys persistent in the TPM (EvictControl) instead of reloading blobs')
    .option('--module <path>', 'PKCS#11: the module (e.g. /usr/lib/softhsm/libsofthsm2.so)')
    .option('--token <label>', 'PKCS#11: the token label (never a slot number)')
    .option(
      '--pin-env <variable>',
      'PKCS#11: read the user PIN from this environment variable',
      'KEYHOP_PKCS11_PIN',
    )
    .option('--pin-file <path>', 'PKCS#11: read the user PIN from this file instead')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<
        Common &
          LinkOptions & {
            backend: string;
            tcti?: string;
            persist?: boolean;
            module?: string;
            token?: string;
            pinEnv: string;
            pinFile?: string;
          }
      >();
      const home = keyhopHome(o.home);
      switch (o.backend) {
        case 'software': {
          const { encrypted } = await createSoftwareVault(home, name);
          print(o, { vault: name, backend: 'software', encrypted }, (d) =>
            d.encrypted
              ? `vault ${d.vault} created (software, private keys encrypted at rest with ${PASSPHRASE_ENV})`
              : `vault ${d.vault} created (software, private keys in clear on disk; set ${PASSPHRASE_ENV} and run keyhop vault encrypt ${d.vault} to encrypt them)`,
          );
          return;
        }
        case 'atecc608': {
          const link = linkSpecFrom(o);
          await createAtecc608Vault(home, name, link);
          print(
            o,
            { vault: name, backend: 'atecc608', link: describeLinkSpec(link) },
            (d) => `vault ${d.vault} ready (ATECC608 at ${d.link})`,
          );
          return;
        }
        case 'tpm': {
          const tcti = o.tcti ?? 'device:/dev/tpmrm0';
          await createHardwareVault(home, name, {
            version: 1,
            backend: 'tpm',
            tcti,
            ...(o.persist ? { persist: true } : {}),
            keys: {},
          });
          print(
            o,
            { vault: name, backend: 'tpm', tcti },
            (d) => `vault ${d.vault} ready (TPM 2.0 via ${d.tcti})`,
          );
          return;
        }
        case 'pkcs11': {
          if (!o.module || !o.token) {
            throw new KeyhopError(
              ErrorCodes.USAGE,
              'a pkcs11 vault needs --module <path> and --token <label>',
            );
          }
          if (!o.module.startsWith('/'))
            throw new KeyhopError(ErrorCodes.USAGE, '--module must be an absolute path');
          const pin = o.pinFile ? { file: resolve(o.pinFile) } : { env: o.pinEnv };
          await createHardwareVault(home, name, {
            version: 1,
            backend: 'pkcs11',
            module: o.module,
            token: o.token,
            pin,
          });
          print(
            o,
            { vault: name, backend: 'pkcs11', module: o.module, token: o.token },
            (d) => `vault ${d.vault} ready (PKCS#11 token "${d.token}" of ${d.module})`,
          );
          return;
        }
        default:
          throw new KeyhopError(ErrorCodes.USAGE, '--backend must be software, atecc608, tpm or pkcs11');
      }
    });

  vault
    .command('list')
    .description('list the vaults in KEYHOP_HOME')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const rows = await listVaults(keyhopHome(o.home));
      print(o, rows, (r) =>
        r.length === 0
          ? 'no vaults (keyhop vault create <name>; the vault "default" is made on first use)'
          : r
              .map(
                (v) =>
                  `${v.name.padEnd(20)} ${v.backend}${v.encrypted === undefined ? '' : v.encrypted ? ', encrypted at rest' : ', keys in clear'}`,
              )
              .join('\n'),
      );
    });

  vault
    .command('encrypt')
    .description(`encrypt a software vault created in clear, under ${PASSPHRASE_ENV}`)
    .argument('[name]', 'vault name', 'default')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const keys = await encryptSoftwareVault(keyhopHome(o.home), name);
      print(
        o,
        { vault: name, encrypted: true, keysEncrypted: keys },
        (d) =>
          `vault ${d.vault} is encrypted at rest (${d.keysEncrypted} key files rewritten); from now on it needs ${PASSPHRASE_ENV}`,
      );
    });

  const identity = program.command('identity').description('identities (Ockam change histories)');
  identity
    .command('create')
    .description('create an identity whose primary key lives in a vault')
    .argument('[name]', 'identity name', 'default')
    .option('--vault <name>', 'vault for its key', 'default')
    .option('--key-type <type>', 'ed25519 or p256 (default: ed25519 in software, p256 in hardware)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { vault: string; keyType?: string }>();
      const keyType =
        o.keyType === undefined
          ? undefined
          : o.keyType.toLowerCase() === 'p256'
            ? 'P256'
            : o.keyType.toLowerCase() === 'ed25519'
              ? 'Ed25519'
              : null;
      if (keyType === null) throw new KeyhopError(ErrorCodes.USAGE, '--key-type must be ed25519 or p256');
      const s = await store(o).create(name, { vault: o.vault, ...(keyType ? { keyType } : {}) });
      print(o, { name, identifier: s.file.identifier, vault: s.file.vault }, (d) => d.identifier);
    });

  identity
    .command('show')
    .description('show an identity: identifier, keys, change history')
    .argument('[name]', 'identity name', 'default')
    .option('--full', 'also print the change history (hex), to hand to peers as an authority')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { full?: boolean }>();
      const s = await store(o).load(name);
      const id = s.local.identity;
      const data = {
        name,
        identifier: id.identifier.toString(),
        vault: s.file.vault,
        changes: id.changes.map((c, i) => ({
          index: i,
          keyType: c.data.primaryPublicKey.type,
          publicKey: hex(c.data.primaryPublicKey.bytes),
          validFrom: new Date(c.data.attestationsValidFrom * 1000).toISOString(),
          validUntil: new Date(c.data.attestationsValidUntil * 1000).toISOString(),
        })),
        credentials: s.credentials.length,
        changeHistory: hex(id.export()),
      };
      print(o, data, (d) =>
        [
          d.identifier,
          ...d.changes.map(
            (c) =>
              `  change ${c.index}: ${c.keyType} ${c.publicKey.slice(0, 16)}… valid ${c.validFrom} .. ${c.validUntil}`,
          ),
          `  credentials: ${d.credentials}`,
          ...(o.full ? [`  change history: ${d.changeHistory}`] : []),
        ].join('\n'),
      );
    });

  identity
    .command('list')
    .description('list identities in KEYHOP_HOME')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const rows = [];
      for (const name of await store(o).list()) {
        const s = await store(o).load(name);
        rows.push({ name, identifier: s.file.identifier });
      }
      print(o, rows, (r) =>
        r.length ? r.map((x) => `${x.name.padEnd(20)} ${x.identifier}`).join('\n') : 'no identities',
      );
    });

  identity
    .command('rotate')
    .description('rotate the primary key: a new change signed by the new and the previous key')
    .argument('[name]', 'identity name', 'default')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const s = await store(o).rotate(name);
      print(
        o,
        { name, identifier: s.file.identifier, changes: s.local.identity.changes.length },
        (d) => `${d.identifier} now has ${d.changes} changes`,
      );
    });

  const credential = program
    .command('credential')
    .description('credentials: attributes an authority vouches for');
  credential
    .command('issue')
    .description('issue a credential as an authority identity')
    .requiredOption('--as <identity>', 'issuing identity (name in KEYHOP_HOME)')
    .requiredOption('--for <identifier>', 'subject identifier (I…)')
    .option('--attribute <key=value>', 'attribute (repeatable)', collect)
    .option('--ttl <seconds>', 'lifetime (default 30 days)')
    .option('--json', 'machine-readable output')
    .action(async (_o, cmd: Command) => {
      const o = cmd.optsWithGlobals<
        Common & { as: string; for: string; attribute?: string[]; ttl?: string }
      >();
      const ttl = o.ttl === undefined ? undefined : Number(o.ttl);
      if (ttl !== undefined && (!Number.isInteger(ttl) || ttl <= 0))
        throw new KeyhopError(ErrorCodes.USAGE, '--ttl must be seconds');
      const c = await store(o).issue(o.as, o.for, parseAttributes(o.attribute), ttl);
      print(o, { credential: hex(encodeCredentialAndPurposeKey(c)) }, (d) => d.credential);
    });

  credential
    .command('verify')
    .description('verify a credential (hex) against trusted authorities')
    .argument('<credential>', 'credential as printed by `credential issue`')
    .requiredOption(
      '--authority <identity>',
      'authority: identity name or change history hex (repeatable)',
      collect,
    )
    .option('--json', 'machine-readable output')
    .action(async (cred: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { authority: string[] }>();
      const authorities = await Promise.all(o.authority.map((a) => identityArg(o, a)));
      const v = verifyCredential(credentialArg(cred), {
        authorities,
        verifier: store(o).verifier,
        clock: systemClock,
      });
      print(
        o,
        { valid: true, ...describeCredential(v) },
        (d) => `valid: ${JSON.stringify(d.attributes)} about ${d.subject}`,
      );
    });

  credential
    .command('show')
    .description('decode a credential (hex) without trusting it')
    .argument('<credential>', 'credential as printed by `credential issue`')
    .option('--json', 'machine-readable output')
    .action(async (cred: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common>();
      const c = credentialArg(cred);
      // Decoded only, not verified: trusting it is `credential verify`'s job.
      const d = openCredentialData(c.credential.data);
      const pk = openPurposeKeyAttestationData(c.purposeKeyAttestation.data);
      const data = {
        issuer: pk.subject.toString(),
        subject: d.subject?.toString() ?? null,
        attributes: Object.fromEntries(attributesAsText(d.attributes)),
        createdAt: new Date(d.createdAt * 1000).toISOString(),
        expiresAt: new Date(d.expiresAt * 1000).toISOString(),
        verified: false,
      };
      print(o, data, (x) => JSON.stringify(x, null, 2));
    });

  credential
    .command('store')
    .description('attach a credential to an identity; its nodes present it in every handshake')
    .argument('<credential>', 'credential as printed by `credential issue`')
    .option('--identity <name>', 'identity to attach it to', 'default')
    .option('--json', 'machine-readable output')
    .action(async (cred: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { identity: string }>();
      await store(o).addCredential(o.identity, credentialArg(cred));
      print(o, { identity: o.identity, stored: true }, (d) => `credential stored for ${d.identity}`);
    });

  program
    .command('policy')
    .description('attribute-based access control policies')
    .command('check')
    .description('parse a policy and evaluate it for a subject')
    .argument('<expression>', 'e.g. \'(= subject.role "device")\' or "role_admin and fleet_f1"')
    .option('--identifier <identifier>', 'subject identifier', `I${'0'.repeat(64)}`)
    .option('--attribute <key=value>', 'subject attribute (repeatable)', collect)
    .option('--json', 'machine-readable output')
    .action(async (expr: string, _o, cmd: Command) => {
      const o = cmd.optsWithGlobals<Common & { identifier: string; attribute?: string[] }>();
      const policy = Policy.parse(expr);
      const attributes = o.attribute ? parseAttributes(o.attribute) : undefined;
      const allowed = policy.evaluate({ identifier: o.identifier, ...(attributes ? { attributes } : {}) });
      print(o, { policy: policy.toString(), allowed }, (d) => `${d.allowed ? 'allow' : 'deny'}: ${d.policy}`);
    });
}
