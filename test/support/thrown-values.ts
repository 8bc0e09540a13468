import fc from 'fast-check';

/**
 * Values that break naive descriptions of a thrown value (`String(e)`, `e.message`, `e.code`,
 * `instanceof`). Every function that wraps or describes an unknown thrown value is tested on them.
 */
export const hostileThrownValues: readonly unknown[] = [
  { toString: [] }, // found by a random seed in vaults/pkcs11/ckr.test.ts: String() throws
  Object.create(null),
  { toString: () => ({}), valueOf: () => ({}) },
  {
    [Symbol.toPrimitive]: () => {
      throw new Error('no');
    },
  },
  new Proxy(
    {},
    {
      get: () => {
        throw new Error('trap');
      },
      getPrototypeOf: () => {
        throw new Error('trap');
      },
    },
  ),
  Object.defineProperty(new Error('x'), 'message', {
    get: () => {
      throw new Error('getter');
    },
  }),
  Object.defineProperty(new Error('x'), 'code', {
    get: () => {
      throw new Error('getter');
    },
  }),
  Symbol('thrown'),
  undefined,
  null,
  10n,
];

/** Anything at all, the odd kinds included. */
export const anyThrownValue = fc.anything({
  withNullPrototype: true,
  withObjectString: true,
  withBoxedValues: true,
  withMap: true,
  withSet: true,
  withBigInt: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
});
