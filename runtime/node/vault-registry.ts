import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AllocatedKey, KeyAllocations } from '../../vaults/atecc608/atecc608-vault.js';
import { type AteccLinkSpec, checkLinkSpec } from '../../vaults/atecc608/link-spec.js';
import { SoftwareVault } from '../../vaults/software/software-vault.js';
import type { KeyId, SigningVault } from '../../vaults/vault.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import { processAlive } from '../state-lock.js';

/**
 * Vaults under KEYHOP_HOME/vaults/<name>/. A software vault is a key directory; a hardware vault
 * is a directory holding `vault.json`, which says which backend and device it is and which keys
 * keyhop made there (docs/vaults/). Opening a hardware vault opens its device lazily, on first use.
 */
export type VaultDescriptor =
  | { readonly version: 1; readonly backend: 'software' }
  | Atecc608Descriptor
  | TpmDescriptor
  | Pkcs11Descriptor;

export interface Atecc608Descriptor {
  readonly version: 1;
  readonly backend: 'atecc608';
  readonly link: AteccLinkSpec;
  /** Slots keyhop may generate keys in (default: every slot whose policy fits). */
  readonly slots?: readonly number[];
  readonly keys: Record<KeyId, AllocatedKey>;
}

export interface TpmDescriptor {
  readonly version: 1;
  readonly backend: 'tpm';
  /** TCTI configuration string: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, … */
  readonly tcti: string;
  /** Make new keys persistent in the TPM (EvictControl) instead of reloading them from blobs. */
  readonly persist?: boolean;
  /** The vault's key records (public/private blobs, handles); checked by the TPM vault itself. */
  readonly keys: Record<KeyId, unknown>;
}

export interface Pkcs11Descriptor {
  readonly version: 1;
  readonly backend: 'pkcs11';
  readonly module: string;
  /** Token label (never a slot number: slot numbers change). */
  readonly token: string;
  /** Where the user PIN comes from; the PIN itself is never stored here. */
  readonly pin: { readonly env: string } | { readonly file: string };
  readonly keyLabelPrefix?: string;
}

export const BACKENDS = ['software', 'atecc608', 'tpm', 'pkcs11'] as const;

export const DESCRIPTOR_FILE = 'vault.json';
const MAX_DESCRIPTOR = 64 * 1024;

export interface OpenedVault {
  readonly name: string;
  readonly backend: string;
  readonly vault: SigningVault;
  /** Releases the device (HID handle, serial port); a no-op for software vaults. */
  close(): Promise<void>;
}

export function vaultDir(home: string, name: string): string {
  return join(home, 'vaults', name);
}

export async function readDescriptor(home: string, name: string): Promise<VaultDescriptor | undefined> {
  const path = join(vaultDir(home, name), DESCRIPTOR_FILE);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `vault "${name}": ${describeError(e)}`);
  }
  if (buf.length > MAX_DESCRIPTOR) {
    throw new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `vault "${name}": ${DESCRIPTOR_FILE} is too large`);
  }
  return checkDescriptor(name, buf.toString('utf8'));
}

function checkDescriptor(name: string, text: string): VaultDescriptor {
  const corrupt = (why: string) =>
    new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `vault "${name}": ${DESCRIPTOR_FILE} ${why}`);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw corrupt('is not JSON');
  }
  if (typeof v !== 'object' || v === null || v.version !== 1) throw corrupt('has no version 1');
  if (v.backend === 'software') return { version: 1, backend: 'software' };
  if (v.backend === 'tpm') {
    if (typeof v.tcti !== 'string' || v.tcti === '' || v.tcti.length > 512)
      throw corrupt('has no TCTI string');
    if (typeof v.keys !== 'object' || v.keys === null || Array.isArray(v.keys)) throw corrupt('has no keys');
    return {
      version: 1,
      backend: 'tpm',
      tcti: v.tcti,
      ...(v.persist === true ? { persist: true } : {}),
      keys: v.keys as Record<KeyId, unknown>,
    };
  }
  if (v.backend === 'pkcs11') {
    if (typeof v.module !== 'string' || !v.module.startsWith('/'))
      throw corrupt('needs an absolute module path');
    if (typeof v.token !== 'string' || v.token === '' || v.token.length > 32)
      throw corrupt('needs a token label');
    const pin = v.pin as Record<string, unknown> | undefined;
    const pinSource =
      typeof pin?.env === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(pin.env)
        ? { env: pin.env }
        : typeof pin?.file === 'string' && pin.file.startsWith('/')
          ? { file: pin.file }
          : undefined;
    if (!pinSource) throw corrupt('needs pin.env (a variable name) or pin.file (an absolute path)');
    if (
      v.keyLabelPrefix !== undefined &&
      (typeof v.keyLabelPrefix !== 'string' || v.keyLabelPrefix.length > 16)
    ) {
      throw corrupt('has a bad keyLabelPrefix');
    }
    return {
      version: 1,
      backend: 'pkcs11',
      module: v.module,
      token: v.token,
      pin: pinSource,
      ...(typeof v.keyLabelPrefix === 'string' ? { keyLabelPrefix: v.keyLabelPrefix } : {}),
    };
  }
  if (v.backend !== 'atecc608') throw corrupt(`names an unknown backend ${JSON.stringify(v.backend)}`);
  const link = checkLinkSpec(v.link);
  const keys: Record<KeyId, AllocatedKey> = {};
  if (typeof v.keys !== 'object' || v.keys === null) throw corrupt('has no keys');
  for (const [id, k] of Object.entries(v.keys as Record<string, unknown>)) {
    const key = k as Record<string, unknown>;
    if (
      !/^slot([0-9]|1[0-5])$/.test(id) ||
      typeof key !== 'object' ||
      key === null ||
      key.slot !== Number(id.slice(4)) ||
      typeof key.publicKey !== 'string' ||
      !/^[0-9a-f]{128}$/.test(key.publicKey)
    ) {
      throw corrupt(`has a malformed key ${id}`);
    }
    keys[id] = { slot: key.slot as number, publicKey: key.publicKey };
  }
  let slots: number[] | undefined;
  if (v.slots !== undefined) {
    if (!Array.isArray(v.slots) || !v.slots.every((s) => Number.isInteger(s) && s >= 0 && s <= 15)) {
      throw corrupt('has malformed slots');
    }
    slots = v.slots as number[];
  }
  return { version: 1, backend: 'atecc608', link, keys, ...(slots ? { slots } : {}) };
}

export async function writeDescriptor(home: string, name: string, d: VaultDescriptor): Promise<void> {
  const dir = vaultDir(home, name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, DESCRIPTOR_FILE);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(d, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/** The vault identities use when none is named; created on first use, the only vault that is. */
export const DEFAULT_VAULT = 'default';
/** Where a software vault's passphrase comes from (never the command line). */
export const PASSPHRASE_ENV = 'KEYHOP_VAULT_PASSPHRASE';

const VAULT_NAME = /^[A-Za-z0-9_-]{1,64}$/;

function passphraseFromEnv(): string | undefined {
  const p = process.env[PASSPHRASE_ENV];
  return p === undefined || p === '' ? undefined : p;
}

/** A vault as `vault list` shows it. */
export interface VaultSummary {
  readonly name: string;
  readonly backend: string;
  /** Software vaults: whether private keys are encrypted at rest (undefined: not readable). */
  readonly encrypted?: boolean;
}

/** The vaults under `home`: hardware descriptors and software key stores, by name. */
export async function listVaults(home: string): Promise<VaultSummary[]> {
  const names = (await readdir(join(home, 'vaults')).catch(() => [] as string[]))
    .filter((n) => VAULT_NAME.test(n))
    .sort();
  const out: VaultSummary[] = [];
  for (const name of names) {
    const descriptor = await readDescriptor(home, name).catch(() => undefined);
    if (descriptor !== undefined && descriptor.backend !== 'software') {
      out.push({ name, backend: descriptor.backend });
      continue;
    }
    const encrypted = await softwareStoreEncryption(vaultDir(home, name));
    if (encrypted !== null)
      out.push({ name, backend: 'software', ...(encrypted === undefined ? {} : { encrypted }) });
  }
  return out;
}

/** Whether the key store at `dir` is encrypted; null when it is no key store; undefined if unreadable. */
async function softwareStoreEncryption(dir: string): Promise<boolean | undefined | null> {
  try {
    const store = await SoftwareVault.open({ dir });
    const encrypted = store.encrypted;
    await store.close();
    return encrypted;
  } catch (e) {
    if (isKeyhopError(e, ErrorCodes.VAULT_NOT_FOUND)) return null;
    return undefined;
  }
}

/** The backend of vault `name`, or undefined when there is no such vault. */
export async function vaultBackend(home: string, name: string): Promise<string | undefined> {
  const descriptor = await readDescriptor(home, name);
  if (descriptor !== undefined) return descriptor.backend;
  return (await softwareStoreEncryption(vaultDir(home, name))) === null ? undefined : 'software';
}

function vaultExistsError(name: string, backend: string): KeyhopError {
  return new KeyhopError(ErrorCodes.VAULT_EXISTS, `vault "${name}" already exists (${backend})`);
}

async function notFound(home: string, name: string): Promise<KeyhopError> {
  const known = await listVaults(home);
  const list =
    known.length === 0
      ? 'there are no vaults yet'
      : `vaults here: ${known.map((v) => `${v.name} (${v.backend}${v.encrypted ? ', encrypted' : ''})`).join(', ')}`;
  return new KeyhopError(
    ErrorCodes.VAULT_NOT_FOUND,
    `no vault "${name}" (${list}); create it with: keyhop vault create ${name}`,
  );
}

/**
 * Creates software vault `name`: encrypted at rest when KEYHOP_VAULT_PASSPHRASE is set, for good
 * (`vault encrypt` is the only change, from clear to encrypted). VAULT_EXISTS if the name is taken.
 */
export async function createSoftwareVault(home: string, name: string): Promise<{ encrypted: boolean }> {
  const existing = await vaultBackend(home, name);
  if (existing !== undefined) throw vaultExistsError(name, existing);
  const passphrase = passphraseFromEnv();
  const vault = await SoftwareVault.create({
    dir: vaultDir(home, name),
    ...(passphrase ? { passphrase } : {}),
  });
  await vault.close();
  return { encrypted: passphrase !== undefined };
}

/** Encrypts software vault `name`, made in clear, under KEYHOP_VAULT_PASSPHRASE; returns the keys rewritten. */
export async function encryptSoftwareVault(home: string, name: string): Promise<number> {
  const passphrase = passphraseFromEnv();
  if (passphrase === undefined) {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `set ${PASSPHRASE_ENV} to the new passphrase first (never on the command line)`,
    );
  }
  const descriptor = await readDescriptor(home, name);
  if (descriptor !== undefined && descriptor.backend !== 'software') {
    throw new KeyhopError(
      ErrorCodes.USAGE,
      `vault "${name}" is a ${descriptor.backend} vault: its keys never leave the device`,
    );
  }
  let vault: SoftwareVault;
  try {
    vault = await SoftwareVault.open({ dir: vaultDir(home, name) });
  } catch (e) {
    if (isKeyhopError(e, ErrorCodes.VAULT_NOT_FOUND)) throw await notFound(home, name);
    throw e;
  }
  try {
    return await vault.encryptAtRest(passphrase);
  } catch (e) {
    if (isKeyhopError(e, ErrorCodes.KEY_STORE_LOCKED)) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_LOCKED,
        `vault "${name}" is already encrypted under another passphrase than ${PASSPHRASE_ENV}`,
      );
    }
    throw e;
  } finally {
    await vault.close();
  }
}

export interface OpenVaultOptions {
  /** Told when the default vault was created by this open (first use). */
  readonly onCreated?: (info: { name: string; encrypted: boolean }) => void;
}

/**
 * Opens vault `name`: its descriptor's backend, or its software key directory. A name that is
 * neither is VAULT_NOT_FOUND listing the vaults there are, except `default`, which is created on
 * first use (encrypted when KEYHOP_VAULT_PASSPHRASE is set; `onCreated` is told). A software vault
 * created encrypted needs KEYHOP_VAULT_PASSPHRASE for its private keys and never stores one in
 * clear; one created in clear refuses the variable rather than mix clear and encrypted keys.
 */
export async function openVault(
  home: string,
  name: string,
  options: OpenVaultOptions = {},
): Promise<OpenedVault> {
  const descriptor = await readDescriptor(home, name);
  if (descriptor === undefined || descriptor.backend === 'software') {
    const vault = await openSoftwareVault(home, name, options);
    return { name, backend: 'software', vault, close: async () => vault.close() };
  }
  const open = (): Promise<OpenedVault> => {
    switch (descriptor.backend) {
      case 'atecc608':
        return openAtecc608Vault(home, name, descriptor);
      case 'tpm':
        return openTpmVault(home, name, descriptor);
      case 'pkcs11':
        return openPkcs11Vault(name, descriptor);
    }
  };
  return lazily(name, descriptor.backend, open);
}

async function openSoftwareVault(
  home: string,
  name: string,
  options: OpenVaultOptions,
): Promise<SoftwareVault> {
  const passphrase = passphraseFromEnv();
  const dir = vaultDir(home, name);
  const common = {
    dir,
    ...(passphrase ? { passphrase } : {}),
    lockedHint: `set ${PASSPHRASE_ENV} to the passphrase of vault "${name}" (keyhop never stores its keys in clear)`,
  };
  try {
    return await SoftwareVault.open(common);
  } catch (e) {
    if (isKeyhopError(e, ErrorCodes.VAULT_NOT_FOUND)) {
      if (name !== DEFAULT_VAULT) throw await notFound(home, name);
      try {
        const created = await SoftwareVault.create(common);
        options.onCreated?.({ name, encrypted: passphrase !== undefined });
        return created;
      } catch (c) {
        // Another process created it first: open what it made.
        if (isKeyhopError(c, ErrorCodes.VAULT_EXISTS)) return SoftwareVault.open(common);
        throw c;
      }
    }
    if (isKeyhopError(e, ErrorCodes.CONFIG_INVALID) && passphrase !== undefined) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `vault "${name}" keeps its keys in clear (it was created without a passphrase), but ${PASSPHRASE_ENV} is set: encrypt it with keyhop vault encrypt ${name}, or unset ${PASSPHRASE_ENV}`,
      );
    }
    if (isKeyhopError(e, ErrorCodes.KEY_STORE_LOCKED)) {
      throw new KeyhopError(
        ErrorCodes.KEY_STORE_LOCKED,
        `wrong passphrase for vault "${name}" (${PASSPHRASE_ENV})`,
      );
    }
    throw e;
  }
}

/**
 * A hardware vault that reaches its device only when a key is used: showing an identity, or
 * loading an authority's change history, must not need the chip (a TPM behind swtpm serves one
 * client at a time; a token may sit in another process's session; a kit may be unplugged).
 */
function lazily(name: string, backend: string, open: () => Promise<OpenedVault>): OpenedVault {
  let opened: Promise<OpenedVault> | undefined;
  const device = (): Promise<SigningVault> => {
    if (opened === undefined) {
      const attempt = open();
      opened = attempt;
      // A failed open (device unplugged, wrong PIN) is tried again on the next use.
      attempt.catch(() => {
        if (opened === attempt) opened = undefined;
      });
    }
    return opened.then((o) => o.vault);
  };
  const vault: SigningVault = {
    backend,
    generateSigningKey: async (type) => (await device()).generateSigningKey(type),
    publicKey: async (keyId) => (await device()).publicKey(keyId),
    sign: async (keyId, data) => (await device()).sign(keyId, data),
    deleteKey: async (keyId) => (await device()).deleteKey(keyId),
    listKeys: async () => (await device()).listKeys(),
  };
  return {
    name,
    backend,
    vault,
    close: async () => {
      const o = opened;
      opened = undefined;
      if (o) await o.then((v) => v.close()).catch(() => undefined);
    },
  };
}

/**
 * Key records kept in the descriptor's `keys`, re-read on every load so processes see each other's
 * keys, and changed under the descriptor lock.
 */
function descriptorRecords<T>(home: string, name: string, backend: 'atecc608' | 'tpm') {
  return {
    load: async (): Promise<Record<KeyId, T>> => {
      const d = await readDescriptor(home, name);
      return d?.backend === backend ? { ...(d.keys as Record<KeyId, T>) } : {};
    },
    save: async (keys: Record<KeyId, T>): Promise<void> => {
      const d = await readDescriptor(home, name);
      if (d?.backend !== backend) {
        throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `vault "${name}" lost its ${DESCRIPTOR_FILE}`);
      }
      await writeDescriptor(home, name, { ...d, keys } as VaultDescriptor);
    },
    exclusive: <R>(fn: () => Promise<R>): Promise<R> => withDescriptorLock(home, name, fn),
  };
}

async function openTpmVault(home: string, name: string, d: TpmDescriptor): Promise<OpenedVault> {
  const { TpmVault } = await import('../../vaults/tpm/tpm-vault.js');
  const vault = await TpmVault.open({
    tcti: d.tcti,
    records: descriptorRecords(home, name, 'tpm') as never,
    ...(d.persist ? { persist: true } : {}),
  });
  return { name, backend: 'tpm', vault, close: () => vault.close() };
}

async function openPkcs11Vault(name: string, d: Pkcs11Descriptor): Promise<OpenedVault> {
  const { Pkcs11Vault } = await import('../../vaults/pkcs11/pkcs11-vault.js');
  const vault = await Pkcs11Vault.open({
    module: d.module,
    token: d.token,
    pin: d.pin,
    ...(d.keyLabelPrefix ? { keyLabelPrefix: d.keyLabelPrefix } : {}),
  });
  return { name, backend: 'pkcs11', vault, close: () => vault.close() };
}

async function openAtecc608Vault(
  home: string,
  name: string,
  descriptor: Atecc608Descriptor,
): Promise<OpenedVault> {
  const [{ Atecc608Vault }, { Atecc608 }, { openAteccLink }] = await Promise.all([
    import('../../vaults/atecc608/atecc608-vault.js'),
    import('../../vaults/atecc608/device.js'),
    import('../../vaults/atecc608/link-spec.js'),
  ]);
  const link = await openAteccLink(descriptor.link);
  const allocations: KeyAllocations = descriptorRecords<AllocatedKey>(home, name, 'atecc608');
  const vault = new Atecc608Vault(new Atecc608(link), {
    allocations,
    ...(descriptor.slots ? { slots: descriptor.slots } : {}),
  });
  return { name, backend: 'atecc608', vault, close: () => link.close() };
}

/**
 * Records a provisioned ATECC608 as vault `name` after checking it answers and has slots keyhop can
 * generate keys in. An existing vault of that name is never replaced.
 */
export async function createAtecc608Vault(home: string, name: string, link: AteccLinkSpec): Promise<void> {
  const existing = await vaultBackend(home, name);
  if (existing !== undefined) throw vaultExistsError(name, existing);
  const [{ Atecc608 }, { openAteccLink }, { keySlotsOf }] = await Promise.all([
    import('../../vaults/atecc608/device.js'),
    import('../../vaults/atecc608/link-spec.js'),
    import('../../vaults/atecc608/atecc608-vault.js'),
  ]);
  const opened = await openAteccLink(link);
  try {
    const cfg = await new Atecc608(opened).config();
    if (!cfg.configLocked || !cfg.dataLocked || keySlotsOf(cfg).length === 0) {
      throw new KeyhopError(
        ErrorCodes.PROVISION_REFUSED,
        `the ATECC608 at ${opened.location} is not provisioned for keyhop (config ${cfg.configLocked ? 'locked' : 'unlocked'}, data ${cfg.dataLocked ? 'locked' : 'unlocked'}, ${keySlotsOf(cfg).length} key slots): run keyhop atecc608 provision first`,
      );
    }
  } finally {
    await opened.close().catch(() => undefined);
  }
  await writeDescriptor(home, name, { version: 1, backend: 'atecc608', link, keys: {} });
}

const LOCK_WAIT_MS = 30_000;
/** A lock directory without a pid this old was left by a process that died right after making it. */
const ORPHAN_LOCK_MS = 5_000;

/**
 * Runs `fn` holding `vaults/<name>/vault.json.lock`, a directory (mkdir is atomic) holding the
 * owner's pid. A lock whose owner is no longer running is taken over; one held longer than
 * LOCK_WAIT_MS by a live process fails with TIMEOUT rather than waiting forever.
 */
export async function withDescriptorLock<T>(home: string, name: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(vaultDir(home, name), `${DESCRIPTOR_FILE}.lock`);
  const owner = join(lock, 'pid');
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(owner, String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `vault "${name}": cannot lock: ${describeError(e)}`);
      }
    }
    const pid = Number(await readFile(owner, 'utf8').catch(() => ''));
    const known = Number.isInteger(pid) && pid > 0;
    // No pid: a holder between its mkdir and its pid write (milliseconds), or one that died
    // there; only the second leaves a lock this old.
    const orphan =
      !known &&
      Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now()) > ORPHAN_LOCK_MS;
    if ((known && !processAlive(pid)) || orphan) {
      await rm(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new KeyhopError(
        ErrorCodes.TIMEOUT,
        `vault "${name}" is locked by process ${pid || '?'} (${lock})`,
      );
    }
    await sleep(20);
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/**
 * Records a TPM or a PKCS#11 token as vault `name` after opening it once (the TCTI answers; the
 * module loads, the token exists and the PIN logs in), so a mistake shows up now rather than at
 * the first signature. An existing vault of that name is never replaced.
 */
export async function createHardwareVault(
  home: string,
  name: string,
  descriptor: TpmDescriptor | Pkcs11Descriptor,
): Promise<void> {
  const existing = await vaultBackend(home, name);
  if (existing !== undefined) throw vaultExistsError(name, existing);
  const opened =
    descriptor.backend === 'tpm'
      ? await openTpmVault(home, name, descriptor)
      : await openPkcs11Vault(name, descriptor);
  await opened.close();
  await writeDescriptor(home, name, descriptor);
}
