/**
 * BlePeripheral on @abandonware/bleno, on an HCI UART or a kernel adapter (see controller.ts).
 * bleno's package exports one process-wide instance; we build a BlenoBindings of our own per
 * peripheral (own Hci, Gap, Gatt, controller) and drive it directly instead of going through the
 * Bleno facade, which is hard-wired to that shared instance. One central at a time (bleno tracks
 * a single connection handle).
 */
import { EventEmitter } from 'node:events';
import { describeError, ErrorCodes, KeyhopError } from '../../../errors.js';
import { type Logger, silentLogger } from '../../../log.js';
import {
  type AdvertiseOptions,
  ATT_MIN_MTU,
  type BlePeripheral,
  type GattLink,
  type GattProfile,
} from '../gatt-link.js';
import { buildAdvertisingPayload, toStackUuid } from './advertising.js';
import type { AttachedController } from './attach.js';
import { attachController } from './controller.js';
import { HciGattLink } from './link.js';
import { loadBleno } from './load.js';
import { PendingOps } from './pending.js';
import type { BlenoBindings } from './stack-types.js';
import { describeHciTarget, type HciSelection, type HciTarget, resolveHciTarget } from './target.js';

/** The controller (`uartPath` or `hciDevice`, see HciSelection) and options. */
export type BlenoPeripheralOptions = HciSelection & {
  /** Largest ATT MTU agreed to in an exchange (bleno's default 256; 23 forces 20-byte values). */
  readonly maxMtu?: number;
  /** How long start() waits for the controller. Default 5000 ms. */
  readonly startTimeoutMs?: number;
  readonly log?: Logger;
};

/** ATT MTU is a 16-bit field; 517 is the largest useful value (512-byte attribute + 5). */
const MAX_ATT_MTU = 517;
const ADVERTISE_TIMEOUT_MS = 2_000;
const DISCONNECT_TIMEOUT_MS = 2_000;
const ATT_SUCCESS = 0x00;

type WriteCallback = (result: number) => void;
type UpdateValueCallback = (data: Buffer) => void;

/** What bleno's Gatt needs from a characteristic: these fields, and emit() for its requests. */
function characteristic(uuid: string, properties: string[]): EventEmitter {
  return Object.assign(new EventEmitter(), { uuid, properties, secure: [], value: null, descriptors: [] });
}

export class BlenoPeripheral implements BlePeripheral {
  private readonly target: HciTarget;
  /** The controller in messages: its UART path or `hci0`. */
  private readonly where: string;
  private readonly maxMtu: number;
  private readonly startTimeoutMs: number;
  private readonly log: Logger;
  private readonly ops = new PendingOps();
  private bindings: BlenoBindings | undefined;
  private controller: AttachedController | undefined;
  private profile: GattProfile | undefined;
  private onConnect: ((link: GattLink) => void) | undefined;
  /** The current central's link, from accept on (handed to onConnect once it subscribes). */
  private link: HciGattLink | undefined;
  private delivered = false;
  private updateValue: UpdateValueCallback | undefined;
  private mtu = ATT_MIN_MTU;
  private ended: string | undefined;
  private startCalled = false;

  constructor(options: BlenoPeripheralOptions) {
    this.target = resolveHciTarget(options);
    this.where = describeHciTarget(this.target);
    this.maxMtu = options.maxMtu ?? 256;
    if (!Number.isInteger(this.maxMtu) || this.maxMtu < ATT_MIN_MTU || this.maxMtu > MAX_ATT_MTU) {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `BLE maxMtu must be ${ATT_MIN_MTU}..${MAX_ATT_MTU}`);
    }
    this.startTimeoutMs = options.startTimeoutMs ?? 5000;
    this.log = (options.log ?? silentLogger).child({ ble: 'peripheral', hci: this.where });
  }

  async start(options: AdvertiseOptions, onConnect: (link: GattLink) => void): Promise<void> {
    if (this.startCalled) throw new KeyhopError(ErrorCodes.LISTEN_FAILED, 'BLE peripheral already started');
    this.startCalled = true;
    const payload = buildAdvertisingPayload(options);
    const loaded = await loadBleno();
    const { Bindings } = loaded;
    if (this.ended !== undefined) throw this.closedError();
    const bindings = new Bindings();
    bindings._gatt.maxMtu = this.maxMtu;
    const hci = bindings._hci;
    const started = Date.now();
    try {
      await this.ops.run<void>('controller start', this.startTimeoutMs, (resolve, reject) => {
        bindings.on('stateChange', (state: string) => {
          if (state === 'poweredOn') resolve();
          else if (state === 'unsupported' || state === 'unauthorized') {
            reject(new KeyhopError(ErrorCodes.LISTEN_FAILED, `BLE controller ${this.where} is ${state}`));
          }
        });
        // bindings.init() prints its 'unsupported'/'unauthorized' advice with console.log; the
        // rejection above says the same.
        this.controller = attachController(
          hci,
          loaded,
          this.target,
          () => hci.initDev(),
          () => bindings.init(),
        );
        this.controller.onFailure((reason, code) =>
          reject(new KeyhopError(code ?? ErrorCodes.LISTEN_FAILED, `BLE peripheral: ${reason}`)),
        );
      });
    } catch (e) {
      await this.end(describeError(e));
      bindings.removeAllListeners();
      throw e;
    }
    this.bindings = bindings;
    this.profile = options.profile;
    this.onConnect = onConnect;
    this.controller!.onFailure((reason) => this.lost(reason));
    bindings.on('stateChange', (state: string) => {
      if (state === 'poweredOff') this.lost('controller powered off');
    });
    bindings.on('accept', (address: string) => this.accepted(address));
    bindings.on('mtuChange', (mtu: number) => {
      this.mtu = mtu;
      this.link?.setMtu(mtu);
    });
    bindings.on('disconnect', () => this.disconnected());
    bindings.setServices([this.service(options.profile)]);
    this.log.debug({ ms: Date.now() - started }, 'peripheral powered on');
    await this.startAdvertising(payload.advertisement, payload.scanResponse);
  }

  async advertise(options: AdvertiseOptions): Promise<void> {
    const bindings = this.ready();
    if (options.profile.service !== this.profile?.service) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        'BLE advertise(): the GATT profile is fixed by start()',
      );
    }
    const { advertisement, scanResponse } = buildAdvertisingPayload(options);
    // Advertising is enabled once, by start(); bleno re-enables it by itself after each
    // disconnect. Enabling it again is "Command Disallowed" while it runs, and a start issued
    // from a 'disconnect' listener never reports (bleno's "restarting" state swallows the
    // completion), so only the data is replaced; it applies now or when advertising resumes.
    const hci = bindings._hci;
    await this.ops.run<void>('set advertising data', ADVERTISE_TIMEOUT_MS, (resolve, reject) => {
      const onSet = (status: number) => {
        hci.removeListener('leAdvertisingDataSet', onSet);
        if (status === 0) resolve();
        else
          reject(
            new KeyhopError(
              ErrorCodes.LISTEN_FAILED,
              `BLE advertising data refused (HCI status 0x${status.toString(16)})`,
            ),
          );
      };
      hci.on('leAdvertisingDataSet', onSet);
      hci.setScanResponseData(scanResponse);
      hci.setAdvertisingData(advertisement);
    });
  }

  private async startAdvertising(advertisement: Buffer, scanResponse: Buffer): Promise<void> {
    const bindings = this.ready();
    await this.ops.run<void>('start advertising', ADVERTISE_TIMEOUT_MS, (resolve, reject) => {
      const onStart = (error?: Error | null) => {
        bindings.removeListener('advertisingStart', onStart);
        if (error) reject(new KeyhopError(ErrorCodes.LISTEN_FAILED, `BLE advertising: ${error.message}`));
        else resolve();
      };
      bindings.on('advertisingStart', onStart);
      bindings.startAdvertisingWithEIRData(advertisement, scanResponse);
    });
  }

  private service(profile: GattProfile): EventEmitter {
    const write = characteristic(toStackUuid(profile.write), ['write', 'writeWithoutResponse']);
    write.on(
      'writeRequest',
      (data: Buffer, _offset: number, _withoutResponse: boolean, callback: WriteCallback) => {
        callback(ATT_SUCCESS);
        this.link?.deliver(data);
      },
    );
    const notify = characteristic(toStackUuid(profile.notify), ['notify']);
    notify.on('subscribe', (maxValueSize: number, updateValue: UpdateValueCallback) =>
      this.subscribed(maxValueSize, updateValue),
    );
    notify.on('unsubscribe', () => this.unsubscribed());
    return Object.assign(new EventEmitter(), {
      uuid: toStackUuid(profile.service),
      characteristics: [write, notify],
    });
  }

  private accepted(address: string): void {
    this.link?.closed('replaced by a new connection');
    this.delivered = false;
    this.updateValue = undefined;
    this.mtu = ATT_MIN_MTU;
    const link: HciGattLink = new HciGattLink('peripheral', address.toLowerCase(), ATT_MIN_MTU, {
      send: (value) => {
        // bleno would silently truncate to mtu − 3 and, after the disconnect, queue ACL data
        // for a dead handle (which wedges its ACL flow control); the link checks both first.
        const update = this.updateValue;
        if (update === undefined || this.link !== link) throw new Error('central is not subscribed');
        update(value);
      },
      disconnect: () => this.disconnectCentral(link),
    });
    this.link = link;
    this.log.debug({ peer: link.peer }, 'central connected');
  }

  private subscribed(maxValueSize: number, updateValue: UpdateValueCallback): void {
    const link = this.link;
    if (link === undefined) return;
    this.updateValue = updateValue;
    link.setMtu(Math.max(this.mtu, maxValueSize + 3));
    if (this.delivered) return;
    this.delivered = true;
    this.log.debug({ peer: link.peer, mtu: link.mtu }, 'peripheral link open');
    this.onConnect?.(link);
  }

  private unsubscribed(): void {
    const link = this.link;
    this.updateValue = undefined;
    if (link === undefined) return;
    // bleno also reports 'unsubscribe' as part of a disconnect, just before 'disconnect'; wait a
    // turn so the link closes with the real reason.
    queueMicrotask(() => {
      if (this.link !== link || !link.isOpen) return;
      link.closed('central unsubscribed');
      this.bindings?.disconnect();
    });
  }

  private disconnected(): void {
    const link = this.link;
    this.link = undefined;
    this.updateValue = undefined;
    this.delivered = false;
    link?.closed('central disconnected');
    // bleno re-enables advertising by itself after a disconnect (see advertise()).
  }

  private async disconnectCentral(link: HciGattLink): Promise<void> {
    if (!link.isOpen) return;
    const bindings = this.bindings;
    if (bindings === undefined || this.link !== link) {
      link.closed('peripheral stopped');
      return;
    }
    await link.closeWithin(() => bindings.disconnect(), DISCONNECT_TIMEOUT_MS);
  }

  async stop(): Promise<void> {
    if (this.ended !== undefined) return;
    const bindings = this.bindings;
    if (bindings !== undefined) {
      await this.link?.disconnect();
      // Best effort: the HCI_Reset sent on close stops advertising on real controllers anyway.
      await this.ops
        .run<void>('stop advertising', 1000, (resolve) => {
          bindings.once('advertisingStop', () => resolve());
          bindings.stopAdvertising();
        })
        .catch(() => undefined);
    }
    await this.end('peripheral stopped');
  }

  private lost(reason: string): void {
    if (this.ended !== undefined) return;
    this.log.warn({ reason }, 'BLE controller lost');
    void this.end(`controller lost: ${reason}`);
  }

  private async end(reason: string): Promise<void> {
    if (this.ended === undefined) this.ended = reason;
    this.ops.failAll(new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `BLE peripheral: ${reason}`));
    const link = this.link;
    this.link = undefined;
    this.updateValue = undefined;
    link?.closed(reason);
    const controller = this.controller;
    this.controller = undefined;
    const bindings = this.bindings;
    this.bindings = undefined;
    bindings?.removeAllListeners();
    await controller?.close();
    if (bindings !== undefined) {
      bindings._hci.removeAllListeners();
      bindings._gatt.removeAllListeners();
    }
  }

  private ready(): BlenoBindings {
    if (this.bindings === undefined) {
      if (this.ended !== undefined) throw this.closedError();
      throw new KeyhopError(ErrorCodes.LISTEN_FAILED, 'BLE peripheral: call start() first');
    }
    return this.bindings;
  }

  private closedError(): KeyhopError {
    return new KeyhopError(
      ErrorCodes.CONNECTION_CLOSED,
      `BLE peripheral on ${this.where} is stopped (${this.ended})`,
    );
  }
}
