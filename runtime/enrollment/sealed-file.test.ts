import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SealedFile } from './sealed-file.js';

const FAST = { N: 2 ** 10, r: 8, p: 1 };
const asObject = (v: unknown) => v as { secret: string };
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kh-sealed-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('SealedFile', () => {
  it('seals with a passphrase, never writes the content in clear, and needs the passphrase to open', async () => {
    const path = join(dir, 'f');
    const f = await SealedFile.create(path, { secret: 'hunter2-content' }, 'pw', FAST);
    expect(f.sealed).toBe(true);
    await f.write({ secret: 'second-content' });
    expect(readFileSync(path, 'utf8')).not.toContain('second-content');
    await expect(SealedFile.open(path, undefined, asObject, ': set X')).rejects.toMatchObject({
      code: 'KEY_STORE_LOCKED',
      message: expect.stringMatching(/sealed and no passphrase was given: set X$/),
    });
    await expect(SealedFile.open(path, 'nope', asObject)).rejects.toMatchObject({ code: 'KEY_STORE_LOCKED' });
    const { content } = await SealedFile.open(path, 'pw', asObject);
    expect(content).toEqual({ secret: 'second-content' });
  });

  it('stays in clear when made in clear, refuses a passphrase, and is never made twice', async () => {
    const path = join(dir, 'f');
    await SealedFile.create(path, { secret: 'visible' });
    expect(readFileSync(path, 'utf8')).toContain('visible');
    await expect(SealedFile.open(path, 'pw', asObject)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(SealedFile.create(path, { secret: 'x' })).rejects.toMatchObject({ code: 'VAULT_EXISTS' });
    await expect(SealedFile.open(join(dir, 'none'), undefined, asObject)).rejects.toMatchObject({
      code: 'VAULT_NOT_FOUND',
    });
  });

  it('reports damage as KEY_STORE_CORRUPT', async () => {
    const path = join(dir, 'f');
    await SealedFile.create(path, { secret: 'x' }, 'pw', FAST);
    const text = readFileSync(path, 'utf8');
    const { writeFileSync } = await import('node:fs');
    const doc = JSON.parse(text);
    doc.content = doc.content.replace(/^../, doc.content.startsWith('00') ? '11' : '00');
    writeFileSync(path, JSON.stringify(doc));
    await expect(SealedFile.open(path, 'pw', asObject)).rejects.toMatchObject({ code: 'KEY_STORE_CORRUPT' });
    writeFileSync(path, '{');
    await expect(SealedFile.open(path, 'pw', asObject)).rejects.toMatchObject({ code: 'KEY_STORE_CORRUPT' });
  });
});
