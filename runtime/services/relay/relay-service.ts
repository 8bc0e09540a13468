import { randomBytes } from 'node:crypto';
import { decodeBareString } from '../../codec/bare.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Address } from '../../routing/address.js';
import type { Context } from '../../routing/context.js';
import type { Message } from '../../routing/message.js';
import type { Router } from '../../routing/router.js';
import type { Worker } from '../../routing/worker.js';
import { Relay } from './relay.js';

export const FORWARDING_SERVICE = 'forwarding_service';
export const STATIC_FORWARDING_SERVICE = 'static_forwarding_service';
export const RELAY_PREFIX = 'forward_to_';
const ALIAS = /^[A-Za-z0-9_.-]{1,128}$/;

export interface RelayRequest {
  /** The alias asked for (static registrations only). */
  alias: string | undefined;
  message: Message;
}

export interface RelayServiceOptions {
  /** Prefix of relay worker names; Ockam nodes use `forward_to_`. */
  prefix?: string;
  /** Decide who may register (a later issue plugs in the `ockam-relay` credential attribute). */
  authorize?: (request: RelayRequest) => boolean;
  /** Most relays this node keeps at once. */
  maxRelays?: number;
}

/**
 * Ockam's relay service on two addresses: `forwarding_service` (payload "register", a random
 * name) and `static_forwarding_service` (payload = the alias asked for). A static alias that
 * registers again replaces its old relay, so a node that reconnects gets its name back.
 */
export class RelayService implements Worker {
  readonly relays = new Map<string, Relay>();
  private readonly prefix: string;
  private readonly maxRelays: number;

  constructor(
    private readonly router: Router,
    private readonly options: RelayServiceOptions = {},
  ) {
    this.prefix = options.prefix ?? RELAY_PREFIX;
    this.maxRelays = options.maxRelays ?? 10_000;
  }

  static async start(router: Router, options: RelayServiceOptions = {}): Promise<RelayService> {
    const service = new RelayService(router, options);
    await router.startWorker([FORWARDING_SERVICE, STATIC_FORWARDING_SERVICE], service);
    return service;
  }

  async handleMessage(ctx: Context, message: Message): Promise<void> {
    const to = message.onward.next;
    const isStatic = to?.equals(Address.local(STATIC_FORWARDING_SERVICE)) ?? false;
    const text = decodeBareString(message.payload, 256);
    const alias = isStatic ? text : undefined;
    if (alias !== undefined && !ALIAS.test(alias)) {
      throw new KeyhopError(
        ErrorCodes.RELAY_NAME_INVALID,
        `relay alias "${alias.slice(0, 40)}" is not allowed`,
      );
    }
    if (this.options.authorize && !this.options.authorize({ alias, message })) {
      throw new KeyhopError(
        ErrorCodes.RELAY_REJECTED,
        `relay registration${alias ? ` for "${alias}"` : ''} refused`,
      );
    }
    const name = this.prefix + (alias ?? randomBytes(16).toString('hex'));
    if (this.relays.has(name)) await this.remove(name);
    else if (this.relays.size >= this.maxRelays) {
      throw new KeyhopError(ErrorCodes.RELAY_REJECTED, `relay limit of ${this.maxRelays} reached`);
    }
    const relay = new Relay(name, message.returnRoute);
    const address = Address.local(name);
    this.relays.set(name, relay);
    // A relay may receive from wherever the service address it was registered through may.
    this.router.flowControls.copyConsumer(to ?? ctx.address, address);
    try {
      await this.router.startWorker(address, relay);
    } catch (e) {
      this.relays.delete(name);
      this.router.flowControls.forget(address);
      throw e;
    }
    ctx.log.info({ relay: name, route: relay.route.toString() }, 'relay registered');
  }

  async remove(name: string): Promise<void> {
    if (this.relays.delete(name)) await this.router.stopWorker(Address.local(name));
  }

  async shutdown(): Promise<void> {
    for (const name of [...this.relays.keys()]) await this.remove(name);
  }
}
