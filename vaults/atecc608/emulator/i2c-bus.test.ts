import { describe, expect, it } from 'vitest';
import { Atecc608Chip } from './chip.js';
import { Op } from './constants.js';
import { EmulatedI2cBus } from './i2c-bus.js';
import { hex, manualClock, packet, toHex } from './test-helpers.js';

function setup(options: { busHz?: number; timing?: 'zero' | 'datasheet'; revision?: '608A' | '608B' } = {}) {
  const clock = manualClock();
  const chip = new Atecc608Chip({
    seed: 'bus',
    now: clock.now,
    timing: options.timing ?? 'zero',
    revision: options.revision ?? '608A',
  });
  const bus = new EmulatedI2cBus({ busHz: options.busHz ?? 100_000, now: clock.now });
  bus.attach(chip);
  return { clock, chip, bus };
}

function read(bus: EmulatedI2cBus, length: number): string {
  const r = bus.read(0x60, length);
  return r === 'nack' ? 'nack' : toHex(r);
}

describe('EmulatedI2cBus', () => {
  it('wakes with a general call at 100 kHz but not at 400 kHz (§1.2, §7.3)', () => {
    const slow = setup({ busHz: 100_000 });
    expect(slow.bus.read(0x60, 4)).toBe('nack'); // asleep
    expect(slow.bus.write(0x00, Uint8Array.of(0x01))).toBe('nack');
    expect(read(slow.bus, 4)).toBe('04 11 33 43');

    const fast = setup({ busHz: 400_000 });
    expect(fast.bus.write(0x00, Uint8Array.of(0x00))).toBe('nack');
    expect(fast.chip.awake).toBe(false);
    expect(fast.bus.write(0x60, hex('03 07 30 00 00 00 03 5D'))).toBe('nack');
  });

  it('replays the cryptoauthlib atcab_info trace of §1.8', () => {
    const { bus, clock } = setup({ timing: 'datasheet', revision: '608B' });
    expect(bus.write(0x00, Uint8Array.of(0x01))).toBe('nack');
    expect(bus.read(0x60, 4)).toBe('nack'); // inside tWHI
    clock.advance(1.5);
    expect(read(bus, 4)).toBe('04 11 33 43');
    expect(bus.write(0x60, hex('03 07 30 00 00 00 03 5D'))).toBe('ack');
    clock.advance(1); // ATCA_POLLING_INIT_TIME_MSEC
    expect(bus.write(0x60, Uint8Array.of(0x00))).toBe('nack'); // still executing (5 ms budget)
    clock.advance(2);
    expect(bus.write(0x60, Uint8Array.of(0x00))).toBe('nack');
    clock.advance(2);
    expect(bus.write(0x60, Uint8Array.of(0x00))).toBe('ack');
    expect(read(bus, 1)).toBe('07');
    expect(read(bus, 6)).toBe('00 00 60 03 83 BB');
    expect(bus.write(0x60, Uint8Array.of(0x02))).toBe('ack');
    expect(bus.read(0x60, 1)).toBe('nack'); // idle
  });

  it('keeps the read pointer across reads, rewinds on 0x00 and pads over-reads with 0xFF', () => {
    const { bus } = setup();
    bus.write(0x00, Uint8Array.of(0x00));
    expect(read(bus, 2)).toBe('04 11');
    expect(read(bus, 2)).toBe('33 43');
    expect(read(bus, 2)).toBe('FF FF');
    bus.write(0x60, Uint8Array.of(0x00));
    expect(read(bus, 4)).toBe('04 11 33 43');
    expect(bus.write(0x60, new Uint8Array([0x03, ...packet(Op.RANDOM, 0)]))).toBe('ack');
    const over = bus.read(0x60, 75);
    expect(over).not.toBe('nack');
    if (over === 'nack') return;
    expect(over[0]).toBe(35);
    expect(over.subarray(35).every((b) => b === 0xff)).toBe(true);
  });

  it('NACKs everything while busy, sleep and idle included', () => {
    const { bus, clock } = setup({ timing: 'datasheet' });
    bus.write(0x00, Uint8Array.of(0x00));
    clock.advance(2);
    expect(bus.write(0x60, new Uint8Array([0x03, ...packet(Op.RANDOM, 0)]))).toBe('ack');
    expect(bus.write(0x60, Uint8Array.of(0x01))).toBe('nack');
    expect(bus.write(0x60, Uint8Array.of(0x02))).toBe('nack');
    expect(bus.read(0x60, 1)).toBe('nack');
    clock.advance(23);
    expect(read(bus, 1)).toBe('23');
  });

  it('answers garbage after word address 0x03 with a status and NACKs reserved word addresses', () => {
    const { bus } = setup();
    bus.write(0x00, Uint8Array.of(0x00));
    expect(bus.write(0x60, hex('03 07 30 00 00 00 03 5E'))).toBe('ack');
    expect(read(bus, 4)).toBe('04 FF 01 42');
    expect(bus.write(0x60, hex('03 FF'))).toBe('ack');
    expect(read(bus, 4)).toBe('04 FF 01 42');
    expect(bus.write(0x60, hex('04 00'))).toBe('nack');
    expect(bus.write(0x61, hex('00'))).toBe('nack');
  });

  it('word address 0x01 sleeps (volatile state lost) and 0x02 idles (kept)', () => {
    const { bus, chip } = setup();
    bus.write(0x00, Uint8Array.of(0x00));
    bus.write(0x60, Uint8Array.of(0x02));
    expect(chip.powerState).toBe('idle');
    expect(bus.read(0x60, 1)).toBe('nack');
    bus.write(0x00, Uint8Array.of(0x00));
    expect(chip.awake).toBe(true);
    bus.write(0x60, Uint8Array.of(0x01));
    expect(chip.powerState).toBe('sleep');
  });

  it('puts the chip to sleep after the watchdog; the next wake reads the wake token', () => {
    const { bus, clock } = setup();
    bus.write(0x00, Uint8Array.of(0x00));
    bus.write(0x60, new Uint8Array([0x03, ...packet(Op.INFO, 0)]));
    clock.advance(1301);
    expect(bus.read(0x60, 7)).toBe('nack');
    bus.write(0x00, Uint8Array.of(0x00));
    expect(read(bus, 4)).toBe('04 11 33 43');
  });

  it('moves to a new address only after a sleep (§9.8)', () => {
    const { bus } = setup();
    bus.write(0x00, Uint8Array.of(0x00));
    const write = packet(Op.WRITE, 0x00, 4, Uint8Array.of(0x6a, 0, 0, 0));
    expect(bus.write(0x60, new Uint8Array([0x03, ...write]))).toBe('ack');
    expect(read(bus, 4)).toBe('04 00 03 40');
    bus.write(0x60, Uint8Array.of(0x01));
    bus.write(0x00, Uint8Array.of(0x00));
    expect(bus.read(0x60, 4)).toBe('nack');
    const r = bus.read(0x35, 4);
    expect(r === 'nack' ? r : toHex(r)).toBe('04 11 33 43');
  });
});
