import { defineConfig } from 'vitest/config'

// Suites that start fleets, real processes or Chromium. They run after the unit tests, one file at
// a time, so that on a 2-core machine each gets the CPU its deadlines assume.
const HEAVY = [
  'test/integration/**/*.test.ts',
  'test/security/**/*.test.ts',
  'test/browser/**/*.test.ts',
  'test/dashboard/dashboard-chromium.test.ts',
  'node-host/capsid/**/*.test.ts',
  'node-host/replica-set.test.ts',
  'node-host/cli/**/*.test.ts',
  'node-host/telemetry/metrics-endpoint.test.ts',
  'core/synapse/**/*.test.ts',
  'core/fleet/fleet-libp2p.test.ts',
  'core/fleet/failure-detector-libp2p.test.ts',
  'core/fleet/per-cell-libp2p.test.ts',
  'test/bench/**/*.test.ts',
  'test/edge/**/*.test.ts',
  'test/storage/**/*.test.ts',
  'test/reliability/**/*.test.ts'
]
const ALL = ['core/**/*.test.ts', 'node-host/**/*.test.ts', 'browser-host/**/*.test.ts', 'edge-host/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts']

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    // The default report, then one plain `N passed, N failed, N skipped` line for CI logs.
    reporters: ['default', './test/reporters/plain-summary.ts'],
    // node-datachannel (WebRTC-direct) can take a forked worker down at exit; threads end cleanly.
    pool: 'threads',
    projects: [
      { extends: true, test: { name: 'unit', include: ALL, exclude: HEAVY, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'integration', include: HEAVY, fileParallelism: false, sequence: { groupOrder: 1 } } }
    ]
  }
})
