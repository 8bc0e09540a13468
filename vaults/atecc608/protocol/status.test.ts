import { describe, expect, it } from 'vitest';
import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { AteccStatusError, isTransientStatus, Status, statusError, statusName } from './status.js';

describe('ATECC status bytes', () => {
  it.each([
    [0x01, 'miscompare', ErrorCodes.HARDWARE_REFUSED],
    [0x03, 'parse error', ErrorCodes.HARDWARE_REFUSED],
    [0x05, 'ECC fault', ErrorCodes.HARDWARE_FAULT],
    [0x07, 'self-test error', ErrorCodes.HARDWARE_FAULT],
    [0x08, 'health-test error', ErrorCodes.HARDWARE_FAULT],
    [0x0f, 'execution error', ErrorCodes.HARDWARE_REFUSED],
    [0x11, 'wake token', ErrorCodes.HARDWARE_IO],
    [0xee, 'watchdog', ErrorCodes.HARDWARE_IO],
    [0xff, 'CRC or communication error', ErrorCodes.HARDWARE_IO],
  ])('maps 0x%s to %s / %s', (status, name, code) => {
    const e = statusError(status, 'Test');
    expect(e).toBeInstanceOf(KeyhopError);
    expect(e).toBeInstanceOf(AteccStatusError);
    expect(e.code).toBe(code);
    expect(e.status).toBe(status);
    expect(e.statusName).toBe(name);
    expect(statusName(status)).toBe(name);
  });

  it('names the command, the status and the reason', () => {
    expect(statusError(Status.EXECUTION_ERROR, 'Sign slot 2').message).toBe(
      "Sign slot 2: execution error (0x0F): the chip's state or the slot's policy forbids this",
    );
    expect(statusError(0xee, 'Random').message).toMatch(/^Random: watchdog \(0xEE\): /);
  });

  it('treats unknown bytes and an unexpected success as faults', () => {
    const unknown = statusError(0x42, 'Info');
    expect(unknown.code).toBe(ErrorCodes.HARDWARE_FAULT);
    expect(unknown.statusName).toBe('unknown status');
    expect(unknown.message).toContain('(0x42)');
    expect(statusError(0x00, 'Read').message).toContain('bare status where data was expected');
  });

  it('calls CRC, watchdog, wake and ECC faults transient and nothing else', () => {
    const transient = [0x05, 0x11, 0xee, 0xff];
    for (let s = 0; s < 256; s++) expect(isTransientStatus(s)).toBe(transient.includes(s));
  });

  it('serialises like every KeyhopError', () => {
    expect(statusError(0x03, 'Lock config').toJSON()).toEqual({
      code: 'HARDWARE_REFUSED',
      message: 'Lock config: parse error (0x03): the chip rejected the length, opcode or parameters',
    });
  });
});
