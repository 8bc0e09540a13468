import type { Command } from 'commander';
import {
  type AteccLinkSpec,
  checkLinkSpec,
  DEFAULT_I2C_ADDRESS,
  DEFAULT_I2C_BUS,
} from '../../vaults/atecc608/link-spec.js';
import { ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';

export interface LinkOptions {
  i2cBus?: string;
  i2cDevice?: string;
  address?: string;
  kitHid?: string | boolean;
  kitSerial?: string;
}

/** The options that say where an ATECC608 is; one place so every command spells them alike. */
export function addLinkOptions(cmd: Command): Command {
  return cmd
    .option(
      '--i2c-bus <n>',
      `I2C bus number: /dev/i2c-<n> (default ${DEFAULT_I2C_BUS}, the header pins on a Pi)`,
    )
    .option('--i2c-device <path>', 'I2C device path instead of a bus number')
    .option(
      '--address <hex>',
      `7-bit I2C address (default 0x${DEFAULT_I2C_ADDRESS.toString(16)}; pre-provisioned TNG parts 0x35, TFLX 0x36)`,
    )
    .option('--kit-hid [path]', 'a Microchip USB kit (HID 03eb:2312) instead of I2C; optional hidraw path')
    .option('--kit-serial <path>', 'a kit-protocol serial port instead of I2C');
}

export function linkSpecFrom(o: LinkOptions): AteccLinkSpec {
  const kinds = [
    o.kitHid !== undefined,
    o.kitSerial !== undefined,
    o.i2cBus !== undefined || o.i2cDevice !== undefined,
  ];
  if (kinds.filter(Boolean).length > 1) {
    throw new KeyhopError(ErrorCodes.USAGE, 'give one of --i2c-bus/--i2c-device, --kit-hid or --kit-serial');
  }
  if (o.kitHid !== undefined) {
    return checkLinkSpec({ type: 'kit-hid', ...(typeof o.kitHid === 'string' ? { path: o.kitHid } : {}) });
  }
  if (o.kitSerial !== undefined) return checkLinkSpec({ type: 'kit-serial', path: o.kitSerial });
  const number = (text: string, what: string): number => {
    const n = /^0x[0-9a-f]+$/i.test(text)
      ? Number.parseInt(text, 16)
      : /^[0-9]+$/.test(text)
        ? Number(text)
        : Number.NaN;
    if (!Number.isInteger(n)) throw new KeyhopError(ErrorCodes.USAGE, `${what} "${text}" is not a number`);
    return n;
  };
  try {
    return checkLinkSpec({
      type: 'i2c',
      ...(o.i2cDevice !== undefined ? { device: o.i2cDevice } : {}),
      ...(o.i2cBus !== undefined ? { bus: number(o.i2cBus, '--i2c-bus') } : {}),
      ...(o.address !== undefined ? { address: number(o.address, '--address') } : {}),
    });
  } catch (e) {
    if (isKeyhopError(e, ErrorCodes.CONFIG_INVALID)) {
      throw new KeyhopError(ErrorCodes.USAGE, e.message);
    }
    throw e;
  }
}
