import { CborReader } from '../../codec/cbor.js';
import { headerSize, MAJOR_BYTES, writeHeader } from '../../codec/cbor-write.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Message } from '../message.js';
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
  // frame on every connection, and the tests check the bytes against cborg's encoding.
  const out = new Uint8Array(1 + routeSize(message.onward) + routeSize(message.returnRoute) + headerSize(n));
  out[0] = 0x83;
  let pos = writeRoute(out, 1, message.onward);
  pos = writeRoute(out, pos, message.returnRoute);
  writeHeader(out, pos, MAJOR_BYTES, n);
  return out;
}

export function decodeCborFrame(bytes: Uint8Array, what = 'CBOR routing frame'): Message {
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
