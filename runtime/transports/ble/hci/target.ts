/**
 * Which HCI controller a central or peripheral drives (pure: node configs validate with it too):
 *
 * - a controller with HCI firmware on a serial port (`uartPath`: Zephyr hci_uart on an nRF52
 *   dongle, a btvirt PTY of the test rig), see uart-socket.ts;
 * - an adapter of the Linux kernel (`hciDevice`: 0 for hci0, e.g. a Raspberry Pi's built-in
 *   one), taken over with HCI_CHANNEL_USER, see kernel-socket.ts.
 */
import { ErrorCodes, KeyhopError } from '../../../errors.js';

export const DEFAULT_UART_BAUD_RATE = 1_000_000;
/** Highest adapter number: the kernel's HCI_DEV_NONE is 0xffff. */
export const MAX_HCI_DEVICE = 0xfffe;

/** The controller of a central or peripheral: exactly one of `uartPath` and `hciDevice`. */
export type HciSelection =
  | {
      /** Serial device of a controller with HCI UART firmware (/dev/ttyACM0, a btvirt PTY...). */
      readonly uartPath: string;
      /** Default 1000000 (Zephyr hci_uart; the rig's PTYs ignore it). */
      readonly baudRate?: number;
      readonly hciDevice?: undefined;
    }
  | {
      /**
       * A Linux kernel adapter by number (0 for hci0). It must be down in BlueZ, and the process
       * needs CAP_NET_ADMIN (docs/boards/raspberry-pi.md).
       */
      readonly hciDevice: number;
      readonly uartPath?: undefined;
      readonly baudRate?: undefined;
    };

export type HciTarget =
  | { readonly kind: 'uart'; readonly path: string; readonly baudRate: number }
  | { readonly kind: 'kernel'; readonly devId: number };

function invalid(message: string): never {
  throw new KeyhopError(ErrorCodes.CONFIG_INVALID, message);
}

/** Checks a selection (callers may be plain JavaScript) and fills in defaults. */
export function resolveHciTarget(selection: HciSelection): HciTarget {
  const { uartPath, baudRate, hciDevice } = selection as {
    uartPath?: unknown;
    baudRate?: unknown;
    hciDevice?: unknown;
  };
  if (uartPath !== undefined && hciDevice !== undefined) {
    invalid('BLE: give either uartPath (an HCI UART) or hciDevice (a kernel adapter), not both');
  }
  if (hciDevice !== undefined) {
    if (
      typeof hciDevice !== 'number' ||
      !Number.isInteger(hciDevice) ||
      hciDevice < 0 ||
      hciDevice > MAX_HCI_DEVICE
    ) {
      invalid(`BLE hciDevice must be an adapter number, 0 for hci0 (got ${JSON.stringify(hciDevice)})`);
    }
    if (baudRate !== undefined) invalid('BLE baudRate is for an HCI UART, not for a kernel adapter');
    return { kind: 'kernel', devId: hciDevice };
  }
  if (typeof uartPath !== 'string' || uartPath.length === 0) {
    invalid('BLE needs uartPath (an HCI UART) or hciDevice (a kernel adapter, 0 for hci0)');
  }
  const rate = baudRate ?? DEFAULT_UART_BAUD_RATE;
  if (typeof rate !== 'number' || !Number.isInteger(rate) || rate <= 0) {
    invalid('BLE baudRate must be a positive integer');
  }
  return { kind: 'uart', path: uartPath, baudRate: rate };
}

/**
 * A node config's `ble.hci`: `hciN` is kernel adapter N, anything containing a `/` is the path
 * of an HCI UART. Anything else is undefined (not a setting we understand).
 */
export function parseHciSetting(value: string): HciSelection | undefined {
  const kernel = /^hci(0|[1-9][0-9]{0,4})$/.exec(value);
  if (kernel !== null) {
    const devId = Number(kernel[1]);
    return devId <= MAX_HCI_DEVICE ? { hciDevice: devId } : undefined;
  }
  return value.includes('/') ? { uartPath: value } : undefined;
}

/** `hci0`, or the UART's path: for messages and logs. */
export function describeHciTarget(target: HciTarget): string {
  return target.kind === 'kernel' ? `hci${target.devId}` : target.path;
}
