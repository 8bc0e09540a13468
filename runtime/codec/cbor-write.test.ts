import { encode } from 'cborg';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { headerSize, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_UINT, writeBytes, writeHeader } from './cbor-write.js';

describe('direct CBOR heads', () => {
  it('writes every unsigned safe integer in shortest form, as cborg does', () => {
    const edges = [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER];
    const sample = fc.sample(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), 500);
    for (const n of [...edges, ...sample]) {
      const out = new Uint8Array(9);
      const end = writeHeader(out, 0, MAJOR_UINT, n);
      expect(end).toBe(headerSize(n));
      expect(out.subarray(0, end)).toEqual(encode(n));
    }
  });

  it('writes byte strings and array heads', () => {
    const bytes = new Uint8Array(300).fill(7);
    const out = new Uint8Array(headerSize(bytes.length) + bytes.length);
    expect(writeBytes(out, 0, bytes)).toBe(out.length);
    expect(out).toEqual(encode(bytes));
    const head = new Uint8Array(3);
    writeHeader(head, 0, MAJOR_ARRAY, 1000);
    expect(head).toEqual(Uint8Array.of(0x99, 0x03, 0xe8));
    expect(MAJOR_BYTES).toBe(2);
  });
});
