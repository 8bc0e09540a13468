import type { CborReader } from '../../codec/cbor.js';
import { headerSize, MAJOR_ARRAY, MAJOR_UINT, writeBytes, writeHeader } from '../../codec/cbor-write.js';
import { Address, MAX_ADDRESS_VALUE_BYTES } from '../address.js';
import { MAX_ROUTE_LENGTH, Route } from '../route.js';

/** A route in CBOR, as Ockam's minicbor writes it: `[[type, bstr value], …]`. */
export function routeSize(route: Route): number {
  let size = headerSize(route.length);
  for (const a of route.addresses)
    size += 1 + headerSize(a.type) + headerSize(a.value.length) + a.value.length;
  return size;
}

export function writeRoute(out: Uint8Array, start: number, route: Route): number {
  let pos = writeHeader(out, start, MAJOR_ARRAY, route.length);
  for (const a of route.addresses) {
    out[pos++] = 0x82;
    pos = writeHeader(out, pos, MAJOR_UINT, a.type);
    pos = writeBytes(out, pos, a.value);
  }
  return pos;
}

export function readRoute(r: CborReader): Route {
  const n = r.array(MAX_ROUTE_LENGTH);
  const addresses: Address[] = [];
  for (let i = 0; i < n; i++) {
    r.array(2, 2);
    const type = r.uint(255);
    // A copy, not a view: routes outlive the frame they came in (stored return routes, relays),
    // and a view would keep the whole receive buffer alive.
    addresses.push(new Address(type, r.bytesValue(MAX_ADDRESS_VALUE_BYTES).slice()));
  }
  return Route.from(addresses);
}
