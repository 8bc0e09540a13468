import { CborReader } from '../../codec/cbor.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Address, MAX_ADDRESS_VALUE_BYTES } from '../address.js';
import { Message } from '../message.js';
import { MAX_ROUTE_LENGTH, Route } from '../route.js';
import { MAX_MESSAGE_BYTES, MAX_TRACING_CHARS } from './limits.js';

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
  const onward = message.onward.addresses;
  const ret = message.returnRoute.addresses;
  let size = 1 + headerSize(onward.length) + headerSize(ret.length) + headerSize(n);
  for (const a of onward) size += addressSize(a);
  for (const a of ret) size += addressSize(a);
  const out = new Uint8Array(size);
  out[0] = 0x83;
  let pos = writeRoute(out, 1, onward);
  pos = writeRoute(out, pos, ret);
  writeHeader(out, pos, 2, n);
  return out;
}

function addressSize(a: Address): number {
  return 1 + headerSize(a.type) + headerSize(a.value.length) + a.value.length;
}

function writeRoute(out: Uint8Array, start: number, addresses: readonly Address[]): number {
  let pos = writeHeader(out, start, 4, addresses.length);
  for (const a of addresses) {
    out[pos++] = 0x82;
    pos = writeHeader(out, pos, 0, a.type);
    pos = writeHeader(out, pos, 2, a.value.length);
    out.set(a.value, pos);
    pos += a.value.length;
  }
  return pos;
}

/** Size of a CBOR head in shortest form (RFC 8949 §3.1), as a strict decoder requires. */
function headerSize(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

function writeHeader(out: Uint8Array, pos: number, major: number, n: number): number {
  const m = major << 5;
  if (n < 24) {
    out[pos] = m | n;
    return pos + 1;
  }
  if (n < 0x100) {
    out[pos] = m | 24;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n < 0x10000) {
    out[pos] = m | 25;
    out[pos + 1] = n >>> 8;
    out[pos + 2] = n & 0xff;
    return pos + 3;
  }
  out[pos] = m | 26;
  out[pos + 1] = n >>> 24;
  out[pos + 2] = (n >>> 16) & 0xff;
  out[pos + 3] = (n >>> 8) & 0xff;
  out[pos + 4] = n & 0xff;
  return pos + 5;
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

function readRoute(r: CborReader): Route {
  const n = r.array(MAX_ROUTE_LENGTH);
  const addresses: Address[] = [];
  for (let i = 0; i < n; i++) {
    r.array(2, 2);
    const type = r.uint(255);
    addresses.push(new Address(type, r.bytesValue(MAX_ADDRESS_VALUE_BYTES)));
  }
  return Route.from(addresses);
}
