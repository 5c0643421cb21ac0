// What the day-2 commands print, from fixed fleet pictures: `cell status` says why (a halt and the
// fallback, a rollback's desired record, a rollout, a retire), `cell top` draws without escape codes
// off a terminal, `cell logs` colours each replica the same way every time and never red.
import { describe, it, expect } from 'vitest'
import type { InstanceRecord, NodeRecord, ReleaseRecord, DesiredVersionRecord, RetireRecord } from '../../core/fleet/index.ts'
import { makeInstanceRecord, makeNodeRecord } from '../../core/fleet/testing.ts'
import { cellPicture, fleetPicture, type PictureView } from './fleet-picture.ts'
import { claimRiskLines, describeNode, headline, mismatchLines, policyLines, storageLines } from './status.ts'
import { renderTop } from './top.ts'
import { logPrinter } from './logs.ts'
import { colourOf, useColour, parseDurationMs } from './operator-session.ts'
import { statusReport, type NodeStatusReport } from '../introspect/status-protocol.ts'

const A = 'a'.repeat(64)
const D1 = '11'.repeat(32)
const D2 = '22'.repeat(32)

interface Fleet { nodes: NodeRecord[], instances: InstanceRecord[], releases: ReleaseRecord[], desired?: DesiredVersionRecord, retired?: RetireRecord }

function view (f: Fleet): PictureView {
  return {
    nodes: () => f.nodes,
    instances: (cell?: string) => f.instances.filter(i => cell === undefined || i.cell === cell),
    claimants: (cell: string) => [...new Set(f.releases.filter(r => r.cell === cell).map(r => r.authority))],
    releaseOf: (authority: string, cell: string) => f.releases.filter(r => r.cell === cell && r.authority === authority).sort((a, b) => b.seq - a.seq)[0],
    desired: () => f.desired,
    retired: () => f.retired,
    cells: () => [...new Set([...f.releases.map(r => r.cell), ...f.instances.map(i => i.cell)])].sort()
  }
}

const release = (version: string, digest: string, seq: number): ReleaseRecord => ({ cell: 'billing', version, digest, seq, authority: A, signed: new Uint8Array(0) })
const replica = (id: string, node: string, version: string, digest: string, state: InstanceRecord['state'] = 'ready'): InstanceRecord =>
  makeInstanceRecord(node, { instanceId: `billing-${version}-${id}`, version, digest, state })

/** Two nodes' reports: both prepared 1.0.0 and 1.1.0, aim for 2 replicas, min 2 max 4, canary weight 30 (or none: an older node). */
function reports (nodes: string[], options: { canaryWeight?: number } = { canaryWeight: 30 }): NodeStatusReport[] {
  const policy = { minReplicas: 2, maxReplicas: 4, update: 'live', ...(options.canaryWeight !== undefined ? { canaryWeight: options.canaryWeight } : {}) }
  return nodes.map(node => ({
    node,
    counters: {},
    cells: [{ cell: 'billing', reasons: [], prepared: [{ version: '1.0.0', digest: D1, seq: 1, authority: A }, { version: '1.1.0', digest: D2, seq: 2, authority: A }], unprepared: [], halted: [], replicas: [], desiredReplicas: 2, policy }]
  }))
}

describe('cell status headline', () => {
  const n1 = 'node-one-000001'
  const n2 = 'node-two-000002'

  it('healthy: the count and the rule that chose the target', () => {
    const f: Fleet = { nodes: [makeNodeRecord(n1), makeNodeRecord(n2)], instances: [replica('aa', n1, '1.1.0', D2), replica('bb', n2, '1.1.0', D2)], releases: [release('1.0.0', D1, 1), release('1.1.0', D2, 2)] }
    const c = cellPicture(view(f), 'billing', reports([n1, n2]))
    expect(c.releases.map(r => r.version)).toEqual(['1.1.0', '1.0.0'])
    expect(headline(c)).toBe('billing: healthy — 2 of 2 replica(s) ready (1.1.0 ×2), target 1.1.0 (newest release)')
  })

  it('a crash-looping release: says which, where and why, and what runs instead', () => {
    const halts = [{ cell: 'billing', version: '1.1.0', digest: D2, atMs: 1, reason: 'crash-looping: 5 crashes in 60 s: Error: DATABASE_URL is not set' }]
    const f: Fleet = {
      nodes: [makeNodeRecord(n1, { halts }), makeNodeRecord(n2)],
      instances: [replica('aa', n1, '1.0.0', D1), replica('bb', n2, '1.0.0', D1), replica('cc', n2, '1.1.0', D2, 'crashed')],
      releases: [release('1.1.0', D2, 2)]
    }
    const c = cellPicture(view(f), 'billing', reports([n1, n2]))
    expect(c.target?.version).toBe('1.0.0')
    expect(c.targetReason).toBe('target 1.0.0: 1.1.0 is halted, back to the previous release')
    expect(headline(c)).toBe('billing: running 1.0.0 because 1.1.0 is crash-looping (node …000001: crash-looping: 5 crashes in 60 s: Error: DATABASE_URL is not set); 2 of 2 replica(s) ready (1.0.0 ×2)')
  })

  it('halts of releases the fleet moved past are not why it runs what it runs', () => {
    // 1.1.0 crashed and was halted (the fleet fell back to 1.0.0), 1.2.0 was published and runs.
    const D3 = '33'.repeat(32)
    const halts = [{ cell: 'billing', version: '1.1.0', digest: D2, atMs: 1, reason: '3 crashes or failed health checks' }]
    const later: Fleet = {
      nodes: [makeNodeRecord(n1, { halts }), makeNodeRecord(n2)],
      instances: [replica('aa', n1, '1.2.0', D3), replica('bb', n2, '1.2.0', D3)],
      releases: [release('1.0.0', D1, 1), release('1.1.0', D2, 2), release('1.2.0', D3, 4)]
    }
    const c = cellPicture(view(later), 'billing', reports([n1, n2]))
    expect(c.haltedChoice).toBeUndefined()
    expect(headline(c)).toBe('billing: healthy — 2 of 2 replica(s) ready (1.2.0 ×2), target 1.2.0 (newest release)')
    // A rollback to 1.0.0 after the halt: the desired record is why, not the halt.
    const back = cellPicture(view({ ...later, instances: [replica('aa', n1, '1.0.0', D1), replica('bb', n2, '1.0.0', D1)], desired: { cell: 'billing', version: '1.0.0', digest: D1, seq: 5, authority: A, signed: new Uint8Array(0) } }), 'billing', reports([n1, n2]))
    expect(headline(back)).toBe('billing: healthy — 2 of 2 replica(s) ready (1.0.0 ×2), target 1.0.0 (desired record seq 5)')
    // The halt of the newest release is why, and is said.
    const fell = cellPicture(view({ ...later, releases: later.releases.slice(0, 2), instances: [replica('aa', n1, '1.0.0', D1), replica('bb', n2, '1.0.0', D1)] }), 'billing', reports([n1, n2]))
    expect(fell.haltedChoice).toBe(D2)
    expect(headline(fell)).toBe('billing: running 1.0.0 because 1.1.0 is halted (node …000001: 3 crashes or failed health checks); 2 of 2 replica(s) ready (1.0.0 ×2)')
    // 1.1.0 published again as another artifact (D3) and halted: the fleet runs the 1.1.0 that ran,
    // and the headline tells the two apart.
    const again = cellPicture(view({
      nodes: [makeNodeRecord(n1, { halts: [{ ...halts[0], digest: D3 }] }), makeNodeRecord(n2)],
      instances: [replica('aa', n1, '1.1.0', D2), replica('bb', n2, '1.1.0', D2)],
      releases: [release('1.0.0', D1, 1), release('1.1.0', D2, 2), release('1.1.0', D3, 4)]
    }), 'billing', reports([n1, n2]))
    expect(again.target?.digest).toBe(D2)
    expect(headline(again)).toBe('billing: running 1.1.0 (sha256 222222222222…) because 1.1.0 (sha256 333333333333…) is halted (node …000001: 3 crashes or failed health checks); 2 of 2 replica(s) ready (1.1.0 ×2)')
  })

  it('a rollback: the desired record wins over the newer release, and the rollout is under way', () => {
    const f: Fleet = {
      nodes: [makeNodeRecord(n1), makeNodeRecord(n2)],
      instances: [replica('aa', n1, '1.1.0', D2), replica('bb', n2, '1.0.0', D1)],
      releases: [release('1.0.0', D1, 1), release('1.1.0', D2, 2)],
      desired: { cell: 'billing', version: '1.0.0', digest: D1, seq: 3, authority: A, signed: new Uint8Array(0) }
    }
    const c = cellPicture(view(f), 'billing', reports([n1, n2]))
    expect(c.rollout).toEqual({ to: '1.0.0', ready: 1, of: 2 })
    expect(headline(c)).toBe('billing: rolling out 1.0.0, 1 of 2 ready — target 1.0.0 (desired record seq 3); 2 of 2 replica(s) ready (1.1.0 ×1, 1.0.0 ×1)')
    // A surge replica ready beside them: more ready than desired is said as such (was "3 of 2").
    const surged = cellPicture(view({ ...f, instances: [...f.instances, replica('cc', n2, '1.0.0', D1)] }), 'billing', reports([n1, n2]))
    expect(headline(surged)).toMatch(/; 3 replica\(s\) ready, 2 desired \(1\.0\.0 ×2, 1\.1\.0 ×1\)$/)
    // Callers split by version, not by target: the newer 1.1.0 is the canary while both answer.
    expect(policyLines(c)).toEqual([
      'policy     min 2, max 4, canary_weight 30 %; the nodes aim for 2 replica(s)',
      "  split    30 % of each caller's calls go to 1.1.0 (the newest release ready), the rest to 1.0.0"
    ])
    // One release ready: no split; a node that reports no canary weight (older) leaves it out.
    const one = cellPicture(view({ ...f, instances: [replica('aa', n1, '1.1.0', D2)] }), 'billing', reports([n1, n2], { canaryWeight: undefined }))
    expect(policyLines(one)).toEqual(['policy     min 2, max 4; the nodes aim for 2 replica(s)'])
  })

  it('retired: says by whom and what brings it back, and no desired count it does not have', () => {
    const f: Fleet = { nodes: [makeNodeRecord(n1)], instances: [], releases: [release('1.0.0', D1, 1)], retired: { cell: 'billing', authority: A, seq: 9, signed: new Uint8Array(0) } }
    const c = cellPicture(view(f), 'billing', [])
    expect(c.rollout).toBeUndefined()
    expect(headline(c)).toBe('billing: retired by aaaaaaaa… (seq 9) — it runs nowhere until a later `cell publish` or `cell rollback`; 0 replica(s) ready')
  })
})

describe('cell status: a mixed fleet', () => {
  const fleetNode = '12D3KooWFleetModeNode00000000000000000000000000aaaaaa'
  const peer = (i: number): string => `12D3KooWPerCellNode000000000000000000000000000${String(i).padStart(6, '0')}`
  it('a node names the peers of the other dissemination mode (at most 8) and what to do; garbage in a report is skipped', () => {
    const source = { nodeId: fleetNode, cells: () => [], claimants: () => [], cell: () => { throw new Error('no cell') }, counters: () => ({}), lastError: () => undefined,
      mismatches: () => Array.from({ length: 20 }, (_, i) => ({ peerId: peer(i), theirs: 'per-cell', sinceMs: 1, reported: true })) }
    const report = statusReport(source, undefined, 'authority')
    expect(report.mismatches).toHaveLength(8)
    expect(report.mismatches?.[0]).toEqual({ peerId: peer(0), theirs: 'per-cell' })
    const quiet = statusReport({ ...source, mismatches: () => [] }, undefined, 'authority')
    expect(quiet.mismatches).toBeUndefined()
    const garbage = { ...quiet, node: 'node-three-000003', mismatches: [{ peerId: 7, theirs: 'per-cell' }, { peerId: peer(1), theirs: 'sideways' }] } as unknown as NodeStatusReport
    expect(mismatchLines([quiet, garbage])).toEqual([])
    expect(mismatchLines([{ ...report, mismatches: report.mismatches!.slice(0, 2) }])).toEqual([
      '  node …aaaaaa is connected to 2 node(s) that disseminate per cell, unlike itself (…000000, …000001): ' +
      'they do not see each other\'s replicas; start every node and client of a fleet with the same --dissemination'
    ])
  })
})

describe('cell top text', () => {
  it('draws nodes and cells, coloured only when asked', () => {
    const n1 = 'node-one-000001'
    const f: Fleet = { nodes: [makeNodeRecord(n1, { startedMs: 0 })], instances: [replica('aa', n1, '1.1.0', D2)], releases: [release('1.1.0', D2, 2)] }
    const p = fleetPicture(view(f), reports([n1]), 3_723_000)
    const plain = renderTop(p)
    expect(plain).toMatch(/^…000001\s+38%\s+4\.0 GiB\/8\.0 GiB 50%\s+6\/8\s+1\s+1h 2m$/m)
    expect(plain).toMatch(/^billing\s+1\.1\.0×1\s+1\/2\s+2-4\s+13%\s+64\.0 MiB\s+120\.5\s+9 ms\s+rollout → 1\.1\.0 1\/2$/m)
    expect(plain).not.toContain('\x1b[')
    expect(renderTop(p, { colour: true })).toContain('\x1b[1m')
  })
})

describe('cell logs text', () => {
  const line = { kind: 'line' as const, ts: Date.UTC(2026, 0, 1), cell: 'billing', version: '1.0.0', replica: 'billing-1.0.0-0a1b2c3d', node: '12D3KooWabcdefXYZ123', stream: 'stderr' as const, msg: 'boom', seq: 7 }

  it('prefixes [cell/replica@node], coloured per replica on a terminal, plain otherwise', () => {
    expect(logPrinter('text', false)(line)).toBe('[billing/1.0.0-0a1b2c3d@…XYZ123] boom')
    expect(logPrinter('text', true)(line)).toBe(`\x1b[${colourOf(line.replica)}m[billing/1.0.0-0a1b2c3d@…XYZ123]\x1b[0m boom`)
    expect(logPrinter('text', false)({ ...line, kind: 'ended', reason: 'node …XYZ123 left the fleet' })).toBe('- [billing/1.0.0-0a1b2c3d@…XYZ123] ended: node …XYZ123 left the fleet')
    expect(logPrinter('text', false)({ ...line, kind: 'started', reason: 'ready' })).toBe('+ [billing/1.0.0-0a1b2c3d@…XYZ123] started (1.0.0)')
  })

  it('json: exactly {ts, cell, version, replica, node, stream, msg}', () => {
    expect(JSON.parse(logPrinter('json', false)(line)!)).toEqual({ ts: '2026-01-01T00:00:00.000Z', cell: 'billing', version: '1.0.0', replica: 'billing-1.0.0-0a1b2c3d', node: '12D3KooWabcdefXYZ123', stream: 'stderr', msg: 'boom' })
  })

  it('colours are stable per replica and never red; none off a terminal or with NO_COLOR', () => {
    const colours = new Set<number>()
    for (let i = 0; i < 500; i++) colours.add(colourOf(`billing-1.0.0-${i.toString(16).padStart(8, '0')}`))
    expect([...colours].some(c => c === 31 || c === 91 || c === 41 || c === 101)).toBe(false)
    expect(colours.size).toBeGreaterThan(5)
    expect(colourOf('billing-1.0.0-0a1b2c3d')).toBe(colourOf('billing-1.0.0-0a1b2c3d'))
    const tty = { isTTY: true } as unknown as NodeJS.WriteStream
    expect(useColour(tty, {})).toBe(true)
    expect(useColour(tty, { NO_COLOR: '1' })).toBe(false)
    expect(useColour({ isTTY: false } as unknown as NodeJS.WriteStream, {})).toBe(false)
  })

  it('durations for --since', () => {
    expect(parseDurationMs('10m')).toBe(600_000)
    expect(parseDurationMs('2h')).toBe(7_200_000)
    expect(parseDurationMs('45')).toBe(45_000)
    expect(() => parseDurationMs('ten minutes')).toThrow(/not a duration/)
  })
})

describe('cell status <cell>: a node\'s errors', () => {
  const nowMs = Date.UTC(2026, 11, 1, 12, 0, 0)
  const cellStatus = (cell: string, lastError?: { atMs: number, message: string }): NodeStatusReport['cells'][number] =>
    ({ cell, reasons: ['target 1.0.0 (newest release)'], prepared: [], unprepared: [], halted: [], replicas: [], ...(lastError !== undefined ? { lastError } : {}) })

  it('shows the cell\'s own last spawn error and the loop\'s tick error, never another cell\'s', () => {
    const report: NodeStatusReport = {
      node: '12D3KooWNodeAAAAAAAA',
      counters: {},
      lastError: { atMs: nowMs - 5_000, message: 'tick: TypeError: boom' },
      cells: [cellStatus('billing', { atMs: nowMs - 58_000, message: 'spawn billing@1.0.0: SandboxError: bwrap failed\nsecond line' })]
    }
    const lines = describeNode(report, 'billing', nowMs).join('\n')
    expect(lines).toContain('last error starting billing 58s ago: spawn billing@1.0.0: SandboxError: bwrap failed')
    expect(lines).not.toContain('second line')
    expect(lines).toContain('last loop error 5s ago: tick: TypeError: boom')
    const quiet = describeNode({ node: '12D3KooWNodeAAAAAAAA', counters: {}, cells: [cellStatus('billing')] }, 'billing', nowMs).join('\n')
    expect(quiet).not.toMatch(/error/)
    // A decline (another node holds the claim) is told as one, not as an error.
    const decline = { atMs: nowMs - 4_000, message: 'spawn ledger@1.0.0: ClaimsHeldError: ledger/0 is held by …2EFRwo, which serves a replica of it after all' }
    const declined = describeNode({ node: '12D3KooWNodeAAAAAAAA', counters: {}, cells: [{ ...cellStatus('ledger'), lastDecline: decline }] }, 'ledger', nowMs).join('\n')
    expect(declined).toContain('declined to start ledger (its claims said no, not a failure) 4s ago: spawn ledger@1.0.0: ClaimsHeldError')
    expect(declined).not.toMatch(/last error/)
    // …and does not hide a real failure before it.
    const both = describeNode({ node: '12D3KooWNodeAAAAAAAA', counters: {}, cells: [{ ...cellStatus('ledger', { atMs: nowMs - 60_000, message: 'spawn ledger@1.0.0: SandboxError: bwrap failed' }), lastDecline: decline }] }, 'ledger', nowMs).join('\n')
    expect(both).toContain('last error starting ledger 1m ago: spawn ledger@1.0.0: SandboxError: bwrap failed')
    expect(both).toContain('declined to start ledger')
  })

  it('names the claims the node owns with their voters, and warns when one more lost voter stops a claim', () => {
    const [a, b, c] = ['12D3KooWVoterAAAAAAAAAAAAAaaaaaa', '12D3KooWVoterBBBBBBBBBBBBBbbbbbb', '12D3KooWVoterCCCCCCCCCCCCCcccccc']
    const owned = (voters: Array<{ peerId: string, live: boolean, goneMs?: number, silent?: boolean }>): NodeStatusReport => ({
      node: a, counters: {}, cells: [{ ...cellStatus('ledger'), claims: [{ claimId: 'ledger/0', epoch: 4, voters }] }]
    })
    const healthy = describeNode(owned([{ peerId: a, live: true }, { peerId: b, live: true }, { peerId: c, live: true }]), 'ledger', nowMs).join('\n')
    expect(healthy).toContain('owns ledger/0 at epoch 4; voters …aaaaaa, …bbbbbb, …cccccc')
    expect(healthy).not.toMatch(/WARNING|not in the fleet/)
    const moved: NodeStatusReport = { node: a, counters: {}, cells: [{ ...cellStatus('ledger'), claims: [{ claimId: 'ledger/0', epoch: 4, gen: 2, voters: [{ peerId: a, live: true }, { peerId: b, live: true }, { peerId: c, live: true }] }] }] }
    expect(describeNode(moved, 'ledger', nowMs).join('\n')).toContain('owns ledger/0 at epoch 4 (generation 2: voters replaced); voters …aaaaaa, …bbbbbb, …cccccc')
    const oneGone = describeNode(owned([{ peerId: a, live: true }, { peerId: b, live: true }, { peerId: c, live: false, goneMs: 3 * 3_600_000 }]), 'ledger', nowMs).join('\n')
    expect(oneGone).toContain('WARNING ledger/0: voter …cccccc (gone 3h) not in the fleet; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops')
    const silent = describeNode(owned([{ peerId: a, live: true }, { peerId: b, live: false, silent: true, goneMs: 120_000 }, { peerId: c, live: true }]), 'ledger', nowMs).join('\n')
    expect(silent).toContain('WARNING ledger/0: voter …bbbbbb (for 2m) in the fleet but not answering its claim rounds; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops')
    const lapsed: NodeStatusReport = { node: a, counters: {}, cells: [{ ...cellStatus('ledger'), claims: [{ claimId: 'ledger/0', epoch: 4, serving: false, voters: [{ peerId: a, live: true }, { peerId: b, live: false }, { peerId: c, live: false }] }] }] }
    expect(describeNode(lapsed, 'ledger', nowMs).join('\n')).toContain('holds ledger/0 at epoch 4 but does not serve it (its lease ran out here); voters')
    // The fleet overview names at-risk and stopped claims only.
    expect(claimRiskLines([owned([{ peerId: a, live: true }, { peerId: b, live: true }, { peerId: c, live: true }])])).toEqual([])
    expect(claimRiskLines([owned([{ peerId: a, live: true }, { peerId: b, live: true }, { peerId: c, live: false, goneMs: 60_000 }])]))
      .toEqual(['  WARNING ledger/0: voter …cccccc (gone 1m) not in the fleet; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops until one returns (the owner replaces a voter gone or silent for cell up --voter-replace-after, 5m by default) (owner …aaaaaa)'])
    expect(claimRiskLines([owned([{ peerId: a, live: true }, { peerId: b, live: false }, { peerId: c, live: false }])])[0]).toMatch(/WARNING ledger\/0: voters …bbbbbb, …cccccc not in the fleet; 1 of its 3 voters left, 2 needed to renew or move it: it cannot renew/)
  })
})

describe('a stateful cell\'s storage in cell status', () => {
  it('names each claim\'s owner and epoch and says when no snapshot would survive the owner', () => {
    expect(storageLines([])).toEqual([])
    expect(storageLines([
      { claimId: 'ledger/0', epoch: 6, ownerNodeId: '12D3KooWPY9ys383ZDw71ThHKQhRoStPYoPBB1cetWiXxW9V4WkD', safeAgeMs: 185_000, safeHolders: 2, newestAgeMs: 5_000, snapshots: 4 },
      { claimId: 'ledger/1', epoch: 1, newestAgeMs: 30_000, snapshots: 1 }
    ])).toEqual([
      '',
      'storage (claims):',
      '  ledger/0         epoch 6     on …9V4WkD  newest safe snapshot 3m 5s ago, held by 2 other node(s)',
      '  ledger/1         epoch 1     no replica serves it  NO SAFE SNAPSHOT yet (newest 30s ago, not held by two other nodes): the claim\'s data lives on its owner alone'
    ])
  })
})
