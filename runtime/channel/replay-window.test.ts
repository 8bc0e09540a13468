import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReplayWindow, WINDOW } from './replay-window.js';

function take(w: ReplayWindow, n: number): string {
  const why = w.check(BigInt(n));
  if (why === undefined) w.accept(BigInt(n));
  return why ?? 'ok';
}

describe('ReplayWindow', () => {
  it('accepts in-order nonces once', () => {
    const w = new ReplayWindow();
    for (let i = 0; i < 100; i++) expect(take(w, i)).toBe('ok');
    expect(take(w, 99)).toBe('replayed');
    expect(take(w, 66)).toBe('too_old'); // 33 behind
    expect(take(w, 50)).toBe('too_old');
  });

  it('accepts reordering inside the window and rejects duplicates of reordered nonces', () => {
    const w = new ReplayWindow();
    expect([5, 3, 4, 0, 1, 2].map((n) => take(w, n))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect([3, 5, 0].map((n) => take(w, n))).toEqual(['replayed', 'replayed', 'replayed']);
  });

  it('rejects nonces more than 32 ahead (after 32 consecutive losses the channel stalls, as in Ockam)', () => {
    const w = new ReplayWindow();
    expect(take(w, 0)).toBe('ok');
    expect(take(w, 34)).toBe('too_far_ahead');
    expect(take(w, 33)).toBe('too_far_ahead');
    expect(take(w, 32)).toBe('ok');
    expect(take(w, 0)).toBe('replayed'); // exactly 32 behind: still in the window, already seen
    expect(take(w, 1)).toBe('ok');
    expect(take(w, 31)).toBe('ok');
  });

  it('accepts a late nonce exactly 32 behind the highest, like Ockam', () => {
    const w = new ReplayWindow();
    expect(take(w, 40)).toBe('too_far_ahead');
    for (const n of [32, 0]) expect(take(w, n)).toBe('ok');
    expect(take(w, 64)).toBe('ok');
    expect(take(w, 31)).toBe('too_old'); // 33 behind
    expect(take(w, 32)).toBe('replayed'); // 32 behind, seen before
    expect(take(w, 33)).toBe('ok'); // 31 behind, new
  });

  it('allows a first nonce of at most 32', () => {
    expect(take(new ReplayWindow(), 32)).toBe('ok');
    expect(take(new ReplayWindow(), 33)).toBe('too_far_ahead');
  });

  it('never accepts a nonce twice, whatever the order (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 400 }), (nonces) => {
        const w = new ReplayWindow();
        const accepted = new Set<number>();
        let highest = -1;
        for (const n of nonces) {
          if (take(w, n) === 'ok') {
            expect(accepted.has(n)).toBe(false);
            expect(n).toBeGreaterThanOrEqual(highest - WINDOW);
            accepted.add(n);
            highest = Math.max(highest, n);
          }
        }
      }),
    );
  });
});
