import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { isKeyhopError } from '../errors.js';
import { ChannelStore, type StoredChannel } from './channel-store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'keyhop-channel-store-'));
  dirs.push(d);
  return d;
}

function channel(id: string, nonce = 0): StoredChannel {
  return {
    id,
    role: 'initiator',
    remote: `sc_remote_${id}`,
    internal: `sc_internal_${id}`,
    consumers: ['app'],
    route: '7#fleet/server => sc_remote_peer',
    handshakeHash: 'ab'.repeat(32),
    peer: { identifier: `I${'0'.repeat(64)}`, staticKey: '01'.repeat(32), presentation: 'a0' },
    encryptor: { key: '02'.repeat(32), nonce: String(nonce), resumeAt: String(nonce + 16), rekeying: true },
    decryptor: {
      rekeying: true,
      window: { size: 32, highest: '-1', seen: '00' },
      bucket: '0',
      keys: [['0', '03'.repeat(32)]],
    },
    createdAt: 1,
  };
}

async function reopen(dir: string, passphrase?: string): Promise<StoredChannel[]> {
  const s = await ChannelStore.open(dir, passphrase === undefined ? {} : { passphrase });
  const list = s.channels();
  await s.close();
  return list;
}

describe('ChannelStore', () => {
  it('keeps the latest state of each channel across opens and forgets removed ones', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir);
    await Promise.all([s.save(channel('a', 1)), s.save(channel('b', 1)), s.save(channel('a', 2))]);
    await s.save(channel('a', 3));
    await s.remove('b');
    await s.close();
    const list = await reopen(dir);
    expect(list.map((c) => [c.id, c.encryptor.nonce])).toEqual([['a', '3']]);
    // Nothing of the channel is in the file in clear.
    const bytes = readFileSync(join(dir, 'channels.log')).toString('latin1');
    expect(bytes).not.toContain('sc_remote_a');
    expect(bytes).not.toContain('02'.repeat(32));
  });

  it('lets one process at a time hold the store', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir);
    await expect(ChannelStore.open(dir)).rejects.toMatchObject({ code: 'STATE_IN_USE' });
    await s.close();
    await (await ChannelStore.open(dir)).close();
  });

  it('seals its key with the passphrase, and refuses to open without it', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir, { passphrase: 'correct horse' });
    await s.save(channel('a'));
    await s.close();
    expect(readFileSync(join(dir, 'key.json'), 'utf8')).not.toMatch(/"key"/);
    await expect(ChannelStore.open(dir)).rejects.toMatchObject({ code: 'KEY_STORE_LOCKED' });
    await expect(ChannelStore.open(dir, { passphrase: 'wrong' })).rejects.toMatchObject({
      code: 'KEY_STORE_LOCKED',
    });
    expect((await reopen(dir, 'correct horse')).map((c) => c.id)).toEqual(['a']);
  });

  it('cuts a last record a crash left half written, and keeps every record before it', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir);
    await s.save(channel('a', 1));
    await s.save(channel('a', 2));
    await s.close();
    const path = join(dir, 'channels.log');
    truncateSync(path, statSync(path).size - 10);
    expect((await reopen(dir)).map((c) => c.encryptor.nonce)).toEqual(['1']);
    // Zeros where a crash cut a write short (a file system's delayed allocation).
    appendFileSync(path, new Uint8Array(600));
    expect((await reopen(dir)).map((c) => c.encryptor.nonce)).toEqual(['1']);
  });

  it('refuses a store damaged in the middle (KEY_STORE_CORRUPT), instead of losing channels silently', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir);
    await s.save(channel('a', 1));
    await s.save(channel('b', 1));
    await s.close();
    const path = join(dir, 'channels.log');
    const bytes = readFileSync(path);
    bytes[37 + 4 + 20]! ^= 1;
    writeFileSync(path, bytes);
    await expect(ChannelStore.open(dir)).rejects.toMatchObject({ code: 'KEY_STORE_CORRUPT' });
  });

  it('opens any bytes appended to a valid store as a cut tail or KEY_STORE_CORRUPT, never otherwise', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir);
    await s.save(channel('a', 1));
    await s.close();
    const path = join(dir, 'channels.log');
    const good = readFileSync(path);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (junk) => {
        writeFileSync(path, good);
        appendFileSync(path, junk);
        try {
          const list = await reopen(dir);
          expect(list.map((c) => c.id)).toEqual(['a']);
        } catch (e) {
          expect(isKeyhopError(e, 'KEY_STORE_CORRUPT')).toBe(true);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('rewrites itself when it grows, keeping only live state', async () => {
    const dir = tempDir();
    const s = await ChannelStore.open(dir, { fsync: false });
    for (let i = 0; i < 4000; i++) await s.save(channel('a', i));
    await s.close();
    expect(statSync(join(dir, 'channels.log')).size).toBeLessThan(1.2 * 1024 * 1024);
    expect((await reopen(dir)).map((c) => c.encryptor.nonce)).toEqual(['3999']);
  });
});
