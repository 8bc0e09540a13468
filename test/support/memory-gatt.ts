import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type {
  AdvertiseOptions,
  BleAdvertisement,
  BleCentral,
  BlePeripheral,
  GattLink,
} from '../../runtime/transports/ble/gatt-link.js';

export interface MemoryGattOptions {
  mtu?: number;
  /**
   * Values a side's stack holds before it drops new ones, like a notification queue that is full
   * (the credit window must keep senders under it). Default unbounded.
   */
  stackQueue?: number;
  /** Values the stack delivers per tick (1 = one per macrotask, like a slow radio). Default 4. */
  perTick?: number;
}

class MemorySide implements GattLink {
  mtu: number;
  isOpen = true;
  peerSide!: MemorySide;
  readonly sent: Uint8Array[] = [];
  dropped = 0;
  private readonly inFlight: Uint8Array[] = [];
  private scheduled = false;
  private readonly valueListeners: ((v: Uint8Array) => void)[] = [];
  private readonly mtuListeners: ((m: number) => void)[] = [];
  private readonly closeListeners: ((r: string) => void)[] = [];

  constructor(
    readonly role: 'central' | 'peripheral',
    public peer: string,
    private readonly options: Required<MemoryGattOptions>,
  ) {
    this.mtu = options.mtu;
  }

  async send(value: Uint8Array): Promise<void> {
    if (!this.isOpen) throw new KeyhopError(ErrorCodes.CONNECTION_CLOSED, 'memory gatt link closed');
    if (value.length > this.mtu - 3) {
      throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `value of ${value.length} > mtu ${this.mtu} - 3`);
    }
    this.sent.push(value.slice());
    if (this.inFlight.length >= this.options.stackQueue) {
      this.dropped++;
      return;
    }
    this.inFlight.push(value.slice());
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (let i = 0; i < this.options.perTick && this.inFlight.length > 0; i++) {
        const v = this.inFlight.shift()!;
        if (this.peerSide.isOpen) this.peerSide.receive(v);
      }
      if (this.inFlight.length > 0) this.schedule();
    });
  }

  /** Values that arrived before anyone listened stay here, as the real stacks' links keep them. */
  private readonly backlog: Uint8Array[] = [];

  receive(v: Uint8Array): void {
    if (this.valueListeners.length === 0) this.backlog.push(v);
    else for (const l of this.valueListeners) l(v);
  }

  onValue(listener: (value: Uint8Array) => void): void {
    this.valueListeners.push(listener);
    for (const v of this.backlog.splice(0)) listener(v);
  }
  onMtu(listener: (mtu: number) => void): void {
    this.mtuListeners.push(listener);
  }
  onClose(listener: (reason: string) => void): void {
    this.closeListeners.push(listener);
  }

  setMtu(mtu: number): void {
    for (const s of [this, this.peerSide]) {
      s.mtu = mtu;
      for (const l of s.mtuListeners) l(mtu);
    }
  }

  closeWith(reason: string): void {
    for (const s of [this, this.peerSide]) {
      if (!s.isOpen) continue;
      s.isOpen = false;
      s.inFlight.length = 0;
      for (const l of s.closeListeners) l(reason);
    }
  }

  async disconnect(): Promise<void> {
    this.closeWith('disconnected');
  }
}

/** Two connected in-memory GATT links (central, peripheral) for unit tests of the framing. */
export function memoryGattPair(options: MemoryGattOptions = {}): {
  central: MemorySide;
  peripheral: MemorySide;
} {
  const o = {
    mtu: options.mtu ?? 23,
    stackQueue: options.stackQueue ?? Infinity,
    perTick: options.perTick ?? 4,
  };
  const central = new MemorySide('central', 'aa:aa:aa:aa:aa:02', o);
  const peripheral = new MemorySide('peripheral', 'aa:aa:aa:aa:aa:01', o);
  central.peerSide = peripheral;
  peripheral.peerSide = central;
  return { central, peripheral };
}

/**
 * An in-memory radio: peripherals advertise on it, centrals scan and connect. For unit tests of
 * the transport's logic; the real stacks are tested on the virtual-controller rig.
 */
export class MemoryRadio {
  private readonly advertisers = new Map<
    string,
    { options: AdvertiseOptions; onConnect: (l: GattLink) => void; link?: MemorySide }
  >();
  private next = 1;
  constructor(private readonly gatt: MemoryGattOptions = {}) {}

  peripheral(): BlePeripheral & { readonly address: string; dropLink(): void } {
    const address = `aa:00:00:00:00:${(this.next++).toString(16).padStart(2, '0')}`;
    const radio = this;
    return {
      address,
      async start(options, onConnect) {
        radio.advertisers.set(address, { options, onConnect });
      },
      async advertise(options) {
        const a = radio.advertisers.get(address);
        if (a) a.options = options;
      },
      async stop() {
        radio.advertisers.get(address)?.link?.closeWith('stopped');
        radio.advertisers.delete(address);
      },
      dropLink() {
        radio.advertisers.get(address)?.link?.closeWith('link lost');
      },
    };
  }

  central(): BleCentral {
    const radio = this;
    const centralAddress = `cc:00:00:00:00:${(this.next++).toString(16).padStart(2, '0')}`;
    return {
      async start() {},
      async scan(options) {
        const out: BleAdvertisement[] = [];
        for (const [address, a] of radio.advertisers) {
          if (!options.services.includes(a.options.profile.service)) continue;
          const ad: BleAdvertisement = {
            id: address.replaceAll(':', ''),
            address,
            name: a.options.name,
            serviceUuids: [a.options.profile.service],
            manufacturerData: a.options.manufacturerData,
            rssi: -40,
          };
          out.push(ad);
          options.onFound?.(ad);
          if (options.until?.(ad)) break;
        }
        return out;
      },
      async connect(id) {
        const entry = [...radio.advertisers].find(([address]) => address.replaceAll(':', '') === id);
        if (entry === undefined) throw new KeyhopError(ErrorCodes.CONNECT_FAILED, `no device ${id}`);
        const [address, a] = entry;
        const pair = memoryGattPair(radio.gatt);
        (pair.central as { peer: string }).peer = address;
        (pair.peripheral as { peer: string }).peer = centralAddress;
        a.link = pair.peripheral;
        a.onConnect(pair.peripheral);
        return pair.central;
      },
      async stop() {},
    };
  }
}
