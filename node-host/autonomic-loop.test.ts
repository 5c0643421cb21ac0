import { describe, expect, it } from 'vitest'
import { initialCellState, type BiologyView, type CellState, type Policy } from '../core/biology/index.ts'
import type { Manifest } from '../core/manifest/index.ts'
import { policyRelease } from './autonomic-loop.ts'
import type { PreparedRelease } from './release-store.ts'

const CELL = 'versioned'
const AUTHORITY = 'a'.repeat(64)

function policy (minReplicas: number): Policy {
  return { minReplicas, maxReplicas: 10, cpuTarget: 60, memoryTarget: 80, update: 'live', maxSurge: 50, healthGraceMs: 2000, canaryWeight: 10 }
}

function prepared (version: string, digest: string, seq: number, minReplicas: number): PreparedRelease {
  return { cell: CELL, version, digest, seq, authority: AUTHORITY, codePath: `/code/${digest}.mjs`, manifest: { biology: policy(minReplicas) } as unknown as Manifest }
}

const v1 = prepared('1.0.0', '1'.repeat(64), 100, 2)
const v2 = prepared('1.1.0', '2'.repeat(64), 200, 5)

function view (desired: BiologyView['desired'] = []): BiologyView {
  return {
    nodes: [],
    instances: [],
    releases: [v1, v2].map(r => ({ cell: CELL, version: r.version, digest: r.digest, seq: r.seq, authority: AUTHORITY })),
    desired,
    events: [],
    halts: []
  }
}

describe('policyRelease', () => {
  it('is the newest release without a desired record', () => {
    expect(policyRelease(CELL, [v1, v2], view(), initialCellState(CELL)).version).toBe('1.1.0')
  })

  it('follows a rollback: the desired record names 1.0.0, so 1.0.0\'s [cell.biology] governs', () => {
    const chosen = policyRelease(CELL, [v1, v2], view([{ cell: CELL, version: '1.0.0', digest: v1.digest, seq: 300 }]), initialCellState(CELL))
    expect(chosen.version).toBe('1.0.0')
    expect(chosen.manifest.biology.minReplicas).toBe(2)
  })

  it('ignores a replayed desired record the node already saw superseded', () => {
    const state: CellState = { ...initialCellState(CELL), desired: { cell: CELL, version: '1.1.0', digest: v2.digest, seq: 400 } }
    expect(policyRelease(CELL, [v1, v2], view([{ cell: CELL, version: '1.0.0', digest: v1.digest, seq: 300 }]), state).version).toBe('1.1.0')
  })

  it('is the release before a halted one', () => {
    const state: CellState = { ...initialCellState(CELL), halts: [{ cell: CELL, version: '1.1.0', digest: v2.digest, atMs: 1, reason: 'crashing' }] }
    expect(policyRelease(CELL, [v1, v2], view(), state).version).toBe('1.0.0')
  })

  it('falls back to the newest prepared release while the target\'s artifact is not here yet', () => {
    expect(policyRelease(CELL, [v1], view(), initialCellState(CELL)).version).toBe('1.0.0')
  })
})
