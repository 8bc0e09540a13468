import type { AccessRequest } from './access-control.js';
import type { Address } from './address.js';
import type { Context } from './context.js';
import type { Message } from './message.js';

/**
 * A worker handles the messages sent to its addresses, one at a time, in arrival order. A
 * returned promise holds back the next message until it settles.
 */
export interface Worker {
  initialize?(ctx: Context): void | Promise<void>;
  handleMessage(ctx: Context, message: Message): void | Promise<void>;
  shutdown?(ctx: Context): void | Promise<void>;
  /**
   * Access control as methods of the worker, used when startWorker's options give none: a worker
   * that exists by the thousand (a channel end) then costs no closures of its own for it.
   */
  allowIncoming?(request: AccessRequest): boolean;
  allowOutgoing?(request: AccessRequest): boolean;
}

/**
 * A transport turns a non-local address (`1#host:port`) into the local address of a worker that
 * carries messages there, connecting first if needed and reusing the connection afterwards.
 */
export interface Transport {
  readonly type: number;
  readonly name: string;
  resolve(address: Address): Promise<Address>;
  shutdown(): Promise<void>;
  /**
   * The transport address (`7#broker/mailbox`) a local worker of this transport stands for, if
   * any: a route kept across restarts names that instead of a worker that dies with the process.
   */
  portableAddress?(local: Address): Address | undefined;
  /** Lets what arrives from the peer at `address` reach the local worker `local` (a restored channel end). */
  admit?(address: Address, local: Address): Promise<void>;
}
