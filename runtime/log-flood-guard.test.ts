import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, logFloodStats } from './log.js';
import { LogFloodGuard } from './log-flood-guard.js';

function clock() {
  const timers: { at: number; fn: () => void }[] = [];
  const c = {
    t: 0,
    now: () => c.t,
    setTimer: (fn: () => void, ms: number) => void timers.push({ at: c.t + ms, fn }),
    /** Moves time on, running the timers that came due. */
    advance(ms: number) {
      c.t += ms;
      for (const due of timers.filter((x) => x.at <= c.t)) {
        timers.splice(timers.indexOf(due), 1);
        due.fn();
      }
    },
  };
  return c;
}

describe('LogFloodGuard', () => {
  it('admits a burst per kind and interval, then one summary with the count held back', () => {
    const c = clock();
    const g = new LogFloodGuard({ burst: 3, intervalMs: 1000, now: c.now, setTimer: c.setTimer });
    const summaries: number[] = [];
    const admit = (kind = 'warn refused') => g.admit(kind, (n) => summaries.push(n));
    expect([admit(), admit(), admit(), admit(), admit()]).toEqual([true, true, true, false, false]);
    expect(admit('warn other')).toBe(true);
    expect(summaries).toEqual([]);
    c.advance(999);
    expect(admit()).toBe(false);
    c.advance(1);
    expect(summaries).toEqual([3]);
    // A new interval starts at the summary: a fresh burst.
    expect([admit(), admit(), admit(), admit()]).toEqual([true, true, true, false]);
    c.advance(1000);
    expect(summaries).toEqual([3, 1]);
    // An interval without suppression writes no summary.
    c.advance(5000);
    expect(admit()).toBe(true);
    c.advance(5000);
    expect(summaries).toEqual([3, 1]);
    expect(g.stats()).toEqual({ suppressedTotal: 4, suppressed: { 'warn refused': 4 } });
  });

  it('counts kinds beyond maxKinds under one shared kind (peer-made text cannot grow its state)', () => {
    const c = clock();
    const g = new LogFloodGuard({
      burst: 1,
      intervalMs: 1000,
      maxKinds: 2,
      now: c.now,
      setTimer: c.setTimer,
    });
    for (let i = 0; i < 100; i++) g.admit(`warn line ${i}`, () => undefined);
    const s = g.stats();
    expect(Object.keys(s.suppressed)).toEqual(['(other kinds)']);
    expect(s.suppressed['(other kinds)']).toBe(97);
  });
});

describe('createLogger flood guard', () => {
  function sink() {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    return { lines, stream };
  }

  it('writes at most the burst of a repeated line, in children too, and reports what it held back', () => {
    const { lines, stream } = sink();
    const c = clock();
    const log = createLogger(
      { level: 'debug', floodGuard: { burst: 2, now: c.now, setTimer: c.setTimer } },
      stream,
    );
    const child = log.child({ component: 'x' });
    for (let i = 0; i < 1000; i++) child.warn({ peer: i }, 'first message dropped');
    child.info('another line');
    c.advance(10_000);
    expect(lines.map((l) => l.msg)).toEqual([
      'first message dropped',
      'first message dropped',
      'another line',
      'log lines suppressed (flood guard)',
    ]);
    expect(lines[3]).toMatchObject({
      component: 'x',
      level: 40,
      suppressed: 998,
      suppressedMessage: 'first message dropped',
    });
    expect(logFloodStats(log)).toEqual({
      suppressedTotal: 998,
      suppressed: { 'warn first message dropped': 998 },
    });
  });

  it('can be turned off', () => {
    const { lines, stream } = sink();
    const log = createLogger({ floodGuard: false }, stream);
    for (let i = 0; i < 100; i++) log.info('same');
    expect(lines).toHaveLength(100);
    expect(logFloodStats(log)).toBeUndefined();
  });
});
