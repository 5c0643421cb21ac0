// Fleet records count only from nodes a trusted authority vouches for. A node record is kept only
// when the node gossips a valid, unexpired host grant from an authority this peer trusts; an
// instance heartbeat (ready, draining or crashed alike) only when its node's record is held and
// carries a host grant for that cell from an authority that claims the cell (signed a release or
// desired record for it). Anything else is dropped and counted as `untrusted` by the view, so a
// stranger's records never reach the biology (fake ready replicas, fake crashes, fake volunteers).
// While a node's record or the cell's release is not here yet its heartbeats are dropped: the
// next heartbeat (or a fleet-sync snapshot, which sends releases and nodes before instances)
// brings them in. The same check decides whether a node's gossiped halt counts (autonomic loop),
// and whether a claim snapshot or a pin of one counts (core/fleet/snapshots.ts).
import type { Clock } from '../ports.ts'
import type { FleetView, NodeRecord, TrustPolicy } from '../fleet/index.ts'
import { decodeCertificate, verifyCertificates } from '../identity/index.ts'

const MAX_CACHE = 4096

/**
 * Does `node` gossip a valid host grant from `authority` (for `cell` when given; any cell scope
 * otherwise)? Verified grants are cached until they expire; failures are cached briefly too.
 */
export type HostGrantCheck = (node: Pick<NodeRecord, 'nodeId' | 'grants'>, authority: string, cell?: string) => Promise<boolean>

/** A failed check is re-done after this long (a node may gossip a new grant), not on every record. */
const NEGATIVE_CACHE_MS = 2_000

export function hostGrantCheck (clock: Clock): HostGrantCheck {
  // `${nodeId}|${authority}|${cell}|${grant bytes length sum}` → until when the answer holds.
  const cache = new Map<string, { ok: boolean, untilMs: number }>()
  return async (node, authority, cell) => {
    const nowMs = clock.now()
    // The grants are part of the key: a node that gossips a new grant is checked again at once.
    const key = `${node.nodeId}|${authority}|${cell ?? '*'}|${(node.grants ?? []).map(g => g.byteLength).join(',')}`
    const known = cache.get(key)
    if (known !== undefined && known.untilMs > nowMs) return known.ok
    let validUntil = 0
    for (const bytes of node.grants ?? []) {
      try {
        const cert = decodeCertificate(bytes)
        if (cert.kind !== 'grant' || cert.issuer !== authority) continue
        const ok = await verifyCertificates([cert], { remotePeerId: node.nodeId, trusted: new Set([authority]), requiredRole: 'host', cell, nowMs })
        validUntil = Math.max(validUntil, ok.notAfterMs)
      } catch {
        // A malformed, expired, foreign or caller-only grant simply does not count.
      }
    }
    const ok = validUntil > nowMs
    if (cache.size >= MAX_CACHE) cache.delete(cache.keys().next().value as string)
    cache.set(key, ok ? { ok, untilMs: validUntil } : { ok, untilMs: nowMs + NEGATIVE_CACHE_MS })
    return ok
  }
}

/**
 * The view's trust policy. `trusted` is read live: the authorities this peer accepts (releases are
 * verified against the same set, so every claimant of a cell is one of them).
 */
export function hostGrantPolicy (view: () => FleetView, check: HostGrantCheck, trusted: ReadonlySet<string>): TrustPolicy {
  return async (subject) => {
    if (subject.kind === 'node') {
      const record = subject.record
      for (const authority of grantIssuers(record)) {
        if (trusted.has(authority) && await check(record, authority)) return true
      }
      return false
    }
    if (subject.kind === 'snapshot' || subject.kind === 'pin') {
      // Snapshot announcements and pins: the same rule as heartbeats. A snapshot record may carry its
      // owner's grant, so it still counts after the owner's node record expired (the owner died).
      const record = subject.record
      const v = view()
      const node = v.node(record.nodeId)
      const carried = subject.kind === 'snapshot' ? subject.record.grants : undefined
      const sources = [...(carried !== undefined ? [{ nodeId: record.nodeId, grants: carried }] : []), ...(node != null ? [node] : [])]
      for (const authority of v.claimants(record.cell)) {
        for (const source of sources) if (await check(source, authority, record.cell)) return true
      }
      return false
    }
    if (subject.kind !== 'instance') return true
    const record = subject.record
    const v = view()
    const node = v.node(record.nodeId)
    if (node == null) return false
    for (const authority of v.claimants(record.cell)) {
      if (await check(node, authority, record.cell)) return true
    }
    return false
  }
}

/** Issuers of the grants a node record carries (undecodable ones are skipped). */
function grantIssuers (record: Pick<NodeRecord, 'grants'>): string[] {
  const out = new Set<string>()
  for (const bytes of record.grants ?? []) {
    try {
      out.add(decodeCertificate(bytes).issuer)
    } catch {}
  }
  return [...out]
}
