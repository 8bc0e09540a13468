import { ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import type { AteccLink } from './link.js';

/**
 * Where a chip is, as stored in a vault descriptor and given on the command line. Links are
 * imported lazily: the I2C link needs the native addon, the HID link needs node-hid, and a board
 * uses only one of them.
 */
export type AteccLinkSpec =
  | { readonly type: 'i2c'; readonly bus?: number; readonly device?: string; readonly address?: number }
  | { readonly type: 'kit-hid'; readonly path?: string }
  | { readonly type: 'kit-serial'; readonly path: string; readonly baudRate?: number };

export const DEFAULT_I2C_BUS = 1;
export const DEFAULT_I2C_ADDRESS = 0x60;

export async function openAteccLink(spec: AteccLinkSpec): Promise<AteccLink> {
  switch (spec.type) {
    case 'i2c': {
      const { I2cLink } = await import('./links/i2c-link.js');
      return I2cLink.open({
        ...(spec.device !== undefined ? { device: spec.device } : { bus: spec.bus ?? DEFAULT_I2C_BUS }),
        address: spec.address ?? DEFAULT_I2C_ADDRESS,
      });
    }
    case 'kit-hid': {
      const { openKitHid } = await import('./links/kit-hid.js');
      return openKitHid(spec.path !== undefined ? { path: spec.path } : {});
    }
    case 'kit-serial': {
      const { openKitSerial } = await import('./links/kit-serial.js');
      return openKitSerial({ path: spec.path, ...(spec.baudRate ? { baudRate: spec.baudRate } : {}) });
    }
  }
}

/** Checks a spec read from a file or built from options; throws CONFIG_INVALID with the reason. */
export function checkLinkSpec(value: unknown): AteccLinkSpec {
  const bad = (why: string) => new KeyhopError(ErrorCodes.CONFIG_INVALID, `ATECC608 link: ${why}`);
  if (typeof value !== 'object' || value === null) throw bad('not an object');
  const v = value as Record<string, unknown>;
  switch (v.type) {
    case 'i2c': {
      if (
        v.bus !== undefined &&
        (!Number.isInteger(v.bus) || (v.bus as number) < 0 || (v.bus as number) > 255)
      )
        throw bad(`bus ${String(v.bus)} is not 0-255`);
      if (v.device !== undefined && (typeof v.device !== 'string' || !v.device.startsWith('/dev/')))
        throw bad('device must be a /dev path');
      if (
        v.address !== undefined &&
        (!Number.isInteger(v.address) || (v.address as number) < 0x08 || (v.address as number) > 0x77)
      )
        throw bad(`address ${String(v.address)} is not a 7-bit address 0x08-0x77 (0x60, 0x35, 0x36, ...)`);
      return {
        type: 'i2c',
        ...(v.bus !== undefined ? { bus: v.bus as number } : {}),
        ...(v.device !== undefined ? { device: v.device as string } : {}),
        ...(v.address !== undefined ? { address: v.address as number } : {}),
      };
    }
    case 'kit-hid':
      if (v.path !== undefined && typeof v.path !== 'string') throw bad('path must be a string');
      return { type: 'kit-hid', ...(v.path !== undefined ? { path: v.path as string } : {}) };
    case 'kit-serial':
      if (typeof v.path !== 'string' || v.path === '') throw bad('kit-serial needs a path');
      if (v.baudRate !== undefined && (!Number.isInteger(v.baudRate) || (v.baudRate as number) <= 0))
        throw bad('baudRate must be a positive integer');
      return {
        type: 'kit-serial',
        path: v.path,
        ...(v.baudRate !== undefined ? { baudRate: v.baudRate as number } : {}),
      };
    default:
      throw bad(`unknown link type ${JSON.stringify(v.type)} (i2c, kit-hid, kit-serial)`);
  }
}

export function describeLinkSpec(spec: AteccLinkSpec): string {
  switch (spec.type) {
    case 'i2c':
      return `${spec.device ?? `/dev/i2c-${spec.bus ?? DEFAULT_I2C_BUS}`}@0x${(spec.address ?? DEFAULT_I2C_ADDRESS).toString(16)}`;
    case 'kit-hid':
      return `USB kit ${spec.path ?? '03eb:2312'}`;
    case 'kit-serial':
      return `serial kit ${spec.path}`;
  }
}
