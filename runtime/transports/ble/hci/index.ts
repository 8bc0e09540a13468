/**
 * BLE on a controller of its own per central or peripheral: noble for the central role, bleno
 * for the peripheral. The controller is an HCI UART (`uartPath`: a controller with HCI firmware
 * on a serial port, e.g. Zephyr hci_uart on an nRF52, or the btvirt test rig's PTYs) or a Linux
 * kernel adapter (`hciDevice`: 0 for hci0, taken over with HCI_CHANNEL_USER; see
 * docs/boards/raspberry-pi.md). Both stacks are optional dependencies, loaded on first start().
 */
import type { BleCentral, BlePeripheral } from '../gatt-link.js';
import { BlenoPeripheral, type BlenoPeripheralOptions } from './bleno-peripheral.js';
import { NobleCentral, type NobleCentralOptions } from './noble-central.js';

export { MAX_LEGACY_AD_BYTES } from './advertising.js';
export type { BlenoPeripheralOptions } from './bleno-peripheral.js';
export type { NobleCentralOptions } from './noble-central.js';
export {
  DEFAULT_UART_BAUD_RATE,
  type HciSelection,
  MAX_HCI_DEVICE,
  parseHciSetting,
} from './target.js';

/**
 * A central on its own controller; several may coexist in one process, one controller each.
 * Throws CONFIG_INVALID for a bad selection; start() reports a controller it cannot have.
 */
export function createCentral(options: NobleCentralOptions): BleCentral {
  return new NobleCentral(options);
}

/**
 * A peripheral on its own controller; several may coexist in one process, one controller each.
 * Throws CONFIG_INVALID for a bad selection; start() reports a controller it cannot have.
 */
export function createPeripheral(options: BlenoPeripheralOptions): BlePeripheral {
  return new BlenoPeripheral(options);
}
