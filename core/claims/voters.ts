// Which nodes vote on a claim: the candidates (nodes offering the claim's storage class) with the
// highest rendezvous score for the claim id. Every node computes the same set from the same
// candidates; the set is then fixed in the claim's first accepted value, so later changes in the
// candidates do not move it (replacing a voter is a change of its own: see README.md).
import { MAX_VOTERS } from './register.ts'

/** 3 voters below 5 candidates, else 5 (never more than there are candidates). */
export function voterCount (candidates: number): number {
  return Math.min(candidates, candidates < 5 ? 3 : MAX_VOTERS)
}

/** The `n` candidates with the highest rendezvous score for `claimId`, sorted by peer id. */
export function chooseVoters (claimId: string, candidateNodeIds: readonly string[], n: number = voterCount(new Set(candidateNodeIds).size)): string[] {
  const unique = [...new Set(candidateNodeIds)]
  const scored = unique.map(id => ({ id, score: rendezvousScore(claimId, id) }))
  scored.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return scored.slice(0, Math.max(0, Math.min(n, MAX_VOTERS))).map(s => s.id).sort()
}

/**
 * A 53-bit score of (claim, node): two 32-bit FNV-1a passes with different offsets, combined.
 * Not cryptographic: choosing voters needs spread and agreement, and every voter still needs a
 * host grant for the cell, so grinding peer ids buys a stranger nothing.
 */
export function rendezvousScore (claimId: string, nodeId: string): number {
  const text = `${claimId}\u0000${nodeId}`
  let h1 = 0x811c9dc5
  let h2 = 0x050c5d1f
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0
    h2 = Math.imul(h2 ^ c, 0x01000193) >>> 0
    h2 = Math.imul(h2 ^ (h2 >>> 15), 0x2c1b3c6d) >>> 0
  }
  return (h1 & 0x1fffff) * 0x100000000 + h2
}
