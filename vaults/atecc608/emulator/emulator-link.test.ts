import { p256 } from '@noble/curves/nist.js';
import { describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../../runtime/errors.js';
import { atcaCrc } from '../protocol/crc.js';
import { Atecc608Chip } from './chip.js';
import { Op } from './constants.js';
import { EmulatorLink } from './emulator-link.js';
import { packet, run, toHex, writeTestConfig } from './test-helpers.js';

const step = (p: Uint8Array, maxExecMs = 200) => ({ packet: p, maxExecMs });

function lockedChip(seed: string): Atecc608Chip {
  const chip = new Atecc608Chip({ seed });
  const config = writeTestConfig(chip);
  run(chip, Op.LOCK, 0x00, atcaCrc(config));
  run(chip, Op.LOCK, 0x81);
  chip.sleep();
  return chip;
}

describe('EmulatorLink', () => {
  it('wakes, runs the steps, and idles by default', async () => {
    const chip = new Atecc608Chip({ seed: 'link' });
    const link = new EmulatorLink(chip);
    expect(link.kind).toBe('emulator');
    expect(link.location).toBe('emulator@0x60');
    const [info] = await link.transact([step(packet(Op.INFO, 0))]);
    expect(toHex(info!)).toBe('07 00 00 60 02 80 38');
    expect(chip.powerState).toBe('idle');
    await link.transact([step(packet(Op.INFO, 0))], { end: 'sleep' });
    expect(chip.powerState).toBe('sleep');
  });

  it('keeps TempKey between transactions that idle, not after one that sleeps', async () => {
    const chip = lockedChip('link-sign');
    const link = new EmulatorLink(chip);
    const [genKey] = await link.transact([step(packet(Op.GENKEY, 0x04, 2))]);
    const pub = genKey!.subarray(1, 65);
    const digest = new Uint8Array(32).fill(0x42);
    await link.transact([step(packet(Op.NONCE, 0x43, 0, digest))]);
    const [sig] = await link.transact([step(packet(Op.SIGN, 0xa0, 2))]);
    expect(sig![0]).toBe(67);
    const key = new Uint8Array([4, ...pub]);
    expect(p256.verify(sig!.subarray(1, 65), digest, key, { prehash: false, lowS: false })).toBe(true);
    await link.transact([step(packet(Op.NONCE, 0x43, 0, digest))], { end: 'sleep' });
    const [refused] = await link.transact([step(packet(Op.SIGN, 0xa0, 2))]);
    expect(toHex(refused!)).toBe('04 0F 23 42');
  });

  it('waits the modelled execution time', async () => {
    const chip = new Atecc608Chip({ seed: 'slow', timing: { scale: 0.2 } });
    const link = new EmulatorLink(chip);
    const started = performance.now();
    await link.transact([step(packet(Op.GENKEY, 0x00, 0))]); // 115 ms × 0.2
    expect(performance.now() - started).toBeGreaterThanOrEqual(20);
  });

  it('serialises concurrent transactions', async () => {
    const chip = new Atecc608Chip({ seed: 'serial', timing: { scale: 0.05 } });
    const link = new EmulatorLink(chip);
    const order: string[] = [];
    await Promise.all([
      link
        .transact([step(packet(Op.SHA, 0x00)), step(packet(Op.SHA, 0xc2, 1, Uint8Array.of(1)))])
        .then((r) => {
          order.push('a');
          expect(r[1]![0]).toBe(35);
        }),
      link.transact([step(packet(Op.SHA, 0xc2, 0))]).then((r) => {
        order.push('b');
        expect(toHex(r[0]!)).toBe('04 0F 23 42'); // no SHA context left: a ran to completion first
      }),
    ]);
    expect(order).toEqual(['a', 'b']);
  });

  it('fails with HARDWARE_IO when the watchdog puts the chip to sleep mid-transaction', async () => {
    let t = 0;
    const chip = new Atecc608Chip({ seed: 'wd', now: () => (t += 100) });
    chip.inject({ watchdogMs: 150 });
    const link = new EmulatorLink(chip);
    await expect(
      link.transact([step(packet(Op.INFO, 0)), step(packet(Op.INFO, 0)), step(packet(Op.INFO, 0))]),
    ).rejects.toSatisfy((e) => isKeyhopError(e, 'HARDWARE_IO'));
  });

  it('refuses work after close', async () => {
    const link = new EmulatorLink(new Atecc608Chip({ seed: 'c' }));
    await link.close();
    await expect(link.transact([step(packet(Op.INFO, 0))])).rejects.toSatisfy((e) =>
      isKeyhopError(e, 'HARDWARE_UNAVAILABLE'),
    );
  });
});
