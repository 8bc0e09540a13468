/**
 * Puts one HCI UART under one noble or bleno Hci object, so every central and peripheral in a
 * process can own its own controller.
 *
 * Out of the box both stacks pick the HCI driver when the socket package is first required and
 * read the UART path from BLUETOOTH_HCI_SOCKET_UART_PORT at bind time: one UART per process.
 * Here each Hci gets its own instance of the fork's UART driver with explicit bind parameters
 * (`bindParams.uart`), installed before init (attach.ts). The driver's auto-reconnect (10 ×
 * SerialPort.list() one second apart) is disabled: a lost controller closes the links and the
 * caller builds a new central/peripheral.
 */
import type { SerialPort } from 'serialport';
import { fixHangupRead, fixPollerEventMask } from '../../serial/binding-fixes.js';
import { type AttachedController, FailureSignal, installSocket } from './attach.js';
import type { HciSocketClass, SerialPortLike, StackHci, UartBindParams } from './stack-types.js';

const CLOSE_DRAIN_MS = 500;

export interface UartOptions {
  /** Serial device of the controller (a PTY from the test rig, /dev/ttyAMA0, /dev/ttyACM0, ...). */
  readonly path: string;
  readonly baudRate: number;
}

/**
 * Installs the UART socket into `hci` and runs `init` (the stack's bindings.init()). `powerUp` is
 * what the stack does once the controller answered HCI_Reset (its own pollIsDevUp body).
 */
export function attachUart(
  hci: StackHci,
  UartSocket: HciSocketClass,
  options: UartOptions,
  powerUp: () => void,
  init: () => void,
): AttachedController {
  const params: UartBindParams = { uart: { port: options.path, baudRate: options.baudRate } };
  const socket = new UartSocket();
  const bindUser = socket.bindUser.bind(socket);
  const failures = new FailureSignal();
  let closed = false;
  let serial: SerialPortLike | null = null;

  const fail = (reason: string): void => {
    if (!closed) failures.fail(reason);
  };

  socket.bindUser = (devId?: number, _params?: UartBindParams, mode?: string) => {
    bindUser(devId, params, mode);
    serial = socket._serialDevice;
    serial?.once('open', () => {
      // Same @serialport/bindings-cpp poller as serial-transport's ports, same lost-wakeup bug
      // (the stacks write bursts while the controller streams events back).
      fixPollerEventMask(serial as unknown as SerialPort);
      // A controller that goes away must close the port (binding-fixes.ts).
      fixHangupRead(serial as unknown as SerialPort);
    });
    serial?.on('error', (e: Error) => fail(`UART ${options.path}: ${e.message}`));
    // Ahead of the driver's own 'close' handler, which reports the adapter down (poweredOff)
    // without saying why.
    serial?.prependListener('close', (e?: Error | null) =>
      fail(`UART ${options.path} closed${e ? `: ${e.message}` : ''}`),
    );
  };
  socket._handleReconnection = () => undefined;
  // The driver re-emits serial errors; without a listener an 'error' event would throw.
  socket.on('error', () => undefined);

  installSocket(hci, socket, powerUp, init);

  return {
    onFailure(listener) {
      failures.on(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      const s = serial;
      if (s?.isOpen && !failures.failed && socket.isDevUp()) {
        socket.reset();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, CLOSE_DRAIN_MS);
          s.drain(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      try {
        socket.stop();
      } catch {
        // stop() throws when the port never got created (bind failed); nothing to release then.
      }
      socket.removeAllListeners('state');
      socket.removeAllListeners('data');
      // stop() dropped every listener; a late error from the closing port must not throw.
      s?.on('error', () => undefined);
    },
  };
}
