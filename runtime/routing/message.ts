import type { Address } from './address.js';
import { Route } from './route.js';

/**
 * Node-local facts about a message (which connection it came from, later: the authenticated
 * peer identity of a secure channel). Never serialized onto any transport.
 */
export interface LocalInfo {
  readonly type: string;
  readonly data: unknown;
}

/** A routing message: where it still has to go, how to answer it, and opaque payload bytes. */
export class Message {
  readonly onward: Route;
  readonly returnRoute: Route;
  readonly payload: Uint8Array;
  readonly localInfo: readonly LocalInfo[];

  constructor(onward: Route, returnRoute: Route, payload: Uint8Array, localInfo: readonly LocalInfo[] = []) {
    this.onward = onward;
    this.returnRoute = returnRoute;
    this.payload = payload;
    this.localInfo = localInfo;
  }

  /** The hop rule: pop `self` from the onward route and push it on the return route. */
  stepForward(self: Address): Message {
    return new Message(this.onward.step(), this.returnRoute.prepend(self), this.payload, this.localInfo);
  }

  withOnward(onward: Route): Message {
    return new Message(onward, this.returnRoute, this.payload, this.localInfo);
  }

  withReturn(returnRoute: Route): Message {
    return new Message(this.onward, returnRoute, this.payload, this.localInfo);
  }

  withLocalInfo(info: LocalInfo): Message {
    return new Message(this.onward, this.returnRoute, this.payload, [
      ...this.localInfo.filter((i) => i.type !== info.type),
      info,
    ]);
  }

  /** Local info of one type, if any. */
  info<T>(type: string): T | undefined {
    return this.localInfo.find((i) => i.type === type)?.data as T | undefined;
  }

  /** Only what goes on the wire: local info is dropped. */
  forWire(): Message {
    return this.localInfo.length === 0 ? this : new Message(this.onward, this.returnRoute, this.payload);
  }

  static create(onward: Route, payload: Uint8Array, returnRoute: Route = Route.EMPTY): Message {
    return new Message(onward, returnRoute, payload);
  }
}
