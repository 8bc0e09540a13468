import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../runtime/errors.js';
import { EmulatedHidKit, EmulatedKit, type KitLineHandler } from '../emulator/kit-device.js';
import { encodeCommand } from '../protocol/packet.js';
import {
  type HidDeviceLike,
  HidLineChannel,
  hidReports,
  listKitHidDevices,
  loadNodeHid,
  openKitHid,
} from './kit-hid.js';
import { KIT_MAX_LINE } from './kit-protocol.js';
import { testChip } from './kit-test-support.js';

const INFO = encodeCommand({ opcode: 0x30, param1: 0, param2: 0 });

/** A fake node-hid module: `devices` enumerated, `open` giving `device` or failing with `openError`. */
function fakeNodeHid(devices: unknown[], device?: HidDeviceLike, openError?: string) {
  return async () => ({
    default: {
      devicesAsync: async () => devices,
      HIDAsync: {
        open: async () => {
          if (openError !== undefined || device === undefined) throw new Error(openError ?? 'no device');
          return device;
        },
      },
    },
  });
}

describe('HID reports', () => {
  it('are report id 0 + 64 bytes, zero-padded, split for long lines', () => {
    const [r] = hidReports('E:w()');
    expect(r).toHaveLength(65);
    expect(r?.[0]).toBe(0);
    expect(Buffer.from(r?.slice(1, 7) ?? []).toString('latin1')).toBe('E:w()\n');
    expect(r?.slice(7).every((b) => b === 0)).toBe(true);
    const long = `E:t(${'AB'.repeat(60)})`;
    const reports = hidReports(long);
    expect(reports).toHaveLength(Math.ceil((long.length + 1) / 64));
    const joined = Buffer.from(reports.flatMap((x) => x.slice(1)))
      .toString('latin1')
      .replaceAll('\0', '');
    expect(joined).toBe(`${long}\n`);
  });
});

describe('HidLineChannel over the emulated HID kit', () => {
  it('runs the trace and Info', async () => {
    const kit = new EmulatedKit(testChip());
    const hid = new EmulatedHidKit(kit);
    const link = await openKitHid({ device: hid });
    const [rev] = await link.transact([{ packet: INFO, maxExecMs: 5 }]);
    expect([...(rev ?? [])]).toEqual([0x07, 0x00, 0x00, 0x60, 0x02, 0x80, 0x38]);
    expect(kit.requests).toEqual([
      'board:device(00)',
      'E:physical:select(C0)',
      'E:w()',
      'E:t(0730000000035D)',
      'E:i()',
    ]);
    expect(link.kind).toBe('kit-hid');
    await link.close();
  });

  it('carries a long talk line over several reports', async () => {
    const kit = new EmulatedKit(testChip());
    const hid = new EmulatedHidKit(kit);
    const link = await openKitHid({ device: hid });
    const before = hid.reportsWritten;
    const write = encodeCommand({ opcode: 0x12, param1: 0x82, param2: 0, data: new Uint8Array(64) });
    await link.transact([{ packet: write, maxExecMs: 45 }]);
    // E:w(), E:t(<146 hex>) in 3 reports, E:i()
    expect(hid.reportsWritten - before).toBe(5);
    expect(kit.requests.at(-2)).toMatch(/^E:t\(471282/);
  });

  it('times out when the device never answers', async () => {
    const mute: KitLineHandler = { handleLine: () => new Promise(() => undefined) };
    const channel = new HidLineChannel(new EmulatedHidKit(mute));
    await channel.writeLine('board:device(00)');
    await expect(channel.readLine(50)).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    await expect(openKitHid({ device: new EmulatedHidKit(mute), replyTimeoutMs: 50 })).rejects.toMatchObject({
      code: ErrorCodes.TIMEOUT,
    });
  });

  it('refuses a reply line over the limit with DECODE_LIMIT', async () => {
    const babbler: KitLineHandler = { handleLine: async () => `00(${'0'.repeat(KIT_MAX_LINE * 4)})` };
    const channel = new HidLineChannel(new EmulatedHidKit(babbler));
    await channel.writeLine('E:w()');
    await expect(channel.readLine(1000)).rejects.toMatchObject({ code: ErrorCodes.DECODE_LIMIT });
  });

  it('reports a device that fails reads or writes as HARDWARE_IO', async () => {
    const broken: HidDeviceLike = {
      write: async () => {
        throw new Error('could not write');
      },
      read: async () => {
        throw new Error('could not read');
      },
      close: async () => undefined,
    };
    const channel = new HidLineChannel(broken);
    await expect(channel.writeLine('E:w()')).rejects.toMatchObject({ code: ErrorCodes.HARDWARE_IO });
    await expect(channel.readLine(100)).rejects.toMatchObject({ code: ErrorCodes.HARDWARE_IO });
  });

  it('the emulated HID endpoint refuses reports that are not 65 bytes with report id 0', async () => {
    const hid = new EmulatedHidKit(new EmulatedKit(testChip()));
    await expect(hid.write([0, 0x45])).rejects.toThrow(/65|64/);
    await expect(hid.write([1, ...new Array<number>(64).fill(0)])).rejects.toThrow();
  });
});

describe('node-hid loading and enumeration', () => {
  it('is HARDWARE_UNAVAILABLE with an install hint when node-hid is missing', async () => {
    const missing = () =>
      Promise.reject(
        Object.assign(new Error("Cannot find package 'node-hid'"), { code: 'ERR_MODULE_NOT_FOUND' }),
      );
    await expect(loadNodeHid(missing)).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
      message: /npm install node-hid/,
    });
    await expect(openKitHid({ loadHid: missing })).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });
  });

  it('loads the installed node-hid', async () => {
    const hid = await loadNodeHid();
    expect(typeof hid.devicesAsync).toBe('function');
  });

  it('lists kits by the known VID/PIDs only', async () => {
    const devices = [
      { path: '/dev/hidraw0', vendorId: 0x03eb, productId: 0x2312, product: 'AT88CK101' },
      { path: '/dev/hidraw1', vendorId: 0x046d, productId: 0xc52b, product: 'mouse' },
      { path: '/dev/hidraw2', vendorId: 0x04d8, productId: 0x0f32 },
      { vendorId: 0x04d8, productId: 0x0f30 },
    ];
    const list = await listKitHidDevices({ loadHid: fakeNodeHid(devices) });
    expect(list.map((d) => d.path)).toEqual(['/dev/hidraw0', '/dev/hidraw2']);
    expect(list[0]?.product).toBe('AT88CK101');
  });

  it('opens the first matching device through node-hid', async () => {
    const hid = new EmulatedHidKit(new EmulatedKit(testChip()));
    const link = await openKitHid({
      loadHid: fakeNodeHid([{ path: '/dev/hidraw7', vendorId: 0x03eb, productId: 0x2312 }], hid),
    });
    expect(link.location).toContain('hid:/dev/hidraw7');
    await link.close();
  });

  it('says so when no kit is plugged in', async () => {
    await expect(openKitHid({ loadHid: fakeNodeHid([]) })).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
      message: /03eb:2312/,
    });
  });

  it('points at the udev rule when the device does not open', async () => {
    const load = fakeNodeHid(
      [{ path: '/dev/hidraw3', vendorId: 0x03eb, productId: 0x2312 }],
      undefined,
      'cannot open device with path /dev/hidraw3',
    );
    await expect(openKitHid({ loadHid: load })).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
      message: expect.stringMatching(/udev.*90-cryptohid\.rules/s),
    });
    await expect(
      openKitHid({ path: '/dev/hidraw3', loadHid: fakeNodeHid([], undefined, 'open failed: EACCES') }),
    ).rejects.toMatchObject({ message: /EACCES.*udev/s });
  });
});
