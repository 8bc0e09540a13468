import { CborReader } from '../../codec/cbor.js';
import { headerSize, MAJOR_BYTES, writeHeader } from '../../codec/cbor-write.js';
import { pooledBytes } from '../../codec/pool.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Message } from '../message.js';
import { fastRoutingFrame } from './fast-cbor.js';
import { MAX_MESSAGE_BYTES, MAX_TRACING_CHARS } from './limits.js';
import { readRoute, routeSize, writeRoute } from './route-cbor.js';

/**
 * Ockam's CBOR routing message, the body of every TCP frame and of every UDP routing message:
 * `[onward_route, return_route, payload(bstr), tracing_context(text)?]`, a route being an array
 * of `[uint type, bstr value]`. keyhop never writes the tracing context and ignores it on read.
 */
export function encodeCborFrame(message: Message): Uint8Array {
  const head = encodeCborFrameHead(message);
  const out = new Uint8Array(head.length + message.payload.length);
  out.set(head, 0);
  out.set(message.payload, head.length);
  return out;
}

/**
 * Everything of the frame but the payload bytes: `83`, both routes, and the payload's byte-string
 * header. The frame is `head ‖ payload`; transports write the two as separate chunks so that a
 * large payload is never copied just to be framed.
 */
export function encodeCborFrameHead(message: Message): Uint8Array {
  const n = message.payload.length;
  if (n > MAX_MESSAGE_BYTES) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `payload of ${n} bytes exceeds 16 MiB`);
  }
  // Written directly (sizes first, one allocation) rather than through cborg: this runs for every
  // frame on every connection, and the tests check the bytes against cborg's encoding. Pooled (every
  // byte is written below): a new ArrayBuffer per frame costs more than the rest.
  const out = pooledBytes(1 + routeSize(message.onward) + routeSize(message.returnRoute) + headerSize(n));
  out[0] = 0x83;
  let pos = writeRoute(out, 1, message.onward);
  pos = writeRoute(out, pos, message.returnRoute);
  writeHeader(out, pos, MAJOR_BYTES, n);
  return out;
}

/**
 * A stream transport's frame for `message` as it leaves this node: u32-BE length ‖ the CBOR
 * routing message with the first `skipOnward` onward addresses left out (the transport's own). A
 * payload shorter than `inlineBelow` is copied in (one buffer, one write); a longer one is not (the
 * caller writes it after the returned head). `length` is the frame's length without its prefix.
 */
export function encodeStreamFrame(
  message: Message,
  skipOnward: number,
  inlineBelow: number,
): { bytes: Uint8Array; length: number; inline: boolean } {
  const payload = message.payload;
  const n = payload.length;
  if (n > MAX_MESSAGE_BYTES) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `payload of ${n} bytes exceeds 16 MiB`);
  }
  const headLength =
    1 + routeSize(message.onward, skipOnward) + routeSize(message.returnRoute) + headerSize(n);
  const inline = n < inlineBelow;
  const out = pooledBytes(4 + headLength + (inline ? n : 0));
  const length = headLength + n;
  out[0] = length >>> 24;
  out[1] = (length >>> 16) & 0xff;
  out[2] = (length >>> 8) & 0xff;
  out[3] = length & 0xff;
  out[4] = 0x83;
  let pos = writeRoute(out, 5, message.onward, skipOnward);
  pos = writeRoute(out, pos, message.returnRoute);
  pos = writeHeader(out, pos, MAJOR_BYTES, n);
  if (inline) out.set(payload, pos);
  return { bytes: out, length, inline };
}

export function decodeCborFrame(bytes: Uint8Array, what = 'CBOR routing frame'): Message {
  const fast = fastRoutingFrame(bytes);
  if (fast) return new Message(fast.onward, fast.returnRoute, fast.payload);
  return decodeCborFrameStrict(bytes, what);
}

/** decodeCborFrame without the fast path: every frame, with the exact error for a bad one. */
export function decodeCborFrameStrict(bytes: Uint8Array, what = 'CBOR routing frame'): Message {
  if (bytes.length > MAX_MESSAGE_BYTES + 64 * 1024) {
    throw new KeyhopError(ErrorCodes.DECODE_LIMIT, `${what}: ${bytes.length} bytes exceeds the limit`);
  }
  const r = new CborReader(bytes, what);
  const n = r.array(4, 3);
  const onward = readRoute(r);
  const ret = readRoute(r);
  const payload = r.bytesValue(MAX_MESSAGE_BYTES);
  if (n === 4 && !r.nullValue()) r.text(MAX_TRACING_CHARS);
  r.end();
  return new Message(onward, ret, payload);
}
