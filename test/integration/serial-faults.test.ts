/**
 * The serial transport over a faulty line: two socat PTY pairs with a relay in between that flips
 * bits, drops, duplicates and inserts bytes (test/rig/serial-fault-relay.ts), seeded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { describeError } from '../../runtime/errors.js';
import type { Message } from '../../runtime/routing/message.js';
import { Route } from '../../runtime/routing/route.js';
import { Router } from '../../runtime/routing/router.js';
import { type SerialPortLink, SerialTransport } from '../../runtime/transports/serial/serial-transport.js';
import {
  type FaultRates,
  type FaultRelay,
  type FaultRelayOptions,
  startFaultRelay,
} from '../rig/serial-fault-relay.js';
import { socatSkipReason } from '../rig/socat.js';
import { sleep, until } from '../support/wait.js';

const skip = socatSkipReason();

/** About one frame in six of 1 KiB is damaged; a 4 KiB frame gets through about half the time. */
const FAULTS: FaultRates = { bitFlip: 5e-5, drop: 5e-5, duplicate: 5e-5, garbage: 2e-5 };
/** The PTYs run at memory speed; the nominal baud rate only scales the retransmission timeout. */
const BAUD = 4_000_000;
const COUNT = 300;
/** A bound on waits (socat, the relay and its pacing on busy cores), not a timing expectation. */
const WAIT_MS = 30_000;

/** Mixed sizes around COBS group boundaries, up to 4 KiB. */
function sizeOf(i: number): number {
  const base = [8, 9, 40, 253, 254, 255, 600, 1024, 2000, 4000];
  return base[i % base.length]! + ((i * 7) % 5);
}

/** seq u32 ‖ size u32 ‖ bytes derived from both: a corrupted or misplaced payload cannot pass. */
function payloadOf(seq: number, dir: number): Uint8Array {
  const size = sizeOf(seq + dir);
  const b = new Uint8Array(size);
  const view = new DataView(b.buffer);
  view.setUint32(0, seq);
  view.setUint32(4, size);
  let x = (seq * 2654435761 + dir) >>> 0;
  for (let i = 8; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function seqOf(p: Uint8Array): number {
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
}

const total = (d: Record<string, number>): number => Object.values(d).reduce((x, y) => x + y, 0);

describe.skipIf(skip !== undefined)('serial transport through a fault-injecting relay', () => {
  const routers: Router[] = [];
  let relay: FaultRelay | undefined;

  afterEach(async () => {
    for (const r of routers.splice(0)) await r.shutdown();
    await relay?.stop();
    relay = undefined;
  });

  /**
   * Routers A and B on the two ends, each with an inbox reachable from the other. By default the
   * line is noisy and unpaced; `line` replaces that.
   */
  async function setup(reliable: boolean, line?: FaultRelayOptions, retransmitMs = 25) {
    relay = await startFaultRelay(line ?? { seed: reliable ? 11 : 12, aToB: FAULTS, bToA: FAULTS });
    const baudRate = line?.baudRate ?? BAUD;
    const ends = [];
    for (const [name, path] of [
      ['a', relay.a],
      ['b', relay.b],
    ] as const) {
      const router = new Router({ name });
      routers.push(router);
      const inbox: Message[] = [];
      await router.startWorker('inbox', { handleMessage: (_c, m) => void inbox.push(m) });
      const serial = SerialTransport.create(router, { retransmitMs });
      const link = await serial.open(path, { baudRate, reliable, expose: ['inbox'] });
      ends.push({ router, inbox, link, ctx: await router.context() });
    }
    return ends as [(typeof ends)[0], (typeof ends)[0]];
  }

  type End = Awaited<ReturnType<typeof setup>>[0];

  /** Sends `count` payloads from `from` to `to`'s inbox, at most `window` not yet received. */
  async function stream(from: End, to: End, dir: number, count: number, window: number): Promise<void> {
    const route = Route.of(from.link.sender, 'inbox');
    for (let seq = 0; seq < count; seq++) {
      if (window > 0) await until(() => seq - to.inbox.length < window, WAIT_MS);
      await from.ctx.send(route, payloadOf(seq, dir));
    }
  }

  function describeLinks(a: SerialPortLink, b: SerialPortLink): string {
    return `\nrelay ${JSON.stringify(relay?.stats())}\nA ${JSON.stringify(a.stats())}\nB ${JSON.stringify(b.stats())}`;
  }

  it('reliability on: every message arrives exactly once and in order, both ways', async () => {
    const [a, b] = await setup(true);
    const started = Date.now();
    await Promise.all([stream(a, b, 0, COUNT, 32), stream(b, a, 1, COUNT, 32)]);
    await until(() => a.inbox.length >= COUNT && b.inbox.length >= COUNT, WAIT_MS).catch((e: unknown) => {
      throw new Error(
        `${describeError(e)}: A got ${a.inbox.length}, B got ${b.inbox.length}${describeLinks(a.link, b.link)}`,
      );
    });
    // Anything delivered twice would show up by now.
    await sleep(200);
    for (const [end, dir] of [
      [b, 0],
      [a, 1],
    ] as const) {
      expect(end.inbox.map((m) => seqOf(m.payload))).toEqual([...Array(COUNT).keys()]);
      for (const m of end.inbox) expect(m.payload).toEqual(payloadOf(seqOf(m.payload), dir));
    }
    const s = relay!.stats();
    for (const d of [s.aToB, s.bToA]) {
      expect(d.bitFlips + d.drops + d.duplicates + d.garbageRuns).toBeGreaterThan(10);
    }
    const sa = a.link.stats();
    const sb = b.link.stats();
    expect(total(sa.frameDrops)).toBeGreaterThan(0);
    expect(total(sb.frameDrops)).toBeGreaterThan(0);
    expect(sa.linkCounters.retransmitted + sb.linkCounters.retransmitted).toBeGreaterThan(0);
    expect(sa.undecodable + sb.undecodable).toBe(0);
    console.log(
      `reliable: 2 x ${COUNT} messages in ${Date.now() - started} ms; faults a->b ${JSON.stringify(s.aToB)}; ` +
        `retransmitted ${sa.linkCounters.retransmitted}/${sb.linkCounters.retransmitted}, ` +
        `frame drops ${total(sa.frameDrops)}/${total(sb.frameDrops)}`,
    );
  });

  it('reliability off: damaged frames are dropped and counted, never delivered', async () => {
    const [a, b] = await setup(false);
    await Promise.all([stream(a, b, 0, COUNT, 0), stream(b, a, 1, COUNT, 0)]);
    // Every byte through the relay (and its faults) before a clean last message, which ends any
    // half-received frame and marks the end of the stream.
    const passed = () => {
      const s = relay!.stats();
      return (
        a.link.stats().messagesOut === COUNT &&
        b.link.stats().messagesOut === COUNT &&
        s.aToB.bytesIn === a.link.stats().bytesOut &&
        s.bToA.bytesIn === b.link.stats().bytesOut
      );
    };
    await until(passed, WAIT_MS);
    relay!.setFaults('aToB', {});
    relay!.setFaults('bToA', {});
    await a.ctx.send(Route.of(a.link.sender, 'inbox'), payloadOf(COUNT, 0));
    await b.ctx.send(Route.of(b.link.sender, 'inbox'), payloadOf(COUNT, 1));
    const last = (end: End) => end.inbox.length > 0 && seqOf(end.inbox.at(-1)!.payload) === COUNT;
    await until(() => last(a) && last(b), WAIT_MS).catch((e: unknown) => {
      throw new Error(`${describeError(e)}${describeLinks(a.link, b.link)}`);
    });
    for (const [end, dir] of [
      [b, 0],
      [a, 1],
    ] as const) {
      const seqs = end.inbox.map((m) => seqOf(m.payload));
      // In order, none twice, each byte for byte what was sent.
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
      for (const m of end.inbox) expect(m.payload).toEqual(payloadOf(seqOf(m.payload), dir));
      const lost = COUNT + 1 - seqs.length;
      const stats = end.link.stats();
      expect(lost).toBeGreaterThan(0);
      expect(lost).toBeLessThan(COUNT / 2);
      // Every lost frame was counted as a drop (garbage between frames adds drops of its own).
      expect(total(stats.frameDrops)).toBeGreaterThanOrEqual(lost);
      expect(stats.messagesIn).toBe(seqs.length);
      expect(stats.undecodable).toBe(0);
      expect(total(stats.linkDrops)).toBe(0);
    }
    console.log(
      `plain: lost ${COUNT + 1 - b.inbox.length} a->b, ${COUNT + 1 - a.inbox.length} b->a; ` +
        `frame drops ${JSON.stringify(b.link.stats().frameDrops)} / ${JSON.stringify(a.link.stats().frameDrops)}`,
    );
  });

  it("reliability on: a burst larger than the link's queue waits for the slow line instead of failing", async () => {
    // 230 400 baud: 600 messages of ~100 wire bytes take ~2.6 s, so most of the burst has to wait.
    const [a, b] = await setup(true, { baudRate: 230_400 }, 200);
    const n = 600;
    for (let seq = 0; seq < n; seq++) {
      await a.ctx.send(Route.of(a.link.sender, 'inbox'), payloadOf(seq, 2).subarray(0, 64));
    }
    await until(() => b.inbox.length >= n, WAIT_MS).catch((e: unknown) => {
      throw new Error(`${describeError(e)}: B got ${b.inbox.length}${describeLinks(a.link, b.link)}`);
    });
    expect(b.inbox.map((m) => seqOf(m.payload))).toEqual([...Array(n).keys()]);
    expect(a.router.metrics.workerErrors).toBe(0);
  });
});

if (skip !== undefined) it.skip(skip, () => undefined);
