import { describe, expect, it } from 'vitest';
import type { Pkcs11Lib } from './pkcs11js-api.js';

// Type-checked by `npm run typecheck` (which runs where pkcs11js is installed): keyhop's own
// declaration of the pkcs11js API must be one the real module satisfies, call for call.
type RealPkcs11js = typeof import('pkcs11js');
const fits = (real: RealPkcs11js): Pkcs11Lib => real;

describe('keyhop declaration of pkcs11js', () => {
  it('is satisfied by the real module (checked at compile time)', () => {
    expect(typeof fits).toBe('function');
  });
});
