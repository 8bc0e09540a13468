import { CborReader } from '../../codec/cbor.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * Ockam's UDP datagram (ockam.md §2.1, `ockam_transport_udp/src/messages/transport_message.rs`
 * as introduced on 2024-07-05): a routing message's CBOR bytes are cut into pieces of at most
 * MAX_PAYLOAD_SIZE bytes and every piece travels in one datagram
 *
 *   CBOR array [version u8, routing_number u16, offset u32, is_last bool, payload bstr]
 *
 * `offset` is the byte offset of the piece inside the routing message. With shortest-form
 * integers the header is at most 15 bytes, so a datagram is never larger than
 * MAX_ON_THE_WIRE_SIZE = 508 bytes, the UDP payload every IPv4 host must accept (RFC 1122).
 */

/** Largest datagram keyhop sends or accepts. */
export const MAX_ON_THE_WIRE_SIZE = 508;
/** Largest piece of a routing message carried by one datagram. */
export const MAX_PAYLOAD_SIZE = 493;
/** The only datagram version keyhop speaks. */
export const UDP_PROTOCOL_VERSION = 1;

const MAX_U16 = 0xffff;
const MAX_U32 = 0xffffffff;

/** One decoded datagram. */
export interface Datagram {
  version: number;
  /** Number of the routing message this piece belongs to (u16, wraps). */
  routingNumber: number;
  /** Byte offset of `payload` inside the routing message (u32). */
  offset: number;
  /** Whether this is the routing message's final piece. */
  isLast: boolean;
  payload: Uint8Array;
}

/** CBOR head (major type + shortest-form argument) of at most 5 bytes, written at `at`. */
function writeHead(out: Uint8Array, at: number, major: number, value: number): number {
  const mt = major << 5;
  if (value < 24) {
    out[at] = mt | value;
    return at + 1;
  }
  if (value <= 0xff) {
    out[at] = mt | 24;
    out[at + 1] = value;
    return at + 2;
  }
  if (value <= MAX_U16) {
    out[at] = mt | 25;
    out[at + 1] = value >>> 8;
    out[at + 2] = value & 0xff;
    return at + 3;
  }
  out[at] = mt | 26;
  out[at + 1] = value >>> 24;
  out[at + 2] = (value >>> 16) & 0xff;
  out[at + 3] = (value >>> 8) & 0xff;
  out[at + 4] = value & 0xff;
  return at + 5;
}

function checkInt(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `UDP datagram: ${name} ${value} is not in 0..${max}`);
  }
}

/**
 * Encodes one datagram in canonical CBOR (the bytes minicbor writes). `version` defaults to
 * UDP_PROTOCOL_VERSION; other values exist only to reproduce Ockam's test vectors.
 */
export function encodeDatagram(d: Omit<Datagram, 'version'> & { version?: number }): Uint8Array {
  const version = d.version ?? UDP_PROTOCOL_VERSION;
  checkInt('version', version, 0xff);
  checkInt('routing number', d.routingNumber, MAX_U16);
  checkInt('offset', d.offset, MAX_U32);
  if (d.payload.length > MAX_PAYLOAD_SIZE) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `UDP datagram: payload of ${d.payload.length} bytes, more than ${MAX_PAYLOAD_SIZE}`,
    );
  }
  const out = new Uint8Array(16 + d.payload.length);
  let at = writeHead(out, 0, 4, 5); // array(5)
  at = writeHead(out, at, 0, version);
  at = writeHead(out, at, 0, d.routingNumber);
  at = writeHead(out, at, 0, d.offset);
  out[at++] = d.isLast ? 0xf5 : 0xf4;
  at = writeHead(out, at, 2, d.payload.length);
  out.set(d.payload, at);
  return out.subarray(0, at + d.payload.length);
}

/**
 * Decodes one datagram, strictly: exactly the five fields, shortest-form integers, no trailing
 * bytes, at most MAX_ON_THE_WIRE_SIZE bytes in all and MAX_PAYLOAD_SIZE bytes of payload.
 * Any other version than UDP_PROTOCOL_VERSION is DECODE_VERSION. Every failure is a KeyhopError.
 * The returned payload is a view into `bytes`.
 */
export function decodeDatagram(bytes: Uint8Array): Datagram {
  const what = 'UDP datagram';
  if (bytes.length > MAX_ON_THE_WIRE_SIZE) {
    throw new KeyhopError(
      ErrorCodes.DECODE_LIMIT,
      `${what}: ${bytes.length} bytes, more than ${MAX_ON_THE_WIRE_SIZE}`,
    );
  }
  const r = new CborReader(bytes, what);
  r.array(5, 5);
  const version = r.uint(0xff);
  if (version !== UDP_PROTOCOL_VERSION) {
    throw new KeyhopError(
      ErrorCodes.DECODE_VERSION,
      `${what}: version ${version}, only ${UDP_PROTOCOL_VERSION} is supported`,
    );
  }
  const routingNumber = r.uint(MAX_U16);
  const offset = r.uint(MAX_U32);
  const isLast = r.bool();
  const payload = r.bytesValue(MAX_PAYLOAD_SIZE);
  r.end();
  return { version, routingNumber, offset, isLast, payload };
}

/**
 * Cuts the CBOR bytes of one routing message into datagrams: pieces of MAX_PAYLOAD_SIZE bytes,
 * the last one shorter, all with `routingNumber`. An empty message gives one empty final piece.
 */
export function segment(message: Uint8Array, routingNumber: number): Uint8Array[] {
  checkInt('routing number', routingNumber, MAX_U16);
  if (message.length > MAX_U32) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `UDP: message of ${message.length} bytes is too large`);
  }
  const out: Uint8Array[] = [];
  let offset = 0;
  do {
    const end = Math.min(offset + MAX_PAYLOAD_SIZE, message.length);
    out.push(
      encodeDatagram({
        routingNumber,
        offset,
        isLast: end === message.length,
        payload: message.subarray(offset, end),
      }),
    );
    offset = end;
  } while (offset < message.length);
  return out;
}

/**
 * Wrap-around order of routing numbers, as Ockam's `routing_number.rs`: `a` is newer than `b`
 * when (a - b) mod 2^16 is in 1..32767. A distance of exactly 32768 is neither newer nor older.
 */
export function isNewerRoutingNumber(a: number, b: number): boolean {
  const d = (a - b) & MAX_U16;
  return d >= 1 && d <= 0x7fff;
}

/** The routing number after `n`. */
export function nextRoutingNumber(n: number): number {
  return (n + 1) & MAX_U16;
}
