import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { silentLogger } from '../../log.js';
import { DEFAULT_OUTBOX_LIMITS, Outbox } from './outbox.js';
import { StateLog } from './state-log.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function path(): string {
  const d = mkdtempSync(join(tmpdir(), 'keyhop-state-'));
  dirs.push(d);
  return join(d, 'x.state');
}
const open = (p: string) => StateLog.open(p, { log: silentLogger, fsyncIntervalMs: 0 });
const msg = (i: number) => Uint8Array.of(0x83, i & 0xff, i >> 8, 7);

describe('MQTT state file', () => {
  it('brings back kept messages, acknowledgements, stream numbering and cursors after a restart', async () => {
    const p = path();
    const { log } = await open(p);
    const outbox = new Outbox(DEFAULT_OUTBOX_LIMITS, 1000, log);
    for (let i = 0; i < 10; i++) outbox.push('bob', msg(i), 1000 + i);
    outbox.push('carol', msg(99), 2000);
    const bobStream = outbox.streamTo('bob');
    outbox.ack(bobStream.id, 4, 3000);
    log.cursor('dave', Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), 17);
    await log.close();

    const { log: again, replayed } = await open(p);
    const restored = new Outbox(DEFAULT_OUTBOX_LIMITS, 1000, again);
    restored.restore(replayed.streams);
    const bob = restored.streamTo('bob');
    expect(Buffer.from(bob.id).equals(Buffer.from(bobStream.id))).toBe(true);
    expect(bob.entries.map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(bob.nextSeq).toBe(11);
    const bytes = await again.read(bob.entries[0]!.offset, bob.entries[0]!.size);
    expect([...bytes]).toEqual([...msg(4)]);
    expect(restored.stats()).toEqual({ messages: 7, bytes: 28, streams: 2 });
    expect(replayed.cursors).toEqual([
      { from: 'dave', stream: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), next: 17 },
    ]);
    await again.close();
  });

  it('keeps numbering a stream after everything was acknowledged and compacted away', async () => {
    const p = path();
    const { log } = await open(p);
    const outbox = new Outbox(DEFAULT_OUTBOX_LIMITS, 1000, log);
    for (let i = 0; i < 5; i++) outbox.push('bob', msg(i), 0);
    const s = outbox.streamTo('bob');
    outbox.ack(s.id, 5, 0);
    await log.compact({ streams: outbox.live(), cursors: [] });
    await log.close();
    const { log: again, replayed } = await open(p);
    expect(replayed.streams[0]!.nextSeq).toBe(6);
    expect(replayed.streams[0]!.messages).toEqual([]);
    await again.close();
  });

  it('compacts to the live state while appends go on, and reads the moved messages back', async () => {
    const p = path();
    const { log } = await open(p);
    const outbox = new Outbox(DEFAULT_OUTBOX_LIMITS, 1000, log);
    for (let i = 0; i < 200; i++) outbox.push('bob', msg(i), 0);
    const s = outbox.streamTo('bob');
    outbox.ack(s.id, 190, 0);
    await log.flush();
    const before = statSync(p).size;
    const compacting = log.compact({ streams: outbox.live(), cursors: [] });
    for (let i = 200; i < 210; i++) outbox.push('bob', msg(i), 0); // during compaction
    await compacting;
    await log.flush();
    expect(statSync(p).size).toBeLessThan(before / 5);
    for (const e of s.entries) expect([...(await log.read(e.offset, e.size))]).toEqual([...msg(e.seq - 1)]);
    await log.close();
    const { log: again, replayed } = await open(p);
    expect(replayed.streams[0]!.messages.map((m) => m.seq)).toEqual(
      [...Array(20).keys()].map((i) => 191 + i),
    );
    await again.close();
  });

  it('cuts a record a crash left incomplete and keeps everything before it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 1, max: 40 }), async (n, cut) => {
        const p = path();
        const { log } = await open(p);
        const outbox = new Outbox(DEFAULT_OUTBOX_LIMITS, 1000, log);
        for (let i = 0; i < n; i++) outbox.push('bob', msg(i), 0);
        await log.close();
        const size = statSync(p).size;
        truncateSync(p, Math.max(8, size - cut));
        const { log: again, replayed } = await open(p);
        const kept = replayed.streams[0]?.messages.map((m) => m.seq) ?? [];
        // A prefix survives, in order, and appending goes on after it.
        expect(kept).toEqual([...Array(kept.length).keys()].map((i) => i + 1));
        expect(kept.length).toBeLessThan(n + 1);
        await again.close();
      }),
      { numRuns: propertyRuns(20) },
    );
  });

  it('refuses a file that is not a state file, and never throws anything but KeyhopErrors on random contents', async () => {
    const p = path();
    writeFileSync(p, 'not a keyhop file');
    await expect(open(p)).rejects.toMatchObject({ code: 'KEY_STORE_CORRUPT' });
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (tail) => {
        const q = path();
        writeFileSync(q, Buffer.concat([Buffer.from('KHMQ\0\0\0\x01', 'latin1'), tail]));
        const { log, replayed } = await open(q);
        expect(replayed.truncatedBytes).toBeGreaterThanOrEqual(0);
        await log.close();
        expect(readFileSync(q).length).toBeLessThanOrEqual(8 + tail.length);
      }),
      { numRuns: propertyRuns(100) },
    );
  });
});
