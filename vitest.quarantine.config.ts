import { defineConfig } from 'vitest/config';

/** Runs only the quarantined tests (see vitest.config.ts). */
export default defineConfig({
  test: {
    include: ['**/*.quarantined.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 30_000,
    pool: 'forks',
  },
});
