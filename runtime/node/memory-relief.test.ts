import { afterEach, describe, expect, it } from 'vitest';
import { MemoryRelief } from './memory-relief.js';

describe('MemoryRelief', () => {
  const reliefs: MemoryRelief[] = [];
  afterEach(() => {
    for (const r of reliefs.splice(0)) r.stop();
  });

  it('collects once when the node turned quiet with a grown heap, and again only after more traffic', () => {
    const s = { activity: 0, heap: 20 * 2 ** 20, gcs: 0 };
    const r = new MemoryRelief({
      gc: () => {
        s.gcs++;
        s.heap = 21 * 2 ** 20;
      },
      activity: () => s.activity,
      heapBytes: () => s.heap,
      intervalMs: 3_600_000,
    });
    reliefs.push(r);
    // A flood: busy intervals, the heap grows; no collection while busy.
    s.activity += 50_000;
    s.heap = 60 * 2 ** 20;
    r.check();
    expect(s.gcs).toBe(0);
    // Quiet: one collection.
    r.check();
    expect(s.gcs).toBe(1);
    s.heap = 60 * 2 ** 20; // say V8 kept it anyway
    r.check();
    r.check();
    expect(s.gcs).toBe(1);
    // Traffic again, then quiet: one more.
    s.activity += 5_000;
    r.check();
    r.check();
    expect(s.gcs).toBe(2);
    expect(r.runs).toBe(2);
  });

  it('leaves a heap that did not grow much alone', () => {
    const s = { heap: 20 * 2 ** 20, gcs: 0 };
    const r = new MemoryRelief({
      gc: () => void s.gcs++,
      activity: () => 0,
      heapBytes: () => s.heap,
      intervalMs: 3_600_000,
    });
    reliefs.push(r);
    s.heap = 23 * 2 ** 20;
    r.check();
    expect(s.gcs).toBe(0);
  });
});
