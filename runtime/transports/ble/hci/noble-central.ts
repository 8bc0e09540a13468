/**
 * BleCentral on @abandonware/noble: one noble instance with its own bindings and its own
 * controller per NobleCentral, on an HCI UART or a kernel adapter (see controller.ts).
 */
import { asKeyhopError, describeError, ErrorCodes, KeyhopError } from '../../../errors.js';
import { type Logger, silentLogger } from '../../../log.js';
import {
  ATT_MIN_MTU,
  type BleAdvertisement,
  type BleCentral,
  type GattLink,
  type GattProfile,
  type ScanOptions,
} from '../gatt-link.js';
import { fromStackUuid, toStackUuid } from './advertising.js';
import type { AttachedController } from './attach.js';
import { attachController } from './controller.js';
import { HciGattLink } from './link.js';
import { loadNoble } from './load.js';
import { PendingOps } from './pending.js';
import type { Noble, NobleBindings, NobleCharacteristic, NobleHci, NoblePeripheral } from './stack-types.js';
import { describeHciTarget, type HciSelection, type HciTarget, resolveHciTarget } from './target.js';

/** The controller (`uartPath` or `hciDevice`, see HciSelection) and options. */
export type NobleCentralOptions = HciSelection & {
  /** How long start() waits for the controller. Default 5000 ms. */
  readonly startTimeoutMs?: number;
  readonly log?: Logger;
};

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DISCONNECT_TIMEOUT_MS = 2_000;

interface Stack {
  readonly noble: Noble;
  readonly bindings: NobleBindings;
  readonly controller: AttachedController;
}

interface Connection {
  readonly link: HciGattLink;
  readonly peripheral: NoblePeripheral;
  readonly release: () => void;
}

export class NobleCentral implements BleCentral {
  private readonly target: HciTarget;
  /** The controller in messages: its UART path or `hci0`. */
  private readonly where: string;
  private readonly startTimeoutMs: number;
  private readonly log: Logger;
  private readonly ops = new PendingOps();
  private readonly connections = new Map<string, Connection>();
  private stack: Stack | undefined;
  private starting: Promise<void> | undefined;
  private ended: string | undefined;
  private scanning = false;

  constructor(options: NobleCentralOptions) {
    this.target = resolveHciTarget(options);
    this.where = describeHciTarget(this.target);
    this.startTimeoutMs = options.startTimeoutMs ?? 5000;
    this.log = (options.log ?? silentLogger).child({ ble: 'central', hci: this.where });
  }

  start(): Promise<void> {
    this.starting ??= this.open();
    return this.starting;
  }

  private async open(): Promise<void> {
    const loaded = await loadNoble();
    const { Noble, Bindings } = loaded;
    if (this.ended !== undefined) throw this.closedError();
    const bindings = new Bindings({});
    // noble console.warn()s a Disconnection Complete for a handle it no longer tracks (a late
    // event after a cancelled connect or a reset); it is harmless.
    const onDisconnComplete = bindings.onDisconnComplete;
    bindings.onDisconnComplete = function (handle: number, reason: number) {
      if (this._handles[handle] !== undefined) onDisconnComplete.call(this, handle, reason);
    };
    const noble = new Noble(bindings);
    // noble console.warn()s its warnings unless someone else listens.
    noble.on('warning', (message: string) => this.log.debug({ message }, 'noble warning'));
    // We initialise the bindings ourselves (attachController); stop noble's lazy init on first listener.
    noble.initialized = true;
    const hci = bindings._hci;
    // noble's flushAcl is async and called without await: after its first await it looks up the
    // connection of every queued ACL packet, and a packet queued (by a late write) for a link whose
    // Disconnection Complete has been handled has none: an unhandled TypeError that fails the
    // process's test run. Packets for a link that is gone are dropped first (nothing can carry
    // them), and whatever else it rejects with is logged.
    const flushAcl = hci.flushAcl;
    const log = this.log;
    hci.flushAcl = function (this: NobleHci): Promise<void> {
      this._aclQueue = this._aclQueue.filter((p) => this._aclConnections.has(p.handle));
      return flushAcl.call(this).catch((e: unknown) => {
        log.debug({ err: describeError(e) }, 'noble could not flush its ACL queue');
      });
    };
    const started = Date.now();
    let controller: AttachedController | undefined;
    try {
      await this.ops.run<void>('controller start', this.startTimeoutMs, (resolve, reject) => {
        noble.on('stateChange', (state: string) => {
          if (state === 'poweredOn') resolve();
          else if (state === 'unsupported' || state === 'unauthorized') {
            reject(new KeyhopError(ErrorCodes.CONNECT_FAILED, `BLE controller ${this.where} is ${state}`));
          }
        });
        controller = attachController(
          hci,
          loaded,
          this.target,
          () => {
            // noble's pollIsDevUp body once the controller is up.
            hci.setEventMask();
            hci.setLeEventMask();
            hci.readLocalVersion();
            hci.writeLeHostSupported();
            hci.readLeHostSupported();
            hci.readLeBufferSize();
            hci.readBdAddr();
          },
          () => bindings.init(),
        );
        controller.onFailure((reason, code) =>
          reject(new KeyhopError(code ?? ErrorCodes.CONNECT_FAILED, `BLE central: ${reason}`)),
        );
      });
    } catch (e) {
      await controller?.close();
      noble.removeAllListeners();
      this.ended = describeError(e);
      throw e;
    }
    const ready = controller!;
    this.stack = { noble, bindings, controller: ready };
    ready.onFailure((reason) => this.lost(reason));
    noble.on('stateChange', (state: string) => {
      if (state === 'poweredOff') this.lost('controller powered off');
    });
    bindings.on('onMtu', (id: string, mtu: number) => this.connections.get(id)?.link.setMtu(mtu));
    this.log.debug({ ms: Date.now() - started, address: noble.address }, 'central powered on');
  }

  scan(options: ScanOptions): Promise<BleAdvertisement[]> {
    let noble: Noble;
    try {
      noble = this.ready().noble;
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.scanning) {
      return Promise.reject(new KeyhopError(ErrorCodes.CONNECT_FAILED, 'BLE central is already scanning'));
    }
    this.scanning = true;
    const seen = new Map<string, { ad: BleAdvertisement; key: string }>();
    let timer: NodeJS.Timeout | undefined;
    let onDiscover: ((p: NoblePeripheral) => void) | undefined;
    return this.ops
      .run<BleAdvertisement[]>('scan', options.durationMs + 5000, (resolve, reject) => {
        const finish = () => resolve([...seen.values()].map((s) => s.ad));
        onDiscover = (p: NoblePeripheral) => {
          const ad = toAdvertisement(p);
          const key = adKey(ad);
          if (seen.get(ad.id)?.key !== key) {
            seen.set(ad.id, { ad, key });
            options.onFound?.(ad);
          }
          if (options.until?.(ad)) finish();
        };
        // Before startScanning: btvirt (and fast controllers) report in the same burst as the
        // Scan Enable completion, and noble reports a device only once per scan otherwise.
        noble.on('discover', onDiscover);
        timer = setTimeout(finish, options.durationMs);
        // Duplicates on: a changed advertisement (advertise() on the peer) is reported again.
        // No callback: noble would leave it registered when the scan stops before it started;
        // without one it throws when the adapter is not powered on.
        try {
          noble.startScanning(options.services.map(toStackUuid), true);
        } catch (e) {
          reject(asKeyhopError(e, ErrorCodes.CONNECT_FAILED, 'BLE scan'));
        }
      })
      .finally(() => {
        clearTimeout(timer);
        this.endScan(onDiscover);
      });
  }

  private endScan(onDiscover: ((p: NoblePeripheral) => void) | undefined): void {
    this.scanning = false;
    const stack = this.stack;
    if (stack === undefined) return;
    if (onDiscover) stack.noble.removeListener('discover', onDiscover);
    if (this.ended === undefined) stack.noble.stopScanning();
  }

  async connect(id: string, profile: GattProfile, options: { timeoutMs?: number } = {}): Promise<GattLink> {
    const { noble } = this.ready();
    const peripheral = noble._peripherals[id];
    if (peripheral === undefined) {
      throw new KeyhopError(ErrorCodes.CONNECT_FAILED, `BLE device ${id} has not been seen by a scan`);
    }
    if (this.connections.has(id) || peripheral.state === 'connected' || peripheral.state === 'connecting') {
      throw new KeyhopError(
        ErrorCodes.CONNECT_FAILED,
        `BLE device ${peripheral.address} is already connected`,
      );
    }
    const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    const left = () => Math.max(1, deadline - Date.now());
    const started = Date.now();

    await this.ops.run<void>(
      `connect to ${peripheral.address}`,
      left(),
      (resolve, reject) =>
        peripheral.connect((error) =>
          error
            ? reject(
                new KeyhopError(
                  ErrorCodes.CONNECT_FAILED,
                  `BLE connect to ${peripheral.address}: ${error.message}`,
                ),
              )
            : resolve(),
        ),
      () => peripheral.cancelConnect(),
    );

    let link: HciGattLink | undefined;
    const onDisconnect = (reason?: number) =>
      link?.closed(`disconnected (HCI reason 0x${(reason ?? 0).toString(16).padStart(2, '0')})`);
    peripheral.on('disconnect', onDisconnect);
    try {
      const characteristics = await this.ops.run<NobleCharacteristic[]>(
        `GATT discovery on ${peripheral.address}`,
        left(),
        (resolve, reject) =>
          peripheral.discoverSomeServicesAndCharacteristics(
            [toStackUuid(profile.service)],
            [toStackUuid(profile.write), toStackUuid(profile.notify)],
            (error, _services, chars) =>
              error
                ? reject(
                    new KeyhopError(
                      ErrorCodes.CONNECT_FAILED,
                      `BLE ${profile.name} service: ${describeError(error)}`,
                    ),
                  )
                : resolve(chars ?? []),
          ),
      );
      const writeChar = characteristics.find((c) => c.uuid === toStackUuid(profile.write));
      const notifyChar = characteristics.find((c) => c.uuid === toStackUuid(profile.notify));
      if (
        !writeChar?.properties.includes('writeWithoutResponse') ||
        !notifyChar?.properties.includes('notify')
      ) {
        throw new KeyhopError(
          ErrorCodes.CONNECT_FAILED,
          `BLE device ${peripheral.address} lacks the ${profile.name} write-without-response/notify characteristics`,
        );
      }
      if (peripheral.state !== 'connected')
        throw new KeyhopError(ErrorCodes.CONNECT_FAILED, 'BLE peer disconnected');
      const current: HciGattLink = new HciGattLink(
        'central',
        peripheral.address,
        peripheral.mtu ?? ATT_MIN_MTU,
        {
          send: (value) => writeChar.write(value, true),
          disconnect: (): Promise<void> => this.disconnectPeripheral(peripheral, current),
        },
      );
      link = current;
      notifyChar.on('data', (data: Buffer, isNotification: boolean) => {
        if (isNotification) current.deliver(data);
      });
      await this.ops.run<void>(`subscribe on ${peripheral.address}`, left(), (resolve, reject) =>
        notifyChar.subscribe((error) => (error ? reject(error) : resolve())),
      );
      if (!current.isOpen) throw new KeyhopError(ErrorCodes.CONNECT_FAILED, 'BLE peer disconnected');
      // The MTU exchange runs first on every connection, so it is settled by now.
      current.setMtu(peripheral.mtu ?? ATT_MIN_MTU);
      const release = () => {
        peripheral.removeListener('disconnect', onDisconnect);
        notifyChar.removeAllListeners('data');
        if (this.connections.get(id)?.link === current) this.connections.delete(id);
      };
      current.onClose((reason) => {
        release();
        this.log.debug({ peer: peripheral.address, reason }, 'central link closed');
      });
      this.connections.set(id, { link: current, peripheral, release });
      this.log.debug(
        { peer: peripheral.address, mtu: current.mtu, ms: Date.now() - started },
        'central link open',
      );
      return current;
    } catch (e) {
      peripheral.removeListener('disconnect', onDisconnect);
      link?.closed('connect failed');
      if (peripheral.state === 'connected' && this.ended === undefined) peripheral.disconnect();
      throw asKeyhopError(e, ErrorCodes.CONNECT_FAILED, `BLE connect to ${peripheral.address}`);
    }
  }

  private async disconnectPeripheral(peripheral: NoblePeripheral, link: HciGattLink): Promise<void> {
    if (!link.isOpen) return;
    if (this.ended !== undefined) {
      link.closed('central stopped');
      return;
    }
    await link.closeWithin(() => peripheral.disconnect(), DISCONNECT_TIMEOUT_MS);
  }

  async stop(): Promise<void> {
    if (this.starting !== undefined) await this.starting.catch(() => undefined);
    if (this.ended !== undefined && this.stack === undefined) return;
    await Promise.all([...this.connections.values()].map((c) => c.link.disconnect()));
    await this.end('central stopped');
  }

  /** The controller went away underneath us. */
  private lost(reason: string): void {
    if (this.ended !== undefined) return;
    this.log.warn({ reason }, 'BLE controller lost');
    void this.end(`controller lost: ${reason}`);
  }

  private async end(reason: string): Promise<void> {
    if (this.ended === undefined) this.ended = reason;
    this.ops.failAll(new KeyhopError(ErrorCodes.CONNECTION_CLOSED, `BLE central: ${reason}`));
    for (const c of [...this.connections.values()]) c.link.closed(reason);
    this.connections.clear();
    const stack = this.stack;
    this.stack = undefined;
    if (stack !== undefined) {
      stack.noble.removeAllListeners();
      stack.bindings.removeAllListeners();
      await stack.controller.close();
      stack.bindings._hci.removeAllListeners();
    }
  }

  private ready(): Stack {
    if (this.stack === undefined) {
      if (this.ended !== undefined) throw this.closedError();
      throw new KeyhopError(ErrorCodes.CONNECT_FAILED, 'BLE central: call start() first');
    }
    return this.stack;
  }

  private closedError(): KeyhopError {
    return new KeyhopError(
      ErrorCodes.CONNECTION_CLOSED,
      `BLE central on ${this.where} is stopped (${this.ended})`,
    );
  }
}

function toAdvertisement(p: NoblePeripheral): BleAdvertisement {
  const a = p.advertisement;
  return {
    id: p.id,
    address: p.address.toLowerCase(),
    ...(a.localName !== undefined ? { name: a.localName } : {}),
    serviceUuids: (a.serviceUuids ?? []).map(fromStackUuid),
    ...(a.manufacturerData !== undefined ? { manufacturerData: new Uint8Array(a.manufacturerData) } : {}),
    rssi: p.rssi,
  };
}

function adKey(ad: BleAdvertisement): string {
  const mfg = ad.manufacturerData ? Buffer.from(ad.manufacturerData).toString('hex') : '';
  return `${ad.name ?? ''}|${mfg}|${ad.serviceUuids.join(',')}`;
}
