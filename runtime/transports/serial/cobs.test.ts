import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes } from '../../errors.js';
import { cobsDecode, cobsDecodeInto, cobsEncode, cobsMaxEncodedLength } from './cobs.js';

const range = (from: number, to: number): Uint8Array => {
  const out = new Uint8Array(to - from + 1);
  for (let i = 0; i < out.length; i++) out[i] = from + i;
  return out;
};
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

/**
 * The encoding examples of the Wikipedia article "Consistent Overhead Byte Stuffing" (the
 * "Encoding examples" table, minimal form), without the trailing 00 delimiter that the table shows.
 */
const VECTORS: [string, Uint8Array, Uint8Array][] = [
  ['one zero', unhex('00'), unhex('01 01')],
  ['two zeros', unhex('00 00'), unhex('01 01 01')],
  ['zero, byte, zero', unhex('00 11 00'), unhex('01 02 11 01')],
  ['zero inside', unhex('11 22 00 33'), unhex('03 11 22 02 33')],
  ['no zero', unhex('11 22 33 44'), unhex('05 11 22 33 44')],
  ['trailing zeros', unhex('11 00 00 00'), unhex('02 11 01 01 01')],
  ['254 non-zero bytes', range(0x01, 0xfe), cat(unhex('ff'), range(0x01, 0xfe))],
  ['zero then 254 non-zero', range(0x00, 0xfe), cat(unhex('01 ff'), range(0x01, 0xfe))],
  ['255 non-zero bytes', range(0x01, 0xff), cat(unhex('ff'), range(0x01, 0xfe), unhex('02 ff'))],
  [
    '254 non-zero then zero',
    cat(range(0x02, 0xff), unhex('00')),
    cat(unhex('ff'), range(0x02, 0xff), unhex('01 01')),
  ],
  [
    '253 non-zero, zero, one',
    cat(range(0x03, 0xff), unhex('00 01')),
    cat(unhex('fe'), range(0x03, 0xff), unhex('02 01')),
  ],
];

describe('COBS vectors (Wikipedia encoding examples)', () => {
  for (const [name, data, encoded] of VECTORS) {
    it(name, () => {
      expect(hex(cobsEncode(data))).toBe(hex(encoded));
      expect(hex(cobsDecode(encoded))).toBe(hex(data));
    });
  }

  it('encodes the empty string as 01', () => {
    expect(hex(cobsEncode(new Uint8Array(0)))).toBe('01');
    expect(cobsDecode(unhex('01')).length).toBe(0);
  });
});

describe('COBS decoder', () => {
  it("accepts the paper's form: an empty 01 group after a final FF group", () => {
    // Cheshire & Baker's StuffData (and Arduino PacketSerial) end 254 non-zero bytes with FF … 01.
    expect(hex(cobsDecode(cat(unhex('ff'), range(0x01, 0xfe), unhex('01'))))).toBe(hex(range(0x01, 0xfe)));
  });

  it('rejects empty input', () => {
    expect(codeOf(() => cobsDecode(new Uint8Array(0)))).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('rejects a zero code byte or a zero data byte', () => {
    expect(codeOf(() => cobsDecode(unhex('00')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => cobsDecode(unhex('03 11 00')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => cobsDecode(unhex('02 11 00 01')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(() => cobsDecode(unhex('03 11 00'))).toThrow(/zero byte/);
  });

  it('rejects a code byte that runs past the end', () => {
    expect(codeOf(() => cobsDecode(unhex('05 11 22 33')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => cobsDecode(unhex('02 11 03 22')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => cobsDecode(unhex('ff 01')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(() => cobsDecode(unhex('05 11'))).toThrow(/past the end/);
  });

  it('decodes a range of a larger buffer without throwing', () => {
    const src = unhex('aa 03 11 22 02 33 bb');
    const out = new Uint8Array(5);
    expect(cobsDecodeInto(src, 1, 6, out)).toBe(4);
    expect(hex(out.subarray(0, 4))).toBe('11220033');
    expect(cobsDecodeInto(src, 1, 1, out)).toBe(-1);
    expect(cobsDecodeInto(unhex('02 00'), 0, 2, out)).toBe(-2);
    expect(cobsDecodeInto(src, 1, 3, out)).toBe(-3);
  });
});

describe('COBS properties', () => {
  it('round-trips any bytes, with no zero in the encoding and at most the documented overhead', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (data) => {
        const enc = cobsEncode(data);
        expect(enc.includes(0)).toBe(false);
        expect(enc.length).toBeLessThanOrEqual(cobsMaxEncodedLength(data.length));
        // Minimal form: one byte plus one per complete run of 254 non-zero bytes, at most.
        expect(enc.length).toBeLessThanOrEqual(data.length + Math.max(1, Math.ceil(data.length / 254)));
        expect(hex(cobsDecode(enc))).toBe(hex(data));
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('round-trips long runs and zero-heavy data', () => {
    const runs = fc
      .array(fc.tuple(fc.integer({ min: 0, max: 600 }), fc.boolean()), { maxLength: 6 })
      .map((parts) =>
        cat(...parts.map(([n, zero]) => (zero ? new Uint8Array(n % 4) : new Uint8Array(n).fill(0x5a)))),
      );
    fc.assert(
      fc.property(runs, (data) => {
        expect(hex(cobsDecode(cobsEncode(data)))).toBe(hex(data));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('on any input either decodes, to something that re-encodes to it (modulo a trailing 01), or throws DECODE_INVALID', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        let data: Uint8Array;
        try {
          data = cobsDecode(bytes);
        } catch {
          expect(codeOf(() => cobsDecode(bytes))).toBe(ErrorCodes.DECODE_INVALID);
          return;
        }
        const again = hex(cobsEncode(data));
        expect([hex(bytes), hex(bytes.subarray(0, -1))]).toContain(again);
      }),
      { numRuns: propertyRuns(2000) },
    );
  });
});
