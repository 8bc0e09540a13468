import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../../runtime/errors.js';
import { Atecc608Chip } from './chip.js';
import { Op } from './constants.js';
import { loadChipImage, MAX_CHIP_IMAGE_BYTES, saveChipImage } from './state-file.js';
import { run, writeTestConfig } from './test-helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyhop-chip-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('chip state files', () => {
  it('saves atomically (mode 0600) and loads back the same chip', async () => {
    const chip = new Atecc608Chip({ seed: 'file', revision: '608B' });
    writeTestConfig(chip);
    run(chip, Op.LOCK, 0x80);
    const pub = run(chip, Op.GENKEY, 0x04, 2).data;
    run(chip, Op.COUNTER, 1, 0);
    const path = join(dir, 'chip.json');
    await saveChipImage(path, chip.exportImage());
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['chip.json']);
    const image = await loadChipImage(path);
    expect(image).toEqual(chip.exportImage());
    const copy = Atecc608Chip.fromImage(image);
    expect(copy.revision).toBe('608B');
    expect(run(copy, Op.GENKEY, 0x00, 2).data).toEqual(pub);
    expect(run(copy, Op.COUNTER, 0, 0).data[0]).toBe(1);
    await saveChipImage(path, copy.exportImage()); // overwrite
    expect(await readdir(dir)).toEqual(['chip.json']);
  });

  it('reports missing, oversized, corrupt and foreign files with typed errors', async () => {
    await expect(loadChipImage(join(dir, 'none.json'))).rejects.toSatisfy((e) =>
      isKeyhopError(e, 'KEY_STORE_IO'),
    );
    const big = join(dir, 'big.json');
    await writeFile(big, ' '.repeat(MAX_CHIP_IMAGE_BYTES + 1));
    await expect(loadChipImage(big)).rejects.toSatisfy((e) => isKeyhopError(e, 'DECODE_LIMIT'));
    const notJson = join(dir, 'bad.json');
    await writeFile(notJson, '{"version":1,');
    await expect(loadChipImage(notJson)).rejects.toSatisfy((e) => isKeyhopError(e, 'DECODE_INVALID'));
    const image = new Atecc608Chip({ seed: 'x' }).exportImage();
    const wrong = join(dir, 'wrong.json');
    await writeFile(wrong, JSON.stringify({ ...image, config: image.config.slice(2) }));
    await expect(loadChipImage(wrong)).rejects.toSatisfy((e) => isKeyhopError(e, 'DECODE_INVALID'));
    await writeFile(wrong, JSON.stringify({ ...image, privateKeys: image.privateKeys.map(() => 'zz') }));
    await expect(loadChipImage(wrong)).rejects.toSatisfy((e) => isKeyhopError(e, 'DECODE_INVALID'));
    await writeFile(wrong, JSON.stringify({ ...image, version: 99 }));
    await expect(loadChipImage(wrong)).rejects.toSatisfy((e) => isKeyhopError(e, 'DECODE_VERSION'));
    await expect(saveChipImage(join(dir, 'no', 'such', 'dir.json'), image)).rejects.toSatisfy((e) =>
      isKeyhopError(e, 'KEY_STORE_IO'),
    );
  });
});
