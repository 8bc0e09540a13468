import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from './journal.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kh-journal-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const asNumber = (v: unknown) => {
  if (typeof v !== 'number') throw new Error('not a number');
  return v;
};

describe('Journal', () => {
  it('appends durably, in order, and gives the records back when opened again', async () => {
    const path = join(dir, 'j');
    const { journal, records } = await Journal.open(path, asNumber);
    expect(records).toEqual([]);
    await Promise.all(Array.from({ length: 500 }, (_, i) => journal.append(i)));
    await journal.append(500);
    await journal.close();
    const again = await Journal.open(path, asNumber);
    expect(again.records).toEqual(Array.from({ length: 501 }, (_, i) => i));
    await again.journal.close();
  });

  it('cuts a torn last line, and refuses damage elsewhere with the line number', async () => {
    const path = join(dir, 'j');
    writeFileSync(path, '1\n2\n3');
    const { journal, records } = await Journal.open(path, asNumber);
    expect(records).toEqual([1, 2]);
    await journal.append(4);
    await journal.close();
    expect(readFileSync(path, 'utf8')).toBe('1\n2\n4\n');
    appendFileSync(path, '{nope}\n5\n');
    await expect(Journal.open(path, asNumber)).rejects.toMatchObject({
      code: 'KEY_STORE_CORRUPT',
      message: expect.stringContaining('line 4 is not JSON'),
    });
    writeFileSync(path, '1\n"two"\n');
    await expect(Journal.open(path, asNumber)).rejects.toMatchObject({
      code: 'KEY_STORE_CORRUPT',
      message: expect.stringContaining('line 2: not a number'),
    });
  });

  it('compacts to a snapshot atomically and keeps appending', async () => {
    const path = join(dir, 'j');
    const { journal } = await Journal.open(path, asNumber);
    for (let i = 0; i < 10; i++) await journal.append(i);
    await journal.compact([42]);
    await journal.append(43);
    await journal.close();
    expect((await Journal.open(path, asNumber)).records).toEqual([42, 43]);
  });

  it('refuses appends after close', async () => {
    const { journal } = await Journal.open(join(dir, 'j'), asNumber);
    await journal.close();
    await expect(journal.append(1)).rejects.toMatchObject({ code: 'KEY_STORE_IO' });
  });
});
