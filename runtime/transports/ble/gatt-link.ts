/**
 * The small interface between keyhop's BLE transport and a Bluetooth stack binding. Everything
 * that knows about noble or bleno lives behind it (runtime/transports/ble/hci/), so swapping the
 * binding (another noble fork, BlueZ over D-Bus, a Web Bluetooth shim) stays local.
 *
 * A GATT profile is one service with two characteristics: the central writes (without response)
 * to `write`, the peripheral notifies on `notify`. keyhop's own profile and the Nordic UART
 * Service are both of that shape.
 */

export interface GattProfile {
  /** Short name used in logs and addresses: `keyhop` or `nus`. */
  readonly name: string;
  /** 128-bit UUIDs, lowercase with dashes. */
  readonly service: string;
  /** Central → peripheral: write and write-without-response. */
  readonly write: string;
  /** Peripheral → central: notify. */
  readonly notify: string;
}

/** keyhop's GATT service (random version-4 UUIDs of our own; docs/protocols/ble.md). */
export const KEYHOP_PROFILE: GattProfile = Object.freeze({
  name: 'keyhop',
  service: 'c6a1f3e0-5b7d-4e29-9a44-6b8d2f0e1c01',
  write: 'c6a1f3e0-5b7d-4e29-9a44-6b8d2f0e1c02',
  notify: 'c6a1f3e0-5b7d-4e29-9a44-6b8d2f0e1c03',
});

/** Nordic UART Service, as Espruino and many modules offer it (RX = write, TX = notify). */
export const NUS_PROFILE: GattProfile = Object.freeze({
  name: 'nus',
  service: '6e400001-b5a3-f393-e0a9-e50e24dcca9e',
  write: '6e400002-b5a3-f393-e0a9-e50e24dcca9e',
  notify: '6e400003-b5a3-f393-e0a9-e50e24dcca9e',
});

/** The smallest ATT MTU (Core spec Vol 3 Part F 3.2.8); a value is at most MTU − 3 bytes. */
export const ATT_MIN_MTU = 23;

/** One GATT connection between a central and a peripheral, seen from either side. */
export interface GattLink {
  readonly role: 'central' | 'peripheral';
  /** The peer's Bluetooth device address, lowercase `aa:bb:cc:dd:ee:ff`. */
  readonly peer: string;
  /** The ATT MTU in force now (23 until an exchange raised it). A value is at most mtu − 3 bytes. */
  readonly mtu: number;
  readonly isOpen: boolean;
  /**
   * Sends one value of at most mtu − 3 bytes: the central writes it without response to the
   * `write` characteristic, the peripheral notifies it on `notify` (once the central subscribed).
   * Resolves once the stack took it; rejects with a KeyhopError when the link is closed.
   */
  send(value: Uint8Array): Promise<void>;
  /** Values from the peer, in order: notifications on the central, writes on the peripheral. */
  onValue(listener: (value: Uint8Array) => void): void;
  /** The ATT MTU changed (MTU exchange). */
  onMtu(listener: (mtu: number) => void): void;
  /** The connection ended (either side, or the controller went away). Called once. */
  onClose(listener: (reason: string) => void): void;
  /** Disconnects; resolves when the link is closed. Idempotent. */
  disconnect(): Promise<void>;
}

/** One advertising device seen by a scan. */
export interface BleAdvertisement {
  /** The binding's handle for connect() (noble's peripheral id). */
  readonly id: string;
  /** Device address, lowercase `aa:bb:cc:dd:ee:ff` (may be empty if the stack hides it). */
  readonly address: string;
  readonly name?: string;
  readonly serviceUuids: readonly string[];
  /** Manufacturer-specific data, company identifier (2 bytes, little-endian) first. */
  readonly manufacturerData?: Uint8Array;
  readonly rssi: number;
}

export interface ScanOptions {
  /** Only devices advertising one of these service UUIDs. */
  readonly services: readonly string[];
  /** How long to scan. */
  readonly durationMs: number;
  /** Called for each device the first time it is seen (and again when its data changes). */
  readonly onFound?: (ad: BleAdvertisement) => void;
  /** Stops the scan early when it returns true for a device. */
  readonly until?: (ad: BleAdvertisement) => boolean;
}

export interface BleCentral {
  /** Waits for the adapter to be powered on. */
  start(): Promise<void>;
  /** Scans; resolves with every device seen (latest data for each). */
  scan(options: ScanOptions): Promise<BleAdvertisement[]>;
  /** Connects, discovers the profile, subscribes to `notify`. Rejects with a KeyhopError. */
  connect(id: string, profile: GattProfile, options?: { timeoutMs?: number }): Promise<GattLink>;
  /** Disconnects every link and releases the adapter. */
  stop(): Promise<void>;
}

export interface AdvertiseOptions {
  /** Local name in the scan response (keep it short: 31-byte budget with manufacturerData). */
  readonly name: string;
  readonly profile: GattProfile;
  /** Manufacturer-specific data, company identifier first; in the scan response. */
  readonly manufacturerData?: Uint8Array;
}

export interface BlePeripheral {
  /** Waits for the adapter, installs the profile's service and starts advertising. */
  start(options: AdvertiseOptions, onConnect: (link: GattLink) => void): Promise<void>;
  /** Changes the advertised data (e.g. paired / unpaired). */
  advertise(options: AdvertiseOptions): Promise<void>;
  /** Stops advertising, disconnects and releases the adapter. */
  stop(): Promise<void>;
}
