import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Address } from './address.js';
import { Message } from './message.js';
import { Route, type RouteLike, toRoute } from './route.js';
import type { Router } from './router.js';

export interface SendOptions {
  /** Return route of the message; defaults to this context's own address. */
  returnRoute?: RouteLike;
}

/** What a worker (or a detached client) uses to talk to the router. */
export class Context {
  readonly router: Router;
  readonly addresses: readonly Address[];
  readonly log: Logger;
  // Only detached contexts use these; most contexts never allocate them.
  private inbox: Message[] | undefined;
  private waiters: ((m: Message) => void)[] | undefined;

  constructor(router: Router, addresses: readonly Address[], log: Logger) {
    this.router = router;
    this.addresses = addresses;
    this.log = log;
  }

  /** The primary address. */
  get address(): Address {
    return this.addresses[0]!;
  }

  /** Send `payload` along `route`, from this context's primary address. */
  async send(route: RouteLike, payload: Uint8Array, options: SendOptions = {}): Promise<void> {
    const onward = toRoute(route);
    if (onward.isEmpty) throw new KeyhopError(ErrorCodes.ROUTE_EMPTY, 'cannot send along an empty route');
    const ret = options.returnRoute === undefined ? Route.of(this.address) : toRoute(options.returnRoute);
    await this.router.send(this.address, new Message(onward, ret, payload));
  }

  /** Send a message exactly as given (hops, relays, transports). */
  async forward(message: Message): Promise<void> {
    if (message.onward.isEmpty) {
      throw new KeyhopError(ErrorCodes.ROUTE_EMPTY, 'cannot forward a message with an empty onward route');
    }
    await this.router.send(this.address, message);
  }

  /** Answer `to` along its return route. */
  async reply(to: Message, payload: Uint8Array): Promise<void> {
    await this.send(to.returnRoute, payload);
  }

  /** Detached contexts only: the next message sent to this context. */
  receive(timeoutMs = 10_000): Promise<Message> {
    const queued = this.inbox?.shift();
    if (queued) return Promise.resolve(queued);
    this.waiters ??= [];
    const waiters = this.waiters;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = waiters.indexOf(waiter);
        if (i >= 0) waiters.splice(i, 1);
        reject(new KeyhopError(ErrorCodes.TIMEOUT, `no message for ${this.address} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (m: Message) => {
        clearTimeout(timer);
        resolve(m);
      };
      waiters.push(waiter);
    });
  }

  /** @internal Used by the detached worker. */
  pushInbox(m: Message): void {
    const waiter = this.waiters?.shift();
    if (waiter) {
      waiter(m);
      return;
    }
    this.inbox ??= [];
    this.inbox.push(m);
  }

  async stop(): Promise<void> {
    await this.router.stopWorker(this.address);
  }
}
