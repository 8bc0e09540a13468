import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes } from '../../errors.js';
import { Reassembler, type ReassemblyDropReason } from './reassembly.js';
import { type Datagram, decodeDatagram, encodeDatagram, segment } from './segmentation.js';

const P = '10.0.0.1:4000';
const Q = '10.0.0.2:4000';

/** A message of `n` bytes whose content depends on `seed`. */
function msg(n: number, seed = 1): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

function pieces(message: Uint8Array, rn: number): Datagram[] {
  return segment(message, rn).map(decodeDatagram);
}

function clock(start = 0) {
  const c = { t: start, now: () => c.t };
  return c;
}

function nonZero(r: Reassembler): Partial<Record<ReassemblyDropReason, number>> {
  return Object.fromEntries(Object.entries(r.drops).filter(([, v]) => v > 0));
}

/** Pushes datagrams in order; returns the messages that completed. */
function feed(r: Reassembler, peer: string, ds: Datagram[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const d of ds) {
    const m = r.push(peer, d);
    if (m) out.push(m);
  }
  return out;
}

describe('Reassembler: the in-order rules', () => {
  it('delivers a one-datagram message at once', () => {
    const r = new Reassembler();
    const m = msg(100);
    expect(r.push(P, pieces(m, 9)[0]!)).toEqual(m);
    expect(r.bufferedBytes).toBe(0);
    expect(nonZero(r)).toEqual({});
  });

  it('assembles contiguous pieces and frees the buffer', () => {
    const r = new Reassembler();
    const m = msg(1500);
    const ds = pieces(m, 9);
    expect(ds).toHaveLength(4);
    expect(r.push(P, ds[0]!)).toBeUndefined();
    expect(r.push(P, ds[1]!)).toBeUndefined();
    expect(r.bufferedBytes).toBe(986);
    expect(r.pending).toBe(1);
    expect(r.push(P, ds[2]!)).toBeUndefined();
    expect(r.push(P, ds[3]!)).toEqual(m);
    expect(r.bufferedBytes).toBe(0);
    expect(r.pending).toBe(0);
    expect(nonZero(r)).toEqual({});
  });

  it('drops a duplicate piece and a duplicate of a delivered message', () => {
    const r = new Reassembler();
    const m = msg(1000);
    const ds = pieces(m, 3);
    expect(feed(r, P, [ds[0]!, ds[0]!, ds[1]!, ds[1]!, ds[2]!])).toEqual([m]);
    expect(r.drops.duplicate).toBe(2);
    // The whole message again, and a one-piece message twice.
    expect(feed(r, P, ds)).toEqual([]);
    expect(r.drops.duplicate).toBe(5);
    const small = pieces(msg(10), 4);
    expect(feed(r, P, [...small, ...small])).toEqual([msg(10)]);
    expect(r.drops.duplicate).toBe(6);
  });

  it('gives up a message with a gap: out_of_order, then its later pieces are stale', () => {
    const r = new Reassembler();
    const ds = pieces(msg(2000), 10);
    expect(feed(r, P, [ds[0]!, ds[2]!, ds[1]!, ds[3]!, ds[4]!])).toEqual([]);
    expect(nonZero(r)).toEqual({ out_of_order: 1, stale: 3 });
    expect(r.bufferedBytes).toBe(0);
    // The next message is fine.
    const next = msg(700, 2);
    expect(feed(r, P, pieces(next, 11))).toEqual([next]);
  });

  it('drops a message whose first piece is missing', () => {
    const r = new Reassembler();
    const ds = pieces(msg(1200), 10);
    expect(feed(r, P, ds.slice(1))).toEqual([]);
    expect(nonZero(r)).toEqual({ out_of_order: 1, stale: 1 });
  });

  it('drops pieces with an older routing number as stale', () => {
    const r = new Reassembler();
    expect(feed(r, P, pieces(msg(10), 100))).toHaveLength(1);
    expect(feed(r, P, pieces(msg(10), 99))).toEqual([]);
    expect(feed(r, P, pieces(msg(600), 50))).toEqual([]);
    expect(nonZero(r)).toEqual({ stale: 3 });
    expect(feed(r, P, pieces(msg(10), 101))).toHaveLength(1);
  });

  it('compares routing numbers with wrap-around', () => {
    const r = new Reassembler();
    expect(feed(r, P, pieces(msg(10, 1), 65534))).toHaveLength(1);
    expect(feed(r, P, pieces(msg(10, 2), 65535))).toHaveLength(1);
    expect(feed(r, P, pieces(msg(600, 3), 0))).toEqual([msg(600, 3)]);
    expect(feed(r, P, pieces(msg(10, 4), 1))).toHaveLength(1);
    expect(feed(r, P, pieces(msg(10, 5), 65535))).toEqual([]); // late: now older than 1
    expect(nonZero(r)).toEqual({ stale: 1 });
  });

  it('abandons a partial message when a newer routing number arrives', () => {
    const r = new Reassembler();
    const old = pieces(msg(1500, 1), 5);
    const fresh = msg(1000, 2);
    const freshPieces = pieces(fresh, 6);
    expect(feed(r, P, old.slice(0, 2))).toEqual([]);
    expect(r.bufferedBytes).toBe(986);
    expect(feed(r, P, [freshPieces[0]!, old[2]!, freshPieces[1]!, old[3]!, freshPieces[2]!])).toEqual([
      fresh,
    ]);
    expect(nonZero(r)).toEqual({ abandoned: 1, stale: 2 });
    expect(r.bufferedBytes).toBe(0);
  });

  it('keeps one pending message per peer, independently', () => {
    const r = new Reassembler();
    const a = msg(1400, 1);
    const b = msg(1400, 2);
    const da = pieces(a, 1);
    const db = pieces(b, 1);
    const out: Uint8Array[] = [];
    for (let i = 0; i < da.length; i++) {
      const x = r.push(P, da[i]!);
      const y = r.push(Q, db[i]!);
      if (x) out.push(x);
      if (y) out.push(y);
    }
    expect(out).toEqual([a, b]);
    expect(r.peers).toBe(2);
  });

  it('counts malformed datagrams and empty non-final pieces', () => {
    const r = new Reassembler();
    expect(r.pushBytes(P, Uint8Array.of(1, 2, 3))).toBeUndefined();
    expect(r.pushBytes(P, new Uint8Array(600))).toBeUndefined();
    const v2 = encodeDatagram({ version: 2, routingNumber: 1, offset: 0, isLast: true, payload: msg(3) });
    expect(r.pushBytes(P, v2)).toBeUndefined();
    expect(
      r.pushBytes(
        P,
        encodeDatagram({ routingNumber: 1, offset: 0, isLast: false, payload: new Uint8Array() }),
      ),
    ).toBeUndefined();
    expect(nonZero(r)).toEqual({ malformed: 4 });
    expect(r.peers).toBe(0);
    const ok = encodeDatagram({ routingNumber: 1, offset: 0, isLast: true, payload: msg(3) });
    expect(r.pushBytes(P, ok)).toEqual(msg(3));
  });

  it('reports every drop to onDrop', () => {
    const seen: string[] = [];
    const r = new Reassembler({ onDrop: (reason, peer) => seen.push(`${reason}@${peer}`) });
    const ds = pieces(msg(10), 1);
    feed(r, P, [...ds, ...ds]);
    r.pushBytes(Q, Uint8Array.of(0));
    expect(seen).toEqual([`duplicate@${P}`, `malformed@${Q}`]);
  });
});

describe('Reassembler: limits', () => {
  it('drops a message larger than maxMessageBytes before buffering it', () => {
    const r = new Reassembler({ maxMessageBytes: 1000 });
    expect(feed(r, P, pieces(msg(1000), 1))).toEqual([msg(1000)]);
    expect(feed(r, P, pieces(msg(1200), 2))).toEqual([]); // fails on its last piece
    expect(nonZero(r)).toEqual({ too_large: 1 });
    expect(feed(r, P, pieces(msg(2000), 3))).toEqual([]); // fails on piece 3 of 5
    expect(nonZero(r)).toEqual({ too_large: 2, stale: 2 });
    expect(r.bufferedBytes).toBe(0);
  });

  it('drops a one-piece message larger than maxMessageBytes', () => {
    const r = new Reassembler({ maxMessageBytes: 100 });
    expect(feed(r, P, pieces(msg(101), 1))).toEqual([]);
    expect(nonZero(r)).toEqual({ too_large: 1 });
  });

  it('forgets the least recently heard peer beyond maxPeers', () => {
    const r = new Reassembler({ maxPeers: 2 });
    const peers = ['1.1.1.1:1', '2.2.2.2:2', '3.3.3.3:3'];
    const ds = peers.map((_, i) => pieces(msg(1000, i), 7));
    r.push(peers[0]!, ds[0]![0]!);
    r.push(peers[1]!, ds[1]![0]!);
    r.push(peers[0]!, ds[0]![1]!); // peer 0 is now the most recent
    expect(r.bufferedBytes).toBe(493 * 3);
    r.push(peers[2]!, ds[2]![0]!); // evicts peer 1
    expect(r.peers).toBe(2);
    expect(nonZero(r)).toEqual({ evicted: 1 });
    expect(r.bufferedBytes).toBe(493 * 3);
    expect(r.push(peers[0]!, ds[0]![2]!)).toEqual(msg(1000, 0));
    expect(r.push(peers[2]!, ds[2]![1]!)).toBeUndefined();
    expect(r.push(peers[2]!, ds[2]![2]!)).toEqual(msg(1000, 2));
    // Peer 1 lost its state: its next piece looks like a message joined midway.
    expect(r.push(peers[1]!, ds[1]![1]!)).toBeUndefined();
    expect(r.drops.out_of_order).toBe(1);
  });

  it('evicts the oldest partial message beyond maxBufferedBytes', () => {
    const c = clock();
    const r = new Reassembler({ maxBufferedBytes: 2000, now: c.now });
    const a = pieces(msg(2000, 1), 1);
    const b = pieces(msg(2000, 2), 1);
    feed(r, P, a.slice(0, 3)); // 1479 bytes
    c.t = 1;
    feed(r, Q, b.slice(0, 1)); // 493 bytes: 1972 in all
    expect(r.bufferedBytes).toBe(1972);
    expect(nonZero(r)).toEqual({});
    expect(r.push(Q, b[1]!)).toBeUndefined(); // would be 2465: P's older partial goes
    expect(nonZero(r)).toEqual({ evicted: 1 });
    expect(r.bufferedBytes).toBe(986);
    expect(feed(r, Q, b.slice(2))).toEqual([msg(2000, 2)]);
    expect(feed(r, P, a.slice(3))).toEqual([]);
    expect(nonZero(r)).toEqual({ evicted: 1, stale: 2 });
    expect(r.bufferedBytes).toBe(0);
  });

  it('evicts the peer itself when its own partial is the oldest', () => {
    const r = new Reassembler({ maxBufferedBytes: 1000 });
    const a = pieces(msg(3000), 1);
    expect(feed(r, P, a)).toEqual([]);
    expect(r.drops.evicted).toBe(1);
    expect(r.bufferedBytes).toBe(0);
  });

  it('validates its limits', () => {
    for (const bad of [{ maxPeers: 0 }, { timeoutMs: Number.NaN }, { maxBufferedBytes: -1 }]) {
      expect(() => new Reassembler(bad)).toThrow(
        expect.objectContaining({ code: ErrorCodes.CONFIG_INVALID }) as unknown as Error,
      );
    }
  });
});

describe('Reassembler: unproven sources', () => {
  const U = (i: number) => `10.9.0.${i}:5000`;

  it('keeps unproven sources within their own bytes, never taking a proven partial', () => {
    const c = clock();
    const r = new Reassembler({ maxBufferedBytes: 2000, maxUnprovenBufferedBytes: 1000, now: c.now });
    const p = pieces(msg(1500, 1), 1);
    feed(r, P, p.slice(0, 2)); // 986 proven bytes, the oldest partial of all
    for (let i = 1; i <= 6; i++) {
      c.t = i;
      expect(r.push(U(i), pieces(msg(2000, i), 1)[0]!, false)).toBeUndefined();
      expect(r.unprovenBufferedBytes).toBeLessThanOrEqual(1000);
    }
    // Two 493-byte pieces fit in 1000: each of U3..U6 pushed the oldest unproven partial out.
    expect(nonZero(r)).toEqual({ unproven_budget: 4 });
    expect(r.unprovenBufferedBytes).toBe(986);
    expect(r.bufferedBytes).toBe(986 + 986);
    expect(r.pending).toBe(3);
    expect(feed(r, P, p.slice(2))).toEqual([msg(1500, 1)]);
    // U5 and U6 are still whole; U1 lost its message.
    expect(r.push(U(6), pieces(msg(2000, 6), 1)[1]!, false)).toBeUndefined();
    expect(r.push(U(1), pieces(msg(2000, 1), 1)[1]!, false)).toBeUndefined();
    expect(nonZero(r)).toEqual({ unproven_budget: 5, stale: 1 }); // U6's second piece pushed U5 out
  });

  it('keeps at most maxUnprovenPeers unproven sources, apart from the proven ones', () => {
    const r = new Reassembler({ maxPeers: 2, maxUnprovenPeers: 3 });
    feed(r, P, pieces(msg(1000, 1), 1).slice(0, 1));
    feed(r, Q, pieces(msg(10), 1));
    for (let i = 1; i <= 3; i++) r.push(U(i), pieces(msg(1000, i), 1)[0]!, false);
    for (let i = 4; i <= 20; i++) r.push(U(i), pieces(msg(10, i), 1)[0]!, false);
    expect(r.peers).toBe(5);
    expect(r.unprovenPeers).toBe(3);
    expect(nonZero(r)).toEqual({ unproven_budget: 3 }); // U1..U3 had partial messages
    expect(r.unprovenBufferedBytes).toBe(0);
    expect(r.bufferedBytes).toBe(493);
    expect(feed(r, P, pieces(msg(1000, 1), 1).slice(1))).toEqual([msg(1000, 1)]);
  });

  it('moves a source between the budgets when the caller says it is proven, or no longer', () => {
    const r = new Reassembler({ maxUnprovenBufferedBytes: 600 });
    const ds = pieces(msg(2000, 7), 3);
    expect(r.push(P, ds[0]!, false)).toBeUndefined();
    expect(r.unprovenBufferedBytes).toBe(493);
    expect(r.push(P, ds[1]!, true)).toBeUndefined(); // promoted: its bytes move with it
    expect(r.unprovenBufferedBytes).toBe(0);
    expect(r.unprovenPeers).toBe(0);
    expect(r.bufferedBytes).toBe(986);
    expect(r.push(P, ds[2]!, true)).toBeUndefined();
    // Demoted with 1479 bytes: more than the unproven budget holds, so its message is given up.
    expect(r.push(P, ds[3]!, false)).toBeUndefined();
    expect(nonZero(r)).toEqual({ unproven_budget: 1, stale: 1 });
    expect(r.bufferedBytes).toBe(0);
    expect(r.unprovenPeers).toBe(1);
    expect(feed(r, P, pieces(msg(10), 4))).toEqual([msg(10)]);
  });

  it('refuses a piece that cannot fit the unproven budget at all, still delivers one-piece messages', () => {
    const r = new Reassembler({ maxUnprovenBufferedBytes: 100 });
    const ds = pieces(msg(600, 1), 1);
    expect(r.push(U(1), ds[0]!, false)).toBeUndefined();
    expect(r.push(U(1), ds[1]!, false)).toBeUndefined();
    expect(nonZero(r)).toEqual({ unproven_budget: 1, stale: 1 });
    expect(r.unprovenBufferedBytes).toBe(0);
    const small = pieces(msg(50, 2), 2)[0]!;
    expect(r.push(U(1), small, false)).toEqual(msg(50, 2));
    // A proven source is not held to it.
    expect(feed(r, P, pieces(msg(600, 1), 1))).toEqual([msg(600, 1)]);
  });

  it('defaults the unproven budgets to a quarter of the proven ones, and validates them', () => {
    expect(new Reassembler().limits).toMatchObject({
      maxPeers: 1024,
      maxUnprovenPeers: 256,
      maxBufferedBytes: 64 * 1024 * 1024,
      maxUnprovenBufferedBytes: 16 * 1024 * 1024,
    });
    expect(new Reassembler({ maxPeers: 2, maxBufferedBytes: 4000 }).limits).toMatchObject({
      maxUnprovenPeers: 1,
      maxUnprovenBufferedBytes: 1000,
    });
    for (const bad of [
      { maxUnprovenPeers: 0 },
      { maxUnprovenPeers: 2.5 },
      { maxUnprovenBufferedBytes: Number.POSITIVE_INFINITY },
    ]) {
      expect(() => new Reassembler(bad)).toThrow(
        expect.objectContaining({ code: ErrorCodes.CONFIG_INVALID }) as unknown as Error,
      );
    }
  });
});

describe('Reassembler: timeouts', () => {
  it('discards a partial message older than the timeout on the next piece', () => {
    const c = clock(1000);
    const r = new Reassembler({ timeoutMs: 30_000, now: c.now });
    const ds = pieces(msg(2000), 1);
    feed(r, P, ds.slice(0, 2));
    c.t += 20_000;
    feed(r, P, ds.slice(2, 3));
    c.t += 10_001; // 30 001 ms after the first piece, 10 001 after the last
    expect(feed(r, P, ds.slice(3))).toEqual([]);
    expect(nonZero(r)).toEqual({ expired: 1, stale: 2 });
    expect(r.bufferedBytes).toBe(0);
    // The next message is fine.
    expect(feed(r, P, pieces(msg(800), 2))).toEqual([msg(800)]);
  });

  it('sweep() frees expired partial messages and forgets idle peers', () => {
    const c = clock();
    const r = new Reassembler({ timeoutMs: 5000, now: c.now });
    feed(r, P, pieces(msg(2000), 1).slice(0, 2));
    feed(r, Q, pieces(msg(10), 1));
    c.t = 5000;
    expect(r.sweep()).toBe(0);
    expect(r.bufferedBytes).toBe(986);
    c.t = 5001;
    expect(r.sweep()).toBe(1);
    expect(r.bufferedBytes).toBe(0);
    expect(r.peers).toBe(0);
    expect(nonZero(r)).toEqual({ expired: 1 });
  });

  it('starts afresh after an idle timeout, so a restarted peer with a lower number is heard', () => {
    const c = clock();
    const r = new Reassembler({ timeoutMs: 1000, now: c.now });
    expect(feed(r, P, pieces(msg(10), 100))).toHaveLength(1);
    c.t = 500;
    expect(feed(r, P, pieces(msg(10), 5))).toEqual([]); // older: stale
    c.t = 1501;
    expect(feed(r, P, pieces(msg(10), 5))).toHaveLength(1);
    expect(nonZero(r)).toEqual({ stale: 1 });
  });
});

describe('Reassembler: properties', () => {
  it('segment → reassemble round-trips messages of 0..100 KiB in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 100 * 1024 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 255 }),
        (sizes, start, seed) => {
          const r = new Reassembler();
          const messages = sizes.map((n, i) => msg(n, seed + i));
          const out: Uint8Array[] = [];
          messages.forEach((m, i) => {
            for (const d of segment(m, (start + i) & 0xffff)) {
              const done = r.pushBytes(P, d);
              if (done) out.push(done);
            }
          });
          expect(out.length).toBe(messages.length);
          out.forEach((m, i) => {
            expect(Buffer.from(m).equals(Buffer.from(messages[i]!))).toBe(true);
          });
          expect(nonZero(r)).toEqual({});
          expect(r.bufferedBytes).toBe(0);
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it('never delivers a wrong message, whatever the loss, duplication and reordering', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.array(fc.integer({ min: 0, max: 9 })),
        (sizes, start, noise) => {
          const r = new Reassembler();
          const messages = sizes.map((n, i) => msg(n, i + 1));
          const wire = messages.flatMap((m, i) => segment(m, (start + i) & 0xffff));
          // Damage the stream: 0 drop, 1 duplicate, 2 swap with next, else keep.
          const damaged: Uint8Array[] = [];
          for (let i = 0; i < wire.length; i++) {
            const op = noise[i % Math.max(noise.length, 1)] ?? 9;
            if (op === 0) continue;
            if (op === 1) damaged.push(wire[i]!, wire[i]!);
            else if (op === 2 && i + 1 < wire.length) {
              damaged.push(wire[i + 1]!, wire[i]!);
              i++;
            } else damaged.push(wire[i]!);
          }
          const keys = new Set(messages.map((m) => Buffer.from(m).toString('hex')));
          let delivered = 0;
          for (const d of damaged) {
            const m = r.pushBytes(P, d);
            if (m) {
              delivered++;
              expect(keys.has(Buffer.from(m).toString('hex'))).toBe(true);
            }
          }
          expect(delivered).toBeLessThanOrEqual(messages.length);
          expect(r.drops.malformed).toBe(0);
          expect(r.bufferedBytes).toBeLessThanOrEqual(3000);
        },
      ),
    );
  });
});
