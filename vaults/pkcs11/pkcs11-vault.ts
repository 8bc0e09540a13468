import { createHash, randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import { ErrorCodes, isKeyhopError, KeyhopError } from '../../runtime/errors.js';
import type { SigningKeyType } from '../provider.js';
import type { KeyId, SigningPublicKey, SigningVault } from '../vault.js';
import { CKR, ckrName, ckrOf, isPinError, pkcs11Error, type Recovery, recoveryFor } from './ckr.js';
import {
  CKA_CLASS,
  CKA_DERIVE,
  CKA_EC_PARAMS,
  CKA_EC_POINT,
  CKA_EXTRACTABLE,
  CKA_ID,
  CKA_KEY_TYPE,
  CKA_LABEL,
  CKA_PRIVATE,
  CKA_SENSITIVE,
  CKA_SIGN,
  CKA_TOKEN,
  CKA_VALUE,
  CKA_VALUE_LEN,
  CKA_VERIFY,
  CKD_NULL,
  CKF_RW_SESSION,
  CKF_SERIAL_SESSION,
  CKF_TOKEN_INITIALIZED,
  CKF_USER_PIN_INITIALIZED,
  CKF_USER_PIN_LOCKED,
  CKK_EC,
  CKK_EC_EDWARDS,
  CKK_GENERIC_SECRET,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EC_KEY_PAIR_GEN,
  CKM_ECDH1_DERIVE,
  CKM_ECDSA,
  CKM_EDDSA,
  CKO_PRIVATE_KEY,
  CKO_PUBLIC_KEY,
  CKO_SECRET_KEY,
  CKS_RO_USER_FUNCTIONS,
  CKS_RW_USER_FUNCTIONS,
  CKU_USER,
} from './constants.js';
import { checkPoint, ecParamsFor, keyTypeOf, publicKeyFromEcPoint } from './ec.js';
import { acquireModule, type LoadedModule, releaseModule } from './module.js';
import { checkPinSource, type PinSource, pinError, pinLocked, readPin } from './pin.js';
import type { Attribute, PKCS11, Template } from './pkcs11js-api.js';

export type { PinSource } from './pin.js';

export interface Pkcs11VaultOptions {
  /** Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`, a vendor's `.so`). */
  readonly module: string;
  /** The token's label (CK_TOKEN_INFO.label); never a slot number, which changes between runs. */
  readonly token: string;
  /** Where the user PIN is read from: an environment variable or a file. Never argv. */
  readonly pin: PinSource;
  /** Keys keyhop makes are labelled `${prefix}-${id hex}`; listKeys lists only those. Default `keyhop`. */
  readonly keyLabelPrefix?: string;
}

/** What a test (or a diagnostic tool) may reach under the vault: the module and the session. */
export interface Pkcs11Internals {
  readonly pkcs11: PKCS11;
  readonly session: Buffer | undefined;
  readonly slot: Buffer;
}

/** The symbol of the vault's internals accessor, so it stays out of the vault's public surface. */
export const pkcs11Internals: unique symbol = Symbol.for('keyhop.pkcs11.internals');

const ID_BYTES = 16;
const MAX_ID_HEX = 256;
const MAX_LIST = 10_000;
const MAX_RANDOM = 1 << 16;
const RANDOM_CHUNK = 1024;
/** Output buffer for C_Sign: room for any ECDSA/EdDSA signature the token could return. */
const SIGNATURE_ROOM = 144;
const ECDH_SECRET = 32;
const PREFIX = /^[\x21-\x7e]{1,64}$/;

interface KeyInfo {
  readonly handle: Buffer;
  readonly type: SigningKeyType;
  readonly label: string;
  publicKey?: Uint8Array;
}

/**
 * A signing vault on a PKCS#11 token (a USB token, a smart card, an HSM, SoftHSM2) through
 * pkcs11js. Keys are token objects: the private half is generated inside the token, sensitive and
 * not extractable, and never leaves it. P-256 signs a SHA-256 digest computed here with raw
 * CKM_ECDSA (tokens rarely have CKM_ECDSA_SHA256); Ed25519 (where the token has
 * CKM_EC_EDWARDS_KEY_PAIR_GEN, as SoftHSM 2.6 does) signs the data with CKM_EDDSA. A key's id is its
 * CKA_ID in hex; keys keyhop makes get a random 16-byte CKA_ID and the label `${prefix}-${id}`.
 *
 * One read/write session, logged in once as the user, serves every operation, one at a time. When
 * the token reports the session logged out (CKR_USER_NOT_LOGGED_IN) or gone
 * (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED), the vault logs in again or opens a new
 * session once and retries the operation once; a refused PIN is never retried.
 *
 * pkcs11js calls the module synchronously on the JavaScript thread: each call blocks the event
 * loop for as long as the token takes (SoftHSM: well under a millisecond; USB tokens and smart
 * cards: tens of milliseconds, more for key generation). The slow calls use pkcs11js's worker-thread
 * variants (C_SignAsync, C_GenerateKeyPairAsync, C_DeriveKeyAsync); lookups, login and
 * C_GenerateRandom have none in pkcs11js 2.1.7 and stay synchronous.
 */
export class Pkcs11Vault implements SigningVault {
  readonly backend = 'pkcs11';
  readonly token: string;
  readonly module: string;
  readonly keyLabelPrefix: string;
  readonly #module: LoadedModule;
  readonly #slot: Buffer;
  readonly #slotKey: string;
  readonly #pinSource: PinSource;
  /** Kept for re-logins; a private field, so no inspect or JSON of the vault shows it. */
  readonly #pin: string;
  readonly #mechanisms: ReadonlySet<number>;
  #session: Buffer | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  readonly #keys = new Map<string, KeyInfo>();

  private constructor(
    options: { module: string; token: string; prefix: string; pinSource: PinSource; pin: string },
    module: LoadedModule,
    slot: Buffer,
    mechanisms: ReadonlySet<number>,
  ) {
    this.module = options.module;
    this.token = options.token;
    this.keyLabelPrefix = options.prefix;
    this.#pinSource = options.pinSource;
    this.#pin = options.pin;
    this.#module = module;
    this.#slot = slot;
    this.#slotKey = slot.toString('hex');
    this.#mechanisms = mechanisms;
  }

  /**
   * Opens the token labelled `options.token` in `options.module` and logs in as the user.
   * Failures, each one error and no retry: a bad option or an unset/unreadable PIN source
   * CONFIG_INVALID; a missing or unloadable module, or no token with that label,
   * HARDWARE_UNAVAILABLE (listing the labels seen); a wrong PIN KEY_STORE_LOCKED; a locked PIN
   * HARDWARE_REFUSED.
   */
  static async open(options: Pkcs11VaultOptions): Promise<Pkcs11Vault> {
    const { module: path, token } = options;
    if (typeof path !== 'string' || path === '') {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, 'a PKCS#11 vault needs the path of its module');
    }
    if (typeof token !== 'string' || token.trim() === '' || token.length > 32) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        'a PKCS#11 vault needs its token label (1 to 32 characters)',
      );
    }
    const prefix = options.keyLabelPrefix ?? 'keyhop';
    if (!PREFIX.test(prefix)) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        'the PKCS#11 key label prefix must be 1 to 64 printable ASCII characters without spaces',
      );
    }
    const pinSource = checkPinSource(options.pin);
    const pin = await readPin(pinSource);

    const module = acquireModule(path);
    let vault: Pkcs11Vault | undefined;
    try {
      const { pkcs11 } = module;
      const slot = findSlot(pkcs11, path, token);
      const mechanisms = new Set(
        call(() => pkcs11.C_GetMechanismList(slot), `listing the mechanisms of PKCS#11 token "${token}"`),
      );
      vault = new Pkcs11Vault({ module: path, token, prefix, pinSource, pin }, module, slot, mechanisms);
      module.users.set(vault.#slotKey, (module.users.get(vault.#slotKey) ?? 0) + 1);
      vault.#openSession();
      return vault;
    } catch (e) {
      if (vault) vault.#release();
      else releaseModule(module);
      throw pkcs11Error(e, `opening PKCS#11 token "${token}"`);
    }
  }

  /** The token's mechanisms include this one (CKM_* value). */
  hasMechanism(mechanism: number): boolean {
    return this.#mechanisms.has(mechanism);
  }

  generateSigningKey(type: SigningKeyType): Promise<KeyId> {
    return this.#op(`generating a ${type} key on PKCS#11 token "${this.token}"`, async (p, s) => {
      const [gen, sign, ckk] =
        type === 'P256'
          ? [CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKK_EC]
          : type === 'Ed25519'
            ? [CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA, CKK_EC_EDWARDS]
            : [];
      if (gen === undefined || sign === undefined || ckk === undefined) {
        throw new KeyhopError(ErrorCodes.UNSUPPORTED, `unsupported key type: ${String(type)}`);
      }
      if (!this.#mechanisms.has(gen) || !this.#mechanisms.has(sign)) {
        const names =
          type === 'P256' ? 'CKM_EC_KEY_PAIR_GEN and CKM_ECDSA' : 'CKM_EC_EDWARDS_KEY_PAIR_GEN and CKM_EDDSA';
        throw new KeyhopError(
          ErrorCodes.UNSUPPORTED,
          `PKCS#11 token "${this.token}" cannot make ${type} keys: it lacks ${names}`,
        );
      }
      const id = randomBytes(ID_BYTES);
      const label = `${this.keyLabelPrefix}-${id.toString('hex')}`;
      const common: Template = [
        { type: CKA_TOKEN, value: true },
        { type: CKA_KEY_TYPE, value: ckk },
        { type: CKA_ID, value: id },
        { type: CKA_LABEL, value: label },
      ];
      const publicTemplate: Template = [
        { type: CKA_CLASS, value: CKO_PUBLIC_KEY },
        ...common,
        { type: CKA_PRIVATE, value: false },
        { type: CKA_VERIFY, value: true },
        { type: CKA_EC_PARAMS, value: Buffer.from(ecParamsFor(type)) },
      ];
      const privateTemplate: Template = [
        { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
        ...common,
        { type: CKA_PRIVATE, value: true },
        { type: CKA_SENSITIVE, value: true },
        { type: CKA_EXTRACTABLE, value: false },
        { type: CKA_SIGN, value: true },
        { type: CKA_DERIVE, value: type === 'P256' },
      ];
      const pair = await p.C_GenerateKeyPairAsync(s, { mechanism: gen }, publicTemplate, privateTemplate);
      this.#keys.set(id.toString('hex'), { handle: pair.privateKey, type, label });
      return id.toString('hex');
    });
  }

  publicKey(keyId: KeyId): Promise<SigningPublicKey> {
    return this.#op(`reading public key ${keyId} from PKCS#11 token "${this.token}"`, (p, s) => {
      const key = this.#key(p, s, keyId);
      if (key.publicKey === undefined) {
        const handle = this.#findOne(p, s, CKO_PUBLIC_KEY, hexBytes(keyId), 'public key', keyId);
        const [point] = attributes(p, s, handle, [CKA_EC_POINT]);
        key.publicKey = publicKeyFromEcPoint(key.type, point!);
      }
      return { type: key.type, bytes: key.publicKey.slice() };
    });
  }

  /**
   * Ed25519: CKM_EDDSA over `data`. P256: SHA-256(data) here, CKM_ECDSA over the 32-byte digest in
   * the token; the signature is raw r ‖ s (64 bytes), its S not normalised (verify with lowS off).
   */
  sign(keyId: KeyId, data: Uint8Array): Promise<Uint8Array> {
    return this.#op(`signing with key ${keyId} on PKCS#11 token "${this.token}"`, async (p, s) => {
      const key = this.#key(p, s, keyId);
      const input =
        key.type === 'P256'
          ? createHash('sha256').update(data).digest()
          : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const mechanism = key.type === 'P256' ? CKM_ECDSA : CKM_EDDSA;
      p.C_SignInit(s, { mechanism }, key.handle);
      const signature = await p.C_SignAsync(s, input, Buffer.alloc(SIGNATURE_ROOM));
      if (signature.length !== 64) {
        throw new KeyhopError(
          ErrorCodes.HARDWARE_REFUSED,
          `PKCS#11 token "${this.token}" returned a ${signature.length}-byte ${key.type} signature, not 64 bytes`,
        );
      }
      return new Uint8Array(signature);
    });
  }

  /**
   * ECDH on P-256: the x-coordinate of the shared point (32 bytes), as the ATECC608 vault returns.
   * The token derives it with CKM_ECDH1_DERIVE (no KDF) into a session object (CKA_TOKEN false)
   * of type CKK_GENERIC_SECRET, which the vault reads (CKA_VALUE) and destroys at once. That
   * derived object must be extractable and not sensitive, so the shared secret leaves the token
   * and lives in this process's memory, like any software ECDH result; the private key never
   * does. Tokens whose policy forbids extractable derived keys refuse this (HARDWARE_REFUSED).
   */
  ecdh(keyId: KeyId, peerPublicKey: Uint8Array): Promise<Uint8Array> {
    return this.#op(`ECDH with key ${keyId} on PKCS#11 token "${this.token}"`, async (p, s) => {
      checkPoint('P256', peerPublicKey);
      const key = this.#key(p, s, keyId);
      if (key.type !== 'P256') {
        throw new KeyhopError(
          ErrorCodes.KEY_INVALID,
          `key ${keyId} is an ${key.type} key: ECDH needs a P-256 key`,
        );
      }
      if (!this.#mechanisms.has(CKM_ECDH1_DERIVE)) {
        throw new KeyhopError(ErrorCodes.UNSUPPORTED, `PKCS#11 token "${this.token}" lacks CKM_ECDH1_DERIVE`);
      }
      const mechanism = {
        mechanism: CKM_ECDH1_DERIVE,
        parameter: {
          type: this.#module.lib.CK_PARAMS_EC_DH,
          kdf: CKD_NULL,
          publicData: Buffer.from(peerPublicKey),
        },
      };
      const template: Template = [
        { type: CKA_CLASS, value: CKO_SECRET_KEY },
        { type: CKA_KEY_TYPE, value: CKK_GENERIC_SECRET },
        { type: CKA_TOKEN, value: false },
        { type: CKA_SENSITIVE, value: false },
        { type: CKA_EXTRACTABLE, value: true },
        { type: CKA_VALUE_LEN, value: ECDH_SECRET },
      ];
      const derived = await p.C_DeriveKeyAsync(s, mechanism, key.handle, template);
      try {
        const [value] = attributes(p, s, derived, [CKA_VALUE]);
        if (value === undefined || value.length !== ECDH_SECRET) {
          throw new KeyhopError(
            ErrorCodes.HARDWARE_REFUSED,
            `PKCS#11 token "${this.token}" derived a ${value?.length ?? 0}-byte ECDH secret, not ${ECDH_SECRET}`,
          );
        }
        const out = new Uint8Array(value);
        value.fill(0);
        return out;
      } finally {
        try {
          p.C_DestroyObject(s, derived);
        } catch {
          // a session object: it goes when the session closes anyway
        }
      }
    });
  }

  /**
   * Takes a key made by other tools (pkcs11-tool, a vendor's software) by its CKA_LABEL or, failing
   * that, by its CKA_ID in hex, and returns its key id (its CKA_ID in hex). The key must be a
   * private P-256 or Ed25519 key with a CKA_ID no other private key shares. Such keys are usable
   * like keyhop's own but are not listed by listKeys and are never destroyed by deleteKey.
   */
  findKey(labelOrIdHex: string): Promise<KeyId> {
    return this.#op(
      `finding key ${JSON.stringify(labelOrIdHex)} on PKCS#11 token "${this.token}"`,
      (p, s) => {
        let handles = findObjects(p, s, [
          { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
          { type: CKA_LABEL, value: labelOrIdHex },
        ]);
        if (handles.length === 0 && isKeyIdHex(labelOrIdHex)) {
          handles = findObjects(p, s, [
            { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
            { type: CKA_ID, value: hexBytes(labelOrIdHex) },
          ]);
        }
        if (handles.length === 0) {
          this.#assertLoggedIn(p, s);
          throw new KeyhopError(
            ErrorCodes.KEY_NOT_FOUND,
            `no private key labelled ${JSON.stringify(labelOrIdHex)} or with that CKA_ID on PKCS#11 token "${this.token}"`,
          );
        }
        if (handles.length > 1) {
          throw new KeyhopError(
            ErrorCodes.KEY_INVALID,
            `${handles.length} private keys on PKCS#11 token "${this.token}" match ${JSON.stringify(labelOrIdHex)}: give the key a unique label`,
          );
        }
        const [id] = attributes(p, s, handles[0]!, [CKA_ID]);
        if (id === undefined || id.length === 0 || id.length * 2 > MAX_ID_HEX) {
          throw new KeyhopError(
            ErrorCodes.KEY_INVALID,
            `the key ${JSON.stringify(labelOrIdHex)} on PKCS#11 token "${this.token}" has ${id?.length ? 'an over-long' : 'no'} CKA_ID: give it one of 1 to 128 bytes with the token's tools`,
          );
        }
        const keyId = id.toString('hex');
        this.#keys.delete(keyId);
        this.#key(p, s, keyId);
        return keyId;
      },
    );
  }

  /** `length` (0..65536) bytes from the token's random number generator (C_GenerateRandom). */
  random(length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0 || length > MAX_RANDOM) {
      return Promise.reject(
        new KeyhopError(ErrorCodes.USAGE, `random length ${length} is not 0..${MAX_RANDOM}`),
      );
    }
    return this.#op(`reading random bytes from PKCS#11 token "${this.token}"`, (p, s) => {
      const out = new Uint8Array(length);
      for (let at = 0; at < length; at += RANDOM_CHUNK) {
        const n = Math.min(RANDOM_CHUNK, length - at);
        const block = p.C_GenerateRandom(s, Buffer.alloc(n));
        if (block.length !== n) {
          throw new KeyhopError(
            ErrorCodes.HARDWARE_IO,
            `PKCS#11 token "${this.token}" returned ${block.length} of ${n} random bytes`,
          );
        }
        out.set(block, at);
      }
      return out;
    });
  }

  /**
   * Destroys both halves of a key keyhop made. A key whose label lacks keyhop's prefix (one taken
   * with findKey) is refused with UNSUPPORTED: keyhop never destroys keys it did not create.
   */
  deleteKey(keyId: KeyId): Promise<void> {
    return this.#op(`deleting key ${keyId} from PKCS#11 token "${this.token}"`, (p, s) => {
      const key = this.#key(p, s, keyId);
      if (!key.label.startsWith(`${this.keyLabelPrefix}-`)) {
        throw new KeyhopError(
          ErrorCodes.UNSUPPORTED,
          `key ${keyId} (label ${JSON.stringify(key.label)}) on PKCS#11 token "${this.token}" was not made by keyhop: delete it with the token's own tools`,
        );
      }
      const publics = findObjects(p, s, [
        { type: CKA_CLASS, value: CKO_PUBLIC_KEY },
        { type: CKA_ID, value: hexBytes(keyId) },
      ]);
      this.#keys.delete(keyId.toLowerCase());
      p.C_DestroyObject(s, key.handle);
      for (const h of publics) p.C_DestroyObject(s, h);
    });
  }

  /** Ids of keyhop's keys on the token: private token keys labelled `${prefix}-…`, sorted. */
  listKeys(): Promise<KeyId[]> {
    return this.#op(`listing keys on PKCS#11 token "${this.token}"`, (p, s) => {
      this.#assertLoggedIn(p, s);
      const handles = findObjects(p, s, [
        { type: CKA_CLASS, value: CKO_PRIVATE_KEY },
        { type: CKA_TOKEN, value: true },
      ]);
      const ids = new Set<string>();
      for (const h of handles) {
        const [label, id] = attributes(p, s, h, [CKA_LABEL, CKA_ID]);
        if (id && id.length > 0 && label?.toString('utf8').startsWith(`${this.keyLabelPrefix}-`)) {
          ids.add(id.toString('hex'));
        }
      }
      return [...ids].sort();
    });
  }

  /**
   * Waits for running operations, then logs out (unless another vault of this process still uses
   * the token), closes the session and finalises the module (when no other vault uses it).
   * Idempotent; later operations fail with HARDWARE_UNAVAILABLE.
   */
  close(): Promise<void> {
    this.#closing ??= this.#queue.then(() => this.#release());
    return this.#closing;
  }

  /** The module and session under the vault, for tests and diagnostics. Do not keep them. */
  [pkcs11Internals](): Pkcs11Internals {
    return { pkcs11: this.#module.pkcs11, session: this.#session, slot: this.#slot };
  }

  // ---- sessions and login ----

  #openSession(): void {
    const p = this.#module.pkcs11;
    const session = call(
      () => p.C_OpenSession(this.#slot, CKF_SERIAL_SESSION | CKF_RW_SESSION),
      `opening a session with PKCS#11 token "${this.token}"`,
    );
    this.#session = session;
    this.#login(session);
  }

  /** C_Login once. CKR_USER_ALREADY_LOGGED_IN is success; a refused PIN is one error, never retried. */
  #login(session: Buffer): void {
    const p = this.#module.pkcs11;
    const info = call(() => p.C_GetTokenInfo(this.#slot), `reading PKCS#11 token "${this.token}"`);
    if ((info.flags & CKF_USER_PIN_LOCKED) !== 0) throw pinLocked(this.token);
    if ((info.flags & CKF_USER_PIN_INITIALIZED) === 0) {
      throw new KeyhopError(
        ErrorCodes.HARDWARE_REFUSED,
        `PKCS#11 token "${this.token}" has no user PIN yet: initialise it with the token's tools`,
      );
    }
    try {
      p.C_Login(session, CKU_USER, this.#pin);
    } catch (e) {
      const rv = ckrOf(e);
      if (rv === CKR.USER_ALREADY_LOGGED_IN) return;
      if (rv !== undefined && isPinError(rv)) {
        let flags: number | undefined;
        try {
          flags = p.C_GetTokenInfo(this.#slot).flags;
        } catch {
          flags = undefined;
        }
        throw pinError(rv, this.token, this.#pinSource, flags);
      }
      throw pkcs11Error(e, `logging in to PKCS#11 token "${this.token}"`);
    }
  }

  /** The one recovery an operation gets before its one retry. */
  #recover(kind: Recovery): void {
    let recovery = kind;
    const session = this.#session;
    if (recovery === 'handles') {
      // A logged-out session cannot see private objects: their handles read as invalid.
      this.#keys.clear();
      if (session === undefined || this.#loggedIn(session)) return;
      recovery = 'login';
    }
    if (recovery === 'login' && session !== undefined) {
      try {
        this.#login(session);
        return;
      } catch (e) {
        if (recoveryFor(ckrOf(e) ?? -1) !== 'session' || isKeyhopError(e)) throw e;
      }
    }
    if (session !== undefined) {
      this.#session = undefined;
      try {
        this.#module.pkcs11.C_CloseSession(session);
      } catch {
        // already gone: that is why we are here
      }
    }
    this.#keys.clear();
    this.#openSession();
  }

  /** Throws CKR_USER_NOT_LOGGED_IN (for #op to recover) when the session has lost its login. */
  #assertLoggedIn(p: PKCS11, s: Buffer): void {
    const { state } = p.C_GetSessionInfo(s);
    if (state !== CKS_RW_USER_FUNCTIONS && state !== CKS_RO_USER_FUNCTIONS) throw new NotLoggedIn();
  }

  #loggedIn(session: Buffer): boolean {
    try {
      this.#assertLoggedIn(this.#module.pkcs11, session);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Runs `fn` on the session, after every operation queued before it. A lost login or session,
   * or a stale object handle, gets one recovery and one retry; everything else becomes a
   * KeyhopError at once.
   */
  #op<T>(what: string, fn: (p: PKCS11, s: Buffer) => T | Promise<T>): Promise<T> {
    if (this.#closing !== undefined) return Promise.reject(this.#closedError());
    const run = this.#queue.then(async () => {
      if (this.#closing !== undefined && this.#session === undefined) throw this.#closedError();
      const p = this.#module.pkcs11;
      let recovered = false;
      if (this.#session === undefined) {
        this.#recover('session');
        recovered = true;
      }
      try {
        return await fn(p, this.#session!);
      } catch (e) {
        if (isKeyhopError(e)) throw e;
        const recovery = recoveryFor(ckrOf(e) ?? -1);
        if (recovery === undefined || recovered) throw pkcs11Error(e, what);
        this.#recover(recovery);
      }
      try {
        return await fn(p, this.#session!);
      } catch (e) {
        throw pkcs11Error(e, what);
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #closedError(): KeyhopError {
    return new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `the PKCS#11 vault on token "${this.token}" is closed`,
    );
  }

  #release(): void {
    const p = this.#module.pkcs11;
    const users = (this.#module.users.get(this.#slotKey) ?? 1) - 1;
    if (users > 0) this.#module.users.set(this.#slotKey, users);
    else this.#module.users.delete(this.#slotKey);
    const session = this.#session;
    this.#session = undefined;
    this.#keys.clear();
    if (session !== undefined) {
      // Login state is per token for the whole process: log out only if no other vault here uses it.
      if (users === 0) {
        try {
          p.C_Logout(session);
        } catch {
          // not logged in (any more): nothing to undo
        }
      }
      try {
        p.C_CloseSession(session);
      } catch {
        // the session is already gone
      }
    }
    releaseModule(this.#module);
  }

  // ---- keys ----

  /** The private key with this id (cached: handle, type, label). */
  #key(p: PKCS11, s: Buffer, anyCaseId: KeyId): KeyInfo {
    const keyId = anyCaseId.toLowerCase();
    const cached = this.#keys.get(keyId);
    if (cached) return cached;
    if (!isKeyIdHex(keyId)) {
      throw new KeyhopError(
        ErrorCodes.KEY_NOT_FOUND,
        `no key ${JSON.stringify(keyId)} on PKCS#11 token "${this.token}"`,
      );
    }
    const handle = this.#findOne(p, s, CKO_PRIVATE_KEY, hexBytes(keyId), 'private key', keyId);
    const [ckkBytes, label] = attributes(p, s, handle, [CKA_KEY_TYPE, CKA_LABEL]);
    const ckk = ulong(ckkBytes);
    if (ckk !== CKK_EC && ckk !== CKK_EC_EDWARDS) {
      throw new KeyhopError(
        ErrorCodes.UNSUPPORTED,
        `key ${keyId} on PKCS#11 token "${this.token}" is not an EC key (CKA_KEY_TYPE 0x${ckk.toString(16)}): keyhop uses P-256 and Ed25519 keys only`,
      );
    }
    const [params] = attributes(p, s, handle, [CKA_EC_PARAMS]);
    const type = keyTypeOf(ckk, params ?? new Uint8Array(0));
    const info: KeyInfo = { handle, type, label: label?.toString('utf8') ?? '' };
    this.#keys.set(keyId, info);
    return info;
  }

  #findOne(p: PKCS11, s: Buffer, cls: number, id: Buffer, what: string, keyId: KeyId): Buffer {
    const handles = findObjects(
      p,
      s,
      [
        { type: CKA_CLASS, value: cls },
        { type: CKA_ID, value: id },
      ],
      2,
    );
    if (handles.length === 0) {
      this.#assertLoggedIn(p, s);
      throw new KeyhopError(ErrorCodes.KEY_NOT_FOUND, `no ${what} ${keyId} on PKCS#11 token "${this.token}"`);
    }
    if (handles.length > 1) {
      throw new KeyhopError(
        ErrorCodes.KEY_INVALID,
        `more than one ${what} on PKCS#11 token "${this.token}" has CKA_ID ${keyId}`,
      );
    }
    return handles[0]!;
  }
}

/** A synthetic CKR_USER_NOT_LOGGED_IN: private objects are invisible, not missing, when logged out. */
class NotLoggedIn extends Error {
  readonly code = CKR.USER_NOT_LOGGED_IN;
  constructor() {
    super(ckrName(CKR.USER_NOT_LOGGED_IN));
  }
}

function findSlot(pkcs11: PKCS11, path: string, label: string): Buffer {
  const wanted = label.trimEnd();
  const slots = call(() => pkcs11.C_GetSlotList(true), `listing the slots of PKCS#11 module ${path}`);
  const seen: string[] = [];
  const matches: Buffer[] = [];
  let blank = 0;
  for (const slot of slots) {
    let info: ReturnType<PKCS11['C_GetTokenInfo']>;
    try {
      info = pkcs11.C_GetTokenInfo(slot);
    } catch {
      continue; // removed between the list and the look
    }
    if ((info.flags & CKF_TOKEN_INITIALIZED) === 0) {
      blank++;
      continue;
    }
    const name = tokenLabel(info.label);
    seen.push(JSON.stringify(name));
    if (name === wanted) matches.push(slot);
  }
  if (matches.length > 1) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `${matches.length} tokens in PKCS#11 module ${path} are labelled "${wanted}": relabel one`,
    );
  }
  const slot = matches[0];
  if (slot === undefined) {
    const tokens = seen.length > 0 ? `tokens seen: ${seen.join(', ')}` : 'it shows no initialised token';
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `no PKCS#11 token labelled "${wanted}" in module ${path} (${tokens}${blank > 0 ? `; ${blank} uninitialised` : ''})`,
    );
  }
  return slot;
}

/** CK_TOKEN_INFO.label: 32 bytes, blank padded (some tokens pad with NULs). */
export function tokenLabel(raw: string): string {
  return raw.replace(/[\s\0]+$/u, '');
}

function call<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (e) {
    throw pkcs11Error(e, what);
  }
}

function findObjects(p: PKCS11, s: Buffer, template: Template, max = MAX_LIST): Buffer[] {
  p.C_FindObjectsInit(s, template);
  try {
    const out: Buffer[] = [];
    while (out.length < max) {
      const batch = p.C_FindObjects(s, Math.min(64, max - out.length));
      if (batch.length === 0) break;
      out.push(...batch);
    }
    return out;
  } finally {
    p.C_FindObjectsFinal(s);
  }
}

function attributes(p: PKCS11, s: Buffer, handle: Buffer, types: number[]): (Buffer | undefined)[] {
  const template: Attribute[] = types.map((type) => ({ type }));
  const result = p.C_GetAttributeValue(s, handle, template);
  return types.map((type) => {
    const v = result.find((a) => a.type === type)?.value;
    return Buffer.isBuffer(v) ? v : undefined;
  });
}

/** A CK_ULONG attribute value (native size and byte order). */
function ulong(b: Buffer | undefined): number {
  if (b === undefined) return -1;
  const le = endianness() === 'LE';
  if (b.length === 8) return Number(le ? b.readBigUInt64LE() : b.readBigUInt64BE());
  if (b.length === 4) return le ? b.readUInt32LE() : b.readUInt32BE();
  return -1;
}

function isKeyIdHex(s: string): boolean {
  return s.length >= 2 && s.length <= MAX_ID_HEX && s.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(s);
}

function hexBytes(keyId: string): Buffer {
  return Buffer.from(keyId, 'hex');
}
