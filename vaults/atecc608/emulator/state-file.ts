import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  describeError,
  ErrorCodes,
  isKeyhopError,
  KeyhopError,
  thrownProperty,
} from '../../../runtime/errors.js';
import { type ChipImage, parseChipImage } from './image.js';

/** A chip image is about 3 KiB of JSON; anything far larger is not one. */
export const MAX_CHIP_IMAGE_BYTES = 64 * 1024;

/**
 * Reads a saved chip image: size checked before reading, JSON and every field checked after.
 * Missing or unreadable file → KEY_STORE_IO; too large → DECODE_LIMIT; not JSON or malformed →
 * DECODE_INVALID; another format version → DECODE_VERSION.
 */
export async function loadChipImage(path: string): Promise<ChipImage> {
  let handle: FileHandle | undefined;
  let text: string;
  try {
    handle = await open(path, 'r');
    const info = await handle.stat();
    if (info.size > MAX_CHIP_IMAGE_BYTES) {
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `chip image ${path} is ${info.size} bytes (max ${MAX_CHIP_IMAGE_BYTES})`,
      );
    }
    const buffer = Buffer.alloc(MAX_CHIP_IMAGE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_CHIP_IMAGE_BYTES) {
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `chip image ${path} grew past ${MAX_CHIP_IMAGE_BYTES} bytes`,
      );
    }
    text = buffer.subarray(0, bytesRead).toString('utf8');
  } catch (e) {
    throw ioError(e, `cannot read chip image ${path}`);
  } finally {
    await handle?.close().catch(() => {});
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new KeyhopError(ErrorCodes.DECODE_INVALID, `chip image ${path} is not JSON`, { cause: e });
  }
  return parseChipImage(value);
}

/**
 * Writes the image atomically (temp file in the same directory, fsync, rename), mode 0600 since it
 * holds the emulated private keys.
 */
export async function saveChipImage(path: string, image: ChipImage): Promise<void> {
  const text = `${JSON.stringify(parseChipImage(image), null, 2)}\n`;
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, 'wx', 0o600);
    await handle.writeFile(text, 'utf8');
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (e) {
    await handle?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw ioError(e, `cannot write chip image ${path}`);
  }
}

function ioError(e: unknown, context: string): KeyhopError {
  if (isKeyhopError(e)) return e;
  const code = thrownProperty(e, 'code');
  const detail = describeError(e);
  return new KeyhopError(ErrorCodes.KEY_STORE_IO, `${context}: ${typeof code === 'string' ? code : detail}`, {
    cause: e,
  });
}
