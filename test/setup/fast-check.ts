import fc from 'fast-check';
import { FIXED_SEED, fuzzFactor } from '../support/property-runs.js';

/**
 * Property tests, the way Hypothesis' CI profile runs them: under `CI` every property draws from
 * one fixed seed, so a CI run can only fail on a value that fails every time (a new counterexample
 * is found by `npm run test:fuzz`, which draws fresh seeds and makes more runs, and then becomes a
 * kept example in its test). Locally, plain `npm test` draws a fresh seed per run; fast-check
 * prints the seed and the shrunk counterexample of any failure.
 */
if (fuzzFactor() > 1) {
  fc.configureGlobal({ numRuns: 100 * fuzzFactor() });
} else if (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') {
  fc.configureGlobal({ seed: FIXED_SEED });
}
