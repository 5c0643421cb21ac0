// The target rule (core/biology/target.ts) on its own: which release a cell runs when releases,
// desired records and halts disagree, and the halts a fleet's node records carry for one cell.
import { describe, expect, it } from 'vitest'
import { haltRecordsOf, resolveTarget } from './target.ts'
import { release } from './testing.ts'
import type { HaltRecord } from './types.ts'

const v1 = release('1.0.0', 1)
const v2 = release('2.0.0', 2)
const v2again = release('2.0.0', 3, { digest: 'sha256:' + 'c'.repeat(64) })
const halt = (r: { version: string, digest: string }, nodeId = 'n1', cell = 'billing'): HaltRecord =>
  ({ cell, version: r.version, digest: r.digest, atMs: 5, reason: 'crashed 3 times', nodeId })

describe('resolveTarget', () => {
  it('takes the newest release, and the previous one when the newest is halted', () => {
    expect(resolveTarget({ cell: 'billing', releases: [v1, v2], halts: [] }).target?.version).toBe('2.0.0')
    const r = resolveTarget({ cell: 'billing', releases: [v1, v2], halts: [halt(v2)] })
    expect(r.target?.version).toBe('1.0.0')
    expect(r.halted?.digest).toBe(v2.digest)
    expect(r.reason).toMatch(/2\.0\.0 is halted, back to the previous release/)
  })

  it('falls back to the same version published earlier as another artifact, naming both by digest', () => {
    const r = resolveTarget({ cell: 'billing', releases: [v1, v2, v2again], halts: [halt(v2again)] })
    expect(r.target?.digest).toBe(v2.digest)
    expect(r.reason).toContain(v2again.digest.slice(0, 12))
    expect(r.reason).toContain(v2.digest.slice(0, 12))
  })

  it('has no target when every release is halted, and ignores halts of other cells', () => {
    const r = resolveTarget({ cell: 'billing', releases: [v1], halts: [halt(v1)] })
    expect(r.target).toBeUndefined()
    expect(r.reason).toMatch(/no earlier release/)
    expect(resolveTarget({ cell: 'billing', releases: [v1], halts: [halt(v1, 'n1', 'search')] }).target?.digest).toBe(v1.digest)
  })
})

describe('haltRecordsOf', () => {
  it('lists the halts of one cell from every node, each marked with its node', () => {
    const { nodeId: _a, ...h2 } = halt(v2)
    const { nodeId: _b, ...h1 } = halt(v1, 'n2', 'search')
    const nodes = [{ nodeId: 'n1', halts: [h2, h1] }, { nodeId: 'n2', halts: [h2] }, { nodeId: 'n3' }]
    expect(haltRecordsOf(nodes, 'billing')).toEqual([{ ...h2, nodeId: 'n1' }, { ...h2, nodeId: 'n2' }])
    expect(haltRecordsOf(nodes, 'search')).toEqual([{ ...h1, nodeId: 'n1' }])
    expect(haltRecordsOf(nodes, 'none')).toEqual([])
  })
})
