import { describe, expect, it } from 'vitest';
import { pooledBytes } from './pool.js';

describe('pooledBytes', () => {
  it('hands out plain Uint8Arrays of the asked length that never overlap, whose slice() copies', () => {
    const a = pooledBytes(100);
    const b = pooledBytes(100);
    expect(a).not.toBeInstanceOf(Buffer);
    expect(a.length).toBe(100);
    a.fill(1);
    b.fill(2);
    expect(a.every((x) => x === 1)).toBe(true);
    const copy = a.slice(0, 32);
    a.fill(0);
    expect(copy.every((x) => x === 1)).toBe(true);
  });

  it('serves large requests and requests that cross the end of a slab', () => {
    const big = pooledBytes(64 * 1024);
    expect(big.length).toBe(64 * 1024);
    const seen: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) {
      const x = pooledBytes(1000);
      x.fill(i);
      seen.push(x);
    }
    for (const [i, x] of seen.entries()) expect(x.every((v) => v === i)).toBe(true);
    expect(pooledBytes(0).length).toBe(0);
  });
});
