import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SecureChannelEnd } from '../../runtime/channel/secure-channel.js';
import type { NodeConfig } from '../../runtime/node/config.js';
import { KeyhopNode } from '../../runtime/node/node.js';
import { Route } from '../../runtime/routing/route.js';
import { processAlive } from '../../runtime/state-lock.js';
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from '../rig/mosquitto.js';
import { keyhop } from '../support/cli.js';
import { until } from '../support/wait.js';

const skip = mosquittoSkipReason();
const enc = new TextEncoder();
const dec = new TextDecoder();
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'keyhop-persist-it-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function config(name: string, b: Mosquitto): NodeConfig {
  return {
    name,
    tcpListeners: [],
    services: { echo: true, relay: false },
    relays: [],
    identity: null,
    secureChannel: { listener: true, address: 'api', authorities: [], persist: true },
    outlets: [],
    inlets: [],
    mqtt: [{ urls: [b.url], broker: 'fleet' }],
    log: { level: 'silent' },
  };
}

async function start(name: string, b: Mosquitto, home: string): Promise<KeyhopNode> {
  const node = await KeyhopNode.start(config(name, b), { home });
  cleanups.push(() => node.stop());
  return node;
}

/** Sends `text` through `channel` to the far node's echo service and returns the answer. */
async function echo(node: KeyhopNode, channel: string, text: string): Promise<string> {
  const ctx = await node.router.context();
  try {
    await ctx.send(Route.of(channel, 'echo'), enc.encode(text));
    return dec.decode((await ctx.receive(30_000)).payload);
  } finally {
    await ctx.stop();
  }
}

describe.skipIf(skip !== undefined)('secure channels that outlive their processes (mosquitto)', () => {
  it('resumes both ends after restarts without a handshake; messages queued while the responder was down still decrypt', async () => {
    const b = await startMosquitto();
    cleanups.push(() => b.dispose());
    const serverHome = tempDir();
    const clientHome = tempDir();
    let server = await start('server', b, serverHome);
    let client = await start('client', b, clientHome);
    const channel: SecureChannelEnd = await client.createSecureChannel('7#fleet/server => api', undefined, {
      persist: true,
    });
    const id = channel.encryptor.toString();
    expect(await echo(client, id, 'before')).toBe('before');
    const serverEnd = server.channels.list()[0]!;
    expect(serverEnd.persistent).toBe(true);

    // The responder stops; the initiator sends meanwhile (kept by the broker for its mailbox).
    await server.stop();
    const ctx = await client.router.context();
    for (const t of ['queued 1', 'queued 2', 'queued 3']) await ctx.send(Route.of(id, 'echo'), enc.encode(t));
    server = await start('server', b, serverHome);
    const answers: string[] = [];
    for (let i = 0; i < 3; i++) answers.push(dec.decode((await ctx.receive(30_000)).payload));
    expect(answers).toEqual(['queued 1', 'queued 2', 'queued 3']);
    await ctx.stop();
    const restored = server.channels.list();
    expect(restored.map((c) => c.encryptor.toString())).toEqual([serverEnd.encryptor.toString()]);
    // Resumed, not a new handshake: the same channel hash at both ends.
    expect(restored[0]!.handshakeHash).toEqual(channel.handshakeHash);
    expect(restored[0]!.peer?.identifier).toBe(client.identity!.identity.identifier.toString());

    // Now the initiator restarts too; its restored end sends first, under the same address.
    await client.stop();
    client = await start('client', b, clientHome);
    expect(client.channels.list().map((c) => c.encryptor.toString())).toEqual([id]);
    expect(await echo(client, id, 'after both restarts')).toBe('after both restarts');

    // Closing it for good removes it at both ends: the next start restores nothing.
    await client.channels.close(id);
    await until(() => server.channels.list().length === 0, 30_000);
    await client.stop();
    await server.stop();
    client = await start('client', b, clientHome);
    server = await start('server', b, serverHome);
    expect(client.channels.list()).toEqual([]);
    expect(server.channels.list()).toEqual([]);
  }, 120_000);

  it('resumes after the responder process is killed (kill -9): its nonces are never used twice, and what was sent while it was down arrives once, in order', async () => {
    const b = await startMosquitto();
    cleanups.push(() => b.dispose());
    const serverHome = tempDir();
    const file = join(serverHome, 'server.json');
    writeFileSync(file, JSON.stringify({ ...config('server', b), log: { level: 'info' } }));
    const started = await keyhop(serverHome, ['node', 'start', 'server', '--config', file]);
    expect(started.stderr).toBe('');
    cleanups.push(() => keyhop(serverHome, ['node', 'stop', 'server']));
    const client = await start('client', b, tempDir());
    const channel = await client.createSecureChannel('7#fleet/server => api', undefined, { persist: true });
    const id = channel.encryptor.toString();
    // Past the first block of reserved nonces at both ends.
    for (let i = 0; i < 20; i++) expect(await echo(client, id, `warm ${i}`)).toBe(`warm ${i}`);

    const shown = await keyhop(serverHome, ['node', 'show', 'server', '--json']);
    const pid = (JSON.parse(shown.stdout) as { pid: number }).pid;
    process.kill(pid, 'SIGKILL');
    await until(() => !processAlive(pid), 30_000);
    const ctx = await client.router.context();
    for (let i = 0; i < 5; i++) await ctx.send(Route.of(id, 'echo'), enc.encode(`while down ${i}`));
    const again = await keyhop(serverHome, ['node', 'start', 'server']);
    expect(again.stderr).toBe('');
    const answers: string[] = [];
    for (let i = 0; i < 5; i++) answers.push(dec.decode((await ctx.receive(30_000)).payload));
    await ctx.stop();
    expect(answers).toEqual([0, 1, 2, 3, 4].map((i) => `while down ${i}`));
    // The restarted responder went on after its reserved block: nothing it sent was a replay.
    for (let i = 0; i < 40; i++) expect(await echo(client, id, `after ${i}`)).toBe(`after ${i}`);
    expect(channel.stats.dropped).toMatchObject({ replayed_or_stale: 0, tampered: 0 });
  }, 120_000);
});
