import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { testNode } from '../../test/support/nodes.js';
import { until } from '../../test/support/wait.js';
import { Route } from '../routing/route.js';
import { Router } from '../routing/router.js';
import { ChannelStore } from './channel-store.js';
import { SecureChannels } from './secure-channels.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Both ends of a channel in one process and one store (a node that talks to itself), so one "process" can crash. */
async function startProcess(dir: string, identity: Awaited<ReturnType<typeof testNode>>['channelIdentity']) {
  const router = new Router({ name: 'p' });
  const store = await ChannelStore.open(dir, { fsync: false });
  const channels = new SecureChannels(router, { identity, store });
  const seen: string[] = [];
  await router.startWorker('app', {
    handleMessage: (_c, m) => void seen.push(new TextDecoder().decode(m.payload)),
  });
  await channels.createListener('api', { persist: true, expose: ['app'] });
  return { router, store, channels, seen };
}

describe('persistent secure channels', () => {
  it('never uses a nonce twice across a crash: concurrent sends wait for their reservation, and a restored end goes on after it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyhop-persist-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const node = await testNode('n');
    cleanups.push(() => node.router.shutdown());
    const p1 = await startProcess(dir, node.channelIdentity);
    const end = await p1.channels.create('api', { persist: true });
    const ctx = await p1.router.context();
    const sent = Array.from({ length: 100 }, (_, i) => `m${i}`);
    await Promise.all(sent.map((t) => ctx.send(Route.of(end.encryptor, 'app'), new TextEncoder().encode(t))));
    await p1.channels.list()[0]!.whenOpen();
    await until(() => p1.seen.length === 100, 10_000);
    expect(new Set(p1.seen)).toEqual(new Set(sent));

    // The crash: the store is left as it was written, nothing suspended or closed.
    const stored = p1.store.channels().find((c) => c.id === end.encryptor.toString());
    expect(stored).toBeDefined();
    await p1.store.close();
    await p1.router.shutdown().catch(() => undefined);
    const p2 = await startProcess(dir, node.channelIdentity);
    cleanups.push(() => p2.router.shutdown());
    const report = await p2.channels.restore();
    expect(report.dropped).toEqual([]);
    expect(report.restored).toHaveLength(2);
    const restored = p2.channels.get(end.encryptor);
    // It resumes at or after every nonce it may have used (the block reserved on disk), never before.
    const resumed = BigInt(
      p2.store.channels().find((c) => c.id === end.encryptor.toString())!.encryptor.resumeAt,
    );
    expect(resumed).toBeGreaterThanOrEqual(100n);
    const ctx2 = await p2.router.context();
    await ctx2.send(Route.of(restored.encryptor, 'app'), new TextEncoder().encode('after the crash'));
    await until(() => p2.seen.includes('after the crash'), 10_000);
    const responder = p2.channels.list().find((c) => !c.initiator)!;
    expect(responder.stats.dropped.replayed_or_stale).toBe(0);
  });
});
