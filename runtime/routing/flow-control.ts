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
  /**
   * Reverse index, address key → flows it consumes, so forgetting a worker costs its own flows
   * only. One flow is kept as itself, more as a Set: nearly every address consumes one flow (a
   * channel end's address, of the connection it sends on), and a Set costs some 150 bytes.
   */
  private readonly byAddress = new Map<string, FlowId | Set<FlowId>>();

  create(parent?: FlowId): FlowId {
    // One flat string (a template would keep a two-part cons string per flow).
    const id = Buffer.from(`fc_${randomBytes(8).toString('hex')}`, 'latin1').toString('latin1');
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
    const flows = this.byAddress.get(key);
    if (flows === undefined) this.byAddress.set(key, flow);
    else if (typeof flows === 'string') {
      if (flows !== flow) this.byAddress.set(key, new Set([flows, flow]));
    } else flows.add(flow);
  }

  private unindex(key: string, flow: FlowId): void {
    const flows = this.byAddress.get(key);
    if (flows === undefined) return;
    if (typeof flows === 'string') {
      if (flows === flow) this.byAddress.delete(key);
      return;
    }
    flows.delete(flow);
    if (flows.size === 0) this.byAddress.delete(key);
  }

  /** The flows `key` consumes, as a list (a copy). */
  private flowsOfKey(key: string): FlowId[] {
    const flows = this.byAddress.get(key);
    return flows === undefined ? [] : typeof flows === 'string' ? [flows] : [...flows];
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
    for (const flow of this.flowsOfKey(key)) this.flows.get(flow)?.consumers?.delete(key);
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
    for (const flow of this.flowsOfKey(from.key)) this.add(flow, to.key);
  }

  /** Flows an address is a direct consumer of (for `node show`). */
  flowsOf(address: Address): FlowId[] {
    return this.flowsOfKey(address.key);
  }

  get size(): number {
    return this.flows.size;
  }
}
