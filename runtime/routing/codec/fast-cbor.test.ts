import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { decodeChannelMessageStrict, encodeChannelMessage } from '../../channel/messages.js';
import { Message } from '../message.js';
import { Route } from '../route.js';
import { decodeCborFrameStrict, encodeCborFrame } from './cbor-frame.js';
import { fastChannelPayload, fastRoutingFrame } from './fast-cbor.js';

const addr = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 300 }));
const routes = fc.array(addr, { maxLength: 6 });

function strictOrUndefined<T>(decode: () => T): T | undefined {
  try {
    return decode();
  } catch {
    return undefined;
  }
}

/** The same routes (types and exact value bytes) and payload. */
function same(
  a: { onward: Route; returnRoute: Route; payload: Uint8Array },
  b: { onward: Route; returnRoute: Route; payload: Uint8Array },
): void {
  const key = (r: Route) => r.addresses.map((x) => x.key);
  expect(key(a.onward)).toEqual(key(b.onward));
  expect(key(a.returnRoute)).toEqual(key(b.returnRoute));
  expect(Buffer.from(a.payload).equals(Buffer.from(b.payload))).toBe(true);
}

/** Random changes to valid bytes: flipped bytes, cut, extended. */
const mutation = fc.record({
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
  cut: fc.option(fc.nat()),
  extra: fc.uint8Array({ maxLength: 3 }),
});

function mutate(bytes: Uint8Array, m: typeof mutation extends fc.Arbitrary<infer T> ? T : never): Uint8Array {
  let out = Uint8Array.from(bytes);
  for (const [i, v] of m.flips) if (out.length > 0) out[i % out.length] = v;
  if (m.cut !== null) out = out.subarray(0, m.cut % (out.length + 1));
  return Buffer.concat([out, m.extra]);
}

describe('the data path decoders agree with the strict reader', () => {
  it('routing frames: the same message for valid ones, and never an answer the strict reader refuses (property)', () => {
    fc.assert(
      fc.property(routes, routes, fc.uint8Array({ maxLength: 3000 }), mutation, (on, ret, payload, m) => {
        const frame = encodeCborFrame(new Message(Route.from(on), Route.from(ret), payload));
        const fast = fastRoutingFrame(frame);
        expect(fast).toBeDefined();
        same(fast!, decodeCborFrameStrict(frame));
        const bad = mutate(frame, m);
        const fastBad = fastRoutingFrame(bad);
        if (fastBad) {
          const strict = strictOrUndefined(() => decodeCborFrameStrict(bad));
          expect(strict).toBeDefined();
          same(fastBad, strict!);
        }
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('channel payload messages: the same (property)', () => {
    fc.assert(
      fc.property(routes, routes, fc.uint8Array({ maxLength: 3000 }), mutation, (on, ret, payload, m) => {
        const bytes = encodeChannelMessage({
          kind: 'payload',
          onward: Route.from(on),
          returnRoute: Route.from(ret),
          payload,
        });
        const fast = fastChannelPayload(bytes);
        const strict = decodeChannelMessageStrict(bytes);
        expect(fast).toBeDefined();
        expect(strict.kind).toBe('payload');
        same(fast!, strict as Extract<typeof strict, { kind: 'payload' }>);
        const bad = mutate(bytes, m);
        const fastBad = fastChannelPayload(bad);
        if (fastBad) {
          const s = strictOrUndefined(() => decodeChannelMessageStrict(bad));
          expect(s?.kind).toBe('payload');
          same(fastBad, s as Extract<typeof strict, { kind: 'payload' }>);
        }
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('random bytes: whatever the fast path accepts, the strict reader accepts the same (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const f = fastRoutingFrame(b);
        if (f) same(f, decodeCborFrameStrict(b));
        const c = fastChannelPayload(b);
        if (c)
          same(
            c,
            decodeChannelMessageStrict(b) as Extract<
              ReturnType<typeof decodeChannelMessageStrict>,
              { kind: 'payload' }
            >,
          );
      }),
      { numRuns: propertyRuns(3000) },
    );
  });

  it('leaves non-shortest heads, indefinite lengths and a tracing context to the strict reader', () => {
    // [[], [], h''] with the payload length written in two bytes (not shortest).
    expect(fastRoutingFrame(Uint8Array.of(0x83, 0x80, 0x80, 0x58, 0x00))).toBeUndefined();
    expect(fastRoutingFrame(Uint8Array.of(0x9f, 0x80, 0x80, 0x40, 0xff))).toBeUndefined();
    // With a tracing context "x".
    expect(fastRoutingFrame(Uint8Array.of(0x84, 0x80, 0x80, 0x40, 0x61, 0x78))).toBeUndefined();
    expect(fastRoutingFrame(Uint8Array.of(0x84, 0x80, 0x80, 0x40, 0xf6))).toBeDefined();
  });
});
