import { describe, expect, it } from 'vitest';
import { type LineLogger, RateLimitedLog } from './log-rate-limit.js';

function recorder() {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const at =
    (level: string) =>
    (fields: object, message: string): void => {
      lines.push({ level, fields: fields as Record<string, unknown>, message });
    };
  const log: LineLogger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { log, lines };
}

describe('RateLimitedLog', () => {
  it('writes the first line of a kind, then at most one per interval with the count of the others', () => {
    const { log, lines } = recorder();
    let t = 1000;
    const r = new RateLimitedLog(log, { intervalMs: 10_000, now: () => t });
    expect(r.write('warn', 'refused', { peer: 'a' }, 'refused')).toBe(true);
    expect(lines).toEqual([{ level: 'warn', fields: { peer: 'a', kind: 'refused' }, message: 'refused' }]);
    for (let i = 0; i < 5; i++) {
      t += 1000;
      expect(r.write('warn', 'refused', { peer: `b${i}` }, 'refused')).toBe(false);
    }
    expect(lines).toHaveLength(1);
    expect(r.suppressed('refused')).toBe(5);
    t = 10_999; // 9,999 ms after the first line
    expect(r.write('warn', 'refused', {}, 'refused')).toBe(false);
    t = 11_000;
    expect(r.write('warn', 'refused', { peer: 'c' }, 'refused')).toBe(true);
    expect(lines[1]).toEqual({
      level: 'warn',
      fields: { peer: 'c', kind: 'refused', suppressed: 6 },
      message: 'refused',
    });
    expect(r.suppressed('refused')).toBe(0);
    // A quiet interval later, the next line has nothing to report as suppressed.
    t = 50_000;
    expect(r.write('info', 'refused', {}, 'again')).toBe(true);
    expect(lines[2]).toEqual({ level: 'info', fields: { kind: 'refused' }, message: 'again' });
  });

  it('limits each kind on its own', () => {
    const { log, lines } = recorder();
    const t = 0;
    const r = new RateLimitedLog(log, { now: () => t });
    expect(r.write('warn', 'a', {}, 'A')).toBe(true);
    expect(r.write('warn', 'b', {}, 'B')).toBe(true);
    expect(r.write('warn', 'a', {}, 'A')).toBe(false);
    expect(r.write('error', 'c', {}, 'C')).toBe(true);
    expect(lines.map((l) => `${l.level}:${l.message}`)).toEqual(['warn:A', 'warn:B', 'error:C']);
    expect(r.suppressed('a')).toBe(1);
    expect(r.suppressed('b')).toBe(0);
    expect(r.suppressed('never')).toBe(0);
  });

  it('defaults to 10 s', () => {
    const { log, lines } = recorder();
    let t = 0;
    const r = new RateLimitedLog(log, { now: () => t });
    r.write('warn', 'k', {}, 'x');
    t = 9_999;
    r.write('warn', 'k', {}, 'x');
    t = 10_000;
    r.write('warn', 'k', {}, 'x');
    expect(lines).toHaveLength(2);
  });

  it('does not let the caller fields override the kind or the count', () => {
    const { log, lines } = recorder();
    let t = 0;
    const r = new RateLimitedLog(log, { intervalMs: 10, now: () => t });
    r.write('warn', 'k', { kind: 'forged' }, 'x');
    r.write('warn', 'k', {}, 'x');
    t = 10;
    r.write('warn', 'k', { suppressed: 99 }, 'x');
    expect(lines.map((l) => l.fields)).toEqual([{ kind: 'k' }, { kind: 'k', suppressed: 1 }]);
  });
});
