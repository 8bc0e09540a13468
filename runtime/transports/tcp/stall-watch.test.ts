import { describe, expect, it } from 'vitest';
import { type StallLimits, StallWatch } from './stall-watch.js';

const limits = (o: Partial<StallLimits> = {}): StallLimits => ({
  frameTimeoutMs: 1000,
  frameMinBytesPerSecond: 1000,
  idleTimeoutMs: 0,
  ...o,
});

describe('StallWatch: idle', () => {
  it('is off at 0', () => {
    const w = new StallWatch(limits());
    for (let t = 0; t < 1e7; t += 1e5) expect(w.sample(t, 10, 1, -1, false)).toBeUndefined();
  });

  it('fires when nothing arrived for the timeout, counted from the last sample that saw bytes', () => {
    const w = new StallWatch(limits({ idleTimeoutMs: 500 }));
    expect(w.sample(0, 0, 0, -1, false)).toBeUndefined();
    expect(w.sample(400, 0, 0, -1, false)).toBeUndefined();
    expect(w.sample(450, 7, 1, -1, false)).toBeUndefined(); // bytes arrived
    expect(w.sample(900, 7, 1, -1, false)).toBeUndefined();
    expect(w.sample(950, 7, 1, -1, false)).toBe('idle');
  });

  it('does not blame the peer while reading is held, and starts again afterwards', () => {
    const w = new StallWatch(limits({ idleTimeoutMs: 500 }));
    w.sample(0, 5, 1, -1, false);
    expect(w.sample(10_000, 5, 1, -1, true)).toBeUndefined();
    expect(w.sample(10_400, 5, 1, -1, false)).toBeUndefined();
    expect(w.sample(10_500, 5, 1, -1, false)).toBe('idle');
  });
});

describe('StallWatch: frames', () => {
  it('closes a frame that stays incomplete beyond the timeout', () => {
    const w = new StallWatch(limits({ frameTimeoutMs: 200 }));
    expect(w.sample(0, 9, 0, 4, false)).toBeUndefined(); // a length prefix, first seen
    expect(w.sample(100, 9, 0, 4, false)).toBeUndefined();
    // allowed: 200 ms + 4 bytes at 1,000 B/s = 204 ms
    expect(w.sample(204, 9, 0, 4, false)).toBeUndefined();
    expect(w.sample(205, 9, 0, 4, false)).toBe('slow-frame');
  });

  it('closes a trickled frame once it falls behind the minimum rate', () => {
    const w = new StallWatch(limits({ frameTimeoutMs: 1000, frameMinBytesPerSecond: 1000 }));
    let verdict: string | undefined;
    let at = 0;
    let bytes = 5;
    // 100 bytes per second: the allowance grows 100 ms per second, time by 1,000 ms.
    for (let t = 0; t < 60_000 && verdict === undefined; t += 100) {
      bytes += 10;
      verdict = w.sample(t, bytes, 0, bytes, false);
      at = t;
    }
    expect(verdict).toBe('slow-frame');
    expect(at).toBe(1200); // the first sample with t > 1,000 + (15 + t / 10)
  });

  it('lets a large frame arriving at the minimum rate or faster complete', () => {
    const w = new StallWatch(limits({ frameTimeoutMs: 1000, frameMinBytesPerSecond: 1000 }));
    let bytes = 4;
    for (let t = 0; t <= 600_000; t += 1000) {
      expect(w.sample(t, bytes, 0, bytes, false)).toBeUndefined();
      bytes += 1000;
    }
  });

  it('restarts the clock for each frame', () => {
    const w = new StallWatch(limits({ frameTimeoutMs: 200 }));
    let frames = 0;
    for (let t = 0; t < 10_000; t += 150) {
      // every sample sees a new, unfinished frame: the last one completed in between
      expect(w.sample(t, t, frames++, 10, false)).toBeUndefined();
    }
  });

  it('restarts the clock after reading was held', () => {
    const w = new StallWatch(limits({ frameTimeoutMs: 200 }));
    w.sample(0, 9, 0, 4, false);
    expect(w.sample(1000, 9, 0, 4, true)).toBeUndefined();
    expect(w.sample(1100, 9, 0, 4, false)).toBeUndefined();
    expect(w.sample(1300, 9, 0, 4, false)).toBeUndefined();
    expect(w.sample(1400, 9, 0, 4, false)).toBe('slow-frame');
  });

  it('is off at 0, and between frames', () => {
    const off = new StallWatch(limits({ frameTimeoutMs: 0 }));
    expect(off.sample(0, 9, 0, 4, false)).toBeUndefined();
    expect(off.sample(1e9, 9, 0, 4, false)).toBeUndefined();
    const between = new StallWatch(limits({ frameTimeoutMs: 10 }));
    expect(between.sample(0, 9, 1, -1, false)).toBeUndefined();
    expect(between.sample(1e9, 9, 1, -1, false)).toBeUndefined();
  });
});
