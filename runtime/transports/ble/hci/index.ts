/**
 * BLE over an HCI UART (a controller with HCI firmware on a serial port, e.g. Zephyr hci_uart on
 * an nRF52, or the btvirt test rig's PTYs): noble for the central role, bleno for the peripheral.
 * Both are optional dependencies, loaded on first start().
 */
import type { BleCentral, BlePeripheral } from '../gatt-link.js';
import { BlenoPeripheral, type BlenoPeripheralOptions } from './bleno-peripheral.js';
import { NobleCentral, type NobleCentralOptions } from './noble-central.js';

export { MAX_LEGACY_AD_BYTES } from './advertising.js';
export type { BlenoPeripheralOptions } from './bleno-peripheral.js';
export type { NobleCentralOptions } from './noble-central.js';
export { DEFAULT_UART_BAUD_RATE } from './uart-socket.js';

/** A central on its own controller; several may coexist in one process, one UART each. */
export function createCentral(options: NobleCentralOptions): BleCentral {
  return new NobleCentral(options);
}

/** A peripheral on its own controller; several may coexist in one process, one UART each. */
export function createPeripheral(options: BlenoPeripheralOptions): BlePeripheral {
  return new BlenoPeripheral(options);
}
