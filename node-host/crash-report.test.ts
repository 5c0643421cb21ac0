// What `cell publish` / `cell status` read of a release's crashes from the fleet view (issue 8 §4).
// New with the exit report: on the old code there was nothing to read (the reason stayed on the
// hosting node's stderr), so these fail there at import.
import { describe, expect, it } from 'vitest'
import { makeInstanceRecord, makeNodeRecord } from '../core/fleet/testing.ts'
import type { FleetView } from '../core/fleet/index.ts'
import { haltsOf, grantedHalt, runsInstead, crashReports, describeCrashes } from './crash-report.ts'
import type { HostGrantCheck } from '../core/mesh/index.ts'

const A = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'
const B = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('crash reports from the fleet view', () => {
  const crashed = (id: string, node: string, endedMs: number, line: string) => makeInstanceRecord(node, { instanceId: id, cell: 'billing', digest: 'd1', state: 'crashed', endedMs, exitReason: 'exited with code 1', stderrTail: ['at boot', line] })
  const instances = [
    crashed('a', A, 10, 'Error: DATABASE_URL is not set'),
    crashed('b', A, 30, 'Error: DATABASE_URL is not set'),
    crashed('c', B, 20, 'Error: port in use'),
    makeInstanceRecord(B, { instanceId: 'd', cell: 'billing', digest: 'd1', state: 'ready' }),
    makeInstanceRecord(B, { instanceId: 'e', cell: 'billing', digest: 'd0', state: 'crashed', endedMs: 40 })
  ]
  const view = { instances: () => instances, nodes: () => [] } as unknown as FleetView

  it('lists crashed replicas of the digest newest first and names each distinct reason once', () => {
    expect(crashReports(view, 'billing', 'd1').map(r => r.instanceId)).toEqual(['b', 'c', 'a'])
    expect(describeCrashes(crashReports(view, 'billing', 'd1'))).toEqual([
      `1.2.3 crashed on …${A.slice(-6)}: exited with code 1: Error: DATABASE_URL is not set`,
      `1.2.3 crashed on …${B.slice(-6)}: exited with code 1: Error: port in use`
    ])
    // A crash without a report says nothing rather than an empty line.
    expect(describeCrashes(crashReports(view, 'billing', 'd0'))).toEqual([])
  })

  it('lists halts of the digest from node records, crash-looping marks first; one counts only from a host the authority granted the cell', async () => {
    const halt = { cell: 'billing', version: '1.0.0', digest: 'd1', atMs: 5 }
    const view = (nodes: unknown[]): FleetView => ({ nodes: () => nodes }) as unknown as FleetView
    const nodes = [makeNodeRecord(A, { halts: [{ ...halt, cell: 'ledger', reason: 'crash-looping: 3 crashes' }] })]
    expect(haltsOf(view(nodes), 'billing', 'd1'), 'another cell\'s halt of the same digest').toEqual([])
    nodes.push(makeNodeRecord(A, { halts: [{ ...halt, reason: '3 crashes or failed health checks' }] }))
    nodes.push(makeNodeRecord(B, { halts: [{ ...halt, reason: 'crash-looping: 3 crashes' }] }))
    expect(haltsOf(view(nodes), 'billing', 'd1').map(h => [h.nodeId, h.reason])).toEqual([[B, 'crash-looping: 3 crashes'], [A, '3 crashes or failed health checks']])
    expect(haltsOf(view(nodes), 'billing', 'd2')).toEqual([])
    expect(haltsOf(view(nodes), 'billing', 'd1', new Set([B])).map(h => h.nodeId)).toEqual([A])

    // Only A holds the authority's host grant for billing: B's mark is skipped (and remembered), A's halt counts.
    const asked: string[] = []
    const hostGrant: HostGrantCheck = async (node, authority, cell) => { asked.push(`${node.nodeId}|${authority}|${cell ?? '*'}`); return node.nodeId === A && authority === 'auth' && cell === 'billing' }
    const skip = new Set<string>()
    expect(await grantedHalt(view(nodes), hostGrant, 'auth', 'billing', 'd1', skip)).toMatchObject({ nodeId: A, reason: '3 crashes or failed health checks' })
    expect([...skip]).toEqual([B])
    expect(asked).toEqual([`${B}|auth|billing`, `${A}|auth|billing`])
    // Another authority's halt of the same name counts from nobody.
    expect(await grantedHalt(view(nodes), hostGrant, 'other', 'billing', 'd1')).toBeUndefined()
  })

  it('says what runs instead of a halted artifact, telling a version published again as another artifact by its digest', () => {
    const halted = { version: '0.4.0', digest: 'bad'.padEnd(64, '0') }
    const good = 'a1b2c3'.padEnd(64, 'f')
    expect(runsInstead([], halted)).toBe('no replica of another release is ready yet')
    expect(runsInstead([{ version: '0.4.0', digest: halted.digest }], halted)).toBe('no replica of another release is ready yet')
    expect(runsInstead([{ version: '0.3.0', digest: good }, { version: '0.3.0', digest: good }], halted)).toBe('the fleet runs 0.3.0 (2 ready) instead')
    expect(runsInstead([{ version: '0.4.0', digest: good }, { version: '0.3.0', digest: 'c'.repeat(64) }], halted))
      .toBe('the fleet runs 0.4.0 (another artifact, sha256 a1b2c3ffffff…; 1 ready), 0.3.0 (1 ready) instead')
  })
})
