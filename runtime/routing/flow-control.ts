import { randomBytes } from 'node:crypto';
import type { Address } from './address.js';

export type FlowId = string;

interface Flow {
  readonly parent: FlowId | undefined;
  readonly consumers: Set<string>;
}

/**
 * Which local workers may receive messages that arrive from outside the node.
 *
 * A listener owns a *spawner* flow; every connection it accepts gets its own flow whose parent is
 * the spawner, so exposing a worker on a listener exposes it to all of that listener's
 * connections. Outgoing connections get a flow of their own. Anything not a consumer of the
 * message's flow never sees it.
 */
export class FlowControls {
  private readonly flows = new Map<FlowId, Flow>();

  create(parent?: FlowId): FlowId {
    const id = `fc_${randomBytes(8).toString('hex')}`;
    this.flows.set(id, { parent, consumers: new Set() });
    return id;
  }

  remove(flow: FlowId): void {
    this.flows.delete(flow);
  }

  has(flow: FlowId): boolean {
    return this.flows.has(flow);
  }

  addConsumer(flow: FlowId, address: Address): void {
    this.flows.get(flow)?.consumers.add(address.key);
  }

  removeConsumer(flow: FlowId, address: Address): void {
    this.flows.get(flow)?.consumers.delete(address.key);
  }

  /** Forget an address everywhere (its worker stopped). */
  forget(address: Address): void {
    for (const f of this.flows.values()) f.consumers.delete(address.key);
  }

  isConsumer(address: Address, flow: FlowId): boolean {
    const f = this.flows.get(flow);
    if (!f) return false;
    if (f.consumers.has(address.key)) return true;
    return f.parent !== undefined && (this.flows.get(f.parent)?.consumers.has(address.key) ?? false);
  }

  /** Give `to` every flow `from` is a consumer of (a spawned worker inherits its spawner's exposure). */
  copyConsumer(from: Address, to: Address): void {
    for (const f of this.flows.values()) if (f.consumers.has(from.key)) f.consumers.add(to.key);
  }

  /** Flows an address is a direct consumer of (for `node show`). */
  flowsOf(address: Address): FlowId[] {
    return [...this.flows.entries()].filter(([, f]) => f.consumers.has(address.key)).map(([id]) => id);
  }

  get size(): number {
    return this.flows.size;
  }
}
