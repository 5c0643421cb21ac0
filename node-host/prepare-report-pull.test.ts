// The per-cell prepare report (prepare-report.ts): node records pulled from the nodes, bounded in
// flight, each pull with its own deadline, rounds until the report settles or its deadline passes,
// unreachable nodes named. A fake pull here; test/integration/per-cell-prepare-report.test.ts runs
// the real one (fleet-sync over libp2p) on a real per-cell fleet.
import { describe, it, expect } from 'vitest'
import type { AbortOptions } from '@libp2p/interface'
import type { NodeRecord, NodePrepared } from '../core/fleet/index.ts'
import { makeNodeRecord } from '../core/fleet/testing.ts'
import { formatPrepareReport, pullNodeRecords, waitForPulledPrepareReport } from './prepare-report.ts'
import { trustRoles } from './autonomic-loop.ts'

const A = 'aa'.repeat(32)
const digest = 'd1'.repeat(32)
const entry = (state: NodePrepared['state']): NodePrepared => ({ cell: 'billing', version: '1.0.0', digest, state })

/** Resolves when `signal` aborts (a pull that never answers). */
const hang = async (signal: AbortSignal | undefined): Promise<void> => {
  await new Promise<void>((_resolve, reject) => { signal?.addEventListener('abort', () => { reject(signal.reason) }, { once: true }) })
}

describe('pullNodeRecords', () => {
  it('runs at most `inFlight` pulls at once, each once, and names the failures', async () => {
    let inFlight = 0
    let most = 0
    const pulled: string[] = []
    const ids = Array.from({ length: 40 }, (_, i) => `node-${i}`)
    const failed = await pullNodeRecords([...ids, 'node-0'], async (id) => {
      inFlight++
      most = Math.max(most, inFlight)
      await new Promise(resolve => setImmediate(resolve))
      inFlight--
      pulled.push(id)
      if (id === 'node-7') throw new Error('connection refused')
    })
    expect(most).toBe(16)
    expect(pulled.sort()).toEqual([...ids].sort())
    expect([...failed]).toEqual([['node-7', 'Error: connection refused']])
  })

  it('a pull past its own deadline fails as "no answer"; one cut short by the caller\'s signal is not a failure', async () => {
    const failed = await pullNodeRecords(['slow', 'fine'], async (id, options: AbortOptions) => { if (id === 'slow') await hang(options.signal) }, { pullMs: 50 })
    expect([...failed]).toEqual([['slow', 'no answer within 50 ms']])
    const caller = new AbortController()
    setTimeout(() => { caller.abort() }, 20)
    const cut = await pullNodeRecords(['a', 'b'], async (_id, options) => { await hang(options.signal) }, { pullMs: 5_000, signal: caller.signal })
    expect(cut.size).toBe(0)
  })
})

describe('waitForPulledPrepareReport', () => {
  const roles = ['full', ...trustRoles([A])]

  it('pulls only the unsettled nodes, round after round, until every node prepared or failed', async () => {
    const records = new Map<string, NodeRecord>([
      ['n1', makeNodeRecord('n1', { roles, prepared: [entry('prepared')] })],
      ['n2', makeNodeRecord('n2', { roles })],
      ['n3', makeNodeRecord('n3', { roles, prepared: [entry('preparing')] })]
    ])
    const pulls: string[] = []
    const view = { nodes: () => [...records.values()] }
    const report = await waitForPulledPrepareReport(view, async (id) => {
      pulls.push(id)
      const times = pulls.filter(x => x === id).length
      // n2 reports preparing on its first pull and prepared on its second; n3 fails on its second.
      if (id === 'n2') records.set(id, makeNodeRecord(id, { roles, prepared: [entry(times === 1 ? 'preparing' : 'prepared')] }))
      if (id === 'n3' && times >= 2) records.set(id, makeNodeRecord(id, { roles, prepared: [{ ...entry('failed'), reason: 'DigestMismatchError: bad bytes' }] }))
    }, 'billing', digest, { timeoutMs: 10_000, authority: A, roundPauseMs: 10, inFlight: 1 })
    expect(report.map(s => s.state)).toEqual(['prepared', 'prepared', 'failed'])
    // Two rounds of the unsettled nodes; n1 was settled from the start and never pulled.
    expect(pulls).toEqual(['n2', 'n3', 'n2', 'n3'])
  })

  it('a node whose pull fails is unreachable by name (not "has not reported it"); the report returns at its deadline', async () => {
    const records = [makeNodeRecord('12D3KooWAGood1', { roles, prepared: [entry('prepared')] }), makeNodeRecord('12D3KooWBGone2', { roles }), makeNodeRecord('12D3KooWCSlow3', { roles, prepared: [entry('preparing')] })]
    let pulls = 0
    const started = Date.now()
    const report = await waitForPulledPrepareReport({ nodes: () => records }, async (id) => {
      pulls++
      if (id === '12D3KooWBGone2') throw Object.assign(new Error('all dials failed'), { name: 'DialError' })
      if (id === '12D3KooWCSlow3') throw new Error('stream reset')
    }, 'billing', digest, { timeoutMs: 300, authority: A, roundPauseMs: 50 })
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(report.map(s => s.state)).toEqual(['prepared', 'unreachable', 'unreachable'])
    expect(report[1].reason).toBe('DialError: all dials failed')
    expect(report[2].reason).toBe('Error: stream reset (its last record said: still preparing)')
    // Several rounds, each pulling the two unsettled nodes only.
    expect(pulls).toBeGreaterThanOrEqual(4)
    expect(pulls % 2).toBe(0)
    const text = formatPrepareReport(report)
    expect(text).toMatch(/^prepared on 1 of 3 nodes\n/)
    expect(text).toContain('node …BGone2 is unreachable: its record could not be pulled from it (DialError: all dials failed)')
    expect(text).not.toContain('has not reported it')
  })

  it('a node reachable again is no longer unreachable; timeoutMs 0 pulls nothing; the caller\'s abort throws', async () => {
    const records = new Map([['n1', makeNodeRecord('n1', { roles })]])
    let fails = true
    const report = await waitForPulledPrepareReport({ nodes: () => [...records.values()] }, async (id) => {
      if (fails) { fails = false; throw new Error('refused') }
      records.set(id, makeNodeRecord(id, { roles, prepared: [entry('prepared')] }))
    }, 'billing', digest, { timeoutMs: 5_000, authority: A, roundPauseMs: 10 })
    expect(report).toEqual([{ nodeId: 'n1', state: 'prepared' }])

    let called = 0
    const none = await waitForPulledPrepareReport({ nodes: () => [makeNodeRecord('n2', { roles })] }, async () => { called++ }, 'billing', digest, { timeoutMs: 0, authority: A })
    expect(none.map(s => s.state)).toEqual(['unreported'])
    expect(called).toBe(0)

    const caller = new AbortController()
    const waiting = waitForPulledPrepareReport({ nodes: () => [makeNodeRecord('n3', { roles })] }, async (_id, options) => { await hang(options.signal) }, 'billing', digest, { timeoutMs: 10_000, authority: A, signal: caller.signal })
    setTimeout(() => { caller.abort(new Error('operator interrupt')) }, 20)
    await expect(waiting).rejects.toThrow('operator interrupt')
  })
})
