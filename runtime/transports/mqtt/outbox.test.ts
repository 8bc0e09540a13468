import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { isKeyhopError } from '../../errors.js';
import { DEFAULT_OUTBOX_LIMITS, Outbox } from './outbox.js';

const op = fc.oneof(
  fc.record({
    kind: fc.constant('push' as const),
    remote: fc.constantFrom('a', 'b'),
    size: fc.integer({ min: 1, max: 64 }),
  }),
  fc.record({
    kind: fc.constant('ack' as const),
    remote: fc.constantFrom('a', 'b', 'zz'),
    upTo: fc.integer({ min: 0, max: 80 }),
  }),
  fc.record({ kind: fc.constant('publish' as const), remote: fc.constantFrom('a', 'b') }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 300 }) }),
);

describe('Outbox', () => {
  it('keeps each stream contiguous and in order, its counts exact and within every limit, whatever happens', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 1, max: 30 }), (ops, maxMessages) => {
        const limits = {
          ...DEFAULT_OUTBOX_LIMITS,
          maxMessages,
          maxBytes: 600,
          maxAgeMs: 500,
          window: 5,
          windowBytes: 100,
        };
        const outbox = new Outbox(limits, 1000, undefined);
        let now = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            try {
              outbox.push(o.remote, new Uint8Array(o.size), now);
            } catch (e) {
              expect(isKeyhopError(e, 'OUTBOX_FULL')).toBe(true);
            }
          } else if (o.kind === 'ack') {
            const s = outbox.streams().find((x) => x.remote === o.remote);
            outbox.ack(s?.id ?? new Uint8Array(8), o.upTo, now);
          } else if (o.kind === 'publish') {
            const s = outbox.streams().find((x) => x.remote === o.remote);
            if (s) outbox.markPublished(s, outbox.publishable(s), now);
          } else {
            now += o.ms;
            outbox.expire(now);
          }
          let messages = 0;
          let bytes = 0;
          for (const s of outbox.streams()) {
            for (const [i, e] of s.entries.entries()) expect(e.seq).toBe(s.base + i);
            expect(s.base + s.entries.length).toBe(s.nextSeq);
            expect(s.published).toBeLessThanOrEqual(Math.min(s.entries.length, limits.window));
            expect(s.publishedBytes).toBe(s.entries.slice(0, s.published).reduce((n, e) => n + e.size, 0));
            messages += s.entries.length;
            bytes += s.entries.reduce((n, e) => n + e.size, 0);
          }
          expect(outbox.stats()).toMatchObject({ messages, bytes });
          expect(messages).toBeLessThanOrEqual(maxMessages);
          expect(bytes).toBeLessThanOrEqual(limits.maxBytes);
        }
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('publishes at most the window, and at least one message however large', () => {
    const outbox = new Outbox({ ...DEFAULT_OUTBOX_LIMITS, window: 3, windowBytes: 10 }, 1000, undefined);
    const { stream } = outbox.push('a', new Uint8Array(50), 0);
    outbox.push('a', new Uint8Array(4), 0);
    expect(outbox.publishable(stream)).toHaveLength(1);
    outbox.markPublished(stream, outbox.publishable(stream), 0);
    expect(outbox.publishable(stream)).toHaveLength(0);
    outbox.ack(stream.id, 1, 0);
    for (let i = 0; i < 5; i++) outbox.push('a', new Uint8Array(2), 0);
    expect(outbox.publishable(stream).map((e) => e.seq)).toEqual([2, 3, 4]);
  });
});
