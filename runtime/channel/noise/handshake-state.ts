import type { CryptoProvider } from '../../../vaults/provider.js';
import type { DhKey } from '../../../vaults/vault.js';
import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../errors.js';
import { isAllZero, KEY_LENGTH, NOISE_MAX_MESSAGE_LENGTH, TAG_LENGTH } from './algorithms.js';
import type { CipherState, CipherStateOptions } from './cipher-state.js';
import { generateDhKey, SoftwareDhKey } from './dh-key.js';
import type { MessagePattern, PreMessageToken } from './patterns.js';
import { type NoiseProtocol, type NoiseSuite, resolveProtocol } from './protocol.js';
import { SymmetricState } from './symmetric-state.js';

export interface HandshakeOptions {
  readonly provider: CryptoProvider;
  /**
   * The protocol name. Without `suite` it must be `Noise_<pattern>_<dh>_<cipher>_<hash>` and is
   * parsed; with `suite` it can be anything of 1..255 bytes (Ockam: `OCKAM_XX_25519_AES256_GCM_SHA256`).
   * Either way these bytes are what InitializeSymmetric hashes.
   */
  readonly protocolName: string | Uint8Array;
  /** The components, when the name does not spell them in the Noise form. Overrides the parse. */
  readonly suite?: NoiseSuite;
  readonly initiator: boolean;
  /** Mixed into `h` before anything else; both parties must use the same. Default: empty. */
  readonly prologue?: Uint8Array;
  /** Local static key. Required exactly when the pattern uses one for this role. */
  readonly s?: DhKey;
  /**
   * Local ephemeral key. Leave it out: the engine generates one when the pattern sends `e`. Given
   * only to replay test vectors, or for an `e` in this role's pre-message.
   */
  readonly e?: DhKey;
  /** Remote static public key, for patterns where the peer's `s` is a pre-message (NK, IK, ...). */
  readonly rs?: Uint8Array;
  /** Remote ephemeral public key, for patterns with an `e` pre-message (none of the built-ins). */
  readonly re?: Uint8Array;
  /** Pre-shared keys of 32 bytes, one per `psk` token, in the order the tokens are processed. */
  readonly psks?: readonly Uint8Array[];
}

/** The result of `split()`: c1 carries initiator-to-responder traffic, c2 the reverse (§5.2). */
export interface SplitCipherStates {
  readonly c1: CipherState;
  readonly c2: CipherState;
}

type Status = 'handshake' | 'complete' | 'split' | 'failed';

const EMPTY = new Uint8Array(0);

function keyInvalid(message: string): KeyhopError {
  return new KeyhopError(ErrorCodes.KEY_INVALID, message);
}

function handshakeFailed(message: string, cause?: unknown): KeyhopError {
  return new KeyhopError(ErrorCodes.HANDSHAKE_FAILED, message, cause === undefined ? undefined : { cause });
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The HandshakeState of Noise §5.3, for any pattern `patterns.ts` knows.
 *
 * Use: construct one per handshake and role, then alternate `writeMessage` / `readMessage` as the
 * pattern says (`isMyTurn`), until `isComplete`; then `split()` once for the transport
 * CipherStates and read `handshakeHash` for channel binding.
 *
 * Failure handling:
 * - Any failure of `readMessage` (malformed, wrong length, bad tag, bad DH, out of turn) throws and
 *   leaves the object unusable: every later call throws HANDSHAKE_FAILED. There is no way to
 *   continue from a half-processed message. Oversized input throws DECODE_LIMIT, the rest
 *   HANDSHAKE_FAILED (with the underlying KeyhopError as `cause`).
 * - `writeMessage` checks its preconditions (turn, message size ≤ 65535: ENCODE_LIMIT) before
 *   touching the state, so those failures leave it as it was; a failure while processing tokens
 *   (a DH that fails or yields zero) makes it unusable like a failed read.
 * - DH outputs that are all zero are rejected (HANDSHAKE_FAILED). Noise permits but does not
 *   require this (§12.1, §12.2 allow either behaviour); rejecting means a peer cannot force a
 *   known shared secret by sending a low-order point.
 */
export class HandshakeState {
  readonly protocol: NoiseProtocol;
  readonly initiator: boolean;
  readonly #provider: CryptoProvider;
  readonly #symmetric: SymmetricState;
  readonly #s: DhKey | undefined;
  #e: DhKey | undefined;
  /** True when `#e` was generated here, so the engine may wipe it. */
  #ownsE = false;
  #rs: Uint8Array | undefined;
  #re: Uint8Array | undefined;
  readonly #psks: Uint8Array[];
  #pskIndex = 0;
  #messageIndex = 0;
  #status: Status = 'handshake';

  constructor(options: HandshakeOptions) {
    const { provider, initiator } = options;
    const protocol = resolveProtocol(options.protocolName, options.suite);
    const { pattern, dhLen } = protocol;
    this.protocol = protocol;
    this.initiator = initiator;
    this.#provider = provider;

    // Which keys this role holds or needs, from the pattern.
    const own = (p: MessagePattern) => p.fromInitiator === initiator;
    const ownPre: readonly PreMessageToken[] = initiator
      ? pattern.initiatorPreMessage
      : pattern.responderPreMessage;
    const remotePre: readonly PreMessageToken[] = initiator
      ? pattern.responderPreMessage
      : pattern.initiatorPreMessage;
    const sends = (t: 'e' | 's') =>
      ownPre.includes(t) || pattern.messages.some((m) => own(m) && m.tokens.includes(t));
    const role = initiator ? 'initiator' : 'responder';
    const where = `Noise ${pattern.name} ${role}`;

    const checkPublic = (what: string, key: Uint8Array) => {
      if (!(key instanceof Uint8Array) || key.length !== dhLen) {
        throw keyInvalid(`${where}: ${what} must be a ${dhLen}-byte X${protocol.suite.dh} public key`);
      }
    };
    if (sends('s')) {
      if (!options.s) throw keyInvalid(`${where} needs a local static key (s)`);
      checkPublic('s.publicKey', options.s.publicKey);
    } else if (options.s) {
      throw keyInvalid(`${where} has no use for a local static key (s)`);
    }
    if (options.e) {
      if (!sends('e')) throw keyInvalid(`${where} never sends an ephemeral key (e)`);
      checkPublic('e.publicKey', options.e.publicKey);
    } else if (ownPre.includes('e')) {
      throw keyInvalid(`${where} needs its pre-message ephemeral key (e)`);
    }
    if (remotePre.includes('s')) {
      if (!options.rs) throw keyInvalid(`${where} needs the remote static public key (rs)`);
      checkPublic('rs', options.rs);
    } else if (options.rs) {
      throw keyInvalid(`${where}: rs is only for a pre-message static key, which this pattern does not have`);
    }
    if (remotePre.includes('e')) {
      if (!options.re) throw keyInvalid(`${where} needs the remote ephemeral public key (re)`);
      checkPublic('re', options.re);
    } else if (options.re) {
      throw keyInvalid(
        `${where}: re is only for a pre-message ephemeral key, which this pattern does not have`,
      );
    }
    const psks = options.psks ?? [];
    if (psks.length !== pattern.pskCount) {
      throw keyInvalid(`${where} needs ${pattern.pskCount} pre-shared key(s), got ${psks.length}`);
    }
    for (const psk of psks) {
      if (!(psk instanceof Uint8Array) || psk.length !== KEY_LENGTH) {
        throw keyInvalid(`${where}: a pre-shared key has ${KEY_LENGTH} bytes`);
      }
    }
    this.#psks = psks.map((p) => Uint8Array.from(p));
    this.#s = options.s;
    this.#e = options.e;
    this.#rs = options.rs && Uint8Array.from(options.rs);
    this.#re = options.re && Uint8Array.from(options.re);

    // Initialize (§5.3).
    this.#symmetric = new SymmetricState(provider, protocol);
    this.#symmetric.mixHash(options.prologue ?? EMPTY);
    const preKey = (fromInitiator: boolean, t: PreMessageToken): Uint8Array => {
      const local = fromInitiator === initiator;
      const key = t === 's' ? (local ? this.#s?.publicKey : this.#rs) : local ? this.#e?.publicKey : this.#re;
      return key!;
    };
    for (const t of pattern.initiatorPreMessage) this.#mixPreMessage(t, preKey(true, t));
    for (const t of pattern.responderPreMessage) this.#mixPreMessage(t, preKey(false, t));
  }

  #mixPreMessage(t: PreMessageToken, publicKey: Uint8Array): void {
    this.#symmetric.mixHash(publicKey);
    // §9.2: in a PSK handshake every "e", pre-messages included, is also a MixKey input.
    if (t === 'e' && this.protocol.pattern.pskCount > 0) this.#symmetric.mixKey(publicKey);
  }

  /** True once the last handshake message has been written or read. */
  get isComplete(): boolean {
    return this.#status === 'complete' || this.#status === 'split';
  }

  /** True after a failure: every method then throws HANDSHAKE_FAILED. */
  get isFailed(): boolean {
    return this.#status === 'failed';
  }

  /** True when the next call must be `writeMessage` (false when complete). */
  get isMyTurn(): boolean {
    const next = this.protocol.pattern.messages[this.#messageIndex];
    return this.#status === 'handshake' && next !== undefined && next.fromInitiator === this.initiator;
  }

  /** Number of handshake messages written or read so far. */
  get messageIndex(): number {
    return this.#messageIndex;
  }

  /**
   * `h` (GetHandshakeHash, §5.2). Final and suitable for channel binding once `isComplete`;
   * before that it is the running hash (test vectors check it right after initialization).
   */
  get handshakeHash(): Uint8Array {
    this.#checkNotFailed();
    return this.#symmetric.handshakeHash;
  }

  /** The peer's static public key: from `rs`, or as received in the handshake. */
  get remoteStaticPublicKey(): Uint8Array | undefined {
    return this.#rs && Uint8Array.from(this.#rs);
  }

  /** The peer's ephemeral public key, once received. */
  get remoteEphemeralPublicKey(): Uint8Array | undefined {
    return this.#re && Uint8Array.from(this.#re);
  }

  /** This side's ephemeral public key, once it exists. */
  get localEphemeralPublicKey(): Uint8Array | undefined {
    return this.#e && Uint8Array.from(this.#e.publicKey);
  }

  /**
   * WriteMessage (§5.3): processes the next message pattern and returns the message, `payload`
   * encrypted when a key is established.
   */
  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    this.#checkNotFailed();
    const pattern = this.#nextPattern('write');
    const { fixed, payloadOverhead } = this.#layout(pattern);
    const length = fixed + payload.length + payloadOverhead;
    if (length > NOISE_MAX_MESSAGE_LENGTH) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `Noise handshake message would be ${length} bytes, more than ${NOISE_MAX_MESSAGE_LENGTH}`,
      );
    }
    try {
      const sym = this.#symmetric;
      const parts: Uint8Array[] = [];
      for (const t of pattern.tokens) {
        switch (t) {
          case 'e': {
            if (!this.#e) {
              this.#e = generateDhKey(this.#provider, this.protocol.suite.dh);
              this.#ownsE = true;
            }
            const pub = this.#e.publicKey;
            parts.push(Uint8Array.from(pub));
            sym.mixHash(pub);
            if (this.protocol.pattern.pskCount > 0) sym.mixKey(pub);
            break;
          }
          case 's':
            parts.push(sym.encryptAndHash(this.#s!.publicKey));
            break;
          case 'psk':
            sym.mixKeyAndHash(this.#psks[this.#pskIndex++]!);
            break;
          default: {
            const shared = this.#dhToken(t);
            sym.mixKey(shared);
            shared.fill(0);
          }
        }
      }
      parts.push(sym.encryptAndHash(payload));
      const message = concat(parts, length);
      this.#advance();
      return message;
    } catch (e) {
      throw this.#fail('Noise writeMessage failed', e);
    }
  }

  /** ReadMessage (§5.3): processes the peer's next message and returns its payload. */
  readMessage(message: Uint8Array): Uint8Array {
    this.#checkNotFailed();
    if (message.length > NOISE_MAX_MESSAGE_LENGTH) {
      this.#poison();
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `Noise handshake message of ${message.length} bytes is longer than ${NOISE_MAX_MESSAGE_LENGTH}`,
      );
    }
    try {
      const pattern = this.#nextPattern('read');
      const { fixed, payloadOverhead } = this.#layout(pattern);
      if (message.length < fixed + payloadOverhead) {
        throw handshakeFailed(
          `Noise handshake message of ${message.length} bytes, at least ${fixed + payloadOverhead} expected`,
        );
      }
      const sym = this.#symmetric;
      const dhLen = this.protocol.dhLen;
      let at = 0;
      for (const t of pattern.tokens) {
        switch (t) {
          case 'e': {
            // A copy, never a view: a Buffer's slice() would alias the caller's memory.
            const re = Uint8Array.from(message.subarray(at, at + dhLen));
            at += dhLen;
            this.#re = re;
            sym.mixHash(re);
            if (this.protocol.pattern.pskCount > 0) sym.mixKey(re);
            break;
          }
          case 's': {
            const n = dhLen + (sym.hasKey() ? TAG_LENGTH : 0);
            this.#rs = sym.decryptAndHash(message.subarray(at, at + n));
            at += n;
            break;
          }
          case 'psk':
            sym.mixKeyAndHash(this.#psks[this.#pskIndex++]!);
            break;
          default: {
            const shared = this.#dhToken(t);
            sym.mixKey(shared);
            shared.fill(0);
          }
        }
      }
      const payload = sym.decryptAndHash(message.subarray(at));
      this.#advance();
      return payload;
    } catch (e) {
      throw this.#fail('Noise readMessage failed', e);
    }
  }

  /**
   * Split (§5.2), once the handshake is complete: `c1` encrypts initiator-to-responder messages,
   * `c2` responder-to-initiator ones (standard Noise roles; one-way patterns use only `c1`). Can
   * be called once; the chaining key is wiped afterwards.
   */
  split(options?: CipherStateOptions): SplitCipherStates {
    this.#checkNotFailed();
    if (this.#status === 'split') throw handshakeFailed('Noise split() was already called');
    if (this.#status !== 'complete') throw handshakeFailed('Noise split() before the handshake is complete');
    const [c1, c2] = this.#symmetric.split(options);
    this.#status = 'split';
    this.#symmetric.wipe();
    return { c1, c2 };
  }

  #checkNotFailed(): void {
    if (this.#status === 'failed')
      throw handshakeFailed('Noise handshake state is unusable after an earlier failure');
  }

  #nextPattern(op: 'write' | 'read'): MessagePattern {
    if (this.#status !== 'handshake')
      throw handshakeFailed(`Noise ${op}Message after the handshake is complete`);
    const pattern = this.protocol.pattern.messages[this.#messageIndex]!;
    if ((pattern.fromInitiator === this.initiator) !== (op === 'write')) {
      throw handshakeFailed(
        `Noise ${op}Message out of turn: message ${this.#messageIndex + 1} is the ${pattern.fromInitiator ? 'initiator' : 'responder'}'s`,
      );
    }
    return pattern;
  }

  /** Bytes taken by the tokens of `pattern`, and the payload's tag (0 or 16), from the current state. */
  #layout(pattern: MessagePattern): { fixed: number; payloadOverhead: number } {
    const dhLen = this.protocol.dhLen;
    const psk = this.protocol.pattern.pskCount > 0;
    let keyed = this.#symmetric.hasKey();
    let fixed = 0;
    for (const t of pattern.tokens) {
      if (t === 'e') {
        fixed += dhLen;
        if (psk) keyed = true;
      } else if (t === 's') {
        fixed += dhLen + (keyed ? TAG_LENGTH : 0);
      } else {
        keyed = true;
      }
    }
    return { fixed, payloadOverhead: keyed ? TAG_LENGTH : 0 };
  }

  /** The DH of a token (§5.3), refusing an all-zero result. */
  #dhToken(t: 'ee' | 'es' | 'se' | 'ss'): Uint8Array {
    // es: initiator e with responder s; se: initiator s with responder e (§7.1).
    const localIsE = this.initiator ? t[0] === 'e' : t[1] === 'e';
    const remoteIsE = this.initiator ? t[1] === 'e' : t[0] === 'e';
    const local = localIsE ? this.#e : this.#s;
    const remote = remoteIsE ? this.#re : this.#rs;
    if (!local || !remote) throw handshakeFailed(`Noise "${t}" without both keys`);
    const out = local.dh(remote);
    if (!(out instanceof Uint8Array) || out.length !== this.protocol.dhLen) {
      throw handshakeFailed(`Noise "${t}": DH output of the wrong length`);
    }
    // Noise §12.1/§12.2 let implementations accept an all-zero X25519/X448 output; keyhop refuses
    // it: it comes only from a low-order (invalid) peer key and would make this DH worthless.
    if (isAllZero(out)) throw handshakeFailed(`Noise "${t}": DH output is all zero (low-order public key)`);
    return out;
  }

  #advance(): void {
    this.#messageIndex++;
    if (this.#messageIndex === this.protocol.pattern.messages.length) {
      this.#status = 'complete';
      this.#wipeEphemeral();
      for (const p of this.#psks) p.fill(0);
    }
  }

  #wipeEphemeral(): void {
    if (this.#ownsE && this.#e instanceof SoftwareDhKey) this.#e.wipe();
  }

  /** Makes the state unusable: status failed, secrets zeroed. */
  #poison(): void {
    this.#status = 'failed';
    this.#symmetric.wipe();
    this.#wipeEphemeral();
    for (const p of this.#psks) p.fill(0);
  }

  /** Poisons the state and returns the HANDSHAKE_FAILED error to throw. */
  #fail(context: string, cause: unknown): KeyhopError {
    this.#poison();
    if (isKeyhopError(cause, ErrorCodes.HANDSHAKE_FAILED)) return cause;
    const detail = describeError(cause);
    return handshakeFailed(`${context}: ${detail}`, cause);
  }
}
