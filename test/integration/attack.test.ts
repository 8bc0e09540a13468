import { afterAll, describe, expect, it } from 'vitest';
import {
  type AttackParams,
  type AttackResult,
  runAttack,
  SHORT_PARAMS,
  stopLiveVictims,
} from '../../bench/attack-scenarios.js';

// The short form of the attack benchmark (bench/attack.ts, docs/performance.md "Attack
// benchmark"): a real node process attacked for a few seconds per attack over loopback sockets,
// from an attacker process, while clients from other loopback sources keep opening channels.
// Asserted: bounded memory and log, every client's handshake completing, replays and bit flips
// never delivered, abandoned channels closed. Latencies are printed, never asserted (two busy
// cores); every wait is for a counter or an event, bounded only against hangs.

const MiB = 2 ** 20;
const P: AttackParams = { ...SHORT_PARAMS };

function show(r: AttackResult): void {
  const h = r.handshakes?.attack;
  process.stdout.write(
    `[attack ${r.id}] rss idle ${r.idleRssMB} peak ${r.peakRssMB} (+${r.rssDeltaMB}) after ${r.rssAfterMB} MB, ` +
      `log ${r.logBytesWithAfter} B, handshakes ${h ? `${h.completed}/${h.attempted} p50 ${h.p50Ms} p99 ${h.p99Ms} ms` : '-'}, ` +
      `attacker ${JSON.stringify(r.attacker)}, extra ${JSON.stringify(r.extra)}\n`,
  );
}

/** What holds for every attack: the harness ran, the victim lived, memory and log stayed bounded. */
function expectBounded(r: AttackResult): void {
  expect(r.error).toBeNull();
  expect(r.victimSurvived).toBe(true);
  expect(r.rssDeltaMB).not.toBeNull();
  expect(r.rssDeltaMB!).toBeLessThanOrEqual(64);
  expect(r.logBytesWithAfter).toBeLessThan(MiB);
}

/** Every handshake a client from another source started during the attack completed. */
function expectReachable(r: AttackResult): void {
  const h = r.handshakes!.attack;
  expect(h.attempted).toBeGreaterThan(0);
  expect(h.failures).toEqual({});
  expect(h.completed).toBe(h.attempted);
}

describe('attacks on a node process (short form)', () => {
  afterAll(async () => {
    // Each attack cleans up after itself; this is for a test that timed out half-way.
    await stopLiveVictims();
  });

  it('first-message flood from one source: memory and log bounded, other sources served', async () => {
    const r = await runAttack('a', P);
    show(r);
    expectBounded(r);
    expectReachable(r);
    // The flood really happened: far more first messages than a listener may hold for one source.
    expect(r.attacker.framesSent).toBeGreaterThan(10_000);
  });

  it('half-open handshakes from one source: other sources served', async () => {
    const r = await runAttack('b', P);
    show(r);
    expectBounded(r);
    expectReachable(r);
    expect(r.attacker.framesSent).toBe(P.halfOpen);
  });

  it('channel flood: every channel is closed once the client is killed', async () => {
    const r = await runAttack('d', P);
    show(r);
    expectBounded(r);
    expectReachable(r);
    // Limits may refuse some (they are printed); every channel opened counts at the victim.
    expect(r.attacker.opened).toBeGreaterThan(0);
    expect(r.extra.channelsOpenAtVictim).toBe(r.attacker.opened);
    expect(r.extra.channelsLeftAtEnd).toBe(0);
    expect(r.victimAfter?.secureChannelStats.channelsOpen).toBe(0);
  });

  it('one channel flooding the echo service: the quiet channels and the other clients are all served', async () => {
    const r = await runAttack('e', { ...P, durationMs: 2000 });
    show(r);
    expectBounded(r);
    expectReachable(r);
    expect(r.attacker.messagesSent).toBeGreaterThan(1000);
    const quiet = (r.extra.quiet as { attack: { attempted: number; completed: number } }).attack;
    expect(quiet.attempted).toBeGreaterThan(0);
    expect(quiet.completed).toBe(quiet.attempted);
  });

  it('replayed, bit-flipped and misaddressed frames are never delivered; the channels still work', async () => {
    const r = await runAttack('f', P);
    show(r);
    expectBounded(r);
    expect(r.attacker.replaysSent).toBeGreaterThan(0);
    expect(r.attacker.bitFlipsSent).toBeGreaterThan(0);
    expect(r.attacker.misaddressedSent).toBeGreaterThan(0);
    expect(r.extra.extraAnswers).toBe(0);
    // The victim authenticated the genuine frames only: none of the copies.
    expect(r.extra.victimAuthenticatedA).toBe(2 * P.genuine);
    expect(r.extra.victimAuthenticatedB).toBe(0);
    expect(r.extra.answersCorrupted).toBe(0);
    expect(r.extra.genuineAnswered).toBe(P.genuine);
    expect(r.extra.flippedRoundAnswered).toBe(P.genuine);
    expect(r.extra.channelWorksAfter).toBe(true);
    expect(r.extra.secondChannelWorksAfter).toBe(true);
    // The victim dropped (and counted) every copy.
    expect(r.extra.victimCountedEveryDrop).toBe(true);
  });
});
