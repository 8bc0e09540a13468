import type { Address } from './address.js';
import type { FlowControls, FlowId } from './flow-control.js';
import type { Message } from './message.js';

export interface AccessRequest {
  readonly message: Message;
  /** Address of the sending mailbox. */
  readonly from: Address;
  /** Address of the destination mailbox. */
  readonly to: Address;
}

/** Decides whether one message may leave a mailbox (outgoing) or enter one (incoming). */
export type AccessControl = (request: AccessRequest) => boolean;

export const allowAll: AccessControl = () => true;
export const denyAll: AccessControl = () => false;

/** Incoming: only from the listed addresses. */
export function allowFrom(...addresses: Address[]): AccessControl {
  const keys = new Set(addresses.map((a) => a.key));
  return ({ from }) => keys.has(from.key);
}

/**
 * Outgoing control of anything that injects messages received from outside the node (a TCP
 * connection's receiver, a UDP socket): a message may only reach workers that are consumers of
 * the flow it arrived on. This is Ockam's flow control: a security boundary, not rate control.
 */
export function flowControlled(flowControls: FlowControls, flow: FlowId): AccessControl {
  return ({ to }) => flowControls.isConsumer(to, flow);
}

export function all(...controls: AccessControl[]): AccessControl {
  return (r) => controls.every((c) => c(r));
}
