import type { CborReader } from '../../codec/cbor.js';
import { headerSize, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UINT, writeHeader } from '../../codec/cbor-write.js';
import { Address, MAX_ADDRESS_VALUE_BYTES } from '../address.js';
import { MAX_ROUTE_LENGTH, Route } from '../route.js';

/** A route in CBOR, as Ockam's minicbor writes it: `[[type, bstr value], …]`. */
/** `skip`: leave out the first addresses (a transport writes the route without itself). */
export function routeSize(route: Route, skip = 0): number {
  const list = route.addresses;
  let size = headerSize(Math.max(0, list.length - skip));
  for (let i = skip; i < list.length; i++) {
    const a = list[i]!;
    size += 1 + headerSize(a.type) + headerSize(a.valueLength) + a.valueLength;
  }
  return size;
}

export function writeRoute(out: Uint8Array, start: number, route: Route, skip = 0): number {
  const list = route.addresses;
  let pos = writeHeader(out, start, MAJOR_ARRAY, Math.max(0, list.length - skip));
  for (let i = skip; i < list.length; i++) {
    const a = list[i]!;
    out[pos++] = 0x82;
    pos = writeHeader(out, pos, MAJOR_UINT, a.type);
    pos = a.writeValue(out, writeHeader(out, pos, MAJOR_BYTES, a.valueLength));
  }
  return pos;
}

export function readRoute(r: CborReader): Route {
  const n = r.array(MAX_ROUTE_LENGTH);
  const addresses: Address[] = [];
  for (let i = 0; i < n; i++) {
    r.array(2, 2);
    const type = r.uint(255);
    // A string, not a view: routes outlive the frame they came in (stored return routes, relays),
    // and a view would keep the whole receive buffer alive.
    addresses.push(Address.fromLatin1(type, r.bytesLatin1(MAX_ADDRESS_VALUE_BYTES)));
  }
  return Route.ofAddresses(addresses);
}
