import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isKeyhopError } from '../runtime/errors.js';
import { propertyRuns } from '../test/support/property-runs.js';
import { anyThrownValue, hostileThrownValues } from '../test/support/thrown-values.js';
import { mapAddonError } from './atecc608/links/i2c-link.js';
import { ckrOf, pkcs11Error } from './pkcs11/ckr.js';
import { isTpm2AddonError } from './tpm/native-tpm.js';

/** What a native addon or a third-party library throws is never trusted to be an Error. */
describe('vault error wrappers, on anything thrown', () => {
  const wrappers: [string, (e: unknown) => unknown][] = [
    ['pkcs11Error', (e) => pkcs11Error(e, 'ctx')],
    ['mapAddonError', (e) => mapAddonError(e, '/dev/i2c-1@0x60')],
  ];
  for (const [name, wrap] of wrappers) {
    it(`${name} gives a KeyhopError and never throws`, () => {
      fc.assert(
        fc.property(anyThrownValue, (x) => isKeyhopError(wrap(x))),
        { numRuns: propertyRuns(300), examples: hostileThrownValues.map((x) => [x]) },
      );
    });
  }

  it('ckrOf and isTpm2AddonError answer without throwing', () => {
    fc.assert(
      fc.property(anyThrownValue, (x) => {
        const rv = ckrOf(x);
        return (rv === undefined || typeof rv === 'number') && typeof isTpm2AddonError(x) === 'boolean';
      }),
      { numRuns: propertyRuns(300), examples: hostileThrownValues.map((x) => [x]) },
    );
    expect(isTpm2AddonError(null)).toBe(false);
  });
});
