import { encodeBareString } from '../../codec/bare.js';
import type { Context } from '../../routing/context.js';
import type { Message } from '../../routing/message.js';
import type { Route } from '../../routing/route.js';
import type { Worker } from '../../routing/worker.js';

/**
 * One registered relay on the public node. On start it answers the registering client with its
 * name (a BARE string), then forgets the client's own address (the last hop of the stored
 * route), so traffic to `[…, relay, "service"]` goes straight to `"service"` on the registering
 * node. Messages are forwarded opaque: usually they are secure-channel ciphertext.
 */
export class Relay implements Worker {
  private forwardRoute: Route;
  forwarded = 0;
  readonly createdAt = Date.now();

  constructor(
    readonly name: string,
    registrationRoute: Route,
  ) {
    this.forwardRoute = registrationRoute;
  }

  async initialize(ctx: Context): Promise<void> {
    await ctx.send(this.forwardRoute, encodeBareString(this.name));
    this.forwardRoute = this.forwardRoute.dropLast();
  }

  async handleMessage(ctx: Context, message: Message): Promise<void> {
    this.forwarded++;
    // Pop ourselves, prepend the stored route; the return route is left as it is so the answer
    // goes back the way the message came.
    await ctx.forward(message.withOnward(message.onward.step().prepend(this.forwardRoute)));
  }

  get route(): Route {
    return this.forwardRoute;
  }
}
