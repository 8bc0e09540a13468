import { createHash } from 'node:crypto';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../runtime/errors.js';
import type { SigningKeyType } from '../provider.js';
import type { KeyId, SigningPublicKey, SigningVault } from '../vault.js';
import {
  isTpm2AddonError,
  loadTpm2Addon,
  type Tpm2Addon,
  type Tpm2Context,
  type Tpm2SessionInfo,
} from './native-tpm.js';
import { decodeRc, TPM_RC, tpmError, withTpmRetry } from './rc.js';

/**
 * What the vault remembers about one key. Everything here is public or TPM-wrapped: the private
 * blob is encrypted and integrity-protected by the TPM's storage primary and useless elsewhere.
 */
export interface TpmKeyRecord {
  /** 'sign' (ECDSA P-256) or 'ecdh' (ECDH P-256, ECDH_ZGen). */
  readonly kind: 'sign' | 'ecdh';
  /** Uncompressed public key 04 ‖ X ‖ Y, hex (65 bytes). */
  readonly publicKey: string;
  /** Marshalled TPM2B_PUBLIC, hex. */
  readonly publicBlob: string;
  /** Marshalled TPM2B_PRIVATE, hex. */
  readonly privateBlob: string;
  /** Where the key was persisted with EvictControl (0x81xxxxxx), when it was. */
  readonly persistentHandle?: number;
}

/** Where the vault keeps its key records (the TPM itself only stores persisted keys, by handle). */
export interface TpmKeyRecords {
  load(): Promise<Record<KeyId, TpmKeyRecord>>;
  save(records: Record<KeyId, TpmKeyRecord>): Promise<void>;
  /** Runs a read-modify-write so that no other process changes the records meanwhile. */
  exclusive?<T>(fn: () => Promise<T>): Promise<T>;
}

export function memoryTpmRecords(initial: Record<KeyId, TpmKeyRecord> = {}): TpmKeyRecords {
  let records = { ...initial };
  return {
    load: async () => ({ ...records }),
    save: async (next) => {
      records = { ...next };
    },
  };
}

export interface TpmVaultOptions {
  /**
   * TCTI configuration (Tss2_TctiLdr_Initialize syntax): `device:/dev/tpmrm0` on a board (the kernel
   * resource manager), `swtpm:host=127.0.0.1,port=2321` for a software TPM.
   */
  tcti: string;
  records?: TpmKeyRecords;
  /** EvictControl new keys into the owner's persistent handles (from `persistentBase`). */
  persist?: boolean;
  /** First persistent handle to use (default 0x81000100); the vault takes the first free one. */
  persistentBase?: number;
  /**
   * Salted HMAC session encrypting command/response parameters (default true). Only switch it off
   * to measure its cost.
   */
  paramEncryption?: boolean;
  /**
   * How many loaded keys stay in the TPM between operations (0..2, default 1). Without a resource
   * manager the TPM has 3 object slots: the storage primary, the cache, and one free for the next
   * Load (or a persistent key in use).
   */
  cacheSize?: number;
}

export const DEFAULT_PERSISTENT_BASE = 0x81000100;
/** How far above the base the vault looks for a free persistent handle. */
const PERSISTENT_RANGE = 0x100;
const KEY_ID = /^tpm-[0-9a-f]{16}$/;
const HEX = /^(?:[0-9a-f]{2})+$/;

/** Stable key id: `tpm-` + the first 16 hex digits of SHA-256 over the 65-byte public key. */
export function tpmKeyId(publicKey: Uint8Array): KeyId {
  return `tpm-${createHash('sha256').update(publicKey).digest('hex').slice(0, 16)}`;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const fmtHandle = (h: number) => `0x${h.toString(16)}`;

function checkRecord(keyId: string, r: unknown): TpmKeyRecord {
  const rec = r as Partial<TpmKeyRecord> | null;
  const ok =
    rec !== null &&
    typeof rec === 'object' &&
    (rec.kind === 'sign' || rec.kind === 'ecdh') &&
    typeof rec.publicKey === 'string' &&
    rec.publicKey.length === 130 &&
    rec.publicKey.startsWith('04') &&
    HEX.test(rec.publicKey) &&
    typeof rec.publicBlob === 'string' &&
    HEX.test(rec.publicBlob) &&
    typeof rec.privateBlob === 'string' &&
    HEX.test(rec.privateBlob) &&
    (rec.persistentHandle === undefined ||
      (Number.isInteger(rec.persistentHandle) &&
        rec.persistentHandle >= 0x81000000 &&
        rec.persistentHandle <= 0x81ffffff));
  if (!ok) throw new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `TPM key record ${keyId} is malformed`);
  return rec as TpmKeyRecord;
}

interface Loaded {
  readonly keyId: KeyId;
  readonly handle: number;
}

/**
 * The TPM 2.0 signing vault over tpm2-tss ESAPI (native/tpm2): P-256 keys created inside the TPM
 * under the owner hierarchy's storage primary, kept as TPM-wrapped blobs in the key records (and,
 * with `persist`, also in the TPM's NV at 0x81000100..), ECDSA over a host-computed SHA-256 digest,
 * ECDH (ECDH_ZGen) with separate ECDH keys, and the TPM's RNG. Command and response parameters
 * travel encrypted (salted HMAC session, AES-128-CFB) where the TPM allows it: the digest to Sign,
 * the point to and from ECDH_ZGen, the private blobs of Create/Load, the bytes of GetRandom.
 * Ed25519/X25519 are not TPM algorithms: generateSigningKey('Ed25519') is UNSUPPORTED.
 *
 * One ESAPI context per vault; every TPM call goes through one queue. Transient objects are flushed
 * after use (a cache of `cacheSize` loaded keys is flushed at close).
 */
export class TpmVault implements SigningVault {
  readonly backend = 'tpm';
  readonly #addon: Tpm2Addon;
  readonly #ctx: Tpm2Context;
  readonly #records: TpmKeyRecords;
  readonly #persist: boolean;
  readonly #persistentBase: number;
  readonly #cacheSize: number;
  /** Most recently used last. */
  #loaded: Loaded[] = [];
  /** ESYS_TRs of persistent keys this context looked up (they take no object slot). */
  readonly #persistentTr = new Map<number, number>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(addon: Tpm2Addon, ctx: Tpm2Context, options: TpmVaultOptions) {
    this.#addon = addon;
    this.#ctx = ctx;
    this.#records = options.records ?? memoryTpmRecords();
    this.#persist = options.persist === true;
    this.#persistentBase = options.persistentBase ?? DEFAULT_PERSISTENT_BASE;
    this.#cacheSize = options.cacheSize ?? 1;
  }

  /**
   * Connects to the TPM named by `tcti`, starts it if needed, creates the storage primary and the
   * parameter-encryption session. HARDWARE_UNAVAILABLE when the addon is missing or the TCTI cannot
   * reach a TPM.
   */
  static async open(options: TpmVaultOptions): Promise<TpmVault> {
    if (typeof options.tcti !== 'string' || options.tcti === '') {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'TPM vault needs a tcti such as device:/dev/tpmrm0');
    }
    const cacheSize = options.cacheSize ?? 1;
    if (!Number.isInteger(cacheSize) || cacheSize < 0 || cacheSize > 2) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `TPM vault cacheSize must be 0, 1 or 2 (got ${cacheSize})`,
      );
    }
    const base = options.persistentBase ?? DEFAULT_PERSISTENT_BASE;
    if (!Number.isInteger(base) || base < 0x81000000 || base + PERSISTENT_RANGE > 0x82000000) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `TPM persistentBase ${base} is not a 0x81xxxxxx handle`,
      );
    }
    const addon = loadTpm2Addon();
    let ctx: Tpm2Context;
    try {
      ctx = await withTpmRetry(
        () => addon.open(options.tcti, { paramEncryption: options.paramEncryption !== false }),
        rcOf,
      );
    } catch (e) {
      throw openError(options.tcti, e);
    }
    return new TpmVault(addon, ctx, options);
  }

  /** The TCTI this vault talks through. */
  get tcti(): string {
    return this.#ctx.tcti;
  }

  generateSigningKey(type: SigningKeyType): Promise<KeyId> {
    if (type !== 'P256') {
      return Promise.reject(
        new KeyhopError(
          ErrorCodes.UNSUPPORTED,
          `a TPM 2.0 holds NIST P-256 keys, not ${type} (TPMs implement no Curve25519/Ed25519)`,
        ),
      );
    }
    return this.#generate('sign');
  }

  /** A P-256 ECDH key (TPM keys are either signing or decryption keys, never both). */
  generateEcdhKey(): Promise<KeyId> {
    return this.#generate('ecdh');
  }

  async publicKey(keyId: KeyId): Promise<SigningPublicKey> {
    const rec = await this.#record(keyId);
    return { type: 'P256', bytes: new Uint8Array(Buffer.from(rec.publicKey, 'hex')) };
  }

  /** 'sign' or 'ecdh'. */
  async keyKind(keyId: KeyId): Promise<'sign' | 'ecdh'> {
    return (await this.#record(keyId)).kind;
  }

  /**
   * ECDSA P-256 over SHA-256(data): the host hashes, the TPM signs the digest; raw r ‖ s (64
   * bytes). Not verified here (the identity layer verifies every signature). S is not normalised:
   * verify with lowS off.
   */
  async sign(keyId: KeyId, data: Uint8Array): Promise<Uint8Array> {
    const digest = createHash('sha256').update(data).digest();
    return this.signDigest(keyId, digest);
  }

  /** ECDSA over a 32-byte digest the caller computed. */
  async signDigest(keyId: KeyId, digest: Uint8Array): Promise<Uint8Array> {
    if (digest.length !== 32)
      throw new KeyhopError(ErrorCodes.USAGE, 'TPM sign needs a 32-byte SHA-256 digest');
    const rec = await this.#record(keyId);
    if (rec.kind !== 'sign') throw new KeyhopError(ErrorCodes.KEY_INVALID, `TPM key ${keyId} is an ECDH key`);
    const sig = await this.#serial(() => this.#withKey(keyId, rec, 'sign', (h) => this.#ctx.sign(h, digest)));
    return new Uint8Array(sig);
  }

  /** ECDH on P-256 (ECDH_ZGen): the x-coordinate of the shared point; the private half stays put. */
  async ecdh(keyId: KeyId, peerPublicKey: Uint8Array): Promise<Uint8Array> {
    let xy = peerPublicKey;
    if (xy.length === 65 && xy[0] === 0x04) xy = xy.subarray(1);
    if (xy.length !== 64) {
      throw new KeyhopError(ErrorCodes.KEY_INVALID, 'ECDH peer key must be an uncompressed P-256 point');
    }
    const rec = await this.#record(keyId);
    if (rec.kind !== 'ecdh') {
      throw new KeyhopError(ErrorCodes.KEY_INVALID, `TPM key ${keyId} is a signing key, not an ECDH key`);
    }
    const x = xy.slice(0, 32);
    const y = xy.slice(32);
    const z = await this.#serial(() => this.#withKey(keyId, rec, 'ECDH', (h) => this.#ctx.ecdhZGen(h, x, y)));
    return new Uint8Array(z);
  }

  /** `length` bytes (0..65536) from the TPM's RNG, in GetRandom calls of up to 64 bytes. */
  async random(length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0 || length > 1 << 16) {
      throw new KeyhopError(ErrorCodes.USAGE, `random length ${length} is not 0..65536`);
    }
    const out = new Uint8Array(length);
    const max = this.#addon.limits.maxRandom;
    let at = 0;
    while (at < length) {
      const want = Math.min(max, length - at);
      const block = await this.#serial(() => this.#call('GetRandom', () => this.#ctx.getRandom(want)));
      if (block.length === 0)
        throw new KeyhopError(ErrorCodes.HARDWARE_FAULT, 'TPM GetRandom returned no bytes');
      out.set(block.subarray(0, want), at);
      at += Math.min(block.length, want);
    }
    return out;
  }

  /** Removes the key from the TPM's NV if it was persisted there, then forgets its record. */
  deleteKey(keyId: KeyId): Promise<void> {
    return this.#exclusive(async () => {
      const records = await this.#records.load();
      const raw = records[keyId];
      if (raw === undefined) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no TPM key ${keyId}`);
      const rec = checkRecord(keyId, raw);
      await this.#serial(async () => {
        await this.#unload(keyId);
        if (rec.persistentHandle !== undefined) await this.#evictPersistent(keyId, rec);
      });
      const { [keyId]: _gone, ...rest } = records;
      await this.#records.save(rest);
    });
  }

  async listKeys(): Promise<KeyId[]> {
    return Object.keys(await this.#records.load()).sort();
  }

  /** The key's record as stored (for `show` commands and tests). */
  async keyRecord(keyId: KeyId): Promise<TpmKeyRecord> {
    return { ...(await this.#record(keyId)) };
  }

  /** Diagnostics: whether parameter encryption is on and which session flags each command used. */
  sessionInfo(): Promise<Tpm2SessionInfo> {
    return this.#serial(() => this.#call('sessionInfo', () => this.#ctx.sessionInfo()));
  }

  /** Flushes every transient object, closes the session and the ESAPI context. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const run = this.#queue.then(async () => {
      for (const l of this.#loaded.splice(0)) await this.#ctx.flush(l.handle).catch(() => undefined);
      for (const tr of this.#persistentTr.values()) await this.#ctx.release(tr).catch(() => undefined);
      this.#persistentTr.clear();
      await this.#ctx.close();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  // ---- internals ----

  async #generate(kind: 'sign' | 'ecdh'): Promise<KeyId> {
    return this.#exclusive(async () => {
      const key = await this.#serial(() => this.#call('Create', () => this.#ctx.createKey(kind)));
      const pub = new Uint8Array(65);
      pub[0] = 0x04;
      pub.set(key.x, 1);
      pub.set(key.y, 33);
      const keyId = tpmKeyId(pub);
      let rec: TpmKeyRecord = {
        kind,
        publicKey: hex(pub),
        publicBlob: hex(key.publicBlob),
        privateBlob: hex(key.privateBlob),
      };
      const records = await this.#records.load();
      if (this.#persist) {
        const used = Object.values(records)
          .map((r) => r.persistentHandle)
          .filter((h): h is number => h !== undefined);
        const handle = await this.#serial(() => this.#persistNew(key.publicBlob, key.privateBlob, used));
        rec = { ...rec, persistentHandle: handle };
      }
      await this.#records.save({ ...records, [keyId]: rec });
      return keyId;
    });
  }

  /** EvictControl a new key into the first free persistent handle; returns the TPM handle. */
  async #persistNew(publicBlob: Uint8Array, privateBlob: Uint8Array, used: number[]): Promise<number> {
    const inTpm = await this.#call('GetCapability', () =>
      this.#ctx.persistentHandles(this.#persistentBase, PERSISTENT_RANGE),
    );
    const taken = new Set([...inTpm, ...used]);
    await this.#makeRoom(1);
    const h = await this.#call('Load', () => this.#ctx.load(publicBlob, privateBlob));
    try {
      for (let p = this.#persistentBase; p < this.#persistentBase + PERSISTENT_RANGE; p++) {
        if (taken.has(p)) continue;
        try {
          const tr = await this.#call('EvictControl', () => this.#ctx.evictControl(h, p));
          this.#persistentTr.set(p, tr);
          return p;
        } catch (e) {
          // Another process took it since we looked: try the next one.
          if (isKeyhopError(e) && /TPM_RC_NV_DEFINED/.test(e.message)) continue;
          throw e;
        }
      }
      throw new KeyhopError(
        ErrorCodes.HARDWARE_REFUSED,
        `no free persistent handle in ${fmtHandle(this.#persistentBase)}..${fmtHandle(this.#persistentBase + PERSISTENT_RANGE - 1)}`,
      );
    } finally {
      await this.#ctx.flush(h).catch(() => undefined);
    }
  }

  async #evictPersistent(keyId: KeyId, rec: TpmKeyRecord): Promise<void> {
    const p = rec.persistentHandle;
    if (p === undefined) return;
    const tr = await this.#persistentHandle(keyId, rec, p);
    if (tr === undefined) return; // already gone
    await this.#call('EvictControl', () => this.#ctx.evict(tr));
    this.#persistentTr.delete(p);
  }

  /**
   * The ESYS_TR of a persisted key, checked to hold this key's public key (another program may
   * have put something else there); undefined when nothing is at the handle any more.
   */
  async #persistentHandle(keyId: KeyId, rec: TpmKeyRecord, p: number): Promise<number | undefined> {
    const known = this.#persistentTr.get(p);
    if (known !== undefined) return known;
    let tr: number;
    try {
      tr = await this.#call('ReadPublic', () => this.#ctx.fromPersistent(p));
    } catch (e) {
      if (isKeyhopError(e, ErrorCodes.KEY_NOT_FOUND)) return undefined;
      throw e;
    }
    const pub = await this.#call('ReadPublic', () => this.#ctx.readPublic(tr));
    if (`04${hex(pub.x)}${hex(pub.y)}` !== rec.publicKey) {
      await this.#ctx.release(tr).catch(() => undefined);
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `TPM persistent handle ${fmtHandle(p)} of key ${keyId} holds a different key`,
      );
    }
    this.#persistentTr.set(p, tr);
    return tr;
  }

  /** Runs `op` with the key available in the TPM: persistent handle, cached, or loaded for it. */
  async #withKey<T>(
    keyId: KeyId,
    rec: TpmKeyRecord,
    what: string,
    op: (handle: number) => Promise<T>,
  ): Promise<T> {
    if (rec.persistentHandle !== undefined) {
      const tr = await this.#persistentHandle(keyId, rec, rec.persistentHandle);
      if (tr !== undefined) {
        // A persistent object is loaded into a slot for the command: keep one free.
        await this.#makeRoom(1);
        return this.#call(what, () => op(tr));
      }
      // Evicted behind our back: the wrapped blobs still work.
    }
    const cached = this.#loaded.findIndex((l) => l.keyId === keyId);
    if (cached >= 0) {
      const [l] = this.#loaded.splice(cached, 1);
      if (l !== undefined) {
        this.#loaded.push(l);
        return this.#call(what, () => op(l.handle));
      }
    }
    await this.#makeRoom(1);
    const handle = await this.#call('Load', () =>
      this.#ctx.load(Buffer.from(rec.publicBlob, 'hex'), Buffer.from(rec.privateBlob, 'hex')),
    );
    if (this.#cacheSize === 0) {
      try {
        return await this.#call(what, () => op(handle));
      } finally {
        await this.#ctx.flush(handle).catch(() => undefined);
      }
    }
    this.#loaded.push({ keyId, handle });
    await this.#makeRoom(0);
    return this.#call(what, () => op(handle));
  }

  /** Flushes least recently used keys until at most cacheSize - free stay loaded. */
  async #makeRoom(free: number): Promise<void> {
    while (this.#loaded.length > Math.max(0, this.#cacheSize - free)) {
      const l = this.#loaded.shift();
      if (l !== undefined) await this.#ctx.flush(l.handle).catch(() => undefined);
    }
  }

  async #unload(keyId: KeyId): Promise<void> {
    const i = this.#loaded.findIndex((l) => l.keyId === keyId);
    if (i < 0) return;
    const [l] = this.#loaded.splice(i, 1);
    if (l !== undefined) await this.#ctx.flush(l.handle).catch(() => undefined);
  }

  async #record(keyId: KeyId): Promise<TpmKeyRecord> {
    if (!KEY_ID.test(keyId)) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no TPM key ${keyId}`);
    const raw = (await this.#records.load())[keyId];
    if (raw === undefined) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no TPM key ${keyId}`);
    return checkRecord(keyId, raw);
  }

  /** One addon call with retries on RETRY/YIELDED/TESTING; failures become KeyhopErrors. */
  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withTpmRetry(fn, rcOf);
    } catch (e) {
      throw callError(what, e);
    }
  }

  /** Every TPM call goes through here: one ESAPI context does one thing at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, 'the TPM vault is closed'));
    }
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Record changes: exclusive against other processes when the records support it. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const exclusive = this.#records.exclusive?.bind(this.#records);
    return exclusive ? exclusive(fn) : fn();
  }
}

function rcOf(e: unknown): number | undefined {
  return isTpm2AddonError(e) && e.code === 'TPM2' && typeof e.rc === 'number' ? e.rc : undefined;
}

function callError(what: string, e: unknown): KeyhopError {
  if (isKeyhopError(e)) return e;
  if (isTpm2AddonError(e)) {
    if (e.code === 'CLOSED')
      return new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, 'the TPM vault is closed');
    if (e.code === 'EINVAL')
      return new KeyhopError(ErrorCodes.USAGE, `TPM ${what}: ${e.message}`, { cause: e });
    if (typeof e.rc === 'number') return tpmError(what, e.rc, e.decoded, e);
  }
  return new KeyhopError(ErrorCodes.HARDWARE_IO, `TPM ${what} failed: ${describeError(e)}`, { cause: e });
}

function openError(tcti: string, e: unknown): KeyhopError {
  if (isKeyhopError(e)) return e;
  if (isTpm2AddonError(e) && typeof e.rc === 'number') {
    const d = decodeRc(e.rc);
    if (e.where === 'Tss2_TctiLdr_Initialize' || e.where === 'Esys_Initialize' || d.layer === 'tcti') {
      return new KeyhopError(
        ErrorCodes.HARDWARE_UNAVAILABLE,
        `no TPM reachable through TCTI "${tcti}" (${e.where}: ${e.decoded ?? d.name}); on a board use ` +
          'device:/dev/tpmrm0 (enable the TPM overlay, add the user to group tss), for a software TPM ' +
          'swtpm:host=127.0.0.1,port=2321',
        { cause: e },
      );
    }
    if (d.base === TPM_RC.FAILURE) {
      return new KeyhopError(ErrorCodes.HARDWARE_FAULT, `the TPM at "${tcti}" is in failure mode`, {
        cause: e,
      });
    }
    return tpmError(`open (${e.where ?? 'ESAPI'})`, e.rc, e.decoded, e);
  }
  return callError('open', e);
}

/** Rates for a benchmark: `iterations` calls of each operation on one vault, one after another. */
export interface TpmOpTiming {
  readonly iterations: number;
  readonly opsPerSec: number;
  readonly medianMs: number;
}

/**
 * Times sign, ECDH and random(32) on `vault` (creating one key of each kind unless given). Each
 * call is awaited before the next, so this measures latency through the queue and the addon.
 */
export async function timeTpmOps(
  vault: TpmVault,
  options: { iterations?: number; signKey?: KeyId; ecdhKey?: KeyId; peerPublicKey: Uint8Array },
): Promise<{ sign: TpmOpTiming; ecdh: TpmOpTiming; random: TpmOpTiming }> {
  const n = options.iterations ?? 100;
  const signKey = options.signKey ?? (await vault.generateSigningKey('P256'));
  const ecdhKey = options.ecdhKey ?? (await vault.generateEcdhKey());
  const message = new TextEncoder().encode('keyhop tpm benchmark');
  const time = async (fn: () => Promise<unknown>): Promise<TpmOpTiming> => {
    await fn(); // warm: loads the key into the cache
    const samples: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await fn();
      samples.push(performance.now() - t);
    }
    const total = performance.now() - t0;
    samples.sort((a, b) => a - b);
    return { iterations: n, opsPerSec: (n * 1000) / total, medianMs: samples[Math.floor(n / 2)] ?? 0 };
  };
  return {
    sign: await time(() => vault.sign(signKey, message)),
    ecdh: await time(() => vault.ecdh(ecdhKey, options.peerPublicKey)),
    random: await time(() => vault.random(32)),
  };
}
