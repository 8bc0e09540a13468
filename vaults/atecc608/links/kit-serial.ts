import { SerialPort } from 'serialport';
import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { fixHangupRead, fixPollerEventMask } from '../../../runtime/transports/serial/binding-fixes.js';
import { KitLineBuffer } from './kit-lines.js';
import { type KitLineChannel, KitLink } from './kit-link.js';
import { KIT_MAX_LINE } from './kit-protocol.js';

/**
 * The kit protocol over a serial port (cryptoauthlib's `ATCA_UART_IFACE`, atecc608.md §4.4): the
 * same ASCII lines as over HID, one `\n`-terminated line each way.
 */

export interface KitSerialOptions {
  readonly path: string;
  /** Default 115200 (the kit firmware's CDC/UART rate). */
  readonly baudRate?: number;
  /** `board:device(NN)` index; default: the first ECC608 the kit reports. */
  readonly index?: number;
  readonly address8?: number;
  readonly replyTimeoutMs?: number;
  readonly execMarginMs?: number;
}

export async function openKitSerial(options: KitSerialOptions): Promise<KitLink> {
  const port = await openSerialPort(options.path, options.baudRate ?? 115_200, 'kit');
  // cryptoauthlib's UART HAL asserts DTR (§4.4); some kits only talk with it set. A PTY refuses
  // the ioctl, which is harmless there.
  await new Promise<void>((resolve) => port.set({ dtr: true }, () => resolve()));
  return KitLink.open(new SerialLineChannel(port, options.path), {
    kind: 'kit-serial',
    location: options.path,
    ...(options.index === undefined ? {} : { index: options.index }),
    ...(options.address8 === undefined ? {} : { address8: options.address8 }),
    ...(options.replyTimeoutMs === undefined ? {} : { replyTimeoutMs: options.replyTimeoutMs }),
    ...(options.execMarginMs === undefined ? {} : { execMarginMs: options.execMarginMs }),
  });
}

/**
 * Opens a port with keyhop's two @serialport/bindings-cpp workarounds applied (see
 * binding-fixes.ts). Shared with the emulated kit's PTY server.
 */
export function openSerialPort(path: string, baudRate: number, what: string): Promise<SerialPort> {
  if (!Number.isInteger(baudRate) || baudRate <= 0) {
    return Promise.reject(
      new KeyhopError(ErrorCodes.CONFIG_INVALID, 'serial baud rate must be a positive integer'),
    );
  }
  const port = new SerialPort({ path, baudRate, autoOpen: false });
  return new Promise((resolve, reject) => {
    port.open((err) => {
      if (err) {
        reject(
          new KeyhopError(
            ErrorCodes.HARDWARE_UNAVAILABLE,
            `cannot open ${what} serial port ${path}: ${err.message}`,
            {
              cause: err,
            },
          ),
        );
        return;
      }
      fixPollerEventMask(port);
      fixHangupRead(port);
      resolve(port);
    });
  });
}

/** Closes a port, bounded: closing a PTY whose other end has gone can stall in the binding. */
export async function closeSerialPort(port: SerialPort): Promise<void> {
  port.removeAllListeners('data');
  port.on('error', () => undefined);
  if (!port.isOpen) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 1000);
    port.close(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** A KitLineChannel over an open serial port. */
export class SerialLineChannel implements KitLineChannel {
  private readonly lines: KitLineBuffer;
  private failure: KeyhopError | undefined;
  private wakeReader: (() => void) | undefined;

  constructor(
    private readonly port: SerialPort,
    private readonly path: string,
    maxLine = KIT_MAX_LINE,
  ) {
    this.lines = new KitLineBuffer(maxLine);
    port.on('data', (chunk: Buffer) => {
      this.lines.push(chunk);
      this.wakeReader?.();
    });
    port.on('error', (e) => this.fail(`serial port ${path} failed: ${e.message}`));
    port.on('close', () => this.fail(`serial port ${path} closed`));
  }

  writeLine(line: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.port.write(Buffer.from(`${line}\n`, 'latin1'), (err) => {
        if (err)
          reject(
            new KeyhopError(ErrorCodes.HARDWARE_IO, `kit serial write failed: ${err.message}`, {
              cause: err,
            }),
          );
        else resolve();
      });
    });
  }

  async readLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const entry = this.lines.next();
      if (typeof entry === 'string') return entry;
      if (entry !== undefined) throw entry;
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new KeyhopError(
          ErrorCodes.TIMEOUT,
          `kit did not answer on ${this.path} within ${timeoutMs} ms`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.wakeReader = done;
      });
      this.wakeReader = undefined;
    }
  }

  discardInput(): void {
    this.lines.clear();
  }

  async close(): Promise<void> {
    this.fail(`kit serial link ${this.path} is closed`);
    await closeSerialPort(this.port);
  }

  private fail(message: string): void {
    this.failure ??= new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, message);
    this.wakeReader?.();
  }
}
