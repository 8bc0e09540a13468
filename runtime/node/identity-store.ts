import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SigningKeyType } from '../../vaults/provider.js';
import { SoftwareVerifier } from '../../vaults/software/software-vault.js';
import type { SigningVault } from '../../vaults/vault.js';
import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import { type Clock, systemClock } from '../identity/clock.js';
import { type CredentialIssuer, createCredentialIssuer, issueCredential } from '../identity/credentials.js';
import { createIdentity, Identity, type LocalIdentity, rotateIdentity } from '../identity/identity.js';
import {
  type CredentialAndPurposeKey,
  decodeCredentialAndPurposeKey,
  decodePurposeKeyAttestation,
  encodeCredentialAndPurposeKey,
  encodePurposeKeyAttestation,
  openCredentialData,
  openPurposeKeyAttestationData,
} from '../identity/models.js';
import { DEFAULT_VAULT, type OpenedVault, type OpenVaultOptions, openVault } from './vault-registry.js';

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The identity a node uses when none is named: the only one a node creates by itself. */
export const DEFAULT_IDENTITY = 'default';
const MAX_FILE = 256 * 1024;

/**
 * Named identities and vaults under KEYHOP_HOME (docs/cli.md):
 *   vaults/<vault>/            the software key store (DirectoryKeyStore), or a hardware vault's
 *                              vault.json (vault-registry.ts)
 *   identities/<name>.json     { identifier, vault, keyId, changeHistory (hex), credentials (hex[]), issuer? }
 * A vault's passphrase comes from KEYHOP_VAULT_PASSPHRASE, never from the command line.
 */
interface IdentityFile {
  version: 1;
  name: string;
  identifier: string;
  vault: string;
  keyId: string;
  changeHistory: string;
  credentials: string[];
  issuer?: { keyId: string; attestation: string };
  /** Set by `keyhop enroll`: the authority this identity is a member of, and how to reach it. */
  enrollment?: EnrollmentRecord;
}

/** How an identity enrolled, so that its node renews its credential and follows its authority's revocations. */
export interface EnrollmentRecord {
  /** The authority's change history (hex): the trust anchor. */
  authority: string;
  /** Route to the authority node's secure-channel listener (renewal through a channel), if it has one. */
  route: string | null;
  /** Route to an enrollment directory (X3DH: renewal through the mailbox, revocation lists). */
  directory: string | null;
  via: 'ticket' | 'x3dh';
  /** Unix seconds. */
  at: number;
}

export interface StoredIdentity {
  name: string;
  local: LocalIdentity;
  vault: SigningVault;
  credentials: CredentialAndPurposeKey[];
  file: IdentityFile;
}

function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `${kind} name must be 1-64 letters, digits, '-' or '_' (got "${name}")`,
    );
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** The identifier of the authority that issued `credential` (the subject of its signing-key attestation). */
export function issuerOf(credential: CredentialAndPurposeKey): string {
  return openPurposeKeyAttestationData(credential.purposeKeyAttestation.data).subject.toString();
}
const unhex = (s: string, what: string): Uint8Array => {
  if (!/^([0-9a-f]{2})*$/i.test(s)) throw new KeyhopError(ErrorCodes.DECODE_INVALID, `${what} is not hex`);
  return new Uint8Array(Buffer.from(s, 'hex'));
};

function checkEnrollment(e: unknown): void {
  const r = e as Partial<EnrollmentRecord>;
  const routeOrNull = (v: unknown) => v === null || (typeof v === 'string' && v.length > 0);
  if (
    typeof r !== 'object' ||
    r === null ||
    typeof r.authority !== 'string' ||
    !/^([0-9a-f]{2})+$/i.test(r.authority) ||
    !routeOrNull(r.route) ||
    !routeOrNull(r.directory) ||
    (r.via !== 'ticket' && r.via !== 'x3dh') ||
    typeof r.at !== 'number'
  ) {
    throw new Error('its enrollment record is not one keyhop wrote');
  }
}

export class IdentityStore {
  readonly verifier = new SoftwareVerifier();
  private readonly vaults = new Map<string, Promise<OpenedVault>>();

  constructor(
    readonly home: string,
    readonly clock: Clock = systemClock,
    private readonly vaultOptions: OpenVaultOptions = {},
  ) {}

  private identityPath(name: string): string {
    return join(this.home, 'identities', `${name}.json`);
  }

  /**
   * Opens vault `name`: a hardware vault when it has a descriptor (vault-registry.ts), otherwise its
   * software key store. Only the default vault is created on first use; any other must exist.
   */
  async vault(name = DEFAULT_VAULT): Promise<SigningVault> {
    return (await this.openedVault(name)).vault;
  }

  private openedVault(name: string): Promise<OpenedVault> {
    checkName('vault', name);
    let v = this.vaults.get(name);
    if (!v) {
      v = openVault(this.home, name, this.vaultOptions);
      this.vaults.set(name, v);
      v.catch(() => this.vaults.delete(name));
    }
    return v;
  }

  /** Releases the devices of the hardware vaults this store opened. */
  async close(): Promise<void> {
    const opened = [...this.vaults.values()];
    this.vaults.clear();
    await Promise.all(opened.map((v) => v.then((o) => o.close()).catch(() => undefined)));
  }

  async create(
    name: string,
    options: { vault?: string; keyType?: SigningKeyType; keyId?: string } = {},
  ): Promise<StoredIdentity> {
    checkName('identity', name);
    if (await this.exists(name))
      throw new KeyhopError(ErrorCodes.IDENTITY_EXISTS, `identity "${name}" exists`);
    const vaultName = options.vault ?? DEFAULT_VAULT;
    const vault = await this.vault(vaultName);
    const local = await createIdentity({
      vault,
      verifier: this.verifier,
      clock: this.clock,
      // Hardware backends hold P-256 keys only; Ed25519 stays Ockam's default in software.
      keyType: options.keyType ?? (vault.backend === 'software' ? 'Ed25519' : 'P256'),
      ...(options.keyId !== undefined ? { keyId: options.keyId } : {}),
    });
    const file: IdentityFile = {
      version: 1,
      name,
      identifier: local.identity.identifier.toString(),
      vault: vaultName,
      keyId: local.keyId,
      changeHistory: hex(local.identity.export()),
      credentials: [],
    };
    await this.write(file);
    return { name, local, vault, credentials: [], file };
  }

  async exists(name: string): Promise<boolean> {
    return readFile(this.identityPath(name)).then(
      () => true,
      () => false,
    );
  }

  async list(): Promise<string[]> {
    const names = await readdir(join(this.home, 'identities')).catch(() => [] as string[]);
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .sort();
  }

  async load(name: string): Promise<StoredIdentity> {
    checkName('identity', name);
    let text: string;
    try {
      const buf = await readFile(this.identityPath(name));
      if (buf.length > MAX_FILE) throw new Error('file too large');
      text = buf.toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new KeyhopError(
          ErrorCodes.IDENTITY_NOT_FOUND,
          `no identity "${name}" (create it with: keyhop identity create ${name})`,
        );
      }
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `identity "${name}": ${describeError(e)}`);
    }
    let file: IdentityFile;
    try {
      file = JSON.parse(text) as IdentityFile;
      if (file.version !== 1 || typeof file.changeHistory !== 'string' || typeof file.keyId !== 'string') {
        throw new Error('unexpected content');
      }
      if (file.enrollment !== undefined) checkEnrollment(file.enrollment);
    } catch (e) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_CORRUPT,
        `identity file of "${name}" is damaged: ${describeError(e)}`,
      );
    }
    const vault = await this.vault(file.vault);
    const identity = Identity.import(unhex(file.changeHistory, 'change history'), {
      verifier: this.verifier,
      clock: null,
      expectedIdentifier: file.identifier,
    });
    const credentials = (file.credentials ?? []).map((c) =>
      decodeCredentialAndPurposeKey(unhex(c, 'credential')),
    );
    return { name, local: { identity, vault, keyId: file.keyId }, vault, credentials, file };
  }

  async rotate(name: string): Promise<StoredIdentity> {
    const stored = await this.load(name);
    const local = await rotateIdentity(stored.local, { verifier: this.verifier, clock: this.clock });
    // The issuer attestation names the old change: drop it, a new one is made on the next issue.
    const { issuer: _stale, ...rest } = stored.file;
    const file = { ...rest, keyId: local.keyId, changeHistory: hex(local.identity.export()) };
    await this.write(file);
    return { ...stored, local, file };
  }

  /**
   * Attaches a credential to an identity, to be presented in its handshakes. It must be about this
   * identity and not expired: anything else would only fail later, in a peer's log.
   */
  async addCredential(name: string, credential: CredentialAndPurposeKey): Promise<void> {
    const stored = await this.load(name);
    const data = openCredentialData(credential.credential.data);
    const subject = data.subject?.toString();
    if (subject !== stored.file.identifier) {
      throw new KeyhopError(
        ErrorCodes.CREDENTIAL_INVALID,
        `the credential is about ${subject ?? 'no subject'}, not about identity "${name}" (${stored.file.identifier})`,
      );
    }
    if (data.expiresAt <= this.clock.now()) {
      throw new KeyhopError(
        ErrorCodes.CREDENTIAL_EXPIRED,
        `the credential expired at ${new Date(data.expiresAt * 1000).toISOString()}: ask its authority for a new one`,
      );
    }
    const file = {
      ...stored.file,
      credentials: [...stored.file.credentials, hex(encodeCredentialAndPurposeKey(credential))],
    };
    await this.write(file);
  }

  /**
   * Keeps `credential` as the identity's credential from its issuer (replacing earlier ones from
   * the same issuer), and records the enrollment when given. Returns every credential now kept.
   */
  async keepCredential(
    name: string,
    credential: CredentialAndPurposeKey,
    enrollment?: EnrollmentRecord,
  ): Promise<CredentialAndPurposeKey[]> {
    const stored = await this.load(name);
    const issuer = issuerOf(credential);
    const kept = stored.credentials.filter((c) => issuerOf(c) !== issuer);
    kept.push(credential);
    await this.write({
      ...stored.file,
      credentials: kept.map((c) => hex(encodeCredentialAndPurposeKey(c))),
      ...(enrollment ? { enrollment } : {}),
    });
    return kept;
  }

  /** The identity as a credential issuer (its credential-signing key is created on first use). */
  async issuer(name: string): Promise<CredentialIssuer> {
    const stored = await this.load(name);
    if (stored.file.issuer) {
      const attestation = decodePurposeKeyAttestation(
        unhex(stored.file.issuer.attestation, 'issuer attestation'),
      );
      return {
        identity: stored.local.identity,
        attestation,
        attestationData: openPurposeKeyAttestationData(attestation.data),
        vault: stored.vault,
        keyId: stored.file.issuer.keyId,
      };
    }
    const issuer = await createCredentialIssuer(stored.local, {
      verifier: this.verifier,
      clock: this.clock,
      keyType: stored.vault.backend === 'software' ? 'Ed25519' : 'P256',
    });
    await this.write({
      ...stored.file,
      issuer: { keyId: issuer.keyId, attestation: hex(encodePurposeKeyAttestation(issuer.attestation)) },
    });
    return issuer;
  }

  async issue(
    issuerName: string,
    subject: string,
    attributes: Record<string, string>,
    ttlSeconds?: number,
  ): Promise<CredentialAndPurposeKey> {
    const issuer = await this.issuer(issuerName);
    return issueCredential(issuer, {
      subject,
      attributes,
      verifier: this.verifier,
      clock: this.clock,
      ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
    });
  }

  private async write(file: IdentityFile): Promise<void> {
    const dir = join(this.home, 'identities');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = this.identityPath(file.name);
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path);
  }
}
