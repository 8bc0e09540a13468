import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['runtime/**/*.test.ts', 'vaults/**/*.test.ts', 'test/**/*.test.ts'],
    // Bounds against hangs, not measurements: integration tests start processes, and CI's two cores
    // are busy with other test files at the same time.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One virtual BLE controller host (btvirt) for the whole run, stopped by pid at the end.
    globalSetup: ['./test/rig/ble-global-setup.ts'],
    // fast-check's seed: fixed under CI, fresh locally, fresh and more runs in `npm run test:fuzz`.
    setupFiles: ['./test/setup/fast-check.ts'],
  },
});
