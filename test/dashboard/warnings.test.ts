// The dashboard store's warnings (a tab that sees full nodes of the other dissemination mode shows
// a banner beside the fleet): read from the fake source's optional `warnings()` on its 'warnings'
// event, bounded, cleared when the source clears them. The banner itself is checked in Chromium
// (test/dashboard/dashboard-chromium.test.ts, test/browser/dashboard-mismatch.e2e.test.ts).
import { describe, expect, it } from 'vitest'
import { createRoot } from 'solid-js'
import { createFakeSource } from '../../dashboard/src/fake-source.ts'
import type { FakeSource } from '../../dashboard/src/fake-source.ts'
import { boundWarnings, createFleetStore } from '../../dashboard/src/store.ts'
import type { FleetStore } from '../../dashboard/src/store.ts'
import { MAX_WARNING_CHARS, MAX_WARNINGS } from '../../dashboard/src/source.ts'

function withStore (source: FakeSource, fn: (store: FleetStore) => void): void {
  createRoot(dispose => {
    try { fn(createFleetStore(source, { tickMs: 60_000 })) } finally { dispose(); source.stop() }
  })
}

const MISMATCH = "node …a1b2c3 disseminates per cell, this tab per fleet: they do not see each other's replicas; start every node and client of a fleet with the same --dissemination"

describe('dashboard warnings', () => {
  it('appear when the source reports them, beside the fleet, and go away when cleared', () => {
    const source = createFakeSource({ tickMs: 0 })
    withStore(source, store => {
      expect(store.warnings()).toEqual([])
      const nodes = store.nodes().length
      expect(nodes).toBeGreaterThan(0)
      source.setWarnings([MISMATCH])
      expect(store.warnings()).toEqual([MISMATCH])
      // A warning, not an error: the status and the fleet stay as they are.
      expect(store.status()).toBe('live')
      expect(store.nodes()).toHaveLength(nodes)
      source.setWarnings([])
      expect(store.warnings()).toEqual([])
    })
  })

  it('stop following the source when disposed', () => {
    const source = createFakeSource({ tickMs: 0 })
    let store: FleetStore | undefined
    withStore(source, s => { store = s })
    source.setWarnings([MISMATCH])
    expect(store!.warnings()).toEqual([])
  })

  it('are bounded: strings only, at most MAX_WARNINGS, each cut to MAX_WARNING_CHARS', () => {
    expect(boundWarnings(undefined)).toEqual([])
    expect(boundWarnings(['a', '', 3, null, 'b'])).toEqual(['a', 'b'])
    const many = boundWarnings(Array.from({ length: 100 }, (_, i) => `w${i}`))
    expect(many).toEqual(Array.from({ length: MAX_WARNINGS }, (_, i) => `w${i}`))
    const [long] = boundWarnings(['x'.repeat(10_000)])
    expect(long).toHaveLength(MAX_WARNING_CHARS)
    expect(long.endsWith('…')).toBe(true)
  })
})
