/**
 * The native ATECC608 I2C addon end to end, without hardware: child Node processes load the real
 * addon under the LD_PRELOAD i2c-dev shim (native/testing/i2c_shim.c), which sends the bus traffic
 * to a scripted server (test/rig/i2c-script-server.ts) that plays the chip and logs every frame.
 * I2cLink runs in this process and drives the addon in the child over IPC. `i2ctransfer` under
 * the same shim shows the shim serves an ordinary i2c-dev program (I2C_FUNCS, I2C_RDWR).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes, isKeyhopError } from '../../runtime/errors.js';
import { I2cLink } from '../../vaults/atecc608/links/i2c-link.js';
import { type AddonTransactOptions, addonPath } from '../../vaults/atecc608/links/native-addon.js';
import {
  type I2cFrame,
  I2cScriptServer,
  type ScriptedChipOptions,
  scriptedChip,
} from '../rig/i2c-script-server.js';
import {
  AddonChild,
  ATCAB_INFO_TRACE,
  buildI2cShim,
  i2cRigSkipReason,
  runWithI2cShim,
} from '../rig/i2c-shim.js';
import { addonSources } from '../support/native-build.js';

const ADDON = addonPath();
const skip = i2cRigSkipReason({ addon: ADDON });
const skipTools = i2cRigSkipReason({ i2ctransfer: true, python3: true });

// Info(Revision) and a 608B's answer (atecc608.md §1.5, §1.8).
const INFO = Uint8Array.of(0x07, 0x30, 0x00, 0x00, 0x00, 0x03, 0x5d);
const INFO_RESPONSE = Uint8Array.of(0x07, 0x00, 0x00, 0x60, 0x03, 0x83, 0xbb);
const infoChip = (o: ScriptedChipOptions = {}) => scriptedChip({ respond: () => INFO_RESPONSE, ...o });
/**
 * maxExecMs for a step the scripted chip keeps busy: its polls cross to the script server in this
 * process, so the budget bounds a hang, not how fast the machine answers them.
 */
const BUSY_BUDGET_MS = 10_000;

function request(over: Partial<AddonTransactOptions> = {}): AddonTransactOptions {
  return {
    device: '/dev/i2c-1',
    address: 0x60,
    wake: true,
    wakeDelayUs: 1500,
    wakeRetries: 3,
    steps: [{ packet: INFO, maxExecMs: 5 }],
    end: 'idle',
    pollIntervalUs: 1000,
    lockTimeoutMs: 5000,
    ...over,
  };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function rig(chip: ScriptedChipOptions | ReturnType<typeof scriptedChip> = {}) {
  const model = 'handler' in chip ? chip : infoChip(chip);
  const server = await I2cScriptServer.start(model.handler);
  cleanups.push(() => server.close());
  const shim = await buildI2cShim();
  const child = async (extra: { socket?: string; busy?: string } = {}) => {
    const c = await AddonChild.start({
      shim,
      socket: extra.socket ?? server.path,
      addonPath: ADDON,
      ...(extra.busy !== undefined ? { busy: extra.busy } : {}),
    });
    cleanups.push(() => c.stop());
    return c;
  };
  return { server, chip: model, shim, child };
}

const hex = (b: Uint8Array | null | undefined) =>
  b === null || b === undefined ? String(b) : Buffer.from(b).toString('hex');

describe('native addon build files', () => {
  it('binding.gyp and native/CMakeLists.txt build the same sources', () => {
    const { gyp, cmake } = addonSources('keyhop_atecc608', 'KEYHOP_ATECC608_SOURCES');
    expect(gyp.length).toBeGreaterThan(0);
    expect(cmake).toEqual(gyp);
  });
});

describe.skipIf(skip !== undefined)('ATECC608 I2C addon through the i2c-dev shim', () => {
  it('runs a transaction exactly like the /dev/i2c-N trace of atecc608.md §1.8', async () => {
    const { server, child } = await rig();
    const c = await child();
    const r = await c.transact(request());
    expect(r.error).toBeUndefined();
    expect(r.result?.responses.map(hex)).toEqual([hex(INFO_RESPONSE)]);
    expect(hex(r.result?.wakeToken)).toBe('04113343');
    expect(r.result?.timings.stepsUs).toHaveLength(1);
    expect(r.result?.timings.wakeUs).toBeGreaterThanOrEqual(1500);
    expect(r.result?.timings.totalUs).toBeGreaterThanOrEqual(r.result?.timings.wakeUs ?? 0);
    expect(server.frames[0]).toMatchObject({ op: 'HELLO', bus: 1 });
    expect(server.trace()).toEqual(ATCAB_INFO_TRACE);
  });

  it('polls through busy NACKs, runs several steps in one wake and can end with sleep', async () => {
    const { server, chip, child } = await rig({ busyPolls: 4 });
    const c = await child();
    const r = await c.transact(
      request({
        steps: [
          { packet: INFO, maxExecMs: BUSY_BUDGET_MS },
          { packet: INFO, maxExecMs: BUSY_BUDGET_MS },
        ],
        end: 'sleep',
      }),
    );
    expect(r.error).toBeUndefined();
    expect(r.result?.responses.map(hex)).toEqual([hex(INFO_RESPONSE), hex(INFO_RESPONSE)]);
    expect(chip.wakes).toBe(1);
    const t = server.trace();
    expect(t.filter((l) => l === 'W 0x60 [00] NACK')).toHaveLength(8);
    expect(t.at(-1)).toBe('W 0x60 [01]');
  });

  it('times out when the chip never answers, and I2cLink reports TIMEOUT', async () => {
    const { child } = await rig({ respond: () => undefined });
    const c = await child();
    const r = await c.transact(request({ steps: [{ packet: INFO, maxExecMs: 20 }] }));
    expect(r.error?.code).toBe('TIMEOUT');
    expect(r.error?.message).toContain('/dev/i2c-1@0x60');
    expect(r.ms).toBeGreaterThanOrEqual(60);
    // That chip stays busy (a real one would be reset by its watchdog): a fresh one for the link.
    const again = await rig({ respond: () => undefined });
    const link = I2cLink.open({ bus: 1 }, { addon: (await again.child()).addon });
    await expect(link.transact([{ packet: INFO, maxExecMs: 1 }])).rejects.toMatchObject({
      code: ErrorCodes.TIMEOUT,
    });
  });

  it('retries the wake, and gives up with NACK (HARDWARE_IO) after wakeRetries', async () => {
    const ok = await rig({ wakeFailures: 2 });
    const r = await (await ok.child()).transact(request({ wakeRetries: 2 }));
    expect(r.error).toBeUndefined();
    expect(ok.server.trace().filter((l) => l === 'W 0x00 [01] NACK')).toHaveLength(3);

    const dead = await rig({ wakeFailures: 100 });
    const c = await dead.child();
    const r2 = await c.transact(request({ wakeRetries: 2 }));
    expect(r2.error?.code).toBe('NACK');
    expect(r2.error?.message).toContain('3 attempt');
    const link = I2cLink.open({ bus: 1, wakeRetries: 0 }, { addon: c.addon });
    const e = await link.transact([{ packet: INFO, maxExecMs: 5 }]).catch((x: unknown) => x);
    expect(isKeyhopError(e, ErrorCodes.HARDWARE_IO)).toBe(true);
  });

  it('idles and re-wakes a chip that was already awake with old output', async () => {
    const { server, child } = await rig({ staleOutput: INFO_RESPONSE });
    const r = await (await child()).transact(request());
    expect(r.error).toBeUndefined();
    expect(hex(r.result?.wakeToken)).toBe('04113343');
    expect(server.trace().slice(0, 5)).toEqual([
      'W 0x00 [01] NACK',
      'R 0x60 len 4 -> 07 00 00 60',
      'W 0x60 [02]',
      'W 0x00 [01] NACK',
      'R 0x60 len 4 -> 04 11 33 43',
    ]);
  });

  it('reports a self-test failure on wake (HARDWARE_FAULT) and wrong wake bytes (BAD_RESPONSE)', async () => {
    const selftest = await rig({ wakeResponse: Uint8Array.of(0x04, 0x07, 0xc4, 0x40) });
    const c = await selftest.child();
    expect((await c.transact(request())).error?.code).toBe('SELFTEST_FAILED');
    const link = I2cLink.open({}, { addon: c.addon });
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_FAULT,
    });

    const garbage = await rig({ wakeResponse: Uint8Array.of(0xff, 0xff, 0xff, 0xff) });
    const r = await (await garbage.child()).transact(request());
    expect(r.error?.code).toBe('BAD_RESPONSE');
    expect(r.error?.message).toContain('ff ff ff ff');
  });

  it('rejects an impossible response count byte with BAD_RESPONSE', async () => {
    const { child } = await rig({ respond: () => Uint8Array.of(0x02, 0x00) });
    const r = await (await child()).transact(request());
    expect(r.error?.code).toBe('BAD_RESPONSE');
  });

  it('maps a missing adapter and a kernel-bound address to HARDWARE_UNAVAILABLE', async () => {
    const { server, child } = await rig();
    const none = await child({ socket: `${server.path}.missing` });
    expect((await none.transact(request())).error?.code).toBe('ENOENT');
    const link = I2cLink.open({ bus: 1 }, { addon: none.addon });
    const e = await link.transact([{ packet: INFO, maxExecMs: 5 }]).catch((x: unknown) => x);
    expect(isKeyhopError(e, ErrorCodes.HARDWARE_UNAVAILABLE)).toBe(true);
    expect((e as Error).message).toContain('i2c_arm');

    const bound = await child({ busy: '0x60' });
    const r = await bound.transact(request());
    expect(r.error?.code).toBe('EBUSY');
    expect(r.error?.message).toContain('atmel-ecc');
    const link2 = I2cLink.open({ bus: 1 }, { addon: bound.addon });
    await expect(link2.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });
    expect(server.trace()).toEqual([]);
  });

  it('loads in this process too: a missing adapter is HARDWARE_UNAVAILABLE with a remedy', async () => {
    const link = I2cLink.open({ bus: 250 });
    const e = await link.transact([{ packet: INFO, maxExecMs: 5 }]).catch((x: unknown) => x);
    expect(isKeyhopError(e, ErrorCodes.HARDWARE_UNAVAILABLE)).toBe(true);
    expect((e as Error).message).toMatch(/\/dev\/i2c-250@0x60: cannot open .*dtparam=i2c_arm=on/);
  });

  it('serialises transactions of two processes with flock: the bus never interleaves', async () => {
    const { server, child } = await rig({ busyMs: 15 });
    const [a, b] = await Promise.all([child(), child()]);
    const jobs = [a, b, a, b, a, b].map((c) =>
      c.transact(
        request({
          steps: [
            { packet: INFO, maxExecMs: BUSY_BUDGET_MS },
            { packet: INFO, maxExecMs: BUSY_BUDGET_MS },
          ],
        }),
      ),
    );
    const results = await Promise.all(jobs);
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r.result?.responses.map(hex)).toEqual([hex(INFO_RESPONSE), hex(INFO_RESPONSE)]);
    }
    // Each transaction is one connection; its frames (after HELLO) must form one unbroken run.
    const frames = server.frames.filter((f: I2cFrame) => f.op !== 'HELLO');
    const runs: number[] = [];
    for (const f of frames) if (runs.at(-1) !== f.conn) runs.push(f.conn);
    expect(new Set(runs).size).toBe(6);
    expect(runs).toHaveLength(6);
  });

  it('keeps the event loop running during a long transaction', async () => {
    const { child } = await rig({ busyMs: 300 });
    const c = await child();
    const r = await c.transact(
      request({ steps: [{ packet: INFO, maxExecMs: BUSY_BUDGET_MS }], pollIntervalUs: 2000 }),
    );
    expect(r.error).toBeUndefined();
    expect(r.ms).toBeGreaterThanOrEqual(300);
    // How many 5 ms ticks fit in the ≥ 300 ms depends on the load; a blocked loop counts none, one
    // that waits counts at least one (unless the child got no CPU at all for those 300 ms).
    expect(r.ticks).toBeGreaterThan(0);
  });

  it('wakes and sleeps without commands (empty steps), as the protocol core does to sleep the chip', async () => {
    const { server, child } = await rig();
    const link = I2cLink.open({}, { addon: (await child()).addon });
    expect(await link.transact([], { end: 'sleep' })).toEqual([]);
    expect(server.trace()).toEqual(['W 0x00 [01] NACK', 'R 0x60 len 4 -> 04 11 33 43', 'W 0x60 [01]']);
  });

  it('drives the real addon through I2cLink, queued per link, with timings', async () => {
    const { server, child } = await rig({ busyPolls: 1 });
    const c = await child();
    const link = I2cLink.open({ bus: 1, address: 0x60, pollIntervalUs: 500 }, { addon: c.addon });
    expect(link.kind).toBe('i2c');
    expect(link.location).toBe('/dev/i2c-1@0x60');
    const all = await Promise.all(
      [1, 2, 3].map(() => link.transact([{ packet: INFO, maxExecMs: BUSY_BUDGET_MS }])),
    );
    expect(all.map((rs) => rs.map(hex))).toEqual([1, 2, 3].map(() => [hex(INFO_RESPONSE)]));
    expect(link.lastTimings?.stepsUs).toHaveLength(1);
    await link.close();
    expect(server.trace().filter((l) => l === 'W 0x60 [02]')).toHaveLength(3);
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });
  });

  it('rejects bad arguments with EINVAL before touching the bus', async () => {
    const { server, child } = await rig();
    const c = await child();
    const bad: Partial<AddonTransactOptions>[] = [
      { address: 0x78 },
      { address: 0x07 },
      { steps: [{ packet: new Uint8Array(6), maxExecMs: 5 }] },
      { steps: [{ packet: new Uint8Array(163), maxExecMs: 5 }] },
      { steps: Array.from({ length: 17 }, () => ({ packet: INFO, maxExecMs: 5 })) },
      { end: 'nap' as 'idle' },
      { device: '' },
    ];
    for (const over of bad) expect((await c.transact(request(over))).error?.code).toBe('EINVAL');
    expect(server.frames).toEqual([]);
  });
});

describe.skipIf(skipTools !== undefined)('i2c-dev shim under ordinary programs', () => {
  it('serves an ordinary i2c-dev program: I2C_FUNCS, I2C_RDWR writes and reads, NACK as an error', async () => {
    const { server, shim } = await rig({ staleOutput: Uint8Array.of(0x04, 0x11, 0x33, 0x43) });
    const env = { shim, socket: server.path };
    const token = await runWithI2cShim('i2ctransfer', ['-y', '1', 'r4@0x60'], env);
    expect(token).toMatchObject({ code: 0 });
    expect(token.stdout.trim()).toBe('0x04 0x11 0x33 0x43');
    const cmd = ['-y', '1', 'w8@0x60', '0x03', '0x07', '0x30', '0x00', '0x00', '0x00', '0x03', '0x5d'];
    expect(await runWithI2cShim('i2ctransfer', cmd, env)).toMatchObject({ code: 0 });
    const resp = await runWithI2cShim('i2ctransfer', ['-y', '1', 'w1@0x60', '0x00', 'r7@0x60'], env);
    expect(resp).toMatchObject({ code: 0 });
    expect(resp.stdout.trim()).toBe('0x07 0x00 0x00 0x60 0x03 0x83 0xbb');
    const nack = await runWithI2cShim('i2ctransfer', ['-y', '1', 'r1@0x61'], env);
    expect(nack.code).not.toBe(0);
    expect(nack.stderr).toMatch(/No such device or address/);
    expect(server.trace()).toEqual([
      'R 0x60 len 4 -> 04 11 33 43',
      'W 0x60 [03 07 30 00 00 00 03 5d]',
      'W 0x60 [00]',
      'R 0x60 len 7 -> 07 00 00 60 03 83 bb',
      'R 0x61 len 1 NACK',
    ]);
  });

  it('keeps dup/F_DUPFD copies on the same connection and address (python3 os.dup, fcntl.ioctl)', async () => {
    const { server, shim } = await rig({ staleOutput: Uint8Array.of(0x04, 0x11, 0x33, 0x43, 0xaa, 0xbb) });
    const script = [
      'import os, fcntl',
      "fd = os.open('/dev/i2c-1', os.O_RDWR)",
      'fcntl.ioctl(fd, 0x0703, 0x60)', // I2C_SLAVE
      'd = os.dup(fd)',
      'print(os.read(d, 4).hex())',
      'os.close(fd)',
      'print(os.read(d, 2).hex())',
      'os.close(d)',
    ].join('\n');
    const r = await runWithI2cShim('python3', ['-c', script], { shim, socket: server.path });
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['04113343', 'aabb']);
    expect(new Set(server.frames.map((f) => f.conn)).size).toBe(1);
  });
});
