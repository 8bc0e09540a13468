import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { hostileThrownValues } from '../../test/support/thrown-values.js';
import { CKR, CKR_NAMES, ckrName, ckrOf, errorCodeFor, isPinError, pkcs11Error, recoveryFor } from './ckr.js';
import * as constants from './constants.js';

/** pkcs11js, when its addon is built: the reference for the numbers (undefined otherwise). */
function pkcs11js(): Record<string, unknown> | undefined {
  try {
    return createRequire(import.meta.url)('pkcs11js') as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
const lib = pkcs11js();

describe('CK_RV names', () => {
  it('names values, including vendor-defined and unknown ones', () => {
    expect(ckrName(0xa0)).toBe('CKR_PIN_INCORRECT');
    expect(ckrName(0xa4)).toBe('CKR_PIN_LOCKED');
    expect(ckrName(0x101)).toBe('CKR_USER_NOT_LOGGED_IN');
    expect(ckrName(0x80000012)).toBe('CKR_VENDOR_DEFINED+0x12');
    expect(ckrName(0x4242)).toBe('CK_RV 0x4242');
    expect(ckrName(-1)).toBe('CK_RV -1');
  });

  it.skipIf(lib === undefined)('agree with every CKR_* and other constant pkcs11js defines', () => {
    let checked = 0;
    for (const [value, name] of Object.entries(CKR_NAMES)) {
      if (typeof lib?.[name] === 'number') {
        expect(lib[name], name).toBe(Number(value));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(80);
    for (const [name, value] of Object.entries(constants)) {
      if (typeof lib?.[name] === 'number') expect(lib[name], name).toBe(value);
    }
    // The Edwards-curve numbers pkcs11js 2.1.7 lacks, and the one pkcs11js-specific value used.
    expect(constants.CKM_EC_EDWARDS_KEY_PAIR_GEN).toBe(0x1055);
    expect(constants.CKM_EDDSA).toBe(0x1057);
    expect(constants.CKK_EC_EDWARDS).toBe(0x40);
  });

  it('never throws, for any number', () => {
    fc.assert(fc.property(fc.oneof(fc.integer(), fc.double()), (n) => typeof ckrName(n) === 'string'));
  });
});

describe('ckrOf', () => {
  it.skipIf(lib === undefined)('reads pkcs11js Pkcs11Errors', () => {
    const Pkcs11Error = lib?.Pkcs11Error as new (m: string, c?: number, f?: string) => Error;
    expect(ckrOf(new Pkcs11Error('CKR_PIN_INCORRECT', 0xa0, 'C_Login'))).toBe(0xa0);
    expect(ckrOf(new Pkcs11Error('CKR_PIN_LOCKED:164\n    at PKCS11.C_Login (x.js:1:1)'))).toBe(0xa4);
  });

  it('reads names and NAME:value messages, and nothing else', () => {
    expect(ckrOf({ message: 'CKR_SESSION_CLOSED' })).toBe(0xb0);
    expect(ckrOf({ message: 'CKR_SESSION_CLOSED', code: 0 })).toBe(0xb0);
    expect(ckrOf({ message: 'CKR_VENDOR_THING:2147483649' })).toBe(0x80000001);
    expect(ckrOf(new Error('libfoo.so: cannot open shared object file'))).toBeUndefined();
    expect(ckrOf(new TypeError('Parameter 1 MUST be Buffer'))).toBeUndefined();
    expect(ckrOf('CKR_PIN_INCORRECT')).toBeUndefined();
    expect(ckrOf(null)).toBeUndefined();
  });

  it('never throws, for anything', () => {
    fc.assert(
      fc.property(fc.anything(), fc.string(), (x, m) => {
        const a = ckrOf(x);
        const b = ckrOf({ message: `CKR_${m}`, code: x });
        return (a === undefined || typeof a === 'number') && (b === undefined || typeof b === 'number');
      }),
    );
  });
});

describe('classification', () => {
  it('recovers a lost login, a lost session and stale handles, nothing else', () => {
    expect(recoveryFor(CKR.USER_NOT_LOGGED_IN)).toBe('login');
    expect(recoveryFor(CKR.SESSION_HANDLE_INVALID)).toBe('session');
    expect(recoveryFor(CKR.SESSION_CLOSED)).toBe('session');
    expect(recoveryFor(CKR.OBJECT_HANDLE_INVALID)).toBe('handles');
    expect(recoveryFor(CKR.KEY_HANDLE_INVALID)).toBe('handles');
    for (const rv of [CKR.PIN_INCORRECT, CKR.PIN_LOCKED, CKR.PIN_EXPIRED, 0x30, 0x5, 0xe0, 0x70, 0x68]) {
      expect(recoveryFor(rv)).toBeUndefined();
    }
    const recoverable = Object.keys(CKR_NAMES).filter((v) => recoveryFor(Number(v)) !== undefined);
    expect(recoverable.length).toBe(5);
  });

  it('tells PIN problems apart', () => {
    expect([0xa0, 0xa1, 0xa2, 0xa3, 0xa4].every(isPinError)).toBe(true);
    expect(isPinError(CKR.USER_NOT_LOGGED_IN)).toBe(false);
  });

  it('maps return values to error codes', () => {
    const cases: [number, string][] = [
      [0xe0, 'HARDWARE_UNAVAILABLE'], // TOKEN_NOT_PRESENT
      [0x32, 'HARDWARE_UNAVAILABLE'], // DEVICE_REMOVED
      [0x190, 'HARDWARE_UNAVAILABLE'], // CRYPTOKI_NOT_INITIALIZED
      [0x30, 'HARDWARE_IO'], // DEVICE_ERROR
      [0x5, 'HARDWARE_IO'], // GENERAL_ERROR
      [0x1b6, 'HARDWARE_FAULT'], // FIPS_SELF_TEST_FAILED
      [0x70, 'UNSUPPORTED'], // MECHANISM_INVALID
      [0x140, 'UNSUPPORTED'], // CURVE_NOT_SUPPORTED
      [0x1b9, 'KEY_INVALID'], // PUBLIC_KEY_INVALID
      [0x82, 'KEY_NOT_FOUND'], // OBJECT_HANDLE_INVALID
      [0xa0, 'KEY_STORE_LOCKED'], // PIN_INCORRECT
      [0xa2, 'KEY_STORE_LOCKED'], // PIN_LEN_RANGE
      [0xa4, 'HARDWARE_REFUSED'], // PIN_LOCKED
      [0xa3, 'HARDWARE_REFUSED'], // PIN_EXPIRED
      [0x68, 'HARDWARE_REFUSED'], // KEY_FUNCTION_NOT_PERMITTED
      [0x101, 'HARDWARE_REFUSED'], // USER_NOT_LOGGED_IN (after its one recovery)
      [0xe2, 'HARDWARE_REFUSED'], // TOKEN_WRITE_PROTECTED
      [0x80000001, 'HARDWARE_REFUSED'], // vendor-defined
    ];
    for (const [rv, code] of cases) expect(errorCodeFor(rv), ckrName(rv)).toBe(code);
  });

  it('wraps thrown values in KeyhopErrors naming the CKR and the context only', () => {
    const e = pkcs11Error({ message: 'CKR_KEY_FUNCTION_NOT_PERMITTED' }, 'signing with key 01');
    expect(e).toBeInstanceOf(KeyhopError);
    expect(e.code).toBe('HARDWARE_REFUSED');
    expect(e.message).toBe(
      'signing with key 01: CKR_KEY_FUNCTION_NOT_PERMITTED (the key\u2019s attributes forbid this use)',
    );
    const other = pkcs11Error(new TypeError('Parameter 2 MUST be Number'), 'x');
    expect(other.code).toBe('HARDWARE_IO');
    const same = new KeyhopError('KEY_NOT_FOUND', 'gone');
    expect(pkcs11Error(same, 'x')).toBe(same);
    fc.assert(
      fc.property(fc.anything(), (x) => pkcs11Error(x, 'ctx') instanceof KeyhopError),
      // Found by a random seed: String({ toString: [] }) throws a TypeError.
      { examples: hostileThrownValues.map((x) => [x]) },
    );
  });
});
