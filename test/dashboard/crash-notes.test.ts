// The dashboard's crash notes and halt marks (issue 8 §4), as pure view-model functions. New: on the
// old code the card showed only a crashed count, so these fail there at import.
import { describe, expect, it } from 'vitest'
import { makeInstanceRecord, makeNodeRecord } from '../../core/fleet/testing.ts'
import { crashNotes, haltNote } from '../../dashboard/src/model.ts'

const A = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'

describe('crash notes on a cell card', () => {
  it('shows each distinct crash reason once, newest first, bounded', () => {
    const crash = (id: string, endedMs: number, line: string) => makeInstanceRecord(A, { instanceId: id, state: 'crashed', endedMs, exitReason: 'exited with code 1', stderrTail: [line] })
    const notes = crashNotes([crash('a', 1, 'Error: one'), crash('b', 3, 'Error: one'), crash('c', 2, 'Error: two'), makeInstanceRecord(A, { instanceId: 'r' })])
    expect(notes.map(n => n.stderr)).toEqual([['Error: one'], ['Error: two']])
    expect(crashNotes(Array.from({ length: 10 }, (_, i) => crash(`x${i}`, i, `Error: ${i}`)))).toHaveLength(3)
    expect(crashNotes([makeInstanceRecord(A, { instanceId: 'z', state: 'crashed' })])).toEqual([{ version: '1.2.3', nodeId: A, reason: 'crashed', stderr: [] }])
  })

  it('marks the newest halt of the cell, crash-looping when its reason says so', () => {
    const halt = { cell: 'billing', version: '1.0.0', digest: 'd1', atMs: 5, reason: '3 crashes' }
    expect(haltNote([makeNodeRecord(A, { halts: [halt] })], 'billing')).toMatchObject({ crashLooping: false, digest: 'd1' })
    const looping = { ...halt, atMs: 9, reason: 'crash-looping: 3 crashes' }
    expect(haltNote([makeNodeRecord(A, { halts: [halt, looping] })], 'billing')).toMatchObject({ crashLooping: true, nodeId: A })
    expect(haltNote([makeNodeRecord(A, { halts: [halt] })], 'ledger')).toBeUndefined()
  })
})
