import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes } from '../../errors.js';
import { decodeFrame, encodeFrame, FrameType, type SerialFrame, SerialFrameReader } from './frame.js';
import {
  createSerialLink,
  type LinkFailure,
  PlainLink,
  RESET_FLAG_RESTART,
  ReliableLink,
  type ReliableLinkOptions,
  type SerialLink,
} from './reliability.js';

/** Deterministic PRNG (mulberry32), so that a failing fast-check seed replays exactly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const msg = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (b: Uint8Array): string => new TextDecoder().decode(b);

interface Impairment {
  /** Probability that a frame is lost. */
  loss: number;
  /** Probability that a frame arrives twice. */
  dup: number;
  /** Each copy is delayed uniformly in [latency, latency + jitter]: jitter reorders. */
  latency: number;
  jitter: number;
  /** Probability that one bit of a frame is flipped (the CRC then drops it). */
  corrupt: number;
}

const PERFECT: Impairment = { loss: 0, dup: 0, latency: 5, jitter: 0, corrupt: 0 };

interface Endpoint {
  name: string;
  link: SerialLink;
  reader: SerialFrameReader;
  delivered: string[];
  failures: LinkFailure[];
  /** Every frame this end sent, decoded. */
  sent: SerialFrame[];
  /** Frames this end has been sent are not delivered (the peer is unplugged or dead). */
  deaf: boolean;
}

/** Two links joined by a simulated line, on a simulated clock. */
class Sim {
  now = 0;
  readonly clock = { now: () => this.now };
  private events: { at: number; order: number; run: () => void }[] = [];
  private order = 0;
  readonly rand: () => number;
  readonly ends: Record<'a' | 'b', Endpoint>;
  impair: Record<'a' | 'b', Impairment>;
  /** Drops the frames it returns true for, before any impairment. */
  dropIf: ((from: 'a' | 'b', frame: SerialFrame) => boolean) | undefined;

  constructor(
    seed: number,
    impair: Impairment | Record<'a' | 'b', Impairment> = PERFECT,
    options: Partial<ReliableLinkOptions> & { reliable?: boolean } = {},
  ) {
    this.rand = prng(seed);
    this.impair = 'a' in impair ? impair : { a: impair, b: impair };
    this.ends = { a: this.endpoint('a', options), b: this.endpoint('b', options) };
  }

  /** A new endpoint on side `side` (also used to restart one). */
  endpoint(side: 'a' | 'b', options: Partial<ReliableLinkOptions> & { reliable?: boolean } = {}): Endpoint {
    const e: Endpoint = {
      name: side,
      link: undefined as unknown as SerialLink,
      reader: new SerialFrameReader({ maxPayloadBytes: options.maxPayloadBytes }),
      delivered: [],
      failures: [],
      sent: [],
      deaf: false,
    };
    const seed = Math.floor(this.rand() * 2 ** 32);
    const r = prng(seed);
    e.link = createSerialLink({
      reliable: true,
      clock: this.clock,
      random32: () => Math.floor(r() * 2 ** 32),
      retransmitMs: 100,
      ...options,
      send: (wire) => this.transmit(side, wire),
      deliver: (payload) => e.delivered.push(str(payload)),
      onFailure: (f) => e.failures.push(f),
    });
    if (this.ends) this.ends[side] = e;
    return e;
  }

  private transmit(from: 'a' | 'b', wire: Uint8Array): void {
    const to = from === 'a' ? 'b' : 'a';
    const frame = decodeFrame(wire);
    this.ends[from].sent.push(frame);
    if (this.dropIf?.(from, frame)) return;
    const p = this.impair[from];
    if (this.rand() < p.loss) return;
    const copies = this.rand() < p.dup ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let bytes = wire;
      if (this.rand() < p.corrupt) {
        bytes = wire.slice();
        const bit = Math.floor(this.rand() * bytes.length * 8);
        bytes[bit >> 3]! ^= 1 << (bit & 7);
      }
      const target = this.ends[to];
      this.at(this.now + p.latency + this.rand() * p.jitter, () => {
        // A restarted end is a new object: frames in flight reach whoever is plugged in now.
        const dest = this.ends[to];
        if (dest.deaf || dest !== target) return;
        for (const f of dest.reader.push(bytes)) dest.link.onFrame(f);
      });
    }
  }

  at(time: number, run: () => void): void {
    this.events.push({ at: time, order: this.order++, run });
  }

  /** Runs events and timers in time order until `until`, or until nothing is left. */
  run(until = Number.POSITIVE_INFINITY, stop: () => boolean = () => false): void {
    for (let steps = 0; steps < 5_000_000; steps++) {
      if (stop()) return;
      let next: { at: number; order: number; run: () => void } | undefined;
      for (const e of this.events)
        if (!next || e.at < next.at || (e.at === next.at && e.order < next.order)) next = e;
      const deadlines = [this.ends.a.link.nextDeadline, this.ends.b.link.nextDeadline].filter(
        (d): d is number => d !== undefined,
      );
      const timer = deadlines.length > 0 ? Math.min(...deadlines) : Number.POSITIVE_INFINITY;
      const t = Math.min(next?.at ?? Number.POSITIVE_INFINITY, timer);
      if (t === Number.POSITIVE_INFINITY || t > until) {
        if (until !== Number.POSITIVE_INFINITY) this.now = until;
        return;
      }
      this.now = Math.max(this.now, t);
      if (next && next.at <= timer) {
        this.events.splice(this.events.indexOf(next), 1);
        next.run();
      } else {
        this.ends.a.link.tick(this.now);
        this.ends.b.link.tick(this.now);
      }
    }
    throw new Error('simulation did not settle');
  }

  link(side: 'a' | 'b'): ReliableLink {
    return this.ends[side].link as ReliableLink;
  }
}

describe('ReliableLink handshake', () => {
  it('opens both directions with RESET and RESET_ACK', () => {
    const sim = new Sim(1);
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    expect(sim.link('a').state).toBe('resetting');
    sim.run();
    for (const side of ['a', 'b'] as const) {
      expect(sim.link(side).state).toBe('open');
      expect(sim.link(side).receiving).toBe(true);
      expect(sim.link(side).nextDeadline).toBeUndefined();
      const types = sim.ends[side].sent.map((f) => f.type);
      expect(types).toEqual([FrameType.RESET, FrameType.RESET_ACK]);
    }
    // Both started unsynchronised, so both asked for the other's RESET.
    expect(sim.ends.a.sent[0]!.payload[4]).toBe(RESET_FLAG_RESTART);
  });

  it('a side whose peer has already announced itself does not ask again', () => {
    const sim = new Sim(2);
    sim.ends.a.link.start();
    sim.run();
    expect(sim.link('a').state).toBe('open');
    expect(sim.link('b').receiving).toBe(true);
    sim.ends.b.link.start();
    sim.run();
    expect(sim.ends.b.sent.find((f) => f.type === FrameType.RESET)!.payload[4]).toBe(0);
    // a was not asked to announce again.
    expect(sim.ends.a.sent.filter((f) => f.type === FrameType.RESET).length).toBe(1);
  });

  it('queues writes until the link is open', () => {
    const sim = new Sim(3);
    sim.ends.a.link.write(msg('early'));
    expect(sim.ends.a.sent).toEqual([]);
    expect(sim.link('a').queued).toBe(1);
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    sim.run();
    expect(sim.ends.b.delivered).toEqual(['early']);
  });

  it('retransmits RESET with backoff and fails after maxRetries when nobody answers', () => {
    const sim = new Sim(4, PERFECT, { maxRetries: 3, retransmitMs: 100 });
    sim.ends.b.deaf = true;
    sim.ends.a.link.write(msg('x'));
    sim.ends.a.link.start();
    sim.run();
    const a = sim.ends.a;
    expect(a.sent.map((f) => f.type)).toEqual(Array(4).fill(FrameType.RESET));
    expect(a.failures.map((f) => f.reason)).toEqual(['no_reset_ack']);
    expect(a.failures[0]!.lost.map(str)).toEqual(['x']);
    // 100 + 200 + 400 + 800 ms.
    expect(sim.now).toBe(1500);
    expect(sim.link('a').state).toBe('failed');
    expect(sim.link('a').nextDeadline).toBeUndefined();
  });
});

describe('ReliableLink data transfer', () => {
  it('delivers in order over a clean line, never exceeding the window', () => {
    const sim = new Sim(5, PERFECT, { window: 4 });
    const a = sim.link('a');
    let peak = 0;
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    const written = Array.from({ length: 50 }, (_, i) => `m${i}`);
    for (const w of written) sim.ends.a.link.write(msg(w));
    sim.run(Number.POSITIVE_INFINITY, () => {
      peak = Math.max(peak, a.inFlightCount);
      return false;
    });
    expect(sim.ends.b.delivered).toEqual(written);
    expect(peak).toBe(4);
    expect(a.counters.retransmitted).toBe(0);
    expect(sim.link('b').counters.acks_sent).toBe(50);
    expect(a.inFlightCount).toBe(0);
    expect(a.queued).toBe(0);
  });

  it('numbers frames mod 2^16 across the wrap', () => {
    const sim = new Sim(6, PERFECT, { random32: () => 0xfffffffa });
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    const written = Array.from({ length: 20 }, (_, i) => `w${i}`);
    for (const w of written) sim.ends.a.link.write(msg(w));
    sim.run();
    expect(sim.ends.b.delivered).toEqual(written);
    const seqs = sim.ends.a.sent.filter((f) => f.type === FrameType.RDATA).map((f) => f.seq);
    expect(seqs.slice(0, 8)).toEqual([0xfffa, 0xfffb, 0xfffc, 0xfffd, 0xfffe, 0xffff, 0, 1]);
  });

  it('suppresses duplicates and reorders out-of-order frames', () => {
    const out: string[] = [];
    const wires: Uint8Array[] = [];
    const rx = new ReliableLink({ send: (w) => wires.push(w), deliver: (p) => out.push(str(p)) });
    const reset = new Uint8Array([0, 0, 0, 7, 0]);
    rx.onFrame({ type: FrameType.RESET, seq: 100, payload: reset });
    const data = (seq: number, s: string): SerialFrame => ({ type: FrameType.RDATA, seq, payload: msg(s) });
    rx.onFrame(data(102, 'c'));
    rx.onFrame(data(101, 'b'));
    rx.onFrame(data(102, 'c'));
    expect(out).toEqual([]);
    rx.onFrame(data(100, 'a'));
    expect(out).toEqual(['a', 'b', 'c']);
    rx.onFrame(data(100, 'a'));
    rx.onFrame(data(101, 'b'));
    expect(out).toEqual(['a', 'b', 'c']);
    expect(rx.drops.duplicate).toBe(3);
    rx.onFrame(data(103 + 8, 'too far'));
    expect(rx.drops.out_of_window).toBe(1);
    // Every RDATA is answered with the next number expected.
    const acks = wires.map((w) => decodeFrame(w)).filter((f) => f.type === FrameType.ACK);
    expect(acks.map((f) => f.seq)).toEqual([100, 100, 100, 103, 103, 103, 103]);
  });

  it('drops RDATA that arrives before the peer’s RESET, and does not acknowledge it', () => {
    const wires: Uint8Array[] = [];
    const rx = new ReliableLink({ send: (w) => wires.push(w), deliver: () => {} });
    rx.onFrame({ type: FrameType.RDATA, seq: 0, payload: msg('x') });
    expect(rx.drops.unsynced).toBe(1);
    expect(wires).toEqual([]);
  });

  it('retransmits a lost frame after the timeout, and a partial ACK resends the next loss at once', () => {
    const sim = new Sim(7, PERFECT, { retransmitMs: 100 });
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    sim.run();
    const t0 = sim.now;
    // Lose the first transmission of the 1st and the 4th RDATA of a burst of 8.
    let n = 0;
    sim.dropIf = (from, f) => from === 'a' && f.type === FrameType.RDATA && [0, 3].includes(n++);
    for (let i = 0; i < 8; i++) sim.ends.a.link.write(msg(`p${i}`));
    sim.run();
    expect(sim.ends.b.delivered).toEqual(Array.from({ length: 8 }, (_, i) => `p${i}`));
    expect(sim.link('a').counters.retransmitted).toBe(2);
    // One timeout (100 ms) and two round trips (10 ms each), not two timeouts.
    expect(sim.now - t0).toBe(100 + 10 + 10);
  });

  it('stretches the timeout by byteTimeMs for every byte in flight', () => {
    const sim = new Sim(8, { ...PERFECT, latency: 0 }, { retransmitMs: 100, byteTimeMs: 1 });
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    sim.run();
    sim.ends.b.deaf = true;
    const t0 = sim.now;
    sim.ends.a.link.write(new Uint8Array(1000).fill(1));
    const wireBytes = encodeFrame({
      type: FrameType.RDATA,
      seq: 0,
      payload: new Uint8Array(1000).fill(1),
    }).length;
    expect(wireBytes).toBe(1000 + 8 + 4 + 2);
    // 100 ms + 1 ms per wire byte in flight; doubled on the first retry.
    expect(sim.link('a').nextDeadline! - t0).toBe(100 + wireBytes);
    sim.run(t0 + 100 + wireBytes);
    expect(sim.link('a').counters.retransmitted).toBe(1);
    expect(sim.link('a').nextDeadline! - sim.now).toBe(2 * (100 + wireBytes));
  });

  it('reports link failure after the retry bound when the peer is gone, with the undelivered payloads', () => {
    const sim = new Sim(9, PERFECT, { retransmitMs: 100, maxRetries: 4, window: 2 });
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    sim.run();
    sim.ends.b.deaf = true;
    const t0 = sim.now;
    for (const s of ['one', 'two', 'three']) sim.ends.a.link.write(msg(s));
    sim.run();
    const a = sim.link('a');
    const rdata = sim.ends.a.sent.filter((f) => f.type === FrameType.RDATA);
    // 'one' and 'two' once each, then 'one' four more times.
    expect(rdata.map((f) => str(f.payload))).toEqual(['one', 'two', 'one', 'one', 'one', 'one']);
    expect(a.counters.retransmitted).toBe(4);
    expect(sim.ends.a.failures.length).toBe(1);
    const failure = sim.ends.a.failures[0]!;
    expect(failure.reason).toBe('no_ack');
    expect(failure.message).toMatch(/after 4 retransmissions/);
    expect(failure.lost.map(str)).toEqual(['one', 'two', 'three']);
    // 100 + 200 + 400 + 800 + 800 ms (backoff capped at 8×).
    expect(sim.now - t0).toBe(2300);
    expect(a.state).toBe('failed');
    expect(a.nextDeadline).toBeUndefined();
  });

  it('after a failure, the next write starts a new epoch and the link recovers', () => {
    const sim = new Sim(10, PERFECT, { retransmitMs: 50, maxRetries: 1 });
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    sim.run();
    sim.ends.a.link.write(msg('before'));
    sim.run();
    sim.ends.b.deaf = true;
    sim.ends.a.link.write(msg('lost'));
    sim.run();
    expect(sim.ends.a.failures.map((f) => f.lost.map(str))).toEqual([['lost']]);
    sim.ends.b.deaf = false;
    sim.ends.a.link.write(msg('after'));
    expect(sim.link('a').state).toBe('resetting');
    sim.run();
    expect(sim.ends.b.delivered).toEqual(['before', 'after']);
    expect(sim.link('a').state).toBe('open');
  });
});

describe('ReliableLink RESET', () => {
  function pair(seed: number) {
    const sim = new Sim(seed);
    sim.ends.a.link.start();
    sim.ends.b.link.start();
    sim.run();
    return sim;
  }

  it('a repeated RESET of the current epoch is answered but does not rewind the receiver', () => {
    const sim = pair(11);
    const reset = sim.ends.a.sent.find((f) => f.type === FrameType.RESET)!;
    sim.ends.a.link.write(msg('one'));
    sim.run();
    const b = sim.link('b');
    const answered = sim.ends.b.sent.length;
    b.onFrame(reset);
    expect(decodeFrame(encodeFrame(reset)).type).toBe(FrameType.RESET);
    expect(sim.ends.b.sent.length).toBe(answered + 1);
    expect(sim.ends.b.sent.at(-1)!.type).toBe(FrameType.RESET_ACK);
    // Retransmitted 'one' is a duplicate, not a new message.
    const one = sim.ends.a.sent.find((f) => f.type === FrameType.RDATA)!;
    b.onFrame(one);
    expect(sim.ends.b.delivered).toEqual(['one']);
    expect(b.drops.duplicate).toBe(1);
  });

  it('a delayed RESET of a replaced epoch is ignored', () => {
    const sim = pair(12);
    const old = sim.ends.a.sent.find((f) => f.type === FrameType.RESET)!;
    // a fails and starts a new epoch.
    sim.ends.b.deaf = true;
    sim.ends.a.link.write(msg('lost'));
    sim.run();
    sim.ends.b.deaf = false;
    sim.ends.a.link.write(msg('new'));
    sim.run();
    expect(sim.ends.b.delivered).toEqual(['new']);
    const b = sim.link('b');
    const sentBefore = sim.ends.b.sent.length;
    b.onFrame(old);
    expect(b.drops.stale_reset).toBe(1);
    expect(sim.ends.b.sent.length).toBe(sentBefore);
    sim.ends.a.link.write(msg('still'));
    sim.run();
    expect(sim.ends.b.delivered).toEqual(['new', 'still']);
  });

  it('ignores RESET_ACK for another nonce or seq, and malformed control frames', () => {
    const sim = new Sim(13);
    const a = sim.link('a');
    sim.ends.b.deaf = true;
    a.start();
    const reset = sim.ends.a.sent[0]!;
    a.onFrame({ type: FrameType.RESET_ACK, seq: reset.seq, payload: new Uint8Array([1, 2, 3, 4]) });
    a.onFrame({
      type: FrameType.RESET_ACK,
      seq: (reset.seq + 1) & 0xffff,
      payload: reset.payload.subarray(0, 4),
    });
    expect(a.state).toBe('resetting');
    expect(a.drops.stale_reset).toBe(2);
    a.onFrame({ type: FrameType.RESET_ACK, seq: reset.seq, payload: new Uint8Array(5) });
    a.onFrame({ type: FrameType.RESET, seq: 0, payload: new Uint8Array(4) });
    a.onFrame({ type: FrameType.ACK, seq: 0, payload: new Uint8Array(1) });
    expect(a.drops.malformed).toBe(3);
    a.onFrame({ type: FrameType.ACK, seq: 0, payload: new Uint8Array(0) });
    expect(a.drops.stale_ack).toBe(1);
    a.onFrame({ type: FrameType.RESET_ACK, seq: reset.seq, payload: reset.payload.subarray(0, 4) });
    expect(a.state).toBe('open');
  });

  it('a peer restart loses nothing that was not acknowledged', () => {
    const sim = pair(14);
    const written = Array.from({ length: 30 }, (_, i) => `r${i}`);
    for (const w of written.slice(0, 20)) sim.ends.a.link.write(msg(w));
    // b dies in the middle of the transfer, with frames and ACKs still on the line.
    sim.run(sim.now + 12);
    const oldB = sim.ends.b;
    expect(oldB.delivered.length).toBeGreaterThan(0);
    expect(oldB.delivered.length).toBeLessThan(20);
    const newB = sim.endpoint('b');
    sim.run(sim.now + 30);
    newB.link.start();
    for (const w of written.slice(20)) sim.ends.a.link.write(msg(w));
    newB.link.write(msg('hello from the new b'));
    sim.run();
    // The new b gets everything the old one had not acknowledged, once and in order.
    const from = written.indexOf(newB.delivered[0]!);
    expect(from).toBeGreaterThanOrEqual(0);
    expect(from).toBeLessThanOrEqual(oldB.delivered.length);
    expect(newB.delivered).toEqual(written.slice(from));
    expect(sim.ends.a.delivered).toEqual(['hello from the new b']);
    expect(sim.ends.a.failures).toEqual([]);
    // a announced its epoch again (same nonce) rather than renumbering.
    const resets = sim.ends.a.sent.filter((f) => f.type === FrameType.RESET);
    expect(resets.length).toBe(2);
    expect(hex(resets[1]!.payload.subarray(0, 4))).toBe(hex(resets[0]!.payload.subarray(0, 4)));
  });
});

describe('ReliableLink over a lossy, duplicating, reordering line', () => {
  const impairment: fc.Arbitrary<Impairment> = fc.record({
    loss: fc.double({ min: 0, max: 0.3, noNaN: true }),
    dup: fc.double({ min: 0, max: 0.3, noNaN: true }),
    latency: fc.integer({ min: 1, max: 20 }),
    jitter: fc.integer({ min: 0, max: 60 }),
    corrupt: fc.double({ min: 0, max: 0.1, noNaN: true }),
  });

  it('delivers every message exactly once and in order, in both directions', () => {
    let totalRetransmits = 0;
    let totalDuplicates = 0;
    fc.assert(
      fc.property(
        fc.nat(),
        impairment,
        impairment,
        fc.integer({ min: 1, max: 16 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 2000 })), {
          minLength: 20,
          maxLength: 100,
        }),
        (seed, ab, ba, window, writes) => {
          const sim = new Sim(seed, { a: ab, b: ba }, { window, retransmitMs: 150, maxRetries: 60 });
          sim.ends.a.link.start();
          sim.at(sim.rand() * 100, () => sim.ends.b.link.start());
          const expected: Record<'a' | 'b', string[]> = { a: [], b: [] };
          writes.forEach(([fromA, t], i) => {
            const from = fromA ? 'a' : 'b';
            const text = `${from}${i}:${'x'.repeat(i % 7)}`;
            sim.at(t, () => {
              expected[from === 'a' ? 'b' : 'a'].push(text);
              sim.ends[from].link.write(msg(text));
            });
          });
          sim.run();
          expect(sim.ends.b.delivered).toEqual(expected.b);
          expect(sim.ends.a.delivered).toEqual(expected.a);
          expect(sim.ends.a.failures).toEqual([]);
          expect(sim.ends.b.failures).toEqual([]);
          for (const side of ['a', 'b'] as const) {
            const l = sim.link(side);
            expect(l.inFlightCount).toBe(0);
            expect(l.queued).toBe(0);
            totalRetransmits += l.counters.retransmitted;
            totalDuplicates += l.drops.duplicate;
          }
        },
      ),
      { numRuns: propertyRuns(150) },
    );
    // The line really was bad.
    expect(totalRetransmits).toBeGreaterThan(100);
    expect(totalDuplicates).toBeGreaterThan(100);
  });

  it('still delivers exactly once and in order when jitter exceeds the timeout', () => {
    const harsh: Impairment = { loss: 0.3, dup: 0.3, latency: 1, jitter: 400, corrupt: 0.1 };
    for (let seed = 100; seed < 110; seed++) {
      const sim = new Sim(seed, harsh, { window: 8, retransmitMs: 150, maxRetries: 100 });
      sim.ends.a.link.start();
      sim.ends.b.link.start();
      const written = { a: [] as string[], b: [] as string[] };
      for (let i = 0; i < 300; i++) {
        const from = i % 3 === 0 ? 'b' : 'a';
        sim.at(i * 5, () => {
          written[from].push(`${from}${i}`);
          sim.ends[from].link.write(msg(`${from}${i}`));
        });
      }
      sim.run();
      expect(sim.ends.b.delivered).toEqual(written.a);
      expect(sim.ends.a.delivered).toEqual(written.b);
      expect(sim.link('a').drops.stale_ack + sim.link('b').drops.stale_ack).toBeGreaterThan(0);
    }
  });

  it('without reliability the same line loses, but never invents or reorders, with zero jitter', () => {
    const sim = new Sim(15, { loss: 0.2, dup: 0, latency: 5, jitter: 0, corrupt: 0.1 }, { reliable: false });
    const written = Array.from({ length: 200 }, (_, i) => `u${i}`);
    for (const w of written) sim.ends.a.link.write(msg(w));
    sim.run();
    const got = sim.ends.b.delivered;
    expect(got.length).toBeLessThan(200);
    expect(got.length).toBeGreaterThan(100);
    let i = 0;
    for (const g of got) {
      while (written[i] !== g) i++;
      expect(i).toBeLessThan(200);
    }
  });
});

describe('PlainLink and configuration', () => {
  it('sends DATA frames with a running counter and delivers DATA only', () => {
    const wires: Uint8Array[] = [];
    const got: string[] = [];
    const link = new PlainLink({ send: (w) => wires.push(w), deliver: (p) => got.push(str(p)) });
    link.start();
    link.write(msg('a'));
    link.write(msg('b'));
    expect(wires.map((w) => decodeFrame(w)).map((f) => [f.type, f.seq])).toEqual([
      [FrameType.DATA, 0],
      [FrameType.DATA, 1],
    ]);
    link.onFrame({ type: FrameType.DATA, seq: 9, payload: msg('in') });
    link.onFrame({ type: FrameType.RDATA, seq: 0, payload: msg('no') });
    link.onFrame({ type: FrameType.RESET, seq: 0, payload: new Uint8Array(5) });
    link.onFrame({ type: 0x80, seq: 0, payload: msg('?') });
    expect(got).toEqual(['in']);
    expect(link.drops.mode_mismatch).toBe(2);
    expect(link.drops.unknown_type).toBe(1);
    expect(link.nextDeadline).toBeUndefined();
    link.close();
    expect(codeOf(() => link.write(msg('x')))).toBe(ErrorCodes.CONNECTION_CLOSED);
  });

  it('a reliable link counts DATA and unknown types as drops', () => {
    const link = new ReliableLink({ send: () => {}, deliver: () => {} });
    link.onFrame({ type: FrameType.DATA, seq: 0, payload: msg('x') });
    link.onFrame({ type: 200, seq: 0, payload: msg('x') });
    expect(link.drops.mode_mismatch).toBe(1);
    expect(link.drops.unknown_type).toBe(1);
  });

  it('validates options and writes', () => {
    const base = { send: () => {}, deliver: () => {} };
    expect(codeOf(() => new ReliableLink({ ...base, window: 0 }))).toBe(ErrorCodes.CONFIG_INVALID);
    expect(codeOf(() => new ReliableLink({ ...base, window: 2000 }))).toBe(ErrorCodes.CONFIG_INVALID);
    expect(codeOf(() => new ReliableLink({ ...base, retransmitMs: 0 }))).toBe(ErrorCodes.CONFIG_INVALID);
    expect(codeOf(() => new ReliableLink({ ...base, maxRetries: -1 }))).toBe(ErrorCodes.CONFIG_INVALID);
    expect(codeOf(() => new PlainLink({ ...base, maxPayloadBytes: -1 }))).toBe(ErrorCodes.CONFIG_INVALID);
    const link = new ReliableLink({ ...base, maxPayloadBytes: 10, maxQueued: 2 });
    expect(codeOf(() => link.write(new Uint8Array(11)))).toBe(ErrorCodes.ENCODE_LIMIT);
    link.write(new Uint8Array(10));
    link.write(new Uint8Array(10));
    expect(codeOf(() => link.write(new Uint8Array(1)))).toBe(ErrorCodes.SEND_FAILED);
    link.close();
    expect(link.state).toBe('closed');
    expect(codeOf(() => link.write(new Uint8Array(1)))).toBe(ErrorCodes.CONNECTION_CLOSED);
  });
});
