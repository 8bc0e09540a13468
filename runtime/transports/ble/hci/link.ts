import { ErrorCodes, KeyhopError } from '../../../errors.js';
import { ATT_MIN_MTU, type GattLink } from '../gatt-link.js';

/** What a link needs from its side of the stack. */
export interface LinkIo {
  /** Hands one value (≤ mtu − 3 bytes) to the stack; throws if the stack refuses it. */
  send(value: Buffer): void;
  /** Asks the stack to disconnect; the side calls closed() when the stack confirms. */
  disconnect(): Promise<void>;
}

/**
 * One GATT connection as the stacks see it. The central or peripheral that owns it feeds it
 * values, MTU changes and the close; listeners run outside the stack's call stack errors-wise
 * (a throwing listener is rethrown asynchronously and never corrupts the stack's HCI parsing).
 */
export class HciGattLink implements GattLink {
  private currentMtu: number;
  private open = true;
  private readonly valueListeners: ((value: Uint8Array) => void)[] = [];
  private readonly mtuListeners: ((mtu: number) => void)[] = [];
  private readonly closeListeners: ((reason: string) => void)[] = [];
  /** Values that arrived before anyone listened (e.g. written before onConnect ran). */
  private backlog: Uint8Array[] = [];

  constructor(
    readonly role: 'central' | 'peripheral',
    readonly peer: string,
    mtu: number,
    private readonly io: LinkIo,
  ) {
    this.currentMtu = Math.max(ATT_MIN_MTU, mtu);
  }

  get mtu(): number {
    return this.currentMtu;
  }

  get isOpen(): boolean {
    return this.open;
  }

  send(value: Uint8Array): Promise<void> {
    if (!this.open) {
      return Promise.reject(
        new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `BLE link to ${this.peer} is closed`),
      );
    }
    const max = this.currentMtu - 3;
    if (value.length > max) {
      return Promise.reject(
        new KeyhopError(
          ErrorCodes.ENCODE_LIMIT,
          `BLE value of ${value.length} bytes exceeds ${max} (ATT MTU ${this.currentMtu} − 3)`,
        ),
      );
    }
    try {
      this.io.send(Buffer.from(value));
    } catch (e) {
      return Promise.reject(
        new KeyhopError(ErrorCodes.SEND_FAILED, `BLE send to ${this.peer} failed`, { cause: e }),
      );
    }
    return Promise.resolve();
  }

  onValue(listener: (value: Uint8Array) => void): void {
    this.valueListeners.push(listener);
    const backlog = this.backlog;
    this.backlog = [];
    for (const v of backlog) this.call(listener, v);
  }

  onMtu(listener: (mtu: number) => void): void {
    this.mtuListeners.push(listener);
  }

  onClose(listener: (reason: string) => void): void {
    this.closeListeners.push(listener);
  }

  disconnect(): Promise<void> {
    return this.open ? this.io.disconnect() : Promise.resolve();
  }

  /**
   * Runs the stack's disconnect (`trigger`) and waits for the stack to confirm the close, or closes
   * the link itself after `timeoutMs` (a controller that went away never confirms).
   */
  closeWithin(trigger: () => void, timeoutMs: number): Promise<void> {
    if (!this.open) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.closed('disconnect timed out');
        resolve();
      }, timeoutMs);
      this.onClose(() => {
        clearTimeout(timer);
        resolve();
      });
      trigger();
    });
  }

  /** From the stack: a value from the peer (copied: the stacks hand out slices of packets). */
  deliver(data: Buffer): void {
    if (!this.open) return;
    const value = new Uint8Array(data);
    if (this.valueListeners.length === 0) {
      this.backlog.push(value);
      return;
    }
    for (const l of this.valueListeners) this.call(l, value);
  }

  /** From the stack: the ATT MTU in force changed. */
  setMtu(mtu: number): void {
    if (!this.open || mtu === this.currentMtu || mtu < ATT_MIN_MTU) return;
    this.currentMtu = mtu;
    for (const l of this.mtuListeners) this.call(l, mtu);
  }

  /** From the stack: the connection is gone. Runs the close listeners once. */
  closed(reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.backlog = [];
    for (const l of this.closeListeners) this.call(l, reason);
  }

  private call<T>(listener: (arg: T) => void, arg: T): void {
    try {
      listener(arg);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}
