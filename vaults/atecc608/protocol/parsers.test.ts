import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyhopError } from '../../../runtime/errors.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import {
  parseCounter,
  parseEcdhEncrypted,
  parseEcdhSecret,
  parseInfo,
  parseKeyValid,
  parseNonceRandom,
  parsePublicKey,
  parseRandom,
  parseRead,
  parseShaDigest,
  parseSignature,
  selfTestFailures,
} from './commands.js';
import {
  buildConfigZone,
  decodeKeyConfig,
  decodeSlotConfig,
  describeSlot,
  parseConfigZone,
} from './config.js';
import { decodeResponse, encodeResponse } from './packet.js';

/** Runs `fn`; it may return anything but may only throw a KeyhopError. */
function total(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
  }
}

const PARSERS: readonly [string, (d: Uint8Array) => unknown][] = [
  ['parseInfo', parseInfo],
  ['parseKeyValid', parseKeyValid],
  ['parseRandom', parseRandom],
  ['parseNonceRandom', parseNonceRandom],
  ['parsePublicKey', parsePublicKey],
  ['parseSignature', parseSignature],
  ['parseEcdhSecret', parseEcdhSecret],
  ['parseEcdhEncrypted', parseEcdhEncrypted],
  ['parseRead(4)', (d) => parseRead(d, 4)],
  ['parseRead(32)', (d) => parseRead(d, 32)],
  ['parseShaDigest', parseShaDigest],
  ['parseCounter', parseCounter],
];

describe('parsers on arbitrary bytes (property)', () => {
  it('decodeResponse returns or throws KeyhopError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => total(() => decodeResponse(bytes))),
      { numRuns: propertyRuns(2000) },
    );
  });

  it('decodeResponse accepts every well-formed response and returns its data', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 96 }),
        fc.uint8Array({ maxLength: 8 }),
        (data, junk) => {
          const frame = encodeResponse(data);
          const over = new Uint8Array(frame.length + junk.length);
          over.set(frame);
          over.set(junk, frame.length);
          const r = decodeResponse(over);
          if (data.length === 1) expect(r).toEqual({ kind: 'status', status: data[0] });
          else expect(r.kind === 'data' && Buffer.from(r.data).equals(Buffer.from(data))).toBe(true);
        },
      ),
    );
  });

  it('decodeResponse rejects any single flipped bit', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), (data, n) => {
        const frame = encodeResponse(data);
        const bitIndex = n % ((frame.length - 1) * 8);
        const bad = frame.slice();
        bad[1 + (bitIndex >> 3)]! ^= 1 << (bitIndex & 7);
        expect(() => decodeResponse(bad)).toThrow(KeyhopError);
      }),
    );
  });

  it.each(PARSERS)('%s returns or throws KeyhopError', (_name, parse) => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => total(() => parse(bytes))));
  });

  it('selfTestFailures returns a subset of the request or undefined', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 1, max: 0x3b }),
        (status, requested) => {
          const r = selfTestFailures(status, requested);
          if (r !== undefined) expect(r & ~requested).toBe(0);
        },
      ),
    );
  });

  it('parseConfigZone returns or throws KeyhopError, and round-trips every 128-byte zone', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 140 }), (bytes) => total(() => parseConfigZone(bytes))));
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 128, maxLength: 128 }), (zone) => {
        const cfg = parseConfigZone(zone);
        expect(Buffer.from(buildConfigZone(cfg)).equals(Buffer.from(zone))).toBe(true);
        for (let slot = 0; slot < 16; slot++) expect(describeSlot(cfg, slot)).toMatch(/^[^:]+: \S/);
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('slot and key config decoders accept every 16-bit word', () => {
    fc.assert(
      fc.property(fc.integer({ min: -5, max: 0x10005 }), (w) => {
        total(() => decodeSlotConfig(w));
        total(() => decodeKeyConfig(w));
      }),
    );
  });
});
