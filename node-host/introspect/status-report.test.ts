import { describe, expect, it } from 'vitest'
import { readStatusReport, statusReport, type StatusSource, type NodeCellStatus } from './status-protocol.ts'
import type { Json } from './operator-wire.ts'

const cell = (name: string, extra: Partial<NodeCellStatus> = {}): NodeCellStatus => ({ cell: name, reasons: [], prepared: [], unprepared: [], halted: [], replicas: [], ...extra })

describe('status reports', () => {
  it('carry the claims a node holds with at most 5 voters each, and its last decline apart from its last error', () => {
    const voters = Array.from({ length: 7 }, (_, i) => ({ peerId: `v${i}`, live: i !== 2, ...(i === 2 ? { goneMs: 5_000 } : {}) }))
    const source: StatusSource = {
      nodeId: 'n1',
      cells: () => ['ledger'],
      claimants: () => ['auth'],
      counters: () => ({}),
      lastError: () => undefined,
      cell: (c) => cell(c, {
        claims: Array.from({ length: 20 }, (_, i) => ({ claimId: `ledger/${i}`, epoch: 3, serving: true, voters })),
        lastDecline: { atMs: 1, message: 'spawn ledger@1.0.0: ClaimsHeldError: held' },
        lastError: { atMs: 2, message: 'spawn ledger@1.0.0: SandboxError: no' }
      })
    }
    const report = statusReport(source, 'ledger', 'auth')
    expect(report.cells[0].claims).toHaveLength(16)
    expect(report.cells[0].claims![0].voters.map(v => v.peerId)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4'])
    expect(report.cells[0].claims![0].voters[2]).toEqual({ peerId: 'v2', live: false, goneMs: 5_000 })
    expect(report.cells[0].lastDecline?.message).toMatch(/ClaimsHeldError/)
    expect(report.cells[0].lastError?.message).toMatch(/SandboxError/)
    // Through JSON and back, as the CLI reads it.
    const read = readStatusReport(JSON.parse(JSON.stringify({ t: 'status', ...report })) as Json)
    expect(read.cells[0].claims).toHaveLength(16)
  })

  it('read from another node drop claims they cannot read, and refuse what is not a report', () => {
    const frame = (claims: unknown): Json => ({ t: 'status', node: 'n2', counters: {}, cells: [{ ...cell('ledger'), claims }] }) as unknown as Json
    expect(readStatusReport(frame([{ claimId: 'ledger/0', epoch: 1, voters: [{ peerId: 'a', live: true }] }])).cells[0].claims).toHaveLength(1)
    expect(readStatusReport(frame([{ claimId: 'ledger/0', epoch: 1, replaceAfterMs: 300_000, voters: [{ peerId: 'a', live: true }] }])).cells[0].claims![0].replaceAfterMs).toBe(300_000)
    for (const bad of ['x', ...[-1, 1.5, '5m', 2 ** 60].map(replaceAfterMs => [{ claimId: 'ledger/0', epoch: 1, replaceAfterMs, voters: [{ peerId: 'a', live: true }] }]), [{ claimId: 'ledger/0', epoch: 1, voters: 'a,b' }], [{ claimId: 'ledger/0', epoch: 1, voters: [{ peerId: 'a', live: 'yes' }] }], [{ claimId: 'ledger/0', epoch: 1, voters: [{ peerId: 'a', live: false, silent: 'yes' }] }], [null], [{ claimId: 'ledger/0', epoch: 1, voters: Array.from({ length: 6 }, () => ({ peerId: 'a', live: true })) }]]) {
      const read = readStatusReport(frame(bad))
      expect(read.cells[0].claims).toBeUndefined()
      expect(read.cells[0].cell).toBe('ledger')
    }
    expect(() => readStatusReport({ t: 'status', node: 'n2', cells: 'none' } as unknown as Json)).toThrow(/not a status report/)
    expect(() => readStatusReport({ t: 'status', node: 'n2', cells: [null] } as unknown as Json)).toThrow(/not an object/)
  })
})
