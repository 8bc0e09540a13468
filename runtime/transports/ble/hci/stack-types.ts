/**
 * The few parts of noble, bleno and the HCI socket drivers this binding touches, typed minimally.
 * The packages ship no types for their internals; these shapes match @abandonware/noble
 * 1.9.2-26, @abandonware/bleno 0.6.2 and @stoprocent/bluetooth-hci-socket 2.3.0 (installed as
 * @abandonware/bluetooth-hci-socket through an npm override). Underscored members are private
 * to those packages: we use them because neither offers a public way to pick a controller per
 * instance.
 */
import type { EventEmitter } from 'node:events';

export interface UartBindParams {
  uart: { port: string; baudRate: number };
}

/** The fork's serialport (v12) instance behind the UART driver. */
export interface SerialPortLike extends EventEmitter {
  readonly isOpen: boolean;
  close(callback?: (error?: Error | null) => void): void;
  drain(callback: (error?: Error | null) => void): void;
}

/**
 * What noble's and bleno's Hci call on their socket. Our glue (controller.ts) also listens for
 * 'state', which a socket emits whenever isDevUp() changes.
 */
export interface StackSocket extends EventEmitter {
  bindRaw(devId?: number, params?: UartBindParams): unknown;
  bindUser(devId?: number, params?: UartBindParams, mode?: string): unknown;
  start(): void;
  stop(): void;
  isDevUp(): boolean;
  setFilter(filter: Buffer): void;
  write(data: Buffer): void;
}

/** lib/uart.js of the hci-socket fork. */
export interface HciSocket extends StackSocket {
  bindRaw(devId?: number, params?: UartBindParams): void;
  bindUser(devId?: number, params?: UartBindParams, mode?: string): void;
  /** Writes HCI_Reset straight to the port. */
  reset(): void;
  _serialDevice: SerialPortLike | null;
  _handleReconnection(...args: unknown[]): unknown;
}

export type HciSocketClass = new () => HciSocket;

/**
 * lib/native.js of the hci-socket fork: an AF_BLUETOOTH HCI socket (N-API addon, Linux only).
 * The socket is created on first use; when that fails (no AF_BLUETOOTH) every call emits 'error'
 * ({ errno, syscall }) and does nothing. A failed bind throws an Error whose message is
 * strerror(errno); a failed write emits 'error'.
 */
export interface NativeHciSocket extends EventEmitter {
  /** Binds HCI_CHANNEL_USER on adapter `devId`: returns devId, undefined when no socket exists. */
  bindUser(devId?: number): number | undefined;
  /**
   * Starts a reader thread; each read() (one HCI packet, H4 type byte first) is emitted as 'data'.
   * The thread reads with a 1 s timeout and holds the event loop open until stop().
   */
  start(): void;
  /** Stops and joins the reader thread, which then closes the socket. */
  stop(): void;
  write(data: Buffer): void;
}

export type NativeHciSocketClass = new () => NativeHciSocket;

/** What noble's and bleno's Hci objects have in common. */
export interface StackHci extends EventEmitter {
  _socket: StackSocket;
  _isDevUp: boolean | null;
  /** noble only: HCI_CHANNEL_USER from the environment, read when its Hci is built. */
  _userChannel?: unknown;
  pollIsDevUp(): void;
  setSocketFilter(): void;
}

export interface NobleHci extends StackHci {
  /** Queued ACL packets and the connections they are for (noble internals, see noble-central.ts). */
  _aclQueue: { handle: number; packet: Buffer }[];
  _aclConnections: Map<number, { pending: number }>;
  flushAcl(): Promise<void>;
  setEventMask(): void;
  setLeEventMask(): void;
  readLocalVersion(): void;
  writeLeHostSupported(): void;
  readLeHostSupported(): void;
  readLeBufferSize(): void;
  readBdAddr(): void;
}

export interface NobleBindings extends EventEmitter {
  _hci: NobleHci;
  _handles: Record<string | number, string | number | undefined>;
  init(): void;
  onDisconnComplete(this: NobleBindings, handle: number, reason: number): void;
}

export type NobleBindingsClass = new (options: Record<string, unknown>) => NobleBindings;

export interface NobleAdvertisement {
  localName?: string;
  serviceUuids?: string[];
  manufacturerData?: Buffer;
}

export interface NobleCharacteristic extends EventEmitter {
  readonly uuid: string;
  readonly properties: string[];
  write(data: Buffer, withoutResponse: boolean, callback?: (error: Error | null) => void): void;
  subscribe(callback: (error: Error | null) => void): void;
}

export interface NoblePeripheral extends EventEmitter {
  readonly id: string;
  readonly address: string;
  readonly advertisement: NobleAdvertisement;
  readonly rssi: number;
  mtu: number | null;
  state: string;
  connect(callback: (error?: Error | null) => void): void;
  cancelConnect(): void;
  disconnect(callback?: () => void): void;
  discoverSomeServicesAndCharacteristics(
    serviceUuids: string[],
    characteristicUuids: string[],
    callback: (
      error: unknown,
      services: unknown[] | null,
      characteristics: NobleCharacteristic[] | null,
    ) => void,
  ): void;
}

export interface Noble extends EventEmitter {
  initialized: boolean;
  address: string;
  _peripherals: Record<string, NoblePeripheral | undefined>;
  /** Throws when the adapter is not powered on. */
  startScanning(serviceUuids: string[], allowDuplicates: boolean): void;
  stopScanning(callback?: () => void): void;
}

export type NobleClass = new (bindings: NobleBindings) => Noble;

export interface BlenoHci extends StackHci {
  initDev(): void;
  setAdvertisingData(data: Buffer): void;
  setScanResponseData(data: Buffer): void;
}

export interface BlenoBindings extends EventEmitter {
  _hci: BlenoHci;
  _gatt: EventEmitter & { maxMtu: number };
  _handle: number | null;
  init(): void;
  setServices(services: unknown[]): void;
  startAdvertisingWithEIRData(advertisementData: Buffer, scanData: Buffer): void;
  stopAdvertising(): void;
  disconnect(): void;
}

export type BlenoBindingsClass = new () => BlenoBindings;
