import { Address, MAX_ADDRESS_VALUE_BYTES } from '../address.js';
import { MAX_ROUTE_LENGTH, Route } from '../route.js';
import { MAX_MESSAGE_BYTES } from './limits.js';

/**
 * The data path's decoders for the two CBOR shapes every message crosses: the routing frame
 * `[onward, return, payload]` and a secure-channel Payload `[[0, [[onward, return, payload]]], padding]`.
 * They read bytes directly (cborg's tokenizer builds an object per item, measured as a tenth of a
 * channel message's cost) and accept only what keyhop and Ockam write: shortest-form heads,
 * definite lengths. Anything else, valid or not, returns undefined and the caller decodes with the
 * strict reader, which gives the exact error: one set of rules, two speeds, the same answers.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(start: number, end: number): string })
  .latin1Slice;

let buf: Uint8Array = new Uint8Array(0);
let pos = 0;

/** The argument of the head at `pos` if its major type is `major` (shortest form, ≤ 2^32-1), else -1. */
function head(major: number): number {
  if (pos >= buf.length) return -1;
  const initial = buf[pos]!;
  if (initial >> 5 !== major) return -1;
  const minor = initial & 31;
  if (minor < 24) {
    pos += 1;
    return minor;
  }
  if (minor === 24) {
    if (pos + 2 > buf.length) return -1;
    const v = buf[pos + 1]!;
    pos += 2;
    return v < 24 ? -1 : v;
  }
  if (minor === 25) {
    if (pos + 3 > buf.length) return -1;
    const v = (buf[pos + 1]! << 8) | buf[pos + 2]!;
    pos += 3;
    return v < 256 ? -1 : v;
  }
  if (minor === 26) {
    if (pos + 5 > buf.length) return -1;
    const v = ((buf[pos + 1]! << 24) >>> 0) + ((buf[pos + 2]! << 16) | (buf[pos + 3]! << 8) | buf[pos + 4]!);
    pos += 5;
    return v < 65536 ? -1 : v;
  }
  return -1;
}

function route(): Route | undefined {
  const n = head(4);
  if (n < 0 || n > MAX_ROUTE_LENGTH) return undefined;
  const list = new Array<Address>(n);
  for (let i = 0; i < n; i++) {
    if (buf[pos] !== 0x82) return undefined;
    pos++;
    const type = head(0);
    if (type < 0 || type > 255) return undefined;
    const length = head(2);
    if (length < 0 || length > MAX_ADDRESS_VALUE_BYTES || pos + length > buf.length) return undefined;
    list[i] = Address.fromLatin1(type, latin1Slice.call(buf, pos, pos + length));
    pos += length;
  }
  return Route.ofAddresses(list);
}

function bytes(max: number): Uint8Array | undefined {
  const length = head(2);
  if (length < 0 || length > max || pos + length > buf.length) return undefined;
  const out = buf.subarray(pos, pos + length);
  pos += length;
  return out;
}

export interface DecodedRouting {
  onward: Route;
  returnRoute: Route;
  payload: Uint8Array;
}

/** `[onward, return, payload]` (or with a null tracing context), or undefined (see above). */
export function fastRoutingFrame(frame: Uint8Array): DecodedRouting | undefined {
  if (frame.length > MAX_MESSAGE_BYTES + 64 * 1024) return undefined;
  buf = frame;
  pos = 0;
  const n = head(4);
  if (n !== 3 && n !== 4) return done(undefined);
  const onward = route();
  const returnRoute = onward && route();
  const payload = returnRoute && bytes(MAX_MESSAGE_BYTES);
  if (payload === undefined) return done(undefined);
  if (n === 4) {
    if (buf[pos] !== 0xf6) return done(undefined);
    pos++;
  }
  return done(pos === frame.length ? { onward: onward!, returnRoute: returnRoute!, payload } : undefined);
}

/** A channel Payload message `[[0, [[onward, return, payload]]], padding ≤ 255]`, or undefined. */
export function fastChannelPayload(plaintext: Uint8Array): DecodedRouting | undefined {
  if (plaintext.length < 5 || plaintext[0] !== 0x82 || plaintext[1] !== 0x82) return undefined;
  if (plaintext[2] !== 0x00 || plaintext[3] !== 0x81 || plaintext[4] !== 0x83) return undefined;
  buf = plaintext;
  pos = 5;
  const onward = route();
  const returnRoute = onward && route();
  const payload = returnRoute && bytes(MAX_MESSAGE_BYTES);
  const padding = payload && bytes(255);
  if (padding === undefined || pos !== plaintext.length) return done(undefined);
  return done({ onward: onward!, returnRoute: returnRoute!, payload: payload! });
}

/** Lets go of the input (a module variable must not keep a frame alive). */
function done<T>(result: T): T {
  buf = EMPTY;
  return result;
}

const EMPTY = new Uint8Array(0);
