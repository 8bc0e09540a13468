import { describe, expect, it } from 'vitest';
import { hex, unhex } from '../../../test/support/bytes.js';
import { atcaCrc, crcMatches, withCrc } from './crc.js';

describe('ATECC CRC-16', () => {
  it('has the check value 0xBCDD over "123456789"', () => {
    expect(atcaCrc(new TextEncoder().encode('123456789'))).toBe(0xbcdd);
  });

  // Reference frames from atecc608.md §1.5 (computed from cryptoauthlib's atCRC, several seen on
  // real buses).
  it.each([
    ['0730000000', '035d'],
    ['0400', '0340'],
    ['0401', '00c3'],
    ['0403', '8342'],
    ['0405', 'c343'],
    ['0407', '40c2'],
    ['0408', '60c0'],
    ['040f', '2342'],
    ['0411', '3343'],
    ['04ee', '3141'],
    ['04ff', '0142'],
    ['071b000000', '24cd'],
    ['0702800000', '09ad'],
    ['0702000400', '1d6d'],
    ['0740040200', '8507'],
    ['0740000200', '0685'],
    ['0741a00200', '7d05'],
    ['0717800000', '398d'],
    ['0700006002', '8038'],
    ['0700006003', '83bb'],
  ])('frames %s with %s', (body, crc) => {
    expect(hex(withCrc(unhex(body)))).toBe(body + crc);
    expect(crcMatches(unhex(body + crc))).toBe(true);
  });

  it('rejects a frame with one bit flipped', () => {
    const frame = unhex('04113343');
    for (let i = 0; i < 32; i++) {
      const bad = frame.slice();
      bad[i >> 3]! ^= 1 << (i & 7);
      expect(crcMatches(bad)).toBe(false);
    }
  });
});
