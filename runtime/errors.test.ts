import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../test/support/property-runs.js';
import { anyThrownValue, hostileThrownValues as hostile } from '../test/support/thrown-values.js';
import { asKeyhopError, describeError, ErrorCodes, KeyhopError, thrownProperty } from './errors.js';

describe('describeError', () => {
  it('gives an Error its message, falling back to its name', () => {
    expect(describeError(new TypeError('bad thing'))).toBe('bad thing');
    expect(describeError(new RangeError(''))).toBe('RangeError');
    expect(describeError('plain text')).toBe('plain text');
    expect(describeError(42)).toBe('42');
  });

  it('never throws and always gives text, whatever was thrown', () => {
    for (const x of hostile) expect(typeof describeError(x)).toBe('string');
    expect(describeError({ toString: [] })).toBe('[object Object]');
    expect(describeError(Object.create(null))).toBe('[object Object]');
    expect(describeError(Symbol('thrown'))).toBe('Symbol(thrown)');
    fc.assert(
      fc.property(anyThrownValue, (x) => typeof describeError(x) === 'string'),
      { numRuns: propertyRuns(500), examples: hostile.map((x) => [x]) },
    );
  });

  it('lets asKeyhopError wrap anything', () => {
    for (const x of hostile) {
      expect(thrownProperty(x, 'code')).toSatisfy((c) => c === undefined || typeof c !== 'function');
      const e = asKeyhopError(x, ErrorCodes.HARDWARE_IO, 'ctx');
      expect(e).toBeInstanceOf(KeyhopError);
      expect(e.message.startsWith('ctx: ')).toBe(true);
    }
  });
});
