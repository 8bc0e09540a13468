/**
 * What a controller's socket and the stacks share, whichever kind the controller is (UART:
 * uart-socket.ts, kernel adapter: kernel-socket.ts).
 */
import type { ErrorCode } from '../../../errors.js';
import type { StackHci, StackSocket } from './stack-types.js';

export type FailureListener = (reason: string, code?: ErrorCode) => void;

/** A controller installed under a stack's Hci. */
export interface AttachedController {
  /**
   * Called once when the controller cannot be opened, fails or goes away; at once if that has
   * already happened (a kernel adapter fails inside init). `code` is set when the failure is
   * better reported as something else than the caller's default (UNSUPPORTED: no AF_BLUETOOTH).
   */
  onFailure(listener: FailureListener): void;
  /**
   * Resets the controller (stops advertising, scanning and connections on real hardware, which
   * would otherwise carry on) and releases it. Idempotent.
   */
  close(): Promise<void>;
}

/** One failure, remembered for listeners that come later. */
export class FailureSignal {
  private failure: { reason: string; code: ErrorCode | undefined } | undefined;
  private readonly listeners: FailureListener[] = [];

  get failed(): boolean {
    return this.failure !== undefined;
  }

  fail(reason: string, code?: ErrorCode): void {
    if (this.failure !== undefined) return;
    this.failure = { reason, code };
    for (const l of this.listeners) l(reason, code);
  }

  on(listener: FailureListener): void {
    this.listeners.push(listener);
    if (this.failure !== undefined) listener(this.failure.reason, this.failure.code);
  }
}

/**
 * Makes `socket` the stack's socket and runs `init`. Both stacks poll the adapter state with a
 * self-rescheduling 1 s timer that nothing can cancel (poweredOn came ~1 s late and a stopped
 * stack kept the process alive); our sockets emit 'state' on every change, so we react to that
 * instead.
 */
export function installSocket(
  hci: StackHci,
  socket: StackSocket,
  powerUp: () => void,
  init: () => void,
): void {
  hci._socket = socket;
  hci.pollIsDevUp = () => {
    const up = socket.isDevUp();
    if (up === hci._isDevUp) return;
    const first = hci._isDevUp === null;
    hci._isDevUp = up;
    if (up) {
      hci.setSocketFilter();
      powerUp();
    } else if (!first) {
      hci.emit('stateChange', 'poweredOff');
    }
  };
  socket.on('state', () => hci.pollIsDevUp());
  // With HCI_CHANNEL_USER in the environment (noble's README suggests it for kernel adapters)
  // noble (its Hci read it when built) and bleno (it reads it in init) would bind and reset the
  // socket their own way, which our sockets do already: the UART never came up that way.
  hci._userChannel = undefined;
  withoutProcessHooks(() => withoutEnv('HCI_CHANNEL_USER', init));
}

function withoutEnv(name: string, fn: () => void): void {
  const saved = process.env[name];
  if (saved === undefined) {
    fn();
    return;
  }
  delete process.env[name];
  try {
    fn();
  } finally {
    process.env[name] = saved;
  }
}

/**
 * Runs `fn` and removes the process 'exit'/'SIGINT' listeners it added. noble and bleno install
 * one pair per stack (their SIGINT handler even calls process.exit when it is the last one);
 * with several stacks per process that leaks listeners and hijacks Ctrl-C. Shutdown is ours.
 */
function withoutProcessHooks(fn: () => void): void {
  const events = ['exit', 'SIGINT'];
  const before = events.map((e) => new Set(process.listeners(e as 'exit')));
  try {
    fn();
  } finally {
    events.forEach((e, i) => {
      for (const l of process.listeners(e as 'exit')) {
        if (!before[i]!.has(l)) process.removeListener(e, l);
      }
    });
  }
}
