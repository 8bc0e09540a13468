import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { isKeyhopError } from '../../errors.js';
import { ACK_BYTES, DATA_HEAD_BYTES, decodeFrame, encodeAck, encodeData, FrameKind } from './frame.js';

const id = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);

describe('MQTT frames', () => {
  it('lays DATA and ACK out as docs/protocols/mqtt.md says', () => {
    const data = encodeData(id, 0x01020304, 0x01020300, Uint8Array.of(0xaa, 0xbb));
    expect(Buffer.from(data).toString('hex')).toBe(
      '0101' + '0102030405060708' + '01020304' + '01020300' + 'aabb',
    );
    expect(data.length).toBe(DATA_HEAD_BYTES + 2);
    const ack = encodeAck(id, 7);
    expect(Buffer.from(ack).toString('hex')).toBe('0102' + '0102030405060708' + '00000007');
    expect(ack.length).toBe(ACK_BYTES);
  });

  it('reads back what it writes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        (stream, a, b, body) => {
          const [base, seq] = a <= b ? [a, b] : [b, a];
          const f = decodeFrame(encodeData(stream, seq, base, body), 1024);
          expect(f).toMatchObject({ kind: FrameKind.DATA, seq, base });
          if (f.kind === FrameKind.DATA) {
            expect(Buffer.from(f.body).equals(Buffer.from(body))).toBe(true);
            expect(Buffer.from(f.stream).equals(Buffer.from(stream))).toBe(true);
          }
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });

  it.each([
    ['empty', [], 'DECODE_TRUNCATED'],
    ['another version', [2, 1], 'DECODE_VERSION'],
    ['an unknown kind', [1, 9], 'DECODE_INVALID'],
    ['a short DATA header', [1, 1, 0, 0, 0], 'DECODE_TRUNCATED'],
    ['DATA without a body', [1, 1, ...id, 0, 0, 0, 1, 0, 0, 0, 1], 'DECODE_INVALID'],
    ['DATA with seq 0', [1, 1, ...id, 0, 0, 0, 0, 0, 0, 0, 0, 0x80], 'DECODE_INVALID'],
    ['DATA with base after seq', [1, 1, ...id, 0, 0, 0, 1, 0, 0, 0, 2, 0x80], 'DECODE_INVALID'],
    ['a short ACK', [1, 2, ...id, 0], 'DECODE_TRUNCATED'],
    ['a long ACK', [1, 2, ...id, 0, 0, 0, 0, 0], 'DECODE_INVALID'],
  ])('refuses %s with a typed error', (_what, bytes, code) => {
    expect(() => decodeFrame(Uint8Array.from(bytes), 1024)).toThrow(expect.objectContaining({ code }));
  });

  it('refuses a body over the limit before copying it', () => {
    const big = encodeData(id, 1, 1, new Uint8Array(2000));
    expect(() => decodeFrame(big, 1999)).toThrow(expect.objectContaining({ code: 'DECODE_LIMIT' }));
    expect(decodeFrame(big, 2000).kind).toBe(FrameKind.DATA);
  });

  it('throws only KeyhopErrors on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (bytes, framed) => {
        const input =
          framed && bytes.length > 1 ? Uint8Array.from([1, bytes[0]! & 3, ...bytes.subarray(1)]) : bytes;
        try {
          decodeFrame(input, 32);
        } catch (e) {
          expect(isKeyhopError(e)).toBe(true);
        }
      }),
      { numRuns: propertyRuns(500) },
    );
  });
});
