import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf } from '../../../test/support/bytes.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import {
  encodeCredit,
  encodeHello,
  type Fragment,
  fragmentCount,
  MessageFragmenter,
  ockamBleValueSizes,
  parseFragment,
  Reassembler,
} from './framing.js';

function fragmentAll(message: Uint8Array, sizes: () => number): Uint8Array[] {
  const f = new MessageFragmenter(message);
  const out: Uint8Array[] = [];
  while (!f.done) out.push(f.next(sizes()));
  return out;
}

describe('BLE framing', () => {
  it('encodes HELLO and CREDIT byte for byte', () => {
    expect([...encodeHello({ version: 1, maxMessage: 0x00040000, credits: 32 })]).toEqual([
      0x01, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x20,
    ]);
    expect([...encodeCredit(0x0102)]).toEqual([0x05, 0x01, 0x02]);
    expect(parseFragment(encodeHello({ version: 1, maxMessage: 9, credits: 3 }))).toEqual({
      kind: 'hello',
      hello: { version: 1, maxMessage: 9, credits: 3 },
    });
  });

  it('a message that fits one value is a SINGLE; longer ones are FIRST + MOREs', () => {
    const small = fragmentAll(Uint8Array.of(1, 2, 3), () => 20);
    expect(small.map((v) => [...v])).toEqual([[0x02, 1, 2, 3]]);
    const empty = fragmentAll(new Uint8Array(0), () => 20);
    expect(empty.map((v) => [...v])).toEqual([[0x02]]);
    const m = Uint8Array.from({ length: 40 }, (_, i) => i);
    const parts = fragmentAll(m, () => 20);
    expect(parts.map((p) => p[0])).toEqual([0x03, 0x04, 0x04]);
    expect([...parts[0]!.subarray(0, 5)]).toEqual([0x03, 0, 0, 0, 40]);
    expect(parts.map((p) => p.length)).toEqual([20, 20, 7]);
    expect(fragmentCount(40, 20)).toBe(3);
    expect(fragmentCount(19, 20)).toBe(1);
    expect(fragmentCount(20, 20)).toBe(2);
  });

  it('round-trips any message at any (changing) value size', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.array(fc.integer({ min: 20, max: 514 }), { minLength: 1, maxLength: 8 }),
        (message, sizeList) => {
          let i = 0;
          const values = fragmentAll(message, () => sizeList[i++ % sizeList.length]!);
          const r = new Reassembler(3000);
          let out: Uint8Array | undefined;
          values.forEach((v, k) => {
            expect(v.length).toBeLessThanOrEqual(514);
            const got = r.push(parseFragment(v));
            if (k < values.length - 1) expect(got).toBeUndefined();
            else out = got;
          });
          expect(out).toEqual(message);
          if (sizeList.length === 1) expect(values.length).toBe(fragmentCount(message.length, sizeList[0]!));
        },
      ),
    );
  });

  it('never throws anything but a KeyhopError on random values, and never over-allocates', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 30 }), (values) => {
        const r = new Reassembler(1000);
        for (const v of values) {
          try {
            const f = parseFragment(v);
            if (f.kind === 'hello' || f.kind === 'credit') continue;
            r.push(f);
            expect(r.progress?.total ?? 0).toBeLessThanOrEqual(1000);
          } catch (e) {
            expect(e).toBeInstanceOf(KeyhopError);
            r.reset();
          }
        }
      }),
    );
  });

  it('rejects malformed fragments with stable codes', () => {
    const bad = (bytes: number[]) => codeOf(() => parseFragment(Uint8Array.from(bytes)));
    expect(bad([])).toBe(ErrorCodes.DECODE_INVALID);
    expect(bad([0x09])).toBe(ErrorCodes.DECODE_INVALID);
    expect(bad([0x01, 1, 0, 0])).toBe(ErrorCodes.DECODE_INVALID);
    expect(bad([0x03, 0, 0, 0, 1, 7])).toBe(ErrorCodes.DECODE_INVALID); // total == carried
    expect(bad([0x03, 0, 0, 0])).toBe(ErrorCodes.DECODE_INVALID);
    expect(bad([0x04])).toBe(ErrorCodes.DECODE_INVALID);
    expect(bad([0x05, 0, 0])).toBe(ErrorCodes.DECODE_INVALID);
    expect(bad([0x05, 0, 1, 0])).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('enforces the reassembly rules and the limit before allocating', () => {
    const r = new Reassembler(100);
    const push = (f: Fragment) => codeOf(() => r.push(f));
    expect(push({ kind: 'more', data: Uint8Array.of(1) })).toBe(ErrorCodes.DECODE_INVALID);
    expect(push({ kind: 'first', total: 0xffffffff, data: Uint8Array.of(1) })).toBe(ErrorCodes.DECODE_LIMIT);
    expect(r.inProgress).toBe(false);
    expect(push({ kind: 'single', data: new Uint8Array(101) })).toBe(ErrorCodes.DECODE_LIMIT);
    r.push({ kind: 'first', total: 3, data: Uint8Array.of(1) });
    expect(push({ kind: 'first', total: 3, data: Uint8Array.of(1) })).toBe(ErrorCodes.DECODE_INVALID);
    r.reset();
    r.push({ kind: 'first', total: 3, data: Uint8Array.of(1) });
    expect(push({ kind: 'single', data: Uint8Array.of(1) })).toBe(ErrorCodes.DECODE_INVALID);
    r.reset();
    r.push({ kind: 'first', total: 3, data: Uint8Array.of(1) });
    expect(push({ kind: 'more', data: Uint8Array.of(2, 3, 4) })).toBe(ErrorCodes.DECODE_INVALID);
  });

  it("computes Ockam's framing for the efficiency comparison", () => {
    expect(ockamBleValueSizes(40)).toEqual([8, 18, 18, 4]);
    expect(ockamBleValueSizes(0)).toEqual([8]);
  });
});
