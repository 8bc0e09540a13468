import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { CKR } from './ckr.js';
import { CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY } from './constants.js';
import { checkPinSource, MAX_PIN_FILE, pinError, readPin } from './pin.js';

const dir = mkdtempSync(join(tmpdir(), 'kh-pin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function failure(p: Promise<unknown>): Promise<KeyhopError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    return e as KeyhopError;
  }
  throw new Error('expected a KeyhopError');
}

describe('PIN sources', () => {
  it('accepts { env } or { file }, nothing else', () => {
    expect(checkPinSource({ env: 'X' })).toEqual({ env: 'X' });
    expect(checkPinSource({ file: '/p' })).toEqual({ file: '/p' });
    for (const bad of [undefined, null, '1234', {}, { env: '' }, { env: 'X', file: '/p' }, { pin: '1234' }]) {
      expect(() => checkPinSource(bad)).toThrow(/PIN source must be/);
    }
  });

  it('reads an environment variable as is, and names it (never its value) when unset or empty', async () => {
    expect(await readPin({ env: 'P' }, { P: ' 12 34 ' })).toBe(' 12 34 ');
    expect(await readPin({ env: 'P' }, { P: '1234\n' })).toBe('1234');
    const unset = await failure(readPin({ env: 'P' }, {}));
    expect(unset.code).toBe('CONFIG_INVALID');
    expect(unset.message).toBe('the PKCS#11 user PIN is read from environment variable P, which is not set');
    expect((await failure(readPin({ env: 'P' }, { P: '' }))).code).toBe('CONFIG_INVALID');
    expect((await failure(readPin({ env: 'P' }, { P: '\n' }))).code).toBe('CONFIG_INVALID');
  });

  it('reads a file, dropping exactly one trailing newline', async () => {
    const file = join(dir, 'pin');
    for (const [content, pin] of [
      ['4321', '4321'],
      ['4321\n', '4321'],
      ['4321\r\n', '4321'],
      ['4321\n\n', '4321\n'],
      [' 4321 ', ' 4321 '],
    ] as const) {
      writeFileSync(file, content);
      expect(await readPin({ file })).toBe(pin);
    }
  });

  it('refuses a missing, empty, oversized or non-regular PIN file, naming the file only', async () => {
    const missing = await failure(readPin({ file: join(dir, 'none') }));
    expect(missing.code).toBe('CONFIG_INVALID');
    expect(missing.message).toMatch(/from file .*none: ENOENT/);
    writeFileSync(join(dir, 'empty'), '');
    expect((await failure(readPin({ file: join(dir, 'empty') }))).code).toBe('CONFIG_INVALID');
    writeFileSync(join(dir, 'big'), 'secret'.repeat(MAX_PIN_FILE));
    const big = await failure(readPin({ file: join(dir, 'big') }));
    expect(big.code).toBe('CONFIG_INVALID');
    expect(big.message).not.toContain('secret');
    mkdirSync(join(dir, 'sub'));
    expect((await failure(readPin({ file: join(dir, 'sub') }))).code).toBe('CONFIG_INVALID');
  });
});

describe('login errors', () => {
  const source = { env: 'KEYHOP_PKCS11_PIN' };

  it('a wrong PIN is KEY_STORE_LOCKED, with the token\u2019s own warnings', () => {
    const plain = pinError(CKR.PIN_INCORRECT, 'tok', source);
    expect(plain.code).toBe('KEY_STORE_LOCKED');
    expect(plain.message).toBe(
      'wrong user PIN for PKCS#11 token "tok" from environment variable KEYHOP_PKCS11_PIN (CKR_PIN_INCORRECT); keyhop tried it once and will not retry',
    );
    expect(pinError(CKR.PIN_INCORRECT, 'tok', source, CKF_USER_PIN_COUNT_LOW).message).toMatch(
      /may lock after more$/,
    );
    expect(pinError(CKR.PIN_INCORRECT, 'tok', source, CKF_USER_PIN_FINAL_TRY).message).toMatch(
      /one more wrong PIN locks it$/,
    );
    expect(pinError(CKR.PIN_LEN_RANGE, 'tok', { file: '/etc/pin' }).code).toBe('KEY_STORE_LOCKED');
    expect(pinError(CKR.PIN_INVALID, 'tok', { file: '/etc/pin' }).message).toContain('file /etc/pin');
  });

  it('a locked or expired PIN is HARDWARE_REFUSED', () => {
    const locked = pinError(CKR.PIN_LOCKED, 'tok', source);
    expect(locked.code).toBe('HARDWARE_REFUSED');
    expect(locked.message).toMatch(/is locked \(CKR_PIN_LOCKED\).*security officer/);
    expect(pinError(CKR.PIN_EXPIRED, 'tok', source).code).toBe('HARDWARE_REFUSED');
  });
});
