// What nodes say about a release (prepared-releases.ts) and how publish/rollback print it
// (prepare-report.ts). Before this change node records had no `prepared` list and publish printed
// only "ready replicas N", so none of these functions existed (the imports fail on the old code).
import { describe, it, expect } from 'vitest'
import { preparedReleases, shortReason, FAILED_AFTER_ATTEMPTS } from './prepared-releases.ts'
import { prepareReport, reportSettled, formatPrepareReport } from './prepare-report.ts'
import { LIMITS, type NodeRecord, type ReleaseRecord } from '../core/fleet/index.ts'
import { makeNodeRecord } from '../core/fleet/testing.ts'
import { trustRoles } from './autonomic-loop.ts'

const A = 'aa'.repeat(32)
const B = 'bb'.repeat(32)
const rel = (cell: string, version: string, digest: string, seq: number, authority = A): ReleaseRecord => ({ cell, version, digest, seq, authority, signed: new Uint8Array() })

describe('prepared releases in the node record', () => {
  it('reports the newest trusted releases, prepared, preparing with the last error, or failed after a few attempts', () => {
    const releases = new Map([['billing', rel('billing', '1.1.0', 'd1'.repeat(32), 3)], ['ledger', rel('ledger', '2.0.0', 'd2'.repeat(32), 2)], ['evil', rel('evil', '1.0.0', 'd3'.repeat(32), 9, B)]])
    const desired = new Map([['billing', rel('billing', '1.0.0', 'd0'.repeat(32), 4)]])
    const failures = new Map([['d2'.repeat(32), { error: 'ArtifactNotFoundError: no provider', failures: 1 }], ['d0'.repeat(32), { error: 'DigestMismatchError: bad\nbytes', failures: FAILED_AFTER_ATTEMPTS }]])
    const out = preparedReleases({
      view: { cells: () => [...releases.keys()], release: (c) => releases.get(c), desired: (c) => desired.get(c) },
      trusted: new Set([A]),
      isPrepared: (_cell, digest) => digest === 'd1'.repeat(32),
      failure: (digest) => failures.get(digest)
    })
    expect(out).toEqual([
      { cell: 'billing', version: '1.0.0', digest: 'd0'.repeat(32), state: 'failed', reason: '3 attempts failed, last: DigestMismatchError: bad bytes' },
      { cell: 'billing', version: '1.1.0', digest: 'd1'.repeat(32), state: 'prepared' },
      { cell: 'ledger', version: '2.0.0', digest: 'd2'.repeat(32), state: 'preparing', reason: '1 attempt failed, last: ArtifactNotFoundError: no provider' }
    ])
    expect(shortReason('x'.repeat(500))).toHaveLength(LIMITS.preparedReasonChars)
  })

  it('reports per node and settles only when every trusting node prepared or failed', () => {
    const digest = 'd1'.repeat(32)
    const roles = ['full', ...trustRoles([A])]
    const n = (id: string, over: Partial<NodeRecord>): NodeRecord => makeNodeRecord(id, { roles, ...over })
    const nodes = [
      n('12D3KooWNodeOne1', { prepared: [{ cell: 'billing', version: '1.1.0', digest, state: 'prepared' }] }),
      n('12D3KooWNodeTwo2', { prepared: [{ cell: 'billing', version: '1.1.0', digest, state: 'failed', reason: 'ArtifactNotFoundError: no provider' }] }),
      n('12D3KooWNodeSix3', {}),
      n('12D3KooWNodeTen4', { roles: ['full', ...trustRoles([B])] })
    ]
    const report = prepareReport({ nodes: () => nodes }, 'billing', digest, A)
    expect(report.map(r => r.state)).toEqual(['prepared', 'unreported', 'untrusted', 'failed']) // sorted by node id
    expect(reportSettled(report)).toBe(false)
    expect(reportSettled(report.filter(r => r.state !== 'unreported'))).toBe(true)
    const text = formatPrepareReport(report)
    expect(text).toMatch(/^prepared on 1 of 4 nodes\n/)
    expect(text).toContain('node …deTwo2 not prepared: ArtifactNotFoundError: no provider')
    expect(text).toContain('node …deSix3 has not reported it')
    expect(text).toContain('node …deTen4 does not trust')
  })
})
