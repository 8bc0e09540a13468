import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../test/support/property-runs.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { Route } from '../routing/route.js';
import {
  COOKIE_BLOCK_BYTES,
  COOKIE_EPOCH_MS,
  CookieJar,
  type CookieSource,
  parseRetry,
  RETRY_MAGIC,
} from './handshake-cookie.js';

const E = new Uint8Array(32).fill(7);
const from: CookieSource = { source: 'udp:192.0.2.7:4000', returnRoute: Route.parse('0#sc_remote_1') };

function jar(clock: { t: number }) {
  return new CookieJar(nodeCrypto, 'api', () => clock.t);
}

/** Message 1 as a keyhop initiator sends it after a Retry: its ephemeral key ‖ the cookie block. */
function echo(retry: Uint8Array): Uint8Array {
  const block = parseRetry(retry)!;
  const m1 = new Uint8Array(32 + block.length);
  m1.set(E);
  m1.set(block, 32);
  return m1;
}

describe('handshake cookie', () => {
  it('a Retry is 28 bytes with its magic; its cookie checks for the same source and route only', () => {
    const clock = { t: 5 * COOKIE_EPOCH_MS };
    const j = jar(clock);
    const retry = j.retry(from);
    expect(retry.length).toBe(COOKIE_BLOCK_BYTES);
    expect(Buffer.from(retry.subarray(0, 8))).toEqual(Buffer.from(RETRY_MAGIC));
    const m1 = echo(retry);
    expect(j.check(m1, from)).toBe(true);
    expect(j.check(m1, { ...from, source: 'udp:192.0.2.8:4000' })).toBe(false);
    expect(j.check(m1, { ...from, returnRoute: Route.parse('0#sc_remote_2') })).toBe(false);
    // Another listener's secret and name: not valid there.
    expect(new CookieJar(nodeCrypto, 'api', () => clock.t).check(m1, from)).toBe(false);
    // Any flipped bit of the block breaks it.
    for (let i = 32; i < m1.length; i++) {
      const bad = m1.slice();
      bad[i]! ^= 1;
      expect(j.check(bad, from)).toBe(false);
    }
    // A first message without a cookie (Ockam's: just the key) never checks.
    expect(j.check(E, from)).toBe(false);
  });

  it('is valid in its epoch and the next, not after', () => {
    const clock = { t: 10 * COOKIE_EPOCH_MS + 1 };
    const j = jar(clock);
    const m1 = echo(j.retry(from));
    clock.t += COOKIE_EPOCH_MS;
    expect(j.check(m1, from)).toBe(true);
    clock.t += COOKIE_EPOCH_MS;
    expect(j.check(m1, from)).toBe(false);
    // A jump of several epochs forgets both secrets.
    const fresh = echo(j.retry(from));
    clock.t += 5 * COOKIE_EPOCH_MS;
    expect(j.check(fresh, from)).toBe(false);
  });

  it('parseRetry recognises only a Retry (a message 2 is never one: at least 96 bytes)', () => {
    expect(parseRetry(new Uint8Array(96))).toBeUndefined();
    expect(parseRetry(RETRY_MAGIC)).toBeUndefined();
  });

  it('random bytes never check and never throw', () => {
    const j = jar({ t: 0 });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 128 }), (bytes) => {
        expect(j.check(bytes, from)).toBe(false);
        const block = parseRetry(bytes);
        if (block !== undefined) expect(block.length).toBe(COOKIE_BLOCK_BYTES);
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});
