import { crc32 as zlibCrc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { crc32, crc32Update } from './crc32.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('CRC-32 vectors', () => {
  it('has the catalogued check value CRC32("123456789") = 0xCBF43926', () => {
    // RevEng "Catalogue of parametrised CRC algorithms", CRC-32/ISO-HDLC: check=0xcbf43926.
    expect(crc32(ascii('123456789'))).toBe(0xcbf43926);
  });

  it("matches the IEEE column of Go's hash/crc32 golden table", () => {
    // golang/go src/hash/crc32/crc32_test.go, `golden`.
    const golden: [number, string][] = [
      [0x00000000, ''],
      [0xe8b7be43, 'a'],
      [0x9e83486d, 'ab'],
      [0x352441c2, 'abc'],
      [0xed82cd11, 'abcd'],
      [0x8587d865, 'abcde'],
      [0x3981703a, 'abcdefghij'],
      [0x6b9cdfe7, 'Discard medicine more than two years old.'],
      [0xc90ef73f, 'He who has a shady past knows that nice guys finish last.'],
      [0x7d0a377f, 'C is as portable as Stonehedge!!'],
      [0x8e0bb443, 'How can you write a big system without C++?  -Paul Glick'],
    ];
    for (const [want, s] of golden) expect(crc32(ascii(s))).toBe(want);
  });

  it('returns an unsigned value even when the top bit is set', () => {
    expect(crc32(ascii('a'))).toBeGreaterThan(0x7fffffff);
  });

  it('covers only the given range', () => {
    const b = ascii('xx123456789yy');
    expect(crc32(b, 2, 11)).toBe(0xcbf43926);
  });
});

describe('CRC-32 properties', () => {
  it('agrees with zlib on random data', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (data) => {
        expect(crc32(data)).toBe(zlibCrc32(data));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('can be computed in pieces', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.nat(), (data, cut) => {
        const at = data.length === 0 ? 0 : cut % (data.length + 1);
        expect(crc32Update(crc32(data, 0, at), data, at)).toBe(crc32(data));
      }),
    );
  });

  it('detects every single-bit error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 256 }), fc.nat(), (data, bit) => {
        const flipped = data.slice();
        const i = bit % (data.length * 8);
        flipped[i >> 3]! ^= 1 << (i & 7);
        expect(crc32(flipped)).not.toBe(crc32(data));
      }),
    );
  });
});
