import { describe, expect, it } from 'vitest';
import { ErrorCodes, isKeyhopError, KeyhopError } from '../../../runtime/errors.js';
import { I2cLink, mapAddonError } from './i2c-link.js';
import { ADDON_ENV, type AddonTransactOptions, type AteccI2cAddon, loadAteccAddon } from './native-addon.js';

const INFO = Uint8Array.of(0x07, 0x30, 0x00, 0x00, 0x00, 0x03, 0x5d);
const OK = Uint8Array.of(0x04, 0x00, 0x03, 0x40);

function addonError(code: string, message = `ATECC608 /dev/i2c-1@0x60: ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

/** A fake addon that records requests and lets the test finish each one. */
function fakeAddon() {
  const calls: { options: AddonTransactOptions; finish: (e?: Error) => void }[] = [];
  const addon: AteccI2cAddon = {
    transact: (options) =>
      new Promise((resolve, reject) => {
        calls.push({
          options,
          finish: (e) =>
            e
              ? reject(e)
              : resolve({
                  responses: options.steps.map(() => OK),
                  wakeToken: Uint8Array.of(4, 0x11, 0x33, 0x43),
                  timings: { wakeUs: 1600, stepsUs: options.steps.map(() => 2000), totalUs: 4000 },
                }),
        });
      }),
  };
  return { addon, calls };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('I2cLink', () => {
  it('passes its options to the addon and reports kind, location and timings', async () => {
    const { addon, calls } = fakeAddon();
    const link = I2cLink.open({ bus: 3, address: 0x35, pollIntervalUs: 500, lockTimeoutMs: 100 }, { addon });
    expect(link.kind).toBe('i2c');
    expect(link.location).toBe('/dev/i2c-3@0x35');
    const p = link.transact([{ packet: INFO, maxExecMs: 5 }], { end: 'sleep' });
    await tick();
    expect(calls[0]?.options).toMatchObject({
      device: '/dev/i2c-3',
      address: 0x35,
      wake: true,
      wakeDelayUs: 1500,
      wakeRetries: 3,
      end: 'sleep',
      pollIntervalUs: 500,
      lockTimeoutMs: 100,
    });
    calls[0]?.finish();
    expect(await p).toEqual([OK]);
    expect(link.lastTimings).toEqual({ wakeUs: 1600, stepsUs: [2000], totalUs: 4000 });
    expect(I2cLink.open({ device: '/dev/i2c-7' }, { addon }).location).toBe('/dev/i2c-7@0x60');
  });

  it('runs one transaction at a time, also after a failure, and drains on close', async () => {
    const { addon, calls } = fakeAddon();
    const link = I2cLink.open({}, { addon });
    const a = link.transact([{ packet: INFO, maxExecMs: 5 }]);
    const b = link.transact([{ packet: INFO, maxExecMs: 5 }]);
    const c = link.transact([{ packet: INFO, maxExecMs: 5 }]);
    await tick();
    expect(calls).toHaveLength(1);
    calls[0]?.finish(addonError('NACK'));
    await expect(a).rejects.toMatchObject({ code: ErrorCodes.HARDWARE_IO });
    await tick();
    expect(calls).toHaveLength(2);
    calls[1]?.finish();
    await b;
    await tick();
    const closing = link.close();
    calls[2]?.finish();
    await c;
    await closing;
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });
  });

  it('checks options and packet sizes itself', async () => {
    const { addon } = fakeAddon();
    for (const bad of [{ address: 0x80 }, { address: 0x07 }, { bus: -1 }, { bus: 1.5 }, { device: '' }]) {
      expect(() => I2cLink.open(bad, { addon })).toThrow(
        expect.objectContaining({ code: ErrorCodes.CONFIG_INVALID }) as unknown as Error,
      );
    }
    const link = I2cLink.open({}, { addon });
    await expect(link.transact([{ packet: new Uint8Array(6), maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.ENCODE_LIMIT,
    });
    const many = Array.from({ length: 17 }, () => ({ packet: INFO, maxExecMs: 5 }));
    await expect(link.transact(many)).rejects.toMatchObject({ code: ErrorCodes.ENCODE_LIMIT });
  });

  it('maps every addon code to a KeyhopError with remediation text', () => {
    const cases: [string, string, string | undefined][] = [
      ['ENOENT', ErrorCodes.HARDWARE_UNAVAILABLE, 'i2c_arm'],
      ['EACCES', ErrorCodes.HARDWARE_UNAVAILABLE, 'group i2c'],
      ['EBUSY', ErrorCodes.HARDWARE_UNAVAILABLE, 'atmel-ecc'],
      ['UNSUPPORTED', ErrorCodes.HARDWARE_UNAVAILABLE, 'Linux'],
      ['NACK', ErrorCodes.HARDWARE_IO, '100 kHz'],
      ['BAD_RESPONSE', ErrorCodes.HARDWARE_IO, undefined],
      ['IO_ERROR', ErrorCodes.HARDWARE_IO, undefined],
      ['SELFTEST_FAILED', ErrorCodes.HARDWARE_FAULT, undefined],
      ['TIMEOUT', ErrorCodes.TIMEOUT, undefined],
      ['LOCK_TIMEOUT', ErrorCodes.TIMEOUT, undefined],
      ['EINVAL', ErrorCodes.CONFIG_INVALID, undefined],
      ['SOMETHING_NEW', ErrorCodes.HARDWARE_IO, undefined],
    ];
    for (const [code, expected, hint] of cases) {
      const original = addonError(code);
      const e = mapAddonError(original, '/dev/i2c-1@0x60');
      expect(e.code, code).toBe(expected);
      expect(e.message).toContain('/dev/i2c-1@0x60');
      expect(e.cause).toBe(original);
      if (hint !== undefined) expect(e.message).toContain(hint);
    }
    const k = new KeyhopError(ErrorCodes.TIMEOUT, 'x');
    expect(mapAddonError(k, 'l')).toBe(k);
  });
});

describe('loadAteccAddon', () => {
  it('says how to build the addon when it is missing', () => {
    const saved = process.env[ADDON_ENV];
    process.env[ADDON_ENV] = '/nonexistent/keyhop_atecc608.node';
    try {
      let err: unknown;
      try {
        loadAteccAddon();
      } catch (e) {
        err = e;
      }
      expect(isKeyhopError(err, ErrorCodes.HARDWARE_UNAVAILABLE)).toBe(true);
      expect((err as Error).message).toContain('npm run build:native');
      expect(() => I2cLink.open({})).toThrow(/not built/);
    } finally {
      if (saved === undefined) delete process.env[ADDON_ENV];
      else process.env[ADDON_ENV] = saved;
    }
  });
});
