import { concatBytes } from '@noble/hashes/utils.js';
import { atcaCrc } from '../protocol/crc.js';
import { encodeCommand } from '../protocol/packet.js';
import type { Atecc608Chip } from './chip.js';
import { slotSize } from './constants.js';

/** Shared by the emulator's tests: build packets, run them, and the cryptoauthlib test config. */

export function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  return Uint8Array.from({ length: clean.length / 2 }, (_, i) =>
    Number.parseInt(clean.slice(2 * i, 2 * i + 2), 16),
  );
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0').toUpperCase()).join(' ');
}

export function packet(opcode: number, param1: number, param2 = 0, data?: Uint8Array): Uint8Array {
  return encodeCommand(data === undefined ? { opcode, param1, param2 } : { opcode, param1, param2, data });
}

export interface Answer {
  readonly raw: Uint8Array;
  /** The status byte of a count-4 answer. */
  readonly status: number | undefined;
  readonly data: Uint8Array;
}

/** Runs one command on an awake chip (waking it first if needed). */
export function run(
  chip: Atecc608Chip,
  opcode: number,
  param1: number,
  param2 = 0,
  data?: Uint8Array,
): Answer {
  if (!chip.awake) chip.wake();
  const { response } = chip.execute(packet(opcode, param1, param2, data));
  const count = response[0] ?? 0;
  const body = response.slice(1, count - 2);
  return { raw: response, status: count === 4 ? body[0] : undefined, data: body };
}

/** cryptoauthlib's `test_ecc608_configdata` (test/api_calib/test_calib_config.c; atecc608.md §3.3), bytes 16-127. */
export function testConfig(serialAndRevision: Uint8Array): Uint8Array {
  const c = new Uint8Array(128);
  c.set(serialAndRevision.subarray(0, 16));
  c[16] = 0xc0;
  c[18] = 0xa1;
  c[19] = 0x00;
  const slotConfig = [
    0x2faf, 0x44c4, 0x2087, 0xf4c4, 0x0f8f, 0x0f0f, 0x8f9f, 0x6483, 0x44c4, 0x64c4, 0x0f0f, 0x0f0f, 0x0f0f,
    0x0f0f, 0x0f0f, 0x0f0f,
  ];
  const keyConfig = [
    0x0033, 0x001c, 0x0013, 0x001c, 0x003c, 0x103a, 0x001c, 0x0033, 0x001c, 0x001c, 0x0038, 0x0030, 0x003c,
    0x003c, 0x0032, 0x0030,
  ];
  for (let s = 0; s < 16; s++) {
    c[20 + 2 * s] = slotConfig[s]! & 0xff;
    c[21 + 2 * s] = slotConfig[s]! >> 8;
    c[96 + 2 * s] = keyConfig[s]! & 0xff;
    c[97 + 2 * s] = keyConfig[s]! >> 8;
  }
  c.set([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 52);
  c[68] = 0xff;
  c[69] = 0x84;
  c.set([0x03, 0xbc, 0x09, 0x69, 0x76], 70);
  c[86] = 0x55;
  c[87] = 0x55;
  c[88] = 0xff;
  c[89] = 0xff;
  c.set([0x0e, 0x40], 90);
  return c;
}

/** The data+OTP summary CRC the emulator checks (slots 0-15 in order, then OTP; see commands/lock.ts). */
export function dataZoneCrc(slots: Map<number, Uint8Array>, otp: Uint8Array): number {
  const parts: Uint8Array[] = [];
  for (let s = 0; s < 16; s++) {
    const content = new Uint8Array(slotSize(s));
    const written = slots.get(s);
    if (written !== undefined) content.set(written.subarray(0, content.length));
    parts.push(content);
  }
  parts.push(otp);
  return atcaCrc(concatBytes(...parts));
}

/** Manual clock for tests. */
export function manualClock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/**
 * Writes the cryptoauthlib test config the way `calib_write_config_zone` does (§3.4): 4-byte writes
 * for block 0 from byte 16, a 32-byte write for block 1, block 2 word by word skipping word 21
 * (bytes 84-87), a 32-byte write for block 3, then UpdateExtra 0/1 with value 0. Returns the config.
 */
export function writeTestConfig(chip: Atecc608Chip): Uint8Array {
  const current = new Uint8Array(128);
  for (let block = 0; block < 4; block++) {
    const r = run(chip, 0x02, 0x80, block << 3);
    current.set(r.data, block * 32);
  }
  const config = testConfig(current);
  const expectOk = (a: Answer, what: string) => {
    if (a.status !== 0) throw new Error(`${what} answered ${a.status}`);
  };
  for (let word = 4; word < 8; word++) {
    expectOk(run(chip, 0x12, 0x00, word, config.slice(word * 4, word * 4 + 4)), `write word ${word}`);
  }
  expectOk(run(chip, 0x12, 0x80, 1 << 3, config.slice(32, 64)), 'write block 1');
  for (let word = 16; word < 24; word++) {
    if (word === 21) continue;
    expectOk(run(chip, 0x12, 0x00, word, config.slice(word * 4, word * 4 + 4)), `write word ${word}`);
  }
  expectOk(run(chip, 0x12, 0x80, 3 << 3, config.slice(96, 128)), 'write block 3');
  expectOk(run(chip, 0x20, 0x00, 0), 'UpdateExtra 0');
  expectOk(run(chip, 0x20, 0x01, 0), 'UpdateExtra 1');
  return config;
}
