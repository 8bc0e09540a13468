import { asKeyhopError, describeError, ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { KitLineBuffer } from './kit-lines.js';
import { type KitLineChannel, KitLink } from './kit-link.js';
import { KIT_MAX_LINE } from './kit-protocol.js';

/**
 * The kit protocol over USB HID (atecc608.md §4.4): every write is report id 0x00 + 64 bytes of
 * ASCII, zero-padded, a long line split over several reports; replies come in 64-byte reports that
 * are concatenated (NULs dropped) until `\n`. node-hid is an optional dependency, loaded on first use.
 */

/** The part of node-hid's HIDAsync the kit needs (also what a fake device implements). */
export interface HidDeviceLike {
  write(data: number[]): Promise<number>;
  /** One input report, or undefined when none arrived within timeoutMs. */
  read(timeoutMs: number): Promise<Buffer | undefined>;
  close(): Promise<void>;
}

export const KIT_HID_REPORT_SIZE = 64;
export const KIT_HID_VENDOR_ID = 0x03eb;
export const KIT_HID_PRODUCT_ID = 0x2312;

/** VID/PIDs of kits speaking the ASCII protocol: Atmel/Microchip kits, and the Microchip ones of cryptoauthlib's `90-cryptohid.rules`. */
export const KIT_HID_IDS: readonly { readonly vendorId: number; readonly productId: number }[] = [
  { vendorId: 0x03eb, productId: 0x2312 },
  { vendorId: 0x04d8, productId: 0x0f30 },
  { vendorId: 0x04d8, productId: 0x0f31 },
  { vendorId: 0x04d8, productId: 0x0f32 },
  { vendorId: 0x04d8, productId: 0x0f33 },
];

export interface KitHidDeviceInfo {
  readonly path: string;
  readonly vendorId: number;
  readonly productId: number;
  readonly product?: string;
  readonly manufacturer?: string;
  readonly serialNumber?: string;
}

export interface KitHidOptions {
  /** hidraw path (from listKitHidDevices); default: the first device with vendorId/productId. */
  readonly path?: string;
  readonly vendorId?: number;
  readonly productId?: number;
  /** `board:device(NN)` index; default: the first ECC608 the kit reports. */
  readonly index?: number;
  /** 8-bit I2C address to select instead of the one the kit reports. */
  readonly address8?: number;
  readonly replyTimeoutMs?: number;
  readonly execMarginMs?: number;
  /** Use this device instead of opening one with node-hid (tests, other HID stacks). */
  readonly device?: HidDeviceLike;
  /** How node-hid is loaded (tests). */
  readonly loadHid?: () => Promise<unknown>;
}

export async function openKitHid(options: KitHidOptions = {}): Promise<KitLink> {
  let device = options.device;
  let location = options.path ?? 'hid:injected';
  if (device === undefined) {
    const hid = await loadNodeHid(options.loadHid);
    const vendorId = options.vendorId ?? KIT_HID_VENDOR_ID;
    const productId = options.productId ?? KIT_HID_PRODUCT_ID;
    let path = options.path;
    if (path === undefined) {
      const found = (await enumerate(hid)).filter(
        (d) => d.vendorId === vendorId && d.productId === productId,
      );
      if (found[0] === undefined) {
        throw new KeyhopError(
          ErrorCodes.HARDWARE_UNAVAILABLE,
          `no kit USB HID device ${hex4(vendorId)}:${hex4(productId)} found (is the kit plugged in?)`,
        );
      }
      path = found[0].path;
    }
    location = `hid:${path}`;
    device = await openDevice(hid, path);
  }
  const channel = new HidLineChannel(device);
  return KitLink.open(channel, {
    kind: 'kit-hid',
    location,
    ...(options.index === undefined ? {} : { index: options.index }),
    ...(options.address8 === undefined ? {} : { address8: options.address8 }),
    ...(options.replyTimeoutMs === undefined ? {} : { replyTimeoutMs: options.replyTimeoutMs }),
    ...(options.execMarginMs === undefined ? {} : { execMarginMs: options.execMarginMs }),
  });
}

/** HID devices with one of the KIT_HID_IDS. */
export async function listKitHidDevices(
  options: { loadHid?: () => Promise<unknown> } = {},
): Promise<KitHidDeviceInfo[]> {
  const hid = await loadNodeHid(options.loadHid);
  return (await enumerate(hid)).filter((d) =>
    KIT_HID_IDS.some((id) => id.vendorId === d.vendorId && id.productId === d.productId),
  );
}

/** Reports for one line: `line\n` in 64-byte pieces, each as report id 0 + 64 zero-padded bytes. */
export function hidReports(line: string, reportSize = KIT_HID_REPORT_SIZE): number[][] {
  const bytes = Buffer.from(`${line}\n`, 'latin1');
  const reports: number[][] = [];
  for (let off = 0; off < bytes.length; off += reportSize) {
    const report = new Array<number>(reportSize + 1).fill(0);
    for (let i = 0; i < reportSize && off + i < bytes.length; i++) report[i + 1] = bytes[off + i]!;
    reports.push(report);
  }
  return reports;
}

/** A KitLineChannel over HID reports. */
export class HidLineChannel implements KitLineChannel {
  private readonly lines: KitLineBuffer;
  private closed = false;

  constructor(
    private readonly device: HidDeviceLike,
    maxLine = KIT_MAX_LINE,
  ) {
    this.lines = new KitLineBuffer(maxLine);
  }

  async writeLine(line: string): Promise<void> {
    this.checkOpen();
    for (const report of hidReports(line)) {
      try {
        await this.device.write(report);
      } catch (e) {
        throw asKeyhopError(e, ErrorCodes.HARDWARE_IO, 'kit HID write failed');
      }
    }
  }

  async readLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.checkOpen();
      const entry = this.lines.next();
      if (typeof entry === 'string') return entry;
      if (entry !== undefined) throw entry;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new KeyhopError(ErrorCodes.TIMEOUT, `kit did not answer over HID within ${timeoutMs} ms`);
      let report: Buffer | undefined;
      try {
        report = await this.device.read(Math.max(1, Math.ceil(left)));
      } catch (e) {
        throw asKeyhopError(e, ErrorCodes.HARDWARE_IO, 'kit HID read failed');
      }
      if (report !== undefined && report.length > 0) this.lines.push(report);
    }
  }

  /** Drops queued lines and reports the OS already holds (a late answer after a timeout). */
  async discardInput(): Promise<void> {
    this.lines.clear();
    for (let i = 0; i < 64; i++) {
      const report = await this.device.read(1).catch(() => undefined);
      if (report === undefined || report.length === 0) return;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.device.close().catch(() => undefined);
  }

  private checkOpen(): void {
    if (this.closed) throw new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, 'kit HID device is closed');
  }
}

// ---------------------------------------------------------------- node-hid

interface NodeHidApi {
  devicesAsync(): Promise<unknown[]>;
  HIDAsync: { open(path: string): Promise<HidDeviceLike> };
}

/** A variable, so that TypeScript does not need node-hid's types where it is not installed. */
const NODE_HID = 'node-hid';

/** Loads node-hid (an optional dependency) or fails with HARDWARE_UNAVAILABLE saying how to get it. */
export async function loadNodeHid(
  load: () => Promise<unknown> = () => import(NODE_HID),
): Promise<NodeHidApi> {
  let mod: unknown;
  try {
    mod = await load();
  } catch (e) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `the kit's USB HID link needs the optional package node-hid, which could not be loaded (npm install node-hid): ${describeError(
        e,
      )}`,
      { cause: e },
    );
  }
  // CommonJS module: its exports may sit on `default`.
  const candidates = [(mod as { default?: unknown } | undefined)?.default, mod];
  for (const c of candidates) {
    const api = c as Partial<NodeHidApi> | undefined;
    if (typeof api?.devicesAsync === 'function' && typeof api.HIDAsync?.open === 'function')
      return api as NodeHidApi;
  }
  throw new KeyhopError(
    ErrorCodes.HARDWARE_UNAVAILABLE,
    'node-hid has no HIDAsync API (node-hid 3 or later is needed)',
  );
}

async function enumerate(hid: NodeHidApi): Promise<KitHidDeviceInfo[]> {
  let all: unknown[];
  try {
    all = await hid.devicesAsync();
  } catch (e) {
    throw asKeyhopError(e, ErrorCodes.HARDWARE_UNAVAILABLE, 'cannot list USB HID devices');
  }
  const out: KitHidDeviceInfo[] = [];
  for (const d of all) {
    const r = d as Record<string, unknown>;
    if (typeof r.path !== 'string' || typeof r.vendorId !== 'number' || typeof r.productId !== 'number')
      continue;
    out.push({
      path: r.path,
      vendorId: r.vendorId,
      productId: r.productId,
      ...(typeof r.product === 'string' ? { product: r.product } : {}),
      ...(typeof r.manufacturer === 'string' ? { manufacturer: r.manufacturer } : {}),
      ...(typeof r.serialNumber === 'string' ? { serialNumber: r.serialNumber } : {}),
    });
  }
  return out;
}

const UDEV_HINT =
  'On Linux the hidraw node is root-only unless a udev rule grants access, e.g. ' +
  '/etc/udev/rules.d/90-cryptohid.rules with SUBSYSTEM=="hidraw", ATTRS{idVendor}=="03eb", ' +
  'ATTRS{idProduct}=="2312", MODE="0666" (cryptoauthlib lib/hal/90-cryptohid.rules; add lines for ' +
  '04d8:0f30-0f33), then `udevadm control --reload && udevadm trigger` and replug the kit';

async function openDevice(hid: NodeHidApi, path: string): Promise<HidDeviceLike> {
  try {
    return await hid.HIDAsync.open(path);
  } catch (e) {
    const detail = describeError(e);
    // hidapi does not pass errno on; a device that enumerates but will not open is nearly always
    // a permission problem, and EACCES says so outright.
    const denied = /EACCES|permission/i.test(detail) || (await accessDenied(path));
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `cannot open kit USB HID device ${path}: ${detail}${denied ? ' (EACCES: permission denied)' : ''}. ${UDEV_HINT}`,
      { cause: e },
    );
  }
}

async function accessDenied(path: string): Promise<boolean> {
  if (!path.startsWith('/dev/')) return false;
  const { access, constants } = await import('node:fs/promises');
  return access(path, constants.R_OK | constants.W_OK).then(
    () => false,
    (e: NodeJS.ErrnoException) => e.code === 'EACCES',
  );
}

function hex4(v: number): string {
  return v.toString(16).padStart(4, '0');
}
