import { ErrorCodes, KeyhopError } from '../errors.js';
import { Address, type AddressLike } from './address.js';

/** Most addresses keyhop accepts in one route, from text or from the wire. */
export const MAX_ROUTE_LENGTH = 64;

/** An immutable ordered list of addresses; every operation returns a new Route. */
export class Route {
  static readonly EMPTY = new Route([]);
  readonly addresses: readonly Address[];

  private constructor(addresses: readonly Address[]) {
    this.addresses = addresses;
  }

  static of(...addresses: AddressLike[]): Route {
    return Route.from(addresses);
  }

  static from(addresses: Route | readonly AddressLike[]): Route {
    if (addresses instanceof Route) return addresses;
    if (addresses.length > MAX_ROUTE_LENGTH) {
      throw new KeyhopError(
        ErrorCodes.ROUTE_INVALID,
        `route has ${addresses.length} addresses, more than ${MAX_ROUTE_LENGTH}`,
      );
    }
    return new Route(addresses.map((a) => Address.from(a)));
  }

  /** A route of decoded addresses, taken as they are (the array is not copied: never change it). */
  static ofAddresses(addresses: Address[]): Route {
    return new Route(addresses).checked();
  }

  /**
   * Parses `a => b => c` (Ockam's display form) or `a, b, c`. Each element is an address in
   * text form, e.g. `1#127.0.0.1:4000 => echo`.
   */
  static parse(text: string): Route {
    const parts = text.split(/=>|,/).map((s) => s.trim());
    if (parts.every((s) => s.length === 0)) throw new KeyhopError(ErrorCodes.ROUTE_EMPTY, 'route is empty');
    // `a =>` or `a => => b` is a slip, not a shorter route: said rather than guessed at.
    if (parts.some((s) => s.length === 0)) {
      throw new KeyhopError(
        ErrorCodes.ROUTE_INVALID,
        `route "${text.trim()}" has an empty address (a separator too many, at the start, the end or twice in a row)`,
      );
    }
    return Route.from(parts);
  }

  get length(): number {
    return this.addresses.length;
  }

  get isEmpty(): boolean {
    return this.addresses.length === 0;
  }

  /** The next hop. */
  get next(): Address | undefined {
    return this.addresses[0];
  }

  get last(): Address | undefined {
    return this.addresses[this.addresses.length - 1];
  }

  /** Route without its first address. */
  step(): Route {
    return new Route(this.addresses.slice(1));
  }

  /** Route without its last address. */
  dropLast(): Route {
    return new Route(this.addresses.slice(0, -1));
  }

  prepend(...items: (AddressLike | Route)[]): Route {
    const first = items[0];
    if (items.length === 1 && first instanceof Address) {
      // Every hop does this once per message: no spreads, no intermediate arrays.
      const list = this.addresses;
      const out = new Array<Address>(list.length + 1);
      out[0] = first;
      for (let i = 0; i < list.length; i++) out[i + 1] = list[i]!;
      return new Route(out).checked();
    }
    return new Route([...flatten(items), ...this.addresses]).checked();
  }

  append(...items: (AddressLike | Route)[]): Route {
    return new Route([...this.addresses, ...flatten(items)]).checked();
  }

  /** Replace the first address (transport resolution does this). */
  replaceNext(address: Address): Route {
    return new Route([address, ...this.addresses.slice(1)]);
  }

  equals(other: Route): boolean {
    return (
      this.addresses.length === other.addresses.length &&
      this.addresses.every((a, i) => a.equals(other.addresses[i]!))
    );
  }

  toString(): string {
    return this.addresses.map((a) => a.toString()).join(' => ');
  }

  toJSON(): string[] {
    return this.addresses.map((a) => a.toString());
  }

  private checked(): Route {
    if (this.addresses.length > MAX_ROUTE_LENGTH) {
      throw new KeyhopError(
        ErrorCodes.ROUTE_INVALID,
        `route would have ${this.addresses.length} addresses, more than ${MAX_ROUTE_LENGTH}`,
      );
    }
    return this;
  }
}

function flatten(items: (AddressLike | Route)[]): Address[] {
  const out: Address[] = [];
  for (const item of items) {
    if (item instanceof Route) out.push(...item.addresses);
    else out.push(Address.from(item));
  }
  return out;
}

export type RouteLike = Route | string | readonly AddressLike[];

export function toRoute(r: RouteLike): Route {
  if (r instanceof Route) return r;
  if (typeof r === 'string') return Route.parse(r);
  return Route.from(r);
}
