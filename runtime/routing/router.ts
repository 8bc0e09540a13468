import { describeError, ErrorCodes, KeyhopError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { type AccessControl, type AccessRequest, allowAll } from './access-control.js';
import { Address, type AddressLike } from './address.js';
import { Context } from './context.js';
import { FlowControls } from './flow-control.js';
import { Queue } from './mailbox-queue.js';
import type { Message } from './message.js';
import { Route } from './route.js';
import type { Transport, Worker } from './worker.js';

export interface WorkerOptions {
  /** Who may send to this worker. Default: anyone on this node (remote traffic is still flow-controlled). */
  incoming?: AccessControl;
  /** Where this worker may send. Default: anywhere. */
  outgoing?: AccessControl;
}

/** Why a message was dropped; each has a counter in `Router.metrics`. */
export type DropReason =
  | 'empty_onward'
  | 'unknown_address'
  | 'outgoing_denied'
  | 'incoming_denied'
  | 'worker_stopped'
  | 'resolve_failed';

export interface TraceEvent {
  node: string;
  from: Address;
  to: Address;
  message: Message;
}

const RESOLVED: Promise<void> = Promise.resolve();
const ignore = (): void => undefined;

/**
 * What runs once a routed message was handled (or dropped, or failed): a function, or an object
 * with `settled` (a worker that routes many messages passes itself instead of a closure of its
 * own: a closure and its context per channel end, otherwise).
 */
export type Done = ((error?: unknown) => void) | { settled(error?: unknown): void };

function settle(done: Done | undefined, error?: unknown): void {
  if (done === undefined) return;
  if (typeof done === 'function') done(error);
  else done.settled(error);
}

interface QueuedMessage {
  message: Message;
  done: Done | undefined;
}

/**
 * A mailbox with this many messages queued makes `send` to it wait (the promise `send` returns)
 * until it is down to QUEUE_LOW: a worker that forwards without waiting for its next hop (echo, a
 * relay) then holds its own mailbox, and so the connection it reads from, instead of queueing for
 * a slow socket without bound. `post` never waits: its callers keep windows of their own.
 */
const QUEUE_HIGH = 1024;
const QUEUE_LOW = 256;

class Mailbox {
  readonly queue = new Queue<QueuedMessage>();
  draining = false;
  stopped = false;
  /** Senders waiting for the queue to come down to QUEUE_LOW. */
  roomWaiters: (() => void)[] | undefined;

  constructor(
    readonly ctx: Context,
    readonly worker: Worker,
    /** undefined: the worker's own allowIncoming / allowOutgoing decides. */
    private readonly incomingControl: AccessControl | undefined,
    private readonly outgoingControl: AccessControl | undefined,
  ) {}

  incoming(r: AccessRequest): boolean {
    return this.incomingControl ? this.incomingControl(r) : this.worker.allowIncoming!(r);
  }

  outgoing(r: AccessRequest): boolean {
    return this.outgoingControl ? this.outgoingControl(r) : this.worker.allowOutgoing!(r);
  }
}

/**
 * The node's message switch: local addresses to mailboxes, non-local address types to
 * transports. Each mailbox runs its worker on one message at a time.
 */
export class Router {
  readonly name: string;
  readonly log: Logger;
  readonly flowControls = new FlowControls();
  readonly metrics = {
    delivered: 0,
    dropped: {
      empty_onward: 0,
      unknown_address: 0,
      outgoing_denied: 0,
      incoming_denied: 0,
      worker_stopped: 0,
      resolve_failed: 0,
    } satisfies Record<DropReason, number>,
    workerErrors: 0,
  };
  private readonly mailboxes = new Map<string, Mailbox>();
  private readonly stopListeners: ((addresses: readonly Address[]) => void)[] = [];
  private readonly transports = new Map<number, Transport>();
  private readonly tracers: ((e: TraceEvent) => void)[] = [];
  private stopping = false;

  constructor(options: { name?: string; log?: Logger } = {}) {
    this.name = options.name ?? 'node';
    this.log = options.log ?? silentLogger;
  }

  async startWorker(
    addresses: AddressLike | readonly AddressLike[],
    worker: Worker,
    options: WorkerOptions = {},
  ): Promise<Context> {
    if (this.stopping) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'router is shutting down');
    const list = (Array.isArray(addresses) ? addresses : [addresses]).map((a: AddressLike) =>
      Address.from(a),
    );
    if (list.length === 0) throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, 'a worker needs an address');
    for (const a of list) {
      if (!a.isLocal) throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `worker address ${a} is not local`);
      if (this.mailboxes.has(a.key))
        throw new KeyhopError(ErrorCodes.ADDRESS_IN_USE, `address ${a} is in use`);
    }
    const ctx = new Context(this, list, this.log);
    const mailbox = new Mailbox(
      ctx,
      worker,
      options.incoming ?? (worker.allowIncoming ? undefined : allowAll),
      options.outgoing ?? (worker.allowOutgoing ? undefined : allowAll),
    );
    for (const a of list) this.mailboxes.set(a.key, mailbox);
    try {
      await worker.initialize?.(ctx);
    } catch (e) {
      for (const a of list) this.mailboxes.delete(a.key);
      throw e;
    }
    return ctx;
  }

  /** A context with its own address and an inbox, for code that is not a worker (CLI, tests, apps). */
  async context(
    address: AddressLike = Address.random('app_'),
    options: WorkerOptions = {},
  ): Promise<Context> {
    let self: Context | undefined;
    const ctx = await this.startWorker(
      address,
      {
        handleMessage: (_c, m) => self?.pushInbox(m),
      },
      options,
    );
    self = ctx;
    return ctx;
  }

  isRegistered(address: Address): boolean {
    return this.mailboxes.has(address.key);
  }

  /** Primary addresses of all running workers. */
  workers(): Address[] {
    const seen = new Set<Mailbox>();
    const out: Address[] = [];
    for (const m of this.mailboxes.values()) {
      if (seen.has(m)) continue;
      seen.add(m);
      out.push(m.ctx.address);
    }
    return out;
  }

  /**
   * Calls `listener` with the addresses of every worker that stops from now on (a connection's
   * sender when the connection closes, a channel end when it closes): what lets whatever routes
   * through a hop end with it. Calls come once per turn of the event loop with every address that
   * stopped in it (a listener that scans its channels then scans once when thousands stop
   * together, as at shutdown, not once per worker). Returns the function that removes the
   * listener.
   */
  onWorkerStopped(listener: (addresses: readonly Address[]) => void): () => void {
    this.stopListeners.push(listener);
    return () => {
      const i = this.stopListeners.indexOf(listener);
      if (i >= 0) this.stopListeners.splice(i, 1);
    };
  }

  /** Addresses stopped in this turn of the event loop, for the stop listeners. */
  private stoppedSince: Address[] | undefined;

  private tellStopped(): void {
    const stopped = this.stoppedSince ?? [];
    this.stoppedSince = undefined;
    for (const l of [...this.stopListeners]) {
      try {
        l(stopped);
      } catch (e) {
        this.log.warn({ err: describeError(e) }, 'a worker-stopped listener failed');
      }
    }
  }

  async stopWorker(address: AddressLike): Promise<void> {
    const mailbox = this.mailboxes.get(Address.from(address).key);
    if (!mailbox || mailbox.stopped) return;
    mailbox.stopped = true;
    for (const a of mailbox.ctx.addresses) {
      this.mailboxes.delete(a.key);
      this.flowControls.forget(a);
    }
    if (this.stopListeners.length > 0) {
      if (this.stoppedSince === undefined) {
        this.stoppedSince = [];
        setImmediate(() => this.tellStopped());
      }
      for (const a of mailbox.ctx.addresses) this.stoppedSince.push(a);
    }
    for (const q of mailbox.queue.clear()) {
      this.drop('worker_stopped', mailbox.ctx.address, q.message);
      settle(q.done);
    }
    Router.makeRoom(mailbox);
    try {
      await mailbox.worker.shutdown?.(mailbox.ctx);
    } catch (e) {
      this.log.warn(
        { worker: mailbox.ctx.address.toString(), err: describeError(e) },
        'worker shutdown failed',
      );
    }
  }

  registerTransport(transport: Transport): void {
    if (this.transports.has(transport.type)) {
      throw new KeyhopError(
        ErrorCodes.ADDRESS_IN_USE,
        `a transport for type ${transport.type} is registered`,
      );
    }
    this.transports.set(transport.type, transport);
  }

  transport(type: number): Transport | undefined {
    return this.transports.get(type);
  }

  /** `route` with every local transport worker a transport can name replaced by that transport address. */
  portableRoute(route: Route): Route {
    return Route.from(
      route.addresses.map((a) => {
        if (!a.isLocal) return a;
        for (const t of this.transports.values()) {
          const p = t.portableAddress?.(a);
          if (p) return p;
        }
        return a;
      }),
    );
  }

  /**
   * Lets messages from the peer at the transport address `from` reach `local` (whether the
   * transport knows that peer yet or not). False when no transport of this node can.
   */
  async admit(from: Address, local: Address): Promise<boolean> {
    const t = from.isLocal ? undefined : this.transports.get(from.type);
    if (!t?.admit) return false;
    await t.admit(from, local);
    return true;
  }

  onTrace(listener: (e: TraceEvent) => void): () => void {
    this.tracers.push(listener);
    return () => {
      const i = this.tracers.indexOf(listener);
      if (i >= 0) this.tracers.splice(i, 1);
    };
  }

  /**
   * Route `message` from the mailbox at `from`. A non-local first address is first resolved by
   * its transport. Throws ADDRESS_UNKNOWN / TRANSPORT_UNKNOWN to the sender; messages refused by
   * access control are dropped and counted, like Ockam does, so a sender cannot probe for them.
   * `done` runs exactly once: when the destination worker has handled the message, when access
   * control dropped it (no argument), or with the error this call rejects with.
   */
  send(from: Address, message: Message, done?: Done): Promise<void> {
    try {
      if (this.stopping) throw new KeyhopError(ErrorCodes.ROUTER_STOPPED, 'router is shutting down');
      const next = message.onward.next;
      if (next === undefined) {
        this.drop('empty_onward', from, message);
        settle(done);
        return RESOLVED;
      }
      // Local next hop: delivered synchronously, no promise of its own (the hot path).
      if (next.isLocal) return this.room(from, this.deliver(from, next, message, done));
      return this.sendViaTransport(from, next, message, done);
    } catch (e) {
      settle(done, e);
      return Promise.reject(e);
    }
  }

  /**
   * `send` without a promise for the caller: for hot paths that learn the outcome from `done`
   * alone (it still runs exactly once, with the error when the message could not be routed).
   */
  post(from: Address, message: Message, done: Done): void {
    const p = this.send(from, message, done);
    if (p !== RESOLVED) p.catch(ignore);
  }

  private async sendViaTransport(from: Address, next: Address, message: Message, done?: Done): Promise<void> {
    try {
      // Access control first: a sender that may not reach `next` must not make this node dial it
      // (a TCP peer naming `1#third-party:port` would otherwise open connections anywhere).
      const sender = this.mailboxes.get(from.key);
      if (sender && !sender.outgoing({ message, from, to: next })) {
        this.drop('outgoing_denied', from, message, next);
        settle(done);
        return;
      }
      const transport = this.transports.get(next.type);
      if (!transport) {
        throw new KeyhopError(
          ErrorCodes.TRANSPORT_UNKNOWN,
          `no transport for address type ${next.type} (${next})`,
        );
      }
      let local: Address;
      try {
        local = await transport.resolve(next);
      } catch (e) {
        this.drop('resolve_failed', from, message);
        throw e;
      }
      // The sender's access control admitted `next` itself: whichever connection serves it now (a
      // new one after a reconnection gets a new address) is the same destination.
      await this.room(
        from,
        this.deliver(from, local, message.withOnward(message.onward.replaceNext(local)), done, true),
      );
    } catch (e) {
      settle(done, e);
      throw e;
    }
  }

  /** Resolved at once, or once `dest`'s queue came down (QUEUE_HIGH): never for a mailbox's own queue. */
  private room(from: Address, dest: Mailbox | undefined): Promise<void> {
    if (dest === undefined || dest.queue.length < QUEUE_HIGH || dest.stopped) return RESOLVED;
    if (this.mailboxes.get(from.key) === dest) return RESOLVED;
    dest.roomWaiters ??= [];
    const waiters = dest.roomWaiters;
    return new Promise((resolve) => {
      waiters.push(resolve);
    });
  }

  private static makeRoom(mailbox: Mailbox): void {
    const waiters = mailbox.roomWaiters;
    if (waiters === undefined) return;
    mailbox.roomWaiters = undefined;
    for (const w of waiters) w();
  }

  /**
   * Hands `message` to the mailbox at `to` (returned, or undefined when access control dropped
   * the message). Throws (without calling `done`) if it cannot.
   * `admitted`: the sender's outgoing access control already allowed this destination (as the
   * transport address `to` was resolved from).
   */
  private deliver(
    from: Address,
    to: Address,
    message: Message,
    done: Done | undefined,
    admitted = false,
  ): Mailbox | undefined {
    const dest = this.mailboxes.get(to.key);
    if (!dest) {
      this.metrics.dropped.unknown_address++;
      throw new KeyhopError(ErrorCodes.ADDRESS_UNKNOWN, `no worker at ${to} on node ${this.name}`);
    }
    const request = { message, from, to };
    const sender = this.mailboxes.get(from.key);
    if (!sender) {
      // The sender stopped while its message was on the way (e.g. during transport resolution):
      // nothing may leave a mailbox whose access control no longer exists.
      this.drop('worker_stopped', from, message, to);
      throw new KeyhopError(ErrorCodes.WORKER_STOPPED, `sender ${from} is not running on node ${this.name}`);
    }
    if (!admitted && !sender.outgoing(request)) {
      this.drop('outgoing_denied', from, message, to);
      settle(done);
      return undefined;
    }
    if (!dest.incoming(request)) {
      this.drop('incoming_denied', from, message, to);
      settle(done);
      return undefined;
    }
    if (this.tracers.length > 0) {
      for (const t of this.tracers) {
        try {
          t({ node: this.name, from, to, message });
        } catch {
          // A tracer is an observer; it must never change what the router does.
        }
      }
    }
    this.metrics.delivered++;
    dest.queue.push({ message, done });
    if (!dest.draining) {
      dest.draining = true;
      // A resolved promise's then, not queueMicrotask: Node wraps every queueMicrotask callback in
      // an AsyncResource, a measurable cost on a path taken once per message per hop.
      RESOLVED.then(() => this.drain(dest));
    }
    return dest;
  }

  private async drain(mailbox: Mailbox): Promise<void> {
    while (!mailbox.stopped) {
      const item = mailbox.queue.shift();
      if (item === undefined) break;
      if (mailbox.roomWaiters !== undefined && mailbox.queue.length <= QUEUE_LOW) Router.makeRoom(mailbox);
      try {
        const r = mailbox.worker.handleMessage(mailbox.ctx, item.message);
        if (r !== undefined) await r;
      } catch (e) {
        this.metrics.workerErrors++;
        this.log.warn(
          {
            worker: mailbox.ctx.address.toString(),
            code: (e as { code?: string }).code,
            err: describeError(e),
          },
          'worker failed to handle a message',
        );
      }
      settle(item.done);
    }
    mailbox.queue.release();
    mailbox.draining = false;
  }

  private drop(reason: DropReason, from: Address, message: Message, to?: Address): void {
    this.metrics.dropped[reason]++;
    this.log.debug(
      {
        reason,
        from: from.toString(),
        to: to?.toString() ?? message.onward.next?.toString(),
        bytes: message.payload.length,
      },
      'message dropped',
    );
  }

  async shutdown(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.transports.values()) {
      try {
        await t.shutdown();
      } catch (e) {
        this.log.warn({ transport: t.name, err: describeError(e) }, 'transport shutdown failed');
      }
    }
    for (const a of this.workers()) await this.stopWorker(a);
  }
}
