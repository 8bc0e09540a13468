import {
  describeError,
  type ErrorCode,
  ErrorCodes,
  isKeyhopError,
  KeyhopError,
  thrownProperty,
} from '../../../runtime/errors.js';
import type { AteccLink, CommandStep, TransactOptions } from '../link.js';
import { COMMAND_MAX, COMMAND_MIN } from '../protocol/packet.js';
import {
  type AddonErrorCode,
  type AddonTimings,
  type AddonTransactOptions,
  type AteccI2cAddon,
  loadAteccAddon,
} from './native-addon.js';

export interface I2cLinkOptions {
  /** Bus number: `/dev/i2c-<bus>`. Default 1 (the header pins of a Raspberry Pi). */
  readonly bus?: number;
  /** Device path instead of a bus number. */
  readonly device?: string;
  /** 7-bit address. Default 0x60 (TNG parts: 0x35, TFLX: 0x36). */
  readonly address?: number;
  /** Wait between the wake pulse and reading the wake token, µs. Default 1500 (tWHI). */
  readonly wakeDelayUs?: number;
  /** Interval between polls while the chip executes, µs. Default 1000. */
  readonly pollIntervalUs?: number;
  /** Further wake attempts when the chip does not answer. Default 3. */
  readonly wakeRetries?: number;
  /** How long to wait for another process's lock on the bus, ms. Default 5000. */
  readonly lockTimeoutMs?: number;
}

/** Injection point for tests (a fake addon, or one running in another process). */
export interface I2cLinkDeps {
  readonly addon?: AteccI2cAddon;
}

const MAX_STEPS = 16;

/**
 * An AteccLink over Linux i2c-dev through the native addon. Every transaction (open, flock, wake,
 * commands with polling, idle or sleep, close) runs on a worker thread in the addon; calls on one
 * link are queued, and the addon's flock keeps other processes off the bus meanwhile.
 */
export class I2cLink implements AteccLink {
  readonly kind = 'i2c';
  readonly location: string;
  /** Timings of the last successful transaction, µs (for benchmarks). */
  lastTimings: AddonTimings | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly addon: AteccI2cAddon,
    readonly device: string,
    readonly address: number,
    private readonly timing: {
      readonly wakeDelayUs: number;
      readonly pollIntervalUs: number;
      readonly wakeRetries: number;
      readonly lockTimeoutMs: number;
    },
  ) {
    this.location = `${device}@0x${address.toString(16).padStart(2, '0')}`;
  }

  /**
   * Checks the options and loads the addon (HARDWARE_UNAVAILABLE with build instructions when it is
   * missing). Does not touch the bus: the first transaction reports a missing or busy device.
   */
  static open(options: I2cLinkOptions = {}, deps: I2cLinkDeps = {}): I2cLink {
    const bad = (why: string) => new KeyhopError(ErrorCodes.CONFIG_INVALID, `I2C link: ${why}`);
    const int = (name: string, v: number | undefined, dflt: number, min: number, max: number): number => {
      if (v === undefined) return dflt;
      if (!Number.isInteger(v) || v < min || v > max)
        throw bad(`${name} ${v} is not an integer in ${min}..${max}`);
      return v;
    };
    let device: string;
    if (options.device !== undefined) {
      if (typeof options.device !== 'string' || options.device === '' || options.device.includes('\0')) {
        throw bad('device must be a path such as /dev/i2c-1');
      }
      device = options.device;
    } else {
      device = `/dev/i2c-${int('bus', options.bus, 1, 0, 255)}`;
    }
    const address = int('address', options.address, 0x60, 0x08, 0x77);
    const timing = {
      wakeDelayUs: int('wakeDelayUs', options.wakeDelayUs, 1500, 0, 1_000_000),
      pollIntervalUs: int('pollIntervalUs', options.pollIntervalUs, 1000, 50, 1_000_000),
      wakeRetries: int('wakeRetries', options.wakeRetries, 3, 0, 100),
      lockTimeoutMs: int('lockTimeoutMs', options.lockTimeoutMs, 5000, 0, 600_000),
    };
    return new I2cLink(deps.addon ?? loadAteccAddon(), device, address, timing);
  }

  transact(steps: readonly CommandStep[], options: TransactOptions = {}): Promise<Uint8Array[]> {
    if (this.closed) {
      return Promise.reject(
        new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, `I2C link ${this.location} is closed`),
      );
    }
    const run = this.queue.then(() => this.run(steps, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Waits for queued transactions, then refuses new ones. The addon holds nothing open between calls. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
  }

  private async run(steps: readonly CommandStep[], options: TransactOptions): Promise<Uint8Array[]> {
    if (steps.length > MAX_STEPS) {
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `${steps.length} ATECC commands in one wake; at most ${MAX_STEPS}`,
      );
    }
    for (const s of steps) {
      if (s.packet.length < COMMAND_MIN || s.packet.length > COMMAND_MAX) {
        throw new KeyhopError(
          ErrorCodes.ENCODE_LIMIT,
          `ATECC command packet of ${s.packet.length} bytes (must be ${COMMAND_MIN}..${COMMAND_MAX})`,
        );
      }
    }
    const request: AddonTransactOptions = {
      device: this.device,
      address: this.address,
      wake: true,
      wakeDelayUs: this.timing.wakeDelayUs,
      wakeRetries: this.timing.wakeRetries,
      steps: steps.map((s) => ({ packet: s.packet, maxExecMs: s.maxExecMs })),
      end: options.end ?? 'idle',
      pollIntervalUs: this.timing.pollIntervalUs,
      lockTimeoutMs: this.timing.lockTimeoutMs,
    };
    try {
      const result = await this.addon.transact(request);
      this.lastTimings = result.timings;
      return result.responses.map((r) => new Uint8Array(r.buffer, r.byteOffset, r.byteLength));
    } catch (e) {
      throw mapAddonError(e, this.location);
    }
  }
}

/**
 * Turns an addon rejection into a KeyhopError whose message says what to do about it. The addon's
 * own message (device, address, errno text) is kept; the original error is the `cause`.
 */
export function mapAddonError(e: unknown, location: string): KeyhopError {
  if (isKeyhopError(e)) return e;
  const code = thrownProperty(e, 'code');
  const message = describeError(e);
  const make = (c: ErrorCode, hint?: string) =>
    new KeyhopError(c, hint === undefined ? message : `${message}. ${hint}`, { cause: e });
  const dev = location.split('@')[0] ?? location;
  switch (code as AddonErrorCode | undefined) {
    case 'ENOENT':
      return make(
        ErrorCodes.HARDWARE_UNAVAILABLE,
        `No I2C adapter ${dev}: enable I2C (Raspberry Pi: dtparam=i2c_arm=on in config.txt or raspi-config ` +
          '→ Interface Options → I2C, then reboot), load i2c-dev (modprobe i2c-dev), or choose another bus',
      );
    case 'EACCES':
      return make(
        ErrorCodes.HARDWARE_UNAVAILABLE,
        `No permission to open ${dev}: add the user to group i2c (sudo usermod -aG i2c $USER, then log in again)`,
      );
    case 'EBUSY':
      return make(
        ErrorCodes.HARDWARE_UNAVAILABLE,
        'A kernel driver owns the address: unbind atmel-ecc (echo <bus>-00<addr> | sudo tee ' +
          '/sys/bus/i2c/drivers/atmel-ecc/unbind) or remove the device-tree overlay that declares it',
      );
    case 'UNSUPPORTED':
      return make(
        ErrorCodes.HARDWARE_UNAVAILABLE,
        'Direct I2C needs Linux; use a Microchip kit (--kit-hid) elsewhere',
      );
    case 'SELFTEST_FAILED':
      return make(ErrorCodes.HARDWARE_FAULT);
    case 'TIMEOUT':
    case 'LOCK_TIMEOUT':
      return make(ErrorCodes.TIMEOUT);
    case 'EINVAL':
      return make(ErrorCodes.CONFIG_INVALID);
    case 'NACK':
      return make(
        ErrorCodes.HARDWARE_IO,
        'Check the wiring and the address (i2cdetect shows a sleeping chip only after a wake), and keep the bus at 100 kHz',
      );
    default:
      return make(ErrorCodes.HARDWARE_IO);
  }
}
