import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';

/** One peer this side paired with: a device (on a gateway) or a gateway (on a device). */
export interface PairedPeer {
  identifier: string;
  role: 'device' | 'gateway';
  name: string;
  /** The device's Bluetooth address (on a gateway). */
  bleAddress?: string;
  /** The relay alias the gateway registered for the device. */
  relayAlias?: string;
  pairedAt: string;
}

interface StoreFile {
  version: 1;
  peers: PairedPeer[];
}

const MAX_FILE = 1024 * 1024;
const MAX_PEERS = 4096;
const IDENTIFIER = /^I[0-9a-f]{64}$/;

function corrupt(path: string, detail: string): KeyhopError {
  return new KeyhopError(ErrorCodes.KEY_STORE_CORRUPT, `paired store ${path}: ${detail}`);
}

/**
 * The identifiers a node paired with, in one JSON file (KEYHOP_HOME/paired/<identity>.json,
 * mode 0600, replaced atomically), or in memory when no path is given. Only pairing adds to it.
 */
export class PairedStore {
  private readonly peers = new Map<string, PairedPeer>();

  private constructor(readonly path: string | undefined) {}

  static memory(): PairedStore {
    return new PairedStore(undefined);
  }

  static async open(path: string): Promise<PairedStore> {
    const store = new PairedStore(path);
    let text: string;
    try {
      const st = await stat(path);
      if (st.size > MAX_FILE) throw corrupt(path, `${st.size} bytes is over the ${MAX_FILE}-byte limit`);
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return store;
      if (isKeyhopError(e)) throw e;
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `paired store ${path}: ${describeError(e)}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw corrupt(path, 'not JSON');
    }
    const file = parsed as Partial<StoreFile>;
    if (file === null || typeof file !== 'object' || file.version !== 1 || !Array.isArray(file.peers)) {
      throw corrupt(path, 'not a version 1 paired store');
    }
    if (file.peers.length > MAX_PEERS) throw corrupt(path, 'too many peers');
    for (const p of file.peers) {
      if (
        p === null ||
        typeof p !== 'object' ||
        typeof p.identifier !== 'string' ||
        !IDENTIFIER.test(p.identifier) ||
        (p.role !== 'device' && p.role !== 'gateway') ||
        typeof p.name !== 'string' ||
        typeof p.pairedAt !== 'string'
      ) {
        throw corrupt(path, 'malformed peer entry');
      }
      store.peers.set(p.identifier, p);
    }
    return store;
  }

  has(identifier: string, role?: PairedPeer['role']): boolean {
    const p = this.peers.get(identifier);
    return p !== undefined && (role === undefined || p.role === role);
  }

  get(identifier: string): PairedPeer | undefined {
    return this.peers.get(identifier);
  }

  list(role?: PairedPeer['role']): PairedPeer[] {
    return [...this.peers.values()].filter((p) => role === undefined || p.role === role);
  }

  async add(peer: PairedPeer): Promise<void> {
    if (!IDENTIFIER.test(peer.identifier)) {
      throw new KeyhopError(ErrorCodes.IDENTITY_INVALID, `not an identifier: ${peer.identifier}`);
    }
    if (!this.peers.has(peer.identifier) && this.peers.size >= MAX_PEERS) {
      throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `paired store holds at most ${MAX_PEERS} peers`);
    }
    const before = this.peers.get(peer.identifier);
    this.peers.set(peer.identifier, { ...peer });
    try {
      await this.save();
    } catch (e) {
      if (before === undefined) this.peers.delete(peer.identifier);
      else this.peers.set(peer.identifier, before);
      throw e;
    }
  }

  async remove(identifier: string): Promise<boolean> {
    const before = this.peers.get(identifier);
    if (before === undefined) return false;
    this.peers.delete(identifier);
    try {
      await this.save();
    } catch (e) {
      this.peers.set(identifier, before);
      throw e;
    }
    return true;
  }

  private async save(): Promise<void> {
    const path = this.path;
    if (path === undefined) return;
    const file: StoreFile = { version: 1, peers: [...this.peers.values()] };
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
      await rename(tmp, path);
    } catch (e) {
      throw new KeyhopError(ErrorCodes.KEY_STORE_IO, `paired store ${path}: ${describeError(e)}`);
    }
  }
}
