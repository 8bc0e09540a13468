/** The seed of every property under `CI` (test/setup/fast-check.ts). Any fixed value will do. */
export const FIXED_SEED = 0x6b6579;

/** How many times the usual number of runs `npm run test:fuzz` makes (`KEYHOP_FUZZ_FACTOR`, 1 otherwise). */
export function fuzzFactor(): number {
  const raw = process.env.KEYHOP_FUZZ_FACTOR;
  const n = raw === undefined ? 1 : Number(raw);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** A property's run count: `n` in CI and plain `npm test`, `n × KEYHOP_FUZZ_FACTOR` when fuzzing. */
export function propertyRuns(n: number): number {
  return n * fuzzFactor();
}
