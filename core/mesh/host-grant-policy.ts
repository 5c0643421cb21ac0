// Fleet records must chain to a trusted authority: an instance heartbeat counts only if the node that
// reports it holds a host grant for that cell from the authority that signed the cell's release (the
// node gossips its grants in its node record). Records that fail are dropped and counted as
// `untrusted` by the view. While the release or the node record is not known yet the record is kept:
// the synapse handshake checks the same grant before any call reaches the replica. The same check
// decides whether a node's gossiped halt of a release counts (core/biology's HaltRecord).
import type { Clock } from '../ports.ts'
import type { FleetView, NodeRecord, TrustPolicy } from '../fleet/index.ts'
import { decodeCertificate, verifyCertificates } from '../identity/index.ts'

const MAX_CACHE = 4096

/** Does `node` gossip a valid host grant for `cell` from `authority`? Verified grants are cached until they expire. */
export type HostGrantCheck = (node: Pick<NodeRecord, 'nodeId' | 'grants'>, authority: string, cell: string) => Promise<boolean>

export function hostGrantCheck (clock: Clock): HostGrantCheck {
  // `${nodeId}|${authority}|${cell}` → until when a verified grant holds (0: none did; checked again).
  const cache = new Map<string, number>()
  return async (node, authority, cell) => {
    const nowMs = clock.now()
    const key = `${node.nodeId}|${authority}|${cell}`
    const known = cache.get(key)
    if (known !== undefined && known > nowMs) return true
    let validUntil = 0
    for (const bytes of node.grants ?? []) {
      try {
        const cert = decodeCertificate(bytes)
        if (cert.kind !== 'grant' || cert.issuer !== authority) continue
        const ok = await verifyCertificates([cert], { remotePeerId: node.nodeId, trusted: new Set([authority]), requiredRole: 'host', cell, nowMs })
        validUntil = Math.max(validUntil, ok.notAfterMs)
      } catch {
        // A malformed, expired or foreign grant simply does not count.
      }
    }
    if (cache.size >= MAX_CACHE) cache.delete(cache.keys().next().value as string)
    cache.set(key, validUntil)
    return validUntil > nowMs
  }
}

export function hostGrantPolicy (view: () => FleetView, check: HostGrantCheck): TrustPolicy {
  return async (subject) => {
    if (subject.kind !== 'instance') return true
    const record = subject.record
    const v = view()
    const release = v.release(record.cell)
    const node = v.node(record.nodeId)
    if (release == null || node == null) return true
    return await check(node, release.authority, record.cell)
  }
}
