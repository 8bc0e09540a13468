import { CborReader } from '../codec/cbor.js';
import { headerSize, MAJOR_ARRAY, MAJOR_BYTES, writeHeader } from '../codec/cbor-write.js';
import { pooledBytes } from '../codec/pool.js';
import { ErrorCodes, KeyhopError } from '../errors.js';
import { fastChannelPayload } from '../routing/codec/fast-cbor.js';
import { MAX_MESSAGE_BYTES } from '../routing/codec/limits.js';
import { readRoute, routeSize, writeRoute } from '../routing/codec/route-cbor.js';
import type { Route } from '../routing/route.js';

/**
 * The plaintext of a secure-channel data message (Ockam `message.rs`):
 *
 *   SecureChannelPaddedMessage = [message, padding: bstr]
 *   message = [0, [[onward_route, return_route, payload: bstr]]]   Payload
 *           | [1, [[change_history, credentials]]]                RefreshCredentials
 *           | [2, []]                                             Close
 *
 * keyhop writes empty padding (as Ockam does today) and accepts up to 255 bytes of it.
 */
export type ChannelMessage =
  | { kind: 'payload'; onward: Route; returnRoute: Route; payload: Uint8Array }
  | {
      kind: 'refresh_credentials';
      /** Encoded CBOR ChangeHistory item (runtime/identity). */
      changeHistory: Uint8Array;
      /** Encoded CBOR items, one per CredentialAndPurposeKey. */
      credentials: Uint8Array[];
    }
  | { kind: 'close' };

const MAX_PADDING = 255;
const MAX_CREDENTIALS = 16;

/**
 * The encoding in pieces whose concatenation is `encodeChannelMessage(m)`: for a payload message,
 * head ‖ payload ‖ padding, so that the payload is never copied before encryption.
 */
export function encodeChannelMessageParts(m: ChannelMessage): Uint8Array | Uint8Array[] {
  if (m.kind !== 'payload') return encodeChannelMessage(m);
  const n = m.payload.length;
  const headLength = 5 + routeSize(m.onward) + routeSize(m.returnRoute) + headerSize(n);
  // Small payloads are copied into one pooled buffer (every byte is written): cheaper
  // than a buffer of their own for the head and three pieces for the cipher to walk.
  const whole = n <= COPY_BELOW;
  const out = pooledBytes(whole ? headLength + n + 1 : headLength);
  out[0] = 0x82;
  out[1] = 0x82;
  out[2] = 0x00;
  out[3] = 0x81;
  out[4] = 0x83;
  let pos = writeRoute(out, 5, m.onward);
  pos = writeRoute(out, pos, m.returnRoute);
  pos = writeHeader(out, pos, MAJOR_BYTES, n);
  if (!whole) return [out, m.payload, EMPTY_PADDING];
  out.set(m.payload, pos);
  out[pos + n] = 0x40;
  return out;
}

/** Payloads up to this size are copied next to their head (see encodeChannelMessageParts). */
const COPY_BELOW = 2048;

const EMPTY_PADDING = Uint8Array.of(0x40);

export function encodeChannelMessage(m: ChannelMessage): Uint8Array {
  switch (m.kind) {
    case 'payload': {
      const parts = encodeChannelMessageParts(m);
      return Array.isArray(parts) ? Buffer.concat(parts) : parts;
    }
    case 'refresh_credentials': {
      const credentialsSize = m.credentials.reduce((s, c) => s + c.length, headerSize(m.credentials.length));
      const out = new Uint8Array(6 + m.changeHistory.length + credentialsSize + 1);
      out.set([0x82, 0x82, 0x01, 0x81, 0x82]);
      let pos = 5;
      out.set(m.changeHistory, pos);
      pos += m.changeHistory.length;
      pos = writeHeader(out, pos, MAJOR_ARRAY, m.credentials.length);
      for (const c of m.credentials) {
        out.set(c, pos);
        pos += c.length;
      }
      out[pos] = 0x40;
      return out.subarray(0, pos + 1);
    }
    case 'close':
      return Uint8Array.of(0x82, 0x82, 0x02, 0x80, 0x40);
  }
}

export function decodeChannelMessage(bytes: Uint8Array): ChannelMessage {
  const fast = fastChannelPayload(bytes);
  if (fast)
    return { kind: 'payload', onward: fast.onward, returnRoute: fast.returnRoute, payload: fast.payload };
  return decodeChannelMessageStrict(bytes);
}

/** decodeChannelMessage without the fast path for Payload messages. */
export function decodeChannelMessageStrict(bytes: Uint8Array): ChannelMessage {
  const r = new CborReader(bytes, 'secure channel message');
  r.array(2, 2);
  r.array(2, 2);
  const variant = r.uint(255);
  let m: ChannelMessage;
  switch (variant) {
    case 0: {
      r.array(1, 1);
      r.array(3, 3);
      const onward = readRoute(r);
      const returnRoute = readRoute(r);
      m = { kind: 'payload', onward, returnRoute, payload: r.bytesValue(MAX_MESSAGE_BYTES) };
      break;
    }
    case 1: {
      r.array(1, 1);
      r.array(2, 2);
      const changeHistory = r.rawItem();
      const n = r.array(MAX_CREDENTIALS);
      const credentials: Uint8Array[] = [];
      for (let i = 0; i < n; i++) credentials.push(r.rawItem());
      m = { kind: 'refresh_credentials', changeHistory, credentials };
      break;
    }
    case 2:
      r.array(0, 0);
      m = { kind: 'close' };
      break;
    default:
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, `secure channel message: unknown variant ${variant}`);
  }
  r.bytesValue(MAX_PADDING);
  r.end();
  return m;
}
