// Per-cell dissemination: where a node pulls a cell's records from (a follow's first pull, a
// caller's sample). Only a follower of the cell holds its instances, so hosts come first.
import { describe, it, expect } from 'vitest'
import { cellSource } from './mesh.ts'

const peer = (id: string): { toString: () => string } => ({ toString: () => id })

function world (hosts: string[], connected: string[], full: string[]): Parameters<typeof cellSource> {
  const view = { hostsOf: () => hosts, node: (id: string) => full.includes(id) ? { roles: ['full'] } : undefined }
  const libp2p = { getPeers: () => connected.map(peer), peerId: peer('self') }
  return [view as never, libp2p as never, { next: () => 0.99, bytes: (n: number) => new Uint8Array(n) }, 'billing']
}

describe('cellSource', () => {
  it('takes a connected host first, else any host, else a connected full node, never itself', () => {
    expect(cellSource(...world(['h1', 'h2', 'self'], ['f1', 'h2'], ['f1', 'h1', 'h2']))).toBe('h2')
    expect(cellSource(...world(['h1', 'self'], ['f1'], ['f1', 'h1']))).toBe('h1')
    expect(cellSource(...world([], ['c1', 'f1'], ['f1']))).toBe('f1')
    expect(cellSource(...world(['self'], ['c1'], []))).toBeUndefined()
  })
})
