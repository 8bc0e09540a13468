import { ErrorCodes, KeyhopError } from '../errors.js';
import type { Address } from '../routing/address.js';
import type { Context } from '../routing/context.js';
import type { Message } from '../routing/message.js';
import type { Worker } from '../routing/worker.js';
import type { RelayVia } from '../services/relay/remote-relay.js';

/**
 * A gateway's stable name for one paired device (e.g. `ble_kitchen-sensor`): messages to
 * `[…, ble_<name>, rest…]` go on to `[device link, rest…]`. The device's link (a BLE peer's
 * sender) can change when the gateway redials; routes and relays keep naming the forwarder.
 * A relay registered `via` the forwarder hands the registering context its answer through it:
 * that one local address is delivered here instead of being sent to the device.
 */
export class DeviceForwarder implements Worker, RelayVia {
  forwarded = 0;
  private readonly local = new Set<string>();

  constructor(
    readonly address: Address,
    private link: Address | undefined,
  ) {}

  /** Points the forwarder at a new link to the device. */
  setLink(link: Address): void {
    this.link = link;
  }

  get target(): Address | undefined {
    return this.link;
  }

  /** Lets messages whose next hop is `address` (a local registering context) stay here (RelayVia). */
  admit(address: Address): () => void {
    this.local.add(address.key);
    return () => this.local.delete(address.key);
  }

  async handleMessage(ctx: Context, message: Message): Promise<void> {
    const rest = message.onward.step();
    const next = rest.next;
    if (next !== undefined && this.local.has(next.key)) {
      await ctx.forward(message.withOnward(rest));
      return;
    }
    if (this.link === undefined) {
      throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `device behind ${this.address} is not connected`);
    }
    this.forwarded++;
    await ctx.forward(message.withOnward(rest.prepend(this.link)));
  }
}
