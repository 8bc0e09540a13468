/**
 * A generic Noise Protocol Framework engine (revision 34), crypto from a CryptoProvider, static
 * keys as DhKeys. See docs/protocols/noise.md.
 */
export {
  aeadNonce,
  DH_LENGTHS,
  HASH_LENGTHS,
  KEY_LENGTH,
  MAX_NONCE,
  NOISE_MAX_MESSAGE_LENGTH,
  TAG_LENGTH,
} from './algorithms.js';
export { CipherState, type CipherStateOptions } from './cipher-state.js';
export { dhKeyFromPrivate, generateDhKey, SoftwareDhKey } from './dh-key.js';
export { type HandshakeOptions, HandshakeState, type SplitCipherStates } from './handshake-state.js';
export {
  BASE_PATTERN_NAMES,
  checkPatternValidity,
  type HandshakePattern,
  type MessagePattern,
  type PreMessageToken,
  parsePattern,
  type Token,
} from './patterns.js';
export {
  MAX_PROTOCOL_NAME_LENGTH,
  type NoiseProtocol,
  type NoiseSuite,
  parseProtocolName,
  resolveProtocol,
} from './protocol.js';
