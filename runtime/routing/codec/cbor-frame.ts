import { CborReader, cborEncode } from '../../codec/cbor.js';
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
  if (message.payload.length > MAX_MESSAGE_BYTES) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `payload of ${message.payload.length} bytes exceeds 16 MiB`,
    );
  }
  return cborEncode([routeToCbor(message.onward), routeToCbor(message.returnRoute), message.payload]);
}

function routeToCbor(route: Route): [number, Uint8Array][] {
  return route.addresses.map((a) => [a.type, a.value]);
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
