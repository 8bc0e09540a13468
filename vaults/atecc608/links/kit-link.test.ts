import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../../runtime/errors.js';
import { EmulatedKit, type KitLineHandler } from '../emulator/kit-device.js';
import { encodeCommand, encodeStatus, WAKE_SELFTEST_FAILED } from '../protocol/packet.js';
import { KitLink } from './kit-link.js';
import { formatKitReply, toHex } from './kit-protocol.js';
import { CRYPTOAUTHLIB_KIT_TRACE, HandlerChannel, testChip } from './kit-test-support.js';

const INFO = encodeCommand({ opcode: 0x30, param1: 0, param2: 0 });
const READ_CONFIG_0 = encodeCommand({ opcode: 0x02, param1: 0x80, param2: 0 });
const REVISION_608A = [0x07, 0x00, 0x00, 0x60, 0x02, 0x80, 0x38];

function open(handler: KitLineHandler, options: { index?: number; replyTimeoutMs?: number } = {}) {
  const channel = new HandlerChannel(handler);
  return { channel, link: KitLink.open(channel, { kind: 'kit-test', location: 'mem', ...options }) };
}

/** A kit whose answers are scripted per request (falls back to `kit` when the script returns undefined). */
function scripted(
  script: (line: string) => string | undefined | 'silent',
  kit?: KitLineHandler,
): KitLineHandler {
  return {
    handleLine: (line) => {
      const r = script(line);
      if (r === 'silent') return new Promise<string>(() => undefined);
      if (r !== undefined) return Promise.resolve(r);
      return kit ? kit.handleLine(line) : Promise.resolve('E2()');
    },
  };
}

describe('KitLink', () => {
  it('speaks the cryptoauthlib trace and returns the 608A revision', async () => {
    const kit = new EmulatedKit(testChip());
    const { channel, link: pending } = open(kit);
    const link = await pending;
    const [config] = await link.transact([{ packet: READ_CONFIG_0, maxExecMs: 5 }]);
    const [revision] = await link.transact([{ packet: INFO, maxExecMs: 5 }]);
    expect(channel.written).toEqual(CRYPTOAUTHLIB_KIT_TRACE);
    expect(config?.length).toBe(35);
    expect([...(revision ?? [])]).toEqual(REVISION_608A);
    expect(link.kind).toBe('kit-test');
    expect(link.location).toContain('ECC608 TWI 0xC0');
    await link.close();
    expect(channel.closed).toBe(true);
  });

  it('runs several steps in one wake and ends with sleep when asked', async () => {
    const chip = testChip();
    const { channel, link: pending } = open(new EmulatedKit(chip));
    const link = await pending;
    const out = await link.transact(
      [
        { packet: INFO, maxExecMs: 5 },
        { packet: INFO, maxExecMs: 5 },
      ],
      { end: 'sleep' },
    );
    expect(out).toHaveLength(2);
    expect(channel.written.slice(2)).toEqual([
      'E:w()',
      'E:t(0730000000035D)',
      'E:t(0730000000035D)',
      'E:s()',
    ]);
    expect(chip.awake).toBe(false);
  });

  it('serialises concurrent transactions', async () => {
    const { channel, link: pending } = open(new EmulatedKit(testChip()));
    const link = await pending;
    await Promise.all([1, 2, 3].map(() => link.transact([{ packet: INFO, maxExecMs: 5 }])));
    const seq = channel.written.slice(2).join(' ');
    expect(seq).toBe(Array(3).fill('E:w() E:t(0730000000035D) E:i()').join(' '));
  });

  it('scans board:device indexes for the first ECC608, or uses the given one', async () => {
    const chip = testChip();
    const kit = new EmulatedKit([{ chip: testChip(), name: 'ECC508' }, { chip }]);
    const scan = open(kit);
    await scan.link;
    expect(scan.channel.written.slice(0, 3)).toEqual([
      'board:device(00)',
      'board:device(01)',
      'E:physical:select(C0)',
    ]);
    const direct = open(new EmulatedKit([{ chip: testChip(), name: 'ECC508' }, { chip }]), { index: 1 });
    await direct.link;
    expect(direct.channel.written[0]).toBe('board:device(01)');
  });

  it('explains the old ECC108 firmware when that is all the kit reports', async () => {
    const kit = new EmulatedKit({ chip: testChip(), name: 'ECC108' });
    const { link, channel } = open(kit);
    await expect(link).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
      message: expect.stringMatching(/ECC108.*firmware/s),
    });
    expect(channel.written).toHaveLength(8);
    expect(channel.closed).toBe(true);
  });

  it('reports a kit without any device', async () => {
    const { link } = open(scripted(() => 'F9()'));
    await expect(link).rejects.toMatchObject({ code: ErrorCodes.HARDWARE_UNAVAILABLE, message: /no ECC608/ });
  });

  it('times out when the kit never answers, then recovers from the late reply', async () => {
    let silent = false;
    let late: ((s: string) => void) | undefined;
    const kit = new EmulatedKit(testChip());
    const handler: KitLineHandler = {
      handleLine: (line) => {
        if (silent && line.startsWith('E:t')) {
          return new Promise((resolve) => {
            late = resolve;
          });
        }
        return kit.handleLine(line);
      },
    };
    const link = await open(handler, { replyTimeoutMs: 100 }).link;
    silent = true;
    const t0 = Date.now();
    await expect(link.transact([{ packet: INFO, maxExecMs: 20 }])).rejects.toMatchObject({
      code: ErrorCodes.TIMEOUT,
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
    // The answer arrives after all; it must not be taken for the next request's.
    late?.(formatKitReply(0, Uint8Array.of(0x04, 0x0f, 0, 0)));
    silent = false;
    const [rev] = await link.transact([{ packet: INFO, maxExecMs: 5 }]);
    expect([...(rev ?? [])]).toEqual(REVISION_608A);
  }, 10_000);

  it('times out opening a kit that never answers', async () => {
    const { link } = open(
      scripted(() => 'silent'),
      { replyTimeoutMs: 50 },
    );
    await expect(link).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
  });

  it('fails on a self-test wake token and on a non-zero kit status', async () => {
    const kit = new EmulatedKit(testChip());
    let wake = '00(04113343)';
    const link = await open(scripted((l) => (l === 'E:w()' ? wake : undefined), kit)).link;
    wake = formatKitReply(0, WAKE_SELFTEST_FAILED);
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_FAULT,
    });
    wake = 'D0()';
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_IO,
      message: /D0/,
    });
  });

  it('idles and wakes again when the wake does not return the token', async () => {
    const kit = new EmulatedKit(testChip());
    let first = true;
    const { channel, link: pending } = open(
      scripted((l) => {
        if (l !== 'E:w()' || !first) return undefined;
        first = false;
        return '00(0700006002803B)';
      }, kit),
    );
    const link = await pending;
    await link.transact([{ packet: INFO, maxExecMs: 5 }]);
    expect(channel.written.slice(2, 5)).toEqual(['E:w()', 'E:i()', 'E:w()']);
  });

  it('gives the chip status packet back when the kit reports it as an ATCA_STATUS', async () => {
    const kit = new EmulatedKit(testChip(), { talkErrors: 'atca-status' });
    const link = await open(kit).link;
    const bad = encodeCommand({ opcode: 0x99, param1: 0, param2: 0 });
    const [resp] = await link.transact([{ packet: bad, maxExecMs: 5 }]);
    // Parse error 0x03 travels as D2() and comes back as the 4-byte status packet.
    expect(toHex(resp ?? new Uint8Array())).toBe(toHex(encodeStatus(0x03)));
  });

  it('refuses a reply line over the limit with DECODE_LIMIT', async () => {
    const kit = new EmulatedKit(testChip());
    const link = await open(
      scripted((l) => (l.startsWith('E:t') ? `00(${'AB'.repeat(400)})` : undefined), kit),
    ).link;
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.DECODE_LIMIT,
    });
  });

  it('refuses use after close', async () => {
    const link = await open(new EmulatedKit(testChip())).link;
    await link.close();
    await expect(link.transact([{ packet: INFO, maxExecMs: 5 }])).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });
  });
});
