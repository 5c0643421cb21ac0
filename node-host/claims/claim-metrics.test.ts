import { describe, it, expect } from 'vitest'
import { Registry } from 'prom-client'
import { registerClaimMetrics } from './claim-metrics.ts'
import { ClaimAcceptor, MemoryAcceptorStore } from '../../core/claims/index.ts'
import { openClaimGateForTests } from '../../core/claims/testing.ts'

describe('claim metrics', () => {
  it('exposes the voter, proposer and stream counters', async () => {
    const acceptor = new ClaimAcceptor({ selfId: `12D3KooW${'A'.repeat(44)}`, store: new MemoryAcceptorStore(), clock: { nowMs: () => 0 }, gate: openClaimGateForTests })
    await acceptor.handle(`12D3KooW${'B'.repeat(44)}`, new Uint8Array([9])).catch(() => {})
    const registry = new Registry()
    registerClaimMetrics(registry, { acceptor, serve: { served: 2, malformed: 1, failed: 0 } })
    const text = await registry.metrics()
    expect(text).toContain('cell_claim_voter_requests_total{outcome="malformed"} 1')
    expect(text).toContain('cell_claim_streams_total{outcome="served"} 2')
  })
})
