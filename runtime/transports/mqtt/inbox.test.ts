import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { type DataFrame, FrameKind } from './frame.js';
import { Inbox } from './inbox.js';

const S = Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9);
const data = (seq: number, base = 1, stream = S): DataFrame => ({
  kind: FrameKind.DATA,
  stream,
  seq,
  base,
  body: Uint8Array.of(seq & 0xff, seq >> 8),
});
const num = (b: Uint8Array) => b[0]! | (b[1]! << 8);

describe('Inbox', () => {
  it('delivers in order, holds what comes early, drops duplicates and acknowledges cumulatively', () => {
    const inbox = new Inbox();
    expect(inbox.accept('a', data(1))).toMatchObject({ ack: 1, held: false });
    expect(inbox.accept('a', data(3))).toMatchObject({ deliver: [], held: true, ack: undefined });
    const r = inbox.accept('a', data(2));
    expect(r.deliver.map(num)).toEqual([2, 3]);
    expect(r.ack).toBe(3);
    expect(inbox.accept('a', data(2))).toMatchObject({ duplicate: true, ack: 3, deliver: [] });
    expect(inbox.held).toEqual({ messages: 0, bytes: 0 });
  });

  it('starts a stream it has no state for at the sender base, and jumps to a base that moved on', () => {
    const inbox = new Inbox();
    expect(inbox.accept('a', data(50, 40)).deliver).toEqual([]);
    expect(inbox.accept('a', data(40, 40)).deliver.map(num)).toEqual([40]);
    // The sender gave up 41..44 (expired): what is held below the new base is delivered, the rest counted.
    inbox.accept('a', data(43, 41));
    const r = inbox.accept('a', data(46, 45));
    expect(r.deliver.map(num)).toEqual([43]);
    expect(r.skipped).toBe(3);
    expect(inbox.accept('a', data(45, 45)).deliver.map(num)).toEqual([45, 46]);
  });

  it('survives a hostile base without walking the gap', () => {
    const inbox = new Inbox();
    inbox.accept('a', data(1));
    const r = inbox.accept('a', data(0xffffffff, 0xfffffff0));
    expect(r.skipped).toBe(0xfffffff0 - 2);
  });

  it('keeps streams of different senders and stream ids apart, and forgets the least recently used', () => {
    const inbox = new Inbox({ maxStreams: 2 });
    inbox.accept('a', data(1));
    inbox.accept('b', data(1));
    inbox.accept('a', data(1, 1, Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1)));
    expect(inbox.streamCount).toBe(2);
    expect(inbox.accept('b', data(1)).duplicate).toBe(true);
    // a's first stream was forgotten: it starts again at the base its sender gives.
    expect(inbox.accept('a', data(2, 2)).deliver).toHaveLength(1);
  });

  it('refuses to hold more than its limits (the sender sends again)', () => {
    const inbox = new Inbox({ maxHeldPerStream: 2, maxHeldBytes: 1024 });
    inbox.accept('a', data(1));
    expect(inbox.accept('a', data(3)).held).toBe(true);
    expect(inbox.accept('a', data(4)).held).toBe(true);
    expect(inbox.accept('a', data(5)).refused).toBe(true);
    expect(inbox.accept('a', data(2)).deliver.map(num)).toEqual([2, 3, 4]);
    expect(inbox.accept('a', data(5)).deliver.map(num)).toEqual([5]);
  });

  it('restores saved cursors and reports only cursors that moved', () => {
    const a = new Inbox();
    for (let i = 1; i <= 5; i++) a.accept('x', data(i));
    const dirty = a.takeDirty();
    expect(dirty.map((c) => c.next)).toEqual([6]);
    expect(a.takeDirty()).toEqual([]);
    const b = new Inbox();
    b.restore(dirty);
    expect(b.accept('x', data(5)).duplicate).toBe(true);
    expect(b.accept('x', data(6)).deliver.map(num)).toEqual([6]);
  });

  it('delivers each message exactly once and in order, whatever duplicates and reordering the broker adds', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 200 }),
        fc.integer({ min: 1, max: 8 }),
        (n, noise, holdLimit) => {
          const inbox = new Inbox({ maxHeldPerStream: holdLimit });
          const out: number[] = [];
          // The broker's deliveries: shuffled, with duplicates; then the sender's retransmission of
          // everything unacknowledged, in order, until all arrived.
          const order = [...Array(n).keys()].map((i) => i + 1);
          for (const x of noise) {
            const i = x % order.length;
            const j = (x * 7) % order.length;
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const extra = noise.slice(0, 20).map((x) => (x % n) + 1);
          let acked = 0;
          for (const seq of [...order, ...extra]) {
            const r = inbox.accept('s', data(seq));
            out.push(...r.deliver.map(num));
            if (r.ack !== undefined) acked = Math.max(acked, r.ack);
          }
          while (acked < n) {
            for (let seq = acked + 1; seq <= n; seq++) {
              const r = inbox.accept('s', data(seq, acked + 1));
              out.push(...r.deliver.map(num));
              if (r.ack !== undefined) acked = Math.max(acked, r.ack);
            }
          }
          expect(out).toEqual([...Array(n).keys()].map((i) => i + 1));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
});
