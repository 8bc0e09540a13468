import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type { SigningKeyType } from '../provider.js';
import type { KeyId, SigningPublicKey, SigningVault } from '../vault.js';
import { type Atecc608, isTestPattern } from './device.js';
import type { ParsedConfig, SlotInfo } from './protocol/config.js';

/** A key the vault handed out: which slot holds it and its public half (X ‖ Y). */
export interface AllocatedKey {
  readonly slot: number;
  readonly publicKey: string;
}

/** Where the vault remembers which slots it handed out (the chip cannot tell "in use" from "empty"). */
export interface KeyAllocations {
  load(): Promise<Record<KeyId, AllocatedKey>>;
  save(keys: Record<KeyId, AllocatedKey>): Promise<void>;
  /**
   * Runs a read-modify-write of the allocations so that no other process changes them meanwhile
   * (two `keyhop identity create` at once must not get the same slot). Optional: in-memory
   * allocations only need the vault's own queue.
   */
  exclusive?<T>(fn: () => Promise<T>): Promise<T>;
}

export function memoryAllocations(initial: Record<KeyId, AllocatedKey> = {}): KeyAllocations {
  let keys = { ...initial };
  return {
    load: async () => ({ ...keys }),
    save: async (next) => {
      keys = { ...next };
    },
  };
}

export interface Atecc608VaultOptions {
  allocations?: KeyAllocations;
  /** Slots the vault may use for new keys (default: every slot whose policy fits, see keySlots). */
  slots?: readonly number[];
}

const SLOT_KEY = /^slot([0-9]|1[0-5])$/;
const keyIdOf = (slot: number): KeyId => `slot${slot}`;

/**
 * The ATECC608 signing vault: P-256 keys generated inside the chip (GenKey), ECDSA over a
 * host-computed SHA-256 digest (Nonce pass-through, then Sign external), ECDH with clear output and
 * the chip's RNG. Private keys never leave the chip; key ids name slots (`slot0`..`slot15`).
 */
export class Atecc608Vault implements SigningVault {
  readonly backend = 'atecc608';
  readonly #device: Atecc608;
  readonly #allocations: KeyAllocations;
  readonly #allowed: readonly number[] | undefined;
  #slots: Promise<number[]> | undefined;
  /** Serialises allocation changes so two concurrent generateSigningKey calls never share a slot. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(device: Atecc608, options: Atecc608VaultOptions = {}) {
    this.#device = device;
    this.#allocations = options.allocations ?? memoryAllocations();
    this.#allowed = options.slots;
  }

  get device(): Atecc608 {
    return this.#device;
  }

  /** Slots this vault can generate keys in, read from the chip's configuration once. */
  keySlots(): Promise<number[]> {
    if (this.#slots === undefined) {
      const slots = this.#device.config().then((cfg) => {
        const fit = keySlotsOf(cfg);
        return this.#allowed ? fit.filter((s) => this.#allowed?.includes(s)) : fit;
      });
      // A failed read (chip asleep on a busy bus, say) is retried on the next call.
      slots.catch(() => {
        this.#slots = undefined;
      });
      this.#slots = slots;
    }
    return this.#slots;
  }

  generateSigningKey(type: SigningKeyType): Promise<KeyId> {
    if (type !== 'P256') {
      return Promise.reject(
        new KeyhopError(ErrorCodes.UNSUPPORTED, `the ATECC608 holds P-256 keys only (asked for ${type})`),
      );
    }
    return this.#serial(async () => {
      const keys = await this.#allocations.load();
      const used = new Set(Object.values(keys).map((k) => k.slot));
      const free = (await this.keySlots()).find((s) => !used.has(s));
      if (free === undefined) {
        throw new KeyhopError(
          ErrorCodes.UNSUPPORTED,
          `no free key slot on the ATECC608 (all of ${(await this.keySlots()).join(', ') || 'none'} in use; delete a key first)`,
        );
      }
      const publicKey = await this.#device.genKey(free);
      const keyId = keyIdOf(free);
      await this.#allocations.save({ ...keys, [keyId]: { slot: free, publicKey: hex(publicKey) } });
      return keyId;
    });
  }

  /**
   * Takes over the key already in `slot` (a pre-provisioned part's permanent key, for instance)
   * without generating a new one.
   */
  adoptKey(slot: number): Promise<KeyId> {
    return this.#serial(async () => {
      const keys = await this.#allocations.load();
      const keyId = keyIdOf(slot);
      if (keys[keyId]) return keyId;
      const publicKey = await this.#device.publicKey(slot);
      await this.#allocations.save({ ...keys, [keyId]: { slot, publicKey: hex(publicKey) } });
      return keyId;
    });
  }

  async publicKey(keyId: KeyId): Promise<SigningPublicKey> {
    const key = await this.#key(keyId);
    const xy = Buffer.from(key.publicKey, 'hex');
    const bytes = new Uint8Array(65);
    bytes[0] = 0x04;
    bytes.set(xy, 1);
    return { type: 'P256', bytes };
  }

  /** ECDSA P-256 over SHA-256(data): the host hashes, the chip signs the digest. */
  async sign(keyId: KeyId, data: Uint8Array): Promise<Uint8Array> {
    const key = await this.#key(keyId);
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
    return this.#device.sign(key.slot, digest);
  }

  /** ECDH on P-256: the x-coordinate of the shared point (the private half stays in the chip). */
  async ecdh(keyId: KeyId, peerPublicKey: Uint8Array): Promise<Uint8Array> {
    const key = await this.#key(keyId);
    let xy = peerPublicKey;
    if (xy.length === 65 && xy[0] === 0x04) xy = xy.subarray(1);
    if (xy.length !== 64) {
      throw new KeyhopError(ErrorCodes.KEY_INVALID, 'ECDH peer key must be an uncompressed P-256 point');
    }
    return this.#device.ecdh(key.slot, xy);
  }

  /** `length` bytes from the chip's RNG (32 per Random command). */
  async random(length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0 || length > 1 << 16) {
      throw new KeyhopError(ErrorCodes.USAGE, `random length ${length} is not 0..65536`);
    }
    const out = new Uint8Array(length);
    for (let at = 0; at < length; at += 32) {
      const block = await this.#device.random();
      if (isTestPattern(block)) {
        throw new KeyhopError(
          ErrorCodes.HARDWARE_REFUSED,
          'the ATECC608 returns its fixed test pattern instead of random bytes: its configuration is not locked (run keyhop atecc608 provision)',
        );
      }
      out.set(block.subarray(0, Math.min(32, length - at)), at);
    }
    return out;
  }

  /** Forgets the key; the slot's key is overwritten the next time the slot is used. */
  deleteKey(keyId: KeyId): Promise<void> {
    return this.#serial(async () => {
      const keys = await this.#allocations.load();
      if (!keys[keyId]) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no ATECC608 key ${keyId}`);
      const { [keyId]: _gone, ...rest } = keys;
      await this.#allocations.save(rest);
    });
  }

  async listKeys(): Promise<KeyId[]> {
    return Object.keys(await this.#allocations.load()).sort();
  }

  async #key(keyId: KeyId): Promise<AllocatedKey> {
    if (!SLOT_KEY.test(keyId)) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no ATECC608 key ${keyId}`);
    const key = (await this.#allocations.load())[keyId];
    if (!key) throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no ATECC608 key ${keyId}`);
    return key;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const exclusive = this.#allocations.exclusive?.bind(this.#allocations);
    const guarded = exclusive ? () => exclusive(fn) : fn;
    const run = this.#queue.then(guarded, guarded);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * A slot keyhop can sign with: a secret P-256 private key that signs external digests, whose
 * public key can be regenerated (PubInfo), not gated by an authorising key (keyhop holds none).
 */
export function isSigningSlot(info: SlotInfo): boolean {
  const { slotConfig: sc, keyConfig: kc } = info;
  return kc.private && kc.keyType === 'P256' && kc.pubInfo && !kc.reqAuth && sc.isSecret && sc.externalSign;
}

/**
 * Slots the vault can generate new keys in: signing slots where GenKey may write a key. Before the
 * data zone is locked GenKey works on every private-key slot; after it only where SlotConfig allows
 * it (bit 13), and never in a slot that was locked on its own.
 */
export function keySlotsOf(cfg: ParsedConfig): number[] {
  if (!cfg.configLocked) return [];
  return cfg.slots
    .filter((s) => isSigningSlot(s) && !s.locked && (!cfg.dataLocked || s.slotConfig.genKeyAllowed))
    .map((s) => s.slot);
}
