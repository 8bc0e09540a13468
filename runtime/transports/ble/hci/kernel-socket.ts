/**
 * Puts one Linux kernel Bluetooth adapter (hci0: a Raspberry Pi's built-in one, a USB dongle)
 * under one noble or bleno Hci object, through the socket package's native driver bound to
 * HCI_CHANNEL_USER. The kernel then hands the whole controller to that one socket, and BlueZ
 * loses it until the socket closes. It only does that for an adapter that is down (powered off
 * in BlueZ, or bluetooth.service stopped), for a process with CAP_NET_ADMIN, and for one socket
 * at a time (docs/boards/raspberry-pi.md).
 *
 * Both stacks have a user-channel mode of their own (HCI_CHANNEL_USER in the environment), but
 * noble's (1.9.2-26) never sends LE Read Buffer Size, which its ACL writes wait for. So the socket
 * here behaves like the UART driver instead, and both stacks run the same code on either kind of
 * controller: it sends HCI_Reset, drops what arrives before the reset's Command Complete
 * (including that), then reports the controller up with a 'state' event.
 *
 * Not exercised against a real kernel in CI, whose kernel has no AF_BLUETOOTH: there start()
 * fails at once with UNSUPPORTED (kernel-socket.test.ts). kernel-socket.rig.test.ts runs this
 * glue and both stacks over btvirt controllers, with a stand-in for the addon.
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { describeError, type ErrorCode, ErrorCodes } from '../../../errors.js';
import { type AttachedController, FailureSignal, installSocket } from './attach.js';
import type { NativeHciSocket, NativeHciSocketClass, StackHci, StackSocket } from './stack-types.js';

export interface KernelOptions {
  /** Adapter number: 0 for hci0. */
  readonly devId: number;
}

const HCI_RESET = Buffer.from([0x01, 0x03, 0x0c, 0x00]);

/**
 * Native sockets whose reader thread ran, kept referenced for the life of the process. When the
 * thread stops it closes the socket's file descriptor, but the addon keeps the number, and its
 * destructor (run when the object is garbage collected) closes that number again, by then
 * perhaps another file or socket of this process. An object that is never collected never does.
 * One small object per central or peripheral started on a kernel adapter.
 */
const retired = new Set<NativeHciSocket>();

/** HCI Command Complete event (H4 04 0e) for HCI_Reset (opcode 0x0c03); status at [6]. */
function isResetComplete(packet: Buffer): boolean {
  return (
    packet.length >= 7 && packet[0] === 0x04 && packet[1] === 0x0e && packet[4] === 0x03 && packet[5] === 0x0c
  );
}

/**
 * What a stack sees as its socket: the native one bound to the user channel, made to behave like
 * the UART driver (reset first, then 'state').
 */
class UserChannelSocket extends EventEmitter implements StackSocket {
  private bound = false;
  private started = false;
  private up = false;
  private closed = false;

  constructor(
    private readonly native: NativeHciSocket,
    private readonly devId: number,
    private readonly failed: (error: unknown, whileOpening: boolean) => void,
  ) {
    super();
    // socket() and write() failures arrive as 'error' events (an unhandled one would throw).
    native.on('error', (e: unknown) => this.failed(e, !this.up));
    native.on('data', (packet: Buffer) => this.received(packet));
  }

  /** The stacks bind raw outside their own user-channel mode: either way it is the user channel. */
  bindRaw(): number | undefined {
    return this.bindUser();
  }

  bindUser(): number | undefined {
    if (!this.bound && !this.closed) {
      try {
        // undefined when the socket could not be created; the 'error' event said why.
        this.bound = this.native.bindUser(this.devId) === this.devId;
      } catch (e) {
        this.failed(e, true);
      }
    }
    return this.bound ? this.devId : undefined;
  }

  start(): void {
    if (!this.bound || this.started || this.closed) return;
    this.started = true;
    this.native.start();
    this.native.write(HCI_RESET);
  }

  /** The stacks never stop their socket; close() does. */
  stop(): void {}

  isDevUp(): boolean {
    return this.up;
  }

  /** HCI_FILTER only applies to raw-channel sockets: the user channel gets every packet. */
  setFilter(): void {}

  write(data: Buffer): void {
    // Never after close: the addon would write to a file descriptor number it no longer owns.
    if (this.up && !this.closed) this.native.write(data);
  }

  private received(packet: Buffer): void {
    if (this.closed) return;
    if (this.up) {
      this.emit('data', packet);
      return;
    }
    if (!isResetComplete(packet)) return;
    const status = packet[6]!;
    if (status !== 0) {
      this.failed(new Error(`HCI_Reset failed (status 0x${status.toString(16).padStart(2, '0')})`), true);
      return;
    }
    this.up = true;
    this.emit('state', true);
  }

  /**
   * Releases the adapter to the kernel (and so to BlueZ). With `reset`, HCI_Reset goes first: it
   * stops advertising, scanning and connections, and its answer wakes the reader thread, which
   * stop() joins; without a packet to wake it the join takes up to 1 s (the thread's read timeout).
   */
  close(reset: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.up = false;
    if (this.bound) {
      // A bound socket holds the adapter until its reader thread closes it.
      if (!this.started) this.native.start();
      if (reset) this.native.write(HCI_RESET);
      this.native.stop();
      retired.add(this.native);
    }
    this.native.removeAllListeners('data');
    this.removeAllListeners('state');
    this.removeAllListeners('data');
  }
}

/**
 * Installs a user-channel socket on adapter `options.devId` into `hci` and runs `init` (the
 * stack's bindings.init()). `powerUp` is what the stack does once the controller answered
 * HCI_Reset (its own pollIsDevUp body). Binding happens inside `init`, so an adapter that cannot
 * be had fails there: onFailure() then reports it at once.
 */
export function attachKernel(
  hci: StackHci,
  NativeSocket: NativeHciSocketClass,
  options: KernelOptions,
  powerUp: () => void,
  init: () => void,
): AttachedController {
  const name = `hci${options.devId}`;
  const failures = new FailureSignal();
  let closed = false;
  const socket = new UserChannelSocket(new NativeSocket(), options.devId, (error, whileOpening) => {
    if (closed || failures.failed) return;
    const { reason, code } = whileOpening ? explainOpenError(name, error) : explainIoError(name, error);
    failures.fail(reason, code);
  });
  try {
    installSocket(hci, socket, powerUp, init);
  } catch (e) {
    // The stack's init threw after the bind: nobody will close() what we return.
    socket.close(false);
    throw e;
  }
  return {
    onFailure(listener) {
      failures.on(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      socket.close(!failures.failed);
    },
  };
}

interface Explained {
  reason: string;
  code?: ErrorCode;
}

function details(error: unknown): { message: string; errno?: number; syscall?: string } {
  const e = error as { message?: unknown; errno?: unknown; syscall?: unknown } | null;
  return {
    message: typeof e?.message === 'string' ? e.message : describeError(error),
    ...(typeof e?.errno === 'number' ? { errno: e.errno } : {}),
    ...(typeof e?.syscall === 'string' ? { syscall: e.syscall } : {}),
  };
}

/**
 * Why taking adapter `name` failed, and what to do. A failed bind throws strerror(errno) without
 * the number, so the glibc (and musl) texts are matched.
 */
export function explainOpenError(name: string, error: unknown): Explained {
  const { message, errno } = details(error);
  if (errno === constants.errno.EAFNOSUPPORT || /address family not supported/i.test(message)) {
    return {
      code: ErrorCodes.UNSUPPORTED,
      reason: `${name}: this kernel has no Bluetooth sockets (no AF_BLUETOOTH: CONFIG_BT is not set), so kernel adapters cannot be used here; use a controller with HCI UART firmware instead ("hci": "/dev/ttyACM0")`,
    };
  }
  if (/not permitted|permission denied/i.test(message)) {
    return {
      reason: `${name}: not permitted to take the adapter (${message}): run as root, or give node the capabilities cap_net_admin,cap_net_raw (setcap)`,
    };
  }
  if (/busy/i.test(message)) {
    return {
      reason: `${name} is up in BlueZ (${message}): power it off (sudo btmgmt -i ${name} power off) or stop bluetooth.service; keyhop needs the adapter to itself (HCI_CHANNEL_USER)`,
    };
  }
  if (/too many users/i.test(message)) {
    return {
      reason: `${name} is already taken by another program (${message}): another keyhop node, or another central or peripheral on the same adapter`,
    };
  }
  if (/no such device/i.test(message)) {
    return {
      reason: `there is no ${name} (${message}): the kernel's adapters are listed in /sys/class/bluetooth`,
    };
  }
  if (/rf-?kill/i.test(message)) {
    return { reason: `${name} is blocked by rfkill (${message}): sudo rfkill unblock bluetooth` };
  }
  return { reason: `${name}: cannot take the adapter: ${message}` };
}

function explainIoError(name: string, error: unknown): Explained {
  const { message, syscall } = details(error);
  return { reason: `${name}: ${syscall !== undefined ? `${syscall} failed: ` : ''}${message}` };
}
