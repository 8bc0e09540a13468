import { expect } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';

/** Helpers shared by the unit tests. */
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const unhex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

/** Runs `fn`, which must throw a KeyhopError, and returns its code. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    return (e as KeyhopError).code;
  }
  throw new Error('expected a KeyhopError, nothing was thrown');
}
