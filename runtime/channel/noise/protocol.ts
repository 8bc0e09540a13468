import type { CipherName, DhName, HashName } from '../../../vaults/provider.js';
import {
  DH_LENGTHS,
  HASH_LENGTHS,
  isCipherName,
  isDhName,
  isHashName,
  KEY_LENGTH,
  unsupported,
} from './algorithms.js';
import { type HandshakePattern, parsePattern } from './patterns.js';

/**
 * The components of a Noise protocol. `pattern` is a pattern name with its modifiers, as it
 * appears in a protocol name (`XX`, `XXpsk3`, `NNpsk0+psk2`).
 */
export interface NoiseSuite {
  readonly pattern: string;
  readonly dh: DhName;
  readonly cipher: CipherName;
  readonly hash: HashName;
}

/** A resolved protocol: the name bytes that get hashed, and what each component means. */
export interface NoiseProtocol {
  /** The protocol name as hashed by InitializeSymmetric (§5.2). */
  readonly nameBytes: Uint8Array;
  readonly suite: NoiseSuite;
  readonly pattern: HandshakePattern;
  /** DHLEN: public key and DH output length. */
  readonly dhLen: number;
  /** HASHLEN: digest length; keys longer than 32 bytes get truncated (§5.2). */
  readonly hashLen: number;
  readonly blockLen: number;
}

/** §8: a protocol name is at most 255 bytes. */
export const MAX_PROTOCOL_NAME_LENGTH = 255;

/**
 * Splits `Noise_<pattern>_<dh>_<cipher>_<hash>` (§8) into its components. Names with other
 * prefixes, DH/cipher/hash modifiers (`25519+hfs`) or algorithms the engine lacks are UNSUPPORTED.
 */
export function parseProtocolName(name: string): NoiseSuite {
  const parts = name.split('_');
  if (parts.length !== 5 || parts[0] !== 'Noise') {
    throw unsupported(`protocol name "${name}" is not of the form Noise_<pattern>_<dh>_<cipher>_<hash>`);
  }
  const [, pattern, dh, cipher, hash] = parts as [string, string, string, string, string];
  if (!isDhName(dh)) throw unsupported(`Noise DH function "${dh}" (supported: 25519, 448)`);
  if (!isCipherName(cipher)) throw unsupported(`Noise cipher "${cipher}" (supported: AESGCM, ChaChaPoly)`);
  if (!isHashName(hash))
    throw unsupported(`Noise hash "${hash}" (supported: SHA256, SHA512, BLAKE2s, BLAKE2b)`);
  return { pattern, dh, cipher, hash };
}

/**
 * Resolves a protocol from its name, or from an explicit `suite` when the name is not of the
 * `Noise_` form (Ockam's `OCKAM_XX_25519_AES256_GCM_SHA256`). With a suite the name is not parsed
 * at all: it only supplies the bytes that InitializeSymmetric hashes.
 */
export function resolveProtocol(protocolName: string | Uint8Array, suite?: NoiseSuite): NoiseProtocol {
  const nameBytes =
    typeof protocolName === 'string' ? new TextEncoder().encode(protocolName) : Uint8Array.from(protocolName);
  if (nameBytes.length === 0 || nameBytes.length > MAX_PROTOCOL_NAME_LENGTH) {
    throw unsupported(
      `a Noise protocol name has 1 to ${MAX_PROTOCOL_NAME_LENGTH} bytes, not ${nameBytes.length}`,
    );
  }
  let resolved: NoiseSuite;
  if (suite) {
    if (!isDhName(suite.dh)) throw unsupported(`Noise DH function "${String(suite.dh)}"`);
    if (!isCipherName(suite.cipher)) throw unsupported(`Noise cipher "${String(suite.cipher)}"`);
    if (!isHashName(suite.hash)) throw unsupported(`Noise hash "${String(suite.hash)}"`);
    resolved = { pattern: suite.pattern, dh: suite.dh, cipher: suite.cipher, hash: suite.hash };
  } else {
    if (typeof protocolName !== 'string') {
      throw unsupported('a protocol name given as bytes needs an explicit suite');
    }
    resolved = parseProtocolName(protocolName);
  }
  const { hashLen, blockLen } = HASH_LENGTHS[resolved.hash];
  // Noise requires HASHLEN ≥ 32 so that keys can be taken from hash outputs (§4.3).
  if (hashLen < KEY_LENGTH) throw unsupported(`hash ${resolved.hash} is too short`);
  return {
    nameBytes,
    suite: Object.freeze(resolved),
    pattern: parsePattern(resolved.pattern),
    dhLen: DH_LENGTHS[resolved.dh],
    hashLen,
    blockLen,
  };
}
