import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../runtime/errors.js';
import { decodeRc, describeRc, errorCodeOf, isRetryable, TPM_RC, tpmError, withTpmRetry } from './rc.js';

describe('TPM response codes', () => {
  it('names format-zero, warning and format-one codes', () => {
    expect(decodeRc(0x100).name).toBe('TPM_RC_INITIALIZE');
    expect(decodeRc(0x101).name).toBe('TPM_RC_FAILURE');
    expect(decodeRc(0x14b).name).toBe('TPM_RC_NV_SPACE');
    expect(decodeRc(0x902)).toMatchObject({ name: 'TPM_RC_OBJECT_MEMORY', format: 'warning', layer: 'tpm' });
    expect(decodeRc(0x903).name).toBe('TPM_RC_SESSION_MEMORY');
    expect(decodeRc(0x921).name).toBe('TPM_RC_LOCKOUT');
    expect(decodeRc(0x922).name).toBe('TPM_RC_RETRY');
    expect(decodeRc(0x908).name).toBe('TPM_RC_YIELDED');
    expect(decodeRc(0x90a).name).toBe('TPM_RC_TESTING');
    expect(decodeRc(0x084)).toMatchObject({ name: 'TPM_RC_VALUE', format: 'one', base: 0x084 });
    expect(decodeRc(0x0a7).name).toBe('TPM_RC_ECC_POINT');
    expect(decodeRc(0x09c).name).toBe('TPM_RC_KEY');
    expect(decodeRc(0x092).name).toBe('TPM_RC_SCHEME');
    expect(decodeRc(0x095).name).toBe('TPM_RC_SIZE');
    expect(decodeRc(0x08e).name).toBe('TPM_RC_AUTH_FAIL');
    expect(decodeRc(0x0ab).name).toBe('TPM_RC_0x0ab');
  });

  it('decodes the parameter, handle or session number of format-one codes', () => {
    // TPM_RC_VALUE + TPM_RC_P + TPM_RC_1: parameter 1
    expect(decodeRc(0x1c4)).toMatchObject({ name: 'TPM_RC_VALUE', base: 0x084, parameter: 1 });
    expect(describeRc(0x1c4)).toBe('TPM_RC_VALUE (parameter 1)');
    // TPM_RC_INTEGRITY, parameter 1 (a corrupted private blob to Load)
    expect(decodeRc(0x1df)).toMatchObject({ name: 'TPM_RC_INTEGRITY', parameter: 1 });
    // TPM_RC_HANDLE + TPM_RC_H + TPM_RC_1: handle 1
    expect(decodeRc(0x18b)).toMatchObject({ name: 'TPM_RC_HANDLE', handle: 1 });
    expect(describeRc(0x18b)).toBe('TPM_RC_HANDLE (handle 1)');
    // TPM_RC_AUTH_FAIL + TPM_RC_S + TPM_RC_1: session 1
    expect(decodeRc(0x98e)).toMatchObject({ name: 'TPM_RC_AUTH_FAIL', session: 1 });
    expect(describeRc(0x98e)).toBe('TPM_RC_AUTH_FAIL (session 1)');
    // parameter 15
    expect(decodeRc(0xfc4)).toMatchObject({ name: 'TPM_RC_VALUE', parameter: 15 });
  });

  it('names the TSS layers', () => {
    expect(decodeRc(0xa000a)).toMatchObject({ layer: 'tcti', name: 'TSS2_BASE_RC_IO_ERROR', format: 'tss' });
    expect(decodeRc(0x7000b)).toMatchObject({ layer: 'esapi', name: 'TSS2_BASE_RC_BAD_VALUE' });
    expect(decodeRc(0x9000b).layer).toBe('mu');
    expect(decodeRc(0xb0902)).toMatchObject({ layer: 'resmgr', name: 'TPM_RC_OBJECT_MEMORY' });
    expect(decodeRc(0x00000005).name).toBe('TPM_RC_0x005 (TPM 1.2)');
    expect(decodeRc(0x500).format).toBe('vendor');
  });

  it('classifies RETRY, YIELDED and TESTING as retryable, nothing else', () => {
    for (const rc of [TPM_RC.RETRY, TPM_RC.YIELDED, TPM_RC.TESTING, 0xb0922])
      expect(isRetryable(rc)).toBe(true);
    for (const rc of [TPM_RC.VALUE, TPM_RC.OBJECT_MEMORY, TPM_RC.LOCKOUT, 0x1c4, 0xa000a, 0x7000b]) {
      expect(isRetryable(rc)).toBe(false);
    }
  });

  it('maps codes to KeyhopError codes with readable messages', () => {
    expect(errorCodeOf(0x18b)).toBe(ErrorCodes.KEY_NOT_FOUND);
    expect(errorCodeOf(0x1df)).toBe(ErrorCodes.KEY_INVALID);
    expect(errorCodeOf(0x1e7)).toBe(ErrorCodes.KEY_INVALID); // ECC_POINT, parameter 1
    expect(errorCodeOf(0x101)).toBe(ErrorCodes.HARDWARE_FAULT);
    expect(errorCodeOf(0x921)).toBe(ErrorCodes.HARDWARE_REFUSED);
    expect(errorCodeOf(0xa000a)).toBe(ErrorCodes.HARDWARE_IO);
    const e = tpmError('Load', 0x1df, 'tpm:parameter(1):integrity check failed');
    expect(e.code).toBe(ErrorCodes.KEY_INVALID);
    expect(e.message).toContain('TPM_RC_INTEGRITY (parameter 1)');
    expect(e.message).toContain('rc 0x1df');
    expect(e.message).toContain('integrity check failed');
    expect(tpmError('Load', 0x902).message).toContain('/dev/tpmrm0');
  });

  it('retries retryable codes with back-off and gives up after the attempts', async () => {
    const rcOf = (e: unknown) => (e as { rc?: number }).rc;
    let calls = 0;
    const ok = await withTpmRetry(
      async () => {
        calls++;
        if (calls < 3) throw Object.assign(new Error('busy'), { rc: TPM_RC.RETRY });
        return 'done';
      },
      rcOf,
      { backoffMs: 1 },
    );
    expect(ok).toBe('done');
    expect(calls).toBe(3);

    calls = 0;
    await expect(
      withTpmRetry(
        async () => {
          calls++;
          throw Object.assign(new Error('yield'), { rc: TPM_RC.YIELDED });
        },
        rcOf,
        { attempts: 3, backoffMs: 1 },
      ),
    ).rejects.toThrow('yield');
    expect(calls).toBe(3);

    calls = 0;
    await expect(
      withTpmRetry(
        async () => {
          calls++;
          throw Object.assign(new Error('value'), { rc: TPM_RC.VALUE });
        },
        rcOf,
        { backoffMs: 1 },
      ),
    ).rejects.toThrow('value');
    expect(calls).toBe(1);
  });
});
