import { randomBytes } from 'node:crypto';
import type { Address } from './address.js';

export type FlowId = string;

interface Flow {
  readonly parent: FlowId | undefined;
  /** Allocated on the first consumer: most per-connection and per-channel flows stay empty. */
  consumers: Set<string> | undefined;
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
  /** Reverse index, address key → flows it consumes, so forgetting a worker costs its own flows only. */
  private readonly byAddress = new Map<string, Set<FlowId>>();

  create(parent?: FlowId): FlowId {
    const id = `fc_${randomBytes(8).toString('hex')}`;
    this.flows.set(id, { parent, consumers: undefined });
    return id;
  }

  remove(flow: FlowId): void {
    const f = this.flows.get(flow);
    if (!f) return;
    this.flows.delete(flow);
    for (const key of f.consumers ?? []) this.unindex(key, flow);
  }

  has(flow: FlowId): boolean {
    return this.flows.has(flow);
  }

  addConsumer(flow: FlowId, address: Address): void {
    this.add(flow, address.key);
  }

  private add(flow: FlowId, key: string): void {
    const f = this.flows.get(flow);
    if (!f) return;
    f.consumers ??= new Set();
    f.consumers.add(key);
    let flows = this.byAddress.get(key);
    if (!flows) {
      flows = new Set();
      this.byAddress.set(key, flows);
    }
    flows.add(flow);
  }

  private unindex(key: string, flow: FlowId): void {
    const flows = this.byAddress.get(key);
    if (!flows) return;
    flows.delete(flow);
    if (flows.size === 0) this.byAddress.delete(key);
  }

  /** The address keys `flow` admits directly (to carry them over to a flow that replaces it). */
  consumerKeys(flow: FlowId): string[] {
    return [...(this.flows.get(flow)?.consumers ?? [])];
  }

  /** addConsumer by address key (as consumerKeys gave it). */
  addConsumerKey(flow: FlowId, key: string): void {
    this.add(flow, key);
  }

  removeConsumer(flow: FlowId, address: Address): void {
    this.flows.get(flow)?.consumers?.delete(address.key);
    this.unindex(address.key, flow);
  }

  /** Forget an address everywhere (its worker stopped). */
  forget(address: Address): void {
    const key = address.key;
    for (const flow of this.byAddress.get(key) ?? []) this.flows.get(flow)?.consumers?.delete(key);
    this.byAddress.delete(key);
  }

  isConsumer(address: Address, flow: FlowId): boolean {
    const f = this.flows.get(flow);
    if (!f) return false;
    const parent = f.parent === undefined ? undefined : this.flows.get(f.parent);
    const key = address.key;
    if (f.consumers?.has(key) || parent?.consumers?.has(key)) return true;
    // A transport address may also be admitted by its group: `7#fleet/*` admits every mailbox on
    // the broker `fleet` (a relay tier that lets its TCP peers reach any device on a cluster).
    if (address.isLocal) return false;
    const slash = key.lastIndexOf('/');
    if (slash < 0) return false;
    const group = `${key.slice(0, slash)}/*`;
    return (f.consumers?.has(group) ?? false) || (parent?.consumers?.has(group) ?? false);
  }

  /** Give `to` every flow `from` is a consumer of (a spawned worker inherits its spawner's exposure). */
  copyConsumer(from: Address, to: Address): void {
    for (const flow of [...(this.byAddress.get(from.key) ?? [])]) this.add(flow, to.key);
  }

  /** Flows an address is a direct consumer of (for `node show`). */
  flowsOf(address: Address): FlowId[] {
    return [...(this.byAddress.get(address.key) ?? [])];
  }

  get size(): number {
    return this.flows.size;
  }
}
