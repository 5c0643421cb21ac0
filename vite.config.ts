import { defineConfig } from 'vitest/config'

// One config for the dashboard build (later) and the test runner.
export default defineConfig({
  test: {
    include: ['core/**/*.test.ts', 'node-host/**/*.test.ts', 'browser-host/**/*.test.ts', 'edge-host/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration suites start real processes; keep the 2-core CI machine from thrashing.
    maxWorkers: 2,
    // node-datachannel (WebRTC-direct) can take a forked worker down at exit; threads end cleanly.
    pool: 'threads',
    fileParallelism: true
  }
})
