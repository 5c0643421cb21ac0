// Per-cell dissemination (docs/biology.md "Scale"): which nodes follow a cell in detail. A cell's
// followers are the nodes hosting one of its replicas and its standby candidates: the `count`
// eligible nodes without a replica that rank highest by a rendezvous hash of (cell, node id).
// Every node computes the same ranking from the member records it holds, so they agree up to view
// lag; a candidate that spawns becomes a host and the next-ranked node becomes a candidate.
import { isEligible } from './replication.ts'
import type { BiologyParams, NodeRecord } from './types.ts'

/** Standby candidates per cell (the simulator's PER_CELL.candidates). */
export const STANDBY_CANDIDATES = 8

/** FNV-1a of cell and node id with a final mix: every node ranks a cell's candidates the same way. */
export function rendezvous (cell: string, nodeId: string): number {
  let h = 0x811c9dc5
  const text = `${cell}\0${nodeId}`
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  h ^= h >>> 13
  h = Math.imul(h, 0x5bd1e995) >>> 0
  return (h ^ (h >>> 15)) >>> 0
}

/**
 * The ids of `cell`'s standby candidates among `nodes`: eligible (free slot, headroom, a host grant
 * of the cell's authority), not hosting it, highest rendezvous rank first (ties by id).
 */
export function standbyCandidates (cell: string, nodes: readonly NodeRecord[], hosting: (nodeId: string) => boolean, authority: string | undefined, params: BiologyParams, count: number = STANDBY_CANDIDATES): Set<string> {
  const ranked: Array<{ id: string, rank: number }> = []
  for (const n of nodes) {
    if (hosting(n.id) || !isEligible(n, authority, params)) continue
    ranked.push({ id: n.id, rank: rendezvous(cell, n.id) })
  }
  ranked.sort((a, b) => b.rank - a.rank || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return new Set(ranked.slice(0, Math.max(0, count)).map(r => r.id))
}
