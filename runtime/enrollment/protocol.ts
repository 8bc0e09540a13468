import type { CryptoProvider } from '../../vaults/provider.js';
import { CborReader } from '../codec/cbor.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { CborWriter } from '../identity/cbor-writer.js';
import { LIMITS } from './codec.js';

/**
 * The constants and derivations of keyhop's X3DH enrollment that both sides must agree on
 * (docs/protocols/enrollment.md): the X3DH info string, the label of the device's proof, how the
 * request and response keys come from SK, and the request id.
 */
export const X3DH_INFO = 'keyhop X3DH enrollment 1';
/** The device signs SHA-256(PROOF_LABEL ‖ request header bytes) with its identity's primary key. */
export const PROOF_LABEL = new TextEncoder().encode('keyhop enrollment proof 1\0');
const KEYS_INFO = new TextEncoder().encode('keyhop enrollment keys 1');
const NO_SALT = new Uint8Array(32);

/** K_req ‖ K_resp = HKDF-SHA256(salt = 32 zero bytes, IKM = SK, info, 64). */
export function sessionKeys(
  provider: CryptoProvider,
  sk: Uint8Array,
): { request: Uint8Array; response: Uint8Array } {
  const okm = provider.hkdfSha256(NO_SALT, sk, KEYS_INFO, 64);
  const keys = { request: okm.slice(0, 32), response: okm.slice(32) };
  okm.fill(0);
  return keys;
}

/** SHA-256 of the request header: unique per request (EK_A is fresh), names its answer. */
export function requestIdOf(provider: CryptoProvider, header: Uint8Array): Uint8Array {
  return provider.hash('SHA256', header);
}

export type ResponseBody =
  | { readonly ok: true; readonly credential: Uint8Array }
  | { readonly ok: false; readonly code: string; readonly message: string };

export function encodeResponseBody(b: ResponseBody): Uint8Array {
  const w = new CborWriter();
  if (b.ok) return w.array(2).uint(0).bytes(b.credential).finish();
  return w
    .array(3)
    .uint(1)
    .text(b.code.slice(0, LIMITS.errorCode))
    .text(b.message.slice(0, LIMITS.message / 4))
    .finish();
}

export function decodeResponseBody(bytes: Uint8Array): ResponseBody {
  const r = new CborReader(bytes, 'enrollment response body');
  const n = r.array(3, 2);
  const kind = r.uint(1);
  let out: ResponseBody;
  if (kind === 0 && n === 2) out = { ok: true, credential: r.bytesValue(LIMITS.credential).slice() };
  else if (kind === 1 && n === 3)
    out = { ok: false, code: r.text(LIMITS.errorCode), message: r.text(LIMITS.message) };
  else
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `enrollment response body: ${n} items of kind ${kind}`);
  r.end();
  return out;
}
