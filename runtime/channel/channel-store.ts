import { closeSync, fdatasync, openSync, writeSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CryptoProvider } from '../../vaults/provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { fromHex, toHex } from '../../vaults/software/store-header.js';
import { SealedFile } from '../enrollment/sealed-file.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { acquireLock } from '../state-lock.js';

/**
 * What a secure channel that outlives its process keeps (docs/protocols/channel-store.md): its
 * addresses, its peer's presentation (verified again on restore), the way to the peer in portable
 * form, and the data ciphers' state. Byte strings are hex, 64-bit numbers decimal strings.
 */
export interface StoredChannel {
  /** The channel's encryptor address: its name here and in the store. */
  id: string;
  role: 'initiator' | 'responder';
  remote: string;
  internal: string;
  /** Responder: the listener that accepted it (its exposure applies again). */
  listener?: string;
  /** Local workers that may receive decrypted messages (those that sent through the channel). */
  consumers: string[];
  /** The way to the peer's channel end, transport workers replaced by transport addresses. */
  route: string;
  handshakeHash: string;
  peer: {
    identifier: string;
    staticKey: string;
    /** The handshake payload it presented, and its latest RefreshCredentials, verified again on restore. */
    presentation: string;
    refresh?: { changeHistory: string; credentials: string[] };
  };
  /**
   * `key` is the key of `nonce`'s bucket, `nonce` the next nonce when this was written, `resumeAt`
   * where a restored encryptor goes on: the end of the block of nonces reserved (or `nonce` itself
   * after a clean stop), so no nonce is ever used twice, whatever the crash.
   */
  encryptor: { key: string; nonce: string; resumeAt: string; rekeying: boolean };
  decryptor: {
    rekeying: boolean;
    /** `seen`: the window's bit field, hex. */
    window: { size: number; highest: string; seen: string };
    bucket: string;
    keys: [string, string][];
  };
  createdAt: number;
}

type Entry = StoredChannel | { id: string; removed: true };

const MAGIC = new TextEncoder().encode('KHCS');
const VERSION = 1;
const SALT = 32;
const HEADER = MAGIC.length + 1 + SALT;
const TAG = 16;
/** A stored channel is a few hundred bytes; anything near this is not one of ours. */
export const MAX_RECORD = 64 * 1024;
const INFO = new TextEncoder().encode('keyhop channel store v1');
const COMPACT_MIN = 1024 * 1024;
const datasync = promisify(fdatasync);

export interface ChannelStoreOptions {
  /** Seals the store's key (scrypt, as the key store); without it the key is kept in clear, as a vault without one. */
  passphrase?: string;
  /** fsync every written batch (survives power loss, not only a crashed process). Default true. */
  fsync?: boolean;
  provider?: CryptoProvider;
  log?: Logger;
  /** Named in the lock, so a second process is told who holds the store. */
  node?: string;
}

/**
 * The sealed, append-only file of a node's persistent secure channels, in `dir`:
 * - `key.json`: a random 32-byte master key in a SealedFile (sealed with the vault passphrase);
 * - `channels.log`: `KHCS` ‖ version ‖ salt(32), then records `length u32 BE ‖ AES-256-GCM(k, n, ad, json)`
 *   with k = HKDF-SHA256(salt, master, "keyhop channel store v1") and n = 0⁴ ‖ u64 record index, so
 *   no nonce repeats under one key: the file is rewritten with a fresh salt at every open (after a
 *   crash, a torn last record is never followed by another under its nonce) and when it grows.
 * Saves are grouped: every save of one turn of the event loop is written (and fsynced) together,
 * the latest state of each channel once.
 */
export class ChannelStore {
  private readonly live = new Map<string, { entry: StoredChannel; bytes: number }>();
  private pending = new Map<string, Entry>();
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private size = 0;
  private index = 0n;
  private key: Uint8Array = new Uint8Array(0);
  private salt: Uint8Array = new Uint8Array(0);
  /** The open log (writes are small and synchronous; only fdatasync goes to the thread pool). */
  private fd = -1;
  /** Bytes of the latest record of each live channel. */
  private liveTotal = 0;
  private rewriting = false;

  private constructor(
    private readonly path: string,
    private readonly master: Uint8Array,
    private readonly provider: CryptoProvider,
    private readonly fsync: boolean,
    private readonly log: Logger,
    private readonly release: () => Promise<void>,
  ) {}

  static async open(dir: string, options: ChannelStoreOptions = {}): Promise<ChannelStore> {
    const log = options.log ?? silentLogger;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const release = await acquireLock(join(dir, 'lock'), `channel store ${dir}`, options.node ?? null);
    try {
      const master = await masterKey(join(dir, 'key.json'), options.passphrase);
      const store = new ChannelStore(
        join(dir, 'channels.log'),
        master,
        options.provider ?? nodeCrypto,
        options.fsync ?? true,
        log,
        release,
      );
      await store.load();
      await store.rewrite();
      return store;
    } catch (e) {
      await release();
      throw e;
    }
  }

  /** The channels stored when the store was opened. */
  channels(): StoredChannel[] {
    return [...this.live.values()].map((l) => l.entry);
  }

  /** Resolves once `channel`'s state (or a later one) is on disk. */
  save(channel: StoredChannel): Promise<void> {
    return this.enqueue(channel);
  }

  /** Resolves once the channel is gone from the store (a later open does not restore it). */
  remove(id: string): Promise<void> {
    return this.enqueue({ id, removed: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushNow();
    this.closed = true;
    await this.chain;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.key.fill(0);
    this.master.fill(0);
    await this.release();
  }

  private enqueue(entry: Entry): Promise<void> {
    if (this.closed) {
      return Promise.reject(new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'the channel store is closed'));
    }
    // Without fsync a write is all there is to wait for: done now, unless a rewrite is under way.
    if (!this.fsync && !this.rewriting && this.pending.size === 0) {
      try {
        this.append([entry]);
      } catch (e) {
        return Promise.reject(this.writeError(e));
      }
      if (!this.large()) return Promise.resolve();
      const run = this.chain.then(() => this.compactIfLarge());
      this.chain = run.catch(() => undefined);
      return run;
    }
    this.pending.set(entry.id, entry);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flushNow());
    }
    return done;
  }

  private flushNow(): Promise<void> {
    this.scheduled = false;
    const batch = this.pending;
    const waiters = this.waiters;
    this.pending = new Map();
    this.waiters = [];
    const run = this.chain.then(async () => {
      if (batch.size === 0) return;
      this.append([...batch.values()]);
      if (this.fsync) await datasync(this.fd);
      await this.compactIfLarge();
    });
    this.chain = run.catch(() => undefined);
    return run.then(
      () => {
        for (const w of waiters) w.resolve();
      },
      (e: unknown) => {
        const err = this.writeError(e);
        for (const w of waiters) w.reject(err);
      },
    );
  }

  private writeError(e: unknown): KeyhopError {
    const err = isKeyhopError(e)
      ? e
      : new KeyhopError(ErrorCodes.KEY_STORE_IO, `cannot write ${this.path}: ${describeError(e)}`, {
          cause: e,
        });
    this.log.error({ path: this.path, err: err.message }, 'channel store write failed');
    return err;
  }

  private large(): boolean {
    return this.size > COMPACT_MIN && this.size > 4 * this.liveBytes();
  }

  private async compactIfLarge(): Promise<void> {
    if (this.rewriting || !this.large()) return;
    this.rewriting = true;
    try {
      await this.rewrite();
    } finally {
      this.rewriting = false;
    }
  }

  private liveBytes(): number {
    return HEADER + this.liveTotal;
  }

  private setLive(id: string, entry: StoredChannel | undefined, bytes = 0): void {
    this.liveTotal -= this.live.get(id)?.bytes ?? 0;
    if (entry === undefined) {
      this.live.delete(id);
      return;
    }
    this.live.set(id, { entry, bytes });
    this.liveTotal += bytes;
  }

  private seal(entry: Entry): Uint8Array {
    const plain = new TextEncoder().encode(JSON.stringify(entry));
    if (plain.length + TAG > MAX_RECORD) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `stored channel ${entry.id} exceeds ${MAX_RECORD} bytes`,
      );
    }
    const n = this.index++;
    const sealed = this.provider.aeadEncrypt('AESGCM', this.key, nonceOf(n), adOf(n), plain);
    plain.fill(0);
    const out = new Uint8Array(4 + sealed.length);
    new DataView(out.buffer).setUint32(0, sealed.length, false);
    out.set(sealed, 4);
    return out;
  }

  private append(entries: Entry[]): void {
    const records = entries.map((e) => this.seal(e));
    const buf = Buffer.concat(records);
    let at = 0;
    while (at < buf.length) at += writeSync(this.fd, buf, at, buf.length - at, this.size + at);
    this.size += buf.length;
    entries.forEach((e, i) => {
      this.setLive(e.id, 'removed' in e ? undefined : e, records[i]!.length);
    });
  }

  /** Writes the live channels to a new file under a fresh salt, then renames it over the old one. */
  private async rewrite(): Promise<void> {
    this.key.fill(0);
    this.salt = this.provider.randomBytes(SALT);
    this.key = this.provider.hkdfSha256(this.salt, this.master, INFO, 32);
    this.index = 0n;
    const header = new Uint8Array(HEADER);
    header.set(MAGIC, 0);
    header[MAGIC.length] = VERSION;
    header.set(this.salt, MAGIC.length + 1);
    const entries = [...this.live.values()].map((l) => l.entry);
    const records = entries.map((e) => this.seal(e));
    const tmp = `${this.path}.tmp`;
    const h = await open(tmp, 'w', 0o600);
    try {
      const buf = Buffer.concat([header, ...records]);
      await h.write(buf, 0, buf.length, 0);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, this.path);
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = openSync(this.path, 'r+');
    this.size = HEADER + records.reduce((s, r) => s + r.length, 0);
    entries.forEach((e, i) => {
      this.setLive(e.id, e, records[i]!.length);
    });
  }

  private async load(): Promise<void> {
    let data: Buffer;
    try {
      const h = await open(this.path, 'r');
      try {
        data = await h.readFile();
      } finally {
        await h.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `cannot read ${this.path}: ${describeError(e)}`, {
        cause: e,
      });
    }
    const corrupt = (why: string) =>
      new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `${this.path} is corrupt: ${why}`);
    if (data.length < HEADER) {
      // A crash while the file was first written: nothing was stored yet.
      if (data.length === 0) return;
      throw corrupt('shorter than its header');
    }
    if (!Buffer.from(MAGIC).equals(data.subarray(0, MAGIC.length)) || data[MAGIC.length] !== VERSION)
      throw corrupt('not a keyhop channel store');
    const key = this.provider.hkdfSha256(data.subarray(MAGIC.length + 1, HEADER), this.master, INFO, 32);
    let at = HEADER;
    let n = 0n;
    try {
      while (at < data.length) {
        const torn = (why: string) => {
          this.log.warn(
            { path: this.path, bytes: data.length - at, why },
            'channel store ended in an incomplete record (a crash while writing): cut',
          );
        };
        if (at + 4 > data.length) {
          torn('length cut short');
          break;
        }
        const length = data.readUInt32BE(at);
        if (length < TAG || length > MAX_RECORD) {
          // A file system may leave zeros where a crash cut a write short.
          if (data.subarray(at).every((x) => x === 0)) {
            torn('zeros after the last record');
            break;
          }
          throw corrupt(`record ${n} claims ${length} bytes`);
        }
        if (at + 4 + length > data.length) {
          torn('record cut short');
          break;
        }
        let plain: Uint8Array;
        try {
          plain = this.provider.aeadDecrypt(
            'AESGCM',
            key,
            nonceOf(n),
            adOf(n),
            data.subarray(at + 4, at + 4 + length),
          );
        } catch {
          // The last record may be a write the crash left half on disk; one in the middle is damage.
          if (at + 4 + length === data.length) {
            torn('last record does not authenticate');
            break;
          }
          throw corrupt(`record ${n} does not authenticate (damaged, or another store's key)`);
        }
        const entry = parseEntry(plain, corrupt);
        plain.fill(0);
        this.setLive(entry.id, 'removed' in entry ? undefined : entry, 4 + length);
        at += 4 + length;
        n++;
      }
    } finally {
      key.fill(0);
    }
  }
}

function nonceOf(n: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n, false);
  return nonce;
}

function adOf(n: bigint): Uint8Array {
  const ad = new Uint8Array(MAGIC.length + 8);
  ad.set(MAGIC, 0);
  new DataView(ad.buffer).setBigUint64(MAGIC.length, n, false);
  return ad;
}

async function masterKey(path: string, passphrase: string | undefined): Promise<Uint8Array> {
  const check = (c: unknown): { key: string } => {
    const key = (c as { key?: unknown } | null)?.key;
    if (typeof key !== 'string' || fromHex(key)?.length !== 32) throw new Error('no 32-byte key');
    return { key };
  };
  try {
    const { file, content } = await SealedFile.open(
      path,
      passphrase,
      check,
      ' (set KEYHOP_VAULT_PASSPHRASE: the channel store is sealed with the vault passphrase)',
    );
    file.close();
    return fromHex(content.key)!;
  } catch (e) {
    if (!isKeyhopError(e, ErrorCodes.VAULT_NOT_FOUND)) throw e;
  }
  const key = nodeCrypto.randomBytes(32);
  const file = await SealedFile.create(path, { key: toHex(key) }, passphrase);
  file.close();
  return key;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isHex = (v: unknown): v is string => isStr(v) && fromHex(v) !== undefined;
const isDec = (v: unknown): v is string => isStr(v) && /^-?[0-9]{1,20}$/.test(v);

/** Records are authenticated, so this guards against a bug or a version skew, not an attacker. */
function parseEntry(plain: Uint8Array, corrupt: (why: string) => KeyhopError): Entry {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(plain));
  } catch {
    throw corrupt('a record is not JSON');
  }
  const o = v as Record<string, unknown> | null;
  if (!o || !isStr(o.id)) throw corrupt('a record without an id');
  if (o.removed === true) return { id: o.id, removed: true };
  const c = o as unknown as StoredChannel;
  const ok =
    (c.role === 'initiator' || c.role === 'responder') &&
    isStr(c.remote) &&
    isStr(c.internal) &&
    (c.listener === undefined || isStr(c.listener)) &&
    Array.isArray(c.consumers) &&
    c.consumers.every(isStr) &&
    isStr(c.route) &&
    isHex(c.handshakeHash) &&
    isStr(c.peer?.identifier) &&
    isHex(c.peer.staticKey) &&
    isHex(c.peer.presentation) &&
    (c.peer.refresh === undefined ||
      (isHex(c.peer.refresh.changeHistory) &&
        Array.isArray(c.peer.refresh.credentials) &&
        c.peer.refresh.credentials.every(isHex))) &&
    isHex(c.encryptor?.key) &&
    isDec(c.encryptor.nonce) &&
    isDec(c.encryptor.resumeAt) &&
    typeof c.encryptor.rekeying === 'boolean' &&
    typeof c.decryptor?.rekeying === 'boolean' &&
    Number.isInteger(c.decryptor.window?.size) &&
    isDec(c.decryptor.window.highest) &&
    isHex(c.decryptor.window.seen) &&
    isDec(c.decryptor.bucket) &&
    Array.isArray(c.decryptor.keys) &&
    c.decryptor.keys.every((k) => Array.isArray(k) && isDec(k[0]) && isHex(k[1])) &&
    typeof c.createdAt === 'number';
  if (!ok) throw corrupt(`stored channel ${o.id} is not in the expected shape`);
  return c;
}
