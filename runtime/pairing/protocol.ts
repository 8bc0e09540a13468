import { createHash, randomBytes } from 'node:crypto';
import { CborReader, cborEncode } from '../codec/cbor.js';
import { ErrorCodes, KeyhopError } from '../errors.js';

/**
 * keyhop's pairing protocol (docs/protocols/pairing.md), run inside a secure channel the gateway
 * opened to the device. The 6-digit code both sides show is derived from the channel's handshake
 * hash and two nonces. The gateway commits to its nonce before it sees the device's, so a
 * man in the middle (who has two channels with two different hashes) cannot search for keys or
 * nonces that make both codes equal: it gets one guess in a million per attempt.
 *
 *   gateway → device  [1, 1, commit: bytes(32), gateway_name: text]   COMMIT = SHA-256(label ‖ Na)
 *   device → gateway  [1, 2, Nb: bytes(32), device_name: text]          NONCE
 *   gateway → device  [1, 3, Na: bytes(32)]                             REVEAL
 *   gateway → device  [1, 4, accepted: bool]                            CONFIRM (the person's answer)
 *   device → gateway  [1, 5, accepted: bool]                            DONE (the device's answer)
 *   either            [1, 6, reason: text]                              ABORT
 */

export const PAIRING_SERVICE = 'pairing';
/**
 * A device's secure-channel listener for pairing: it accepts any identity (nobody is known yet)
 * and its channels reach only PAIRING_SERVICE, so the device's own listener keeps its trust policy.
 */
export const PAIRING_LISTENER = 'pairing_api';
export const PAIRING_VERSION = 1;
const NONCE = 32;
const MAX_NAME = 64;
const MAX_REASON = 200;
const COMMIT_LABEL = Buffer.from('keyhop-pairing-commit-v1');
const SAS_LABEL = Buffer.from('keyhop-pairing-sas-v1');

export type PairingMessage =
  | { type: 'commit'; commit: Uint8Array; name: string }
  | { type: 'nonce'; nonce: Uint8Array; name: string }
  | { type: 'reveal'; nonce: Uint8Array }
  | { type: 'confirm'; accepted: boolean }
  | { type: 'done'; accepted: boolean }
  | { type: 'abort'; reason: string };

const TYPES = ['commit', 'nonce', 'reveal', 'confirm', 'done', 'abort'] as const;

export function encodePairingMessage(m: PairingMessage): Uint8Array {
  const t = TYPES.indexOf(m.type) + 1;
  switch (m.type) {
    case 'commit':
      return cborEncode([PAIRING_VERSION, t, m.commit, m.name.slice(0, MAX_NAME)]);
    case 'nonce':
      return cborEncode([PAIRING_VERSION, t, m.nonce, m.name.slice(0, MAX_NAME)]);
    case 'reveal':
      return cborEncode([PAIRING_VERSION, t, m.nonce]);
    case 'confirm':
    case 'done':
      return cborEncode([PAIRING_VERSION, t, m.accepted]);
    case 'abort':
      return cborEncode([PAIRING_VERSION, t, m.reason.slice(0, MAX_REASON)]);
  }
}

/** Decodes one pairing message; anything else is a DECODE_* or PROTOCOL_VERSION KeyhopError. */
export function decodePairingMessage(bytes: Uint8Array): PairingMessage {
  const r = new CborReader(bytes, 'pairing message');
  const n = r.array(4, 3);
  const version = r.uint(255);
  if (version !== PAIRING_VERSION) {
    throw new KeyhopError(ErrorCodes.PROTOCOL_VERSION, `pairing protocol version ${version}`);
  }
  const type = TYPES[r.uint(255) - 1];
  const nonce = () => {
    const b = r.bytesValue(NONCE);
    if (b.length !== NONCE)
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'pairing nonce must be 32 bytes');
    return b.slice();
  };
  let m: PairingMessage;
  const arity = (k: number) => {
    if (n !== k) throw new KeyhopError(ErrorCodes.DECODE_INVALID, `pairing ${type} has ${n} fields`);
  };
  switch (type) {
    case 'commit':
      arity(4);
      m = { type, commit: nonce(), name: r.text(MAX_NAME * 4) };
      break;
    case 'nonce':
      arity(4);
      m = { type, nonce: nonce(), name: r.text(MAX_NAME * 4) };
      break;
    case 'reveal':
      arity(3);
      m = { type, nonce: nonce() };
      break;
    case 'confirm':
    case 'done':
      arity(3);
      m = { type, accepted: r.bool() };
      break;
    case 'abort':
      arity(3);
      m = { type, reason: r.text(MAX_REASON * 4) };
      break;
    default:
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'unknown pairing message type');
  }
  r.end();
  return m;
}

export function pairingNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE));
}

export function pairingCommitment(nonce: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(COMMIT_LABEL).update(nonce).digest());
}

/**
 * The 6-digit short authentication string: SHA-256(label ‖ handshake hash ‖ Na ‖ Nb), first
 * 8 bytes as a big-endian integer, modulo 10^6 (bias below 2^-44), zero-padded.
 */
export function shortAuthenticationString(
  handshakeHash: Uint8Array,
  gatewayNonce: Uint8Array,
  deviceNonce: Uint8Array,
): string {
  const d = createHash('sha256')
    .update(SAS_LABEL)
    .update(handshakeHash)
    .update(gatewayNonce)
    .update(deviceNonce)
    .digest();
  return (d.readBigUInt64BE(0) % 1_000_000n).toString().padStart(6, '0');
}
