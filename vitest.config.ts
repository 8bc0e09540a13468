import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['runtime/**/*.test.ts', 'vaults/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // One virtual BLE controller host (btvirt) for the whole run, stopped by pid at the end.
    globalSetup: ['./test/rig/ble-global-setup.ts'],
    // fast-check's seed: fixed under CI, fresh locally, fresh and more runs in `npm run test:fuzz`.
    setupFiles: ['./test/setup/fast-check.ts'],
  },
});
