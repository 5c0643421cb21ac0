// A stateful cell's claims as an operator reads them: the node and epoch of the live replica
// writing each, and how old its newest safe snapshot is (held by two nodes other than its owner, so
// it survives the owner) and by how many nodes. From a fleet view's snapshot and pin records and the
// replicas' claims; the dashboard's cell card and `cell status` print it.
import type { InstanceRecord } from './records.ts'
import type { SnapshotRecord } from './snapshots.ts'

/** What claimNotes reads of a view (FleetView has all of it; a view without snapshot methods shows the replicas' claims only). */
export interface ClaimNoteView {
  snapshotClaims?: (cell: string) => string[]
  snapshots?: (claimId: string) => SnapshotRecord[]
  isSafeSnapshot?: (snapshot: SnapshotRecord) => boolean
  snapshotHolders?: (snapshot: SnapshotRecord) => string[]
}

/** One claim of a stateful cell: who writes it at which epoch, and how old its newest safe snapshot is. */
export interface ClaimNote {
  claimId: string
  /** The highest epoch a live replica serves it at, else the newest snapshot's. */
  epoch: number
  /** The node of the live replica serving it (undefined: none serves it now). */
  ownerNodeId?: string
  /** Age of the newest snapshot that survives its owner (held by two other nodes). */
  safeAgeMs?: number
  safeHolders?: number
  /** Age of the newest snapshot, safe or not. */
  newestAgeMs?: number
  snapshots: number
}

/** Claims shown per cell at most. */
export const MAX_CLAIM_NOTES = 8

/**
 * The storage line of a stateful cell's card, from the snapshot records and the replicas' claims a
 * view holds (a source without snapshot methods, or a stateless cell: none).
 */
export function claimNotes (view: ClaimNoteView, cell: string, instances: readonly InstanceRecord[], nowMs: number): ClaimNote[] {
  const ids = new Set(view.snapshotClaims?.(cell) ?? [])
  for (const i of instances) if (i.claim !== undefined) ids.add(`${cell}/${i.claim.ordinal}`)
  const notes: ClaimNote[] = []
  for (const claimId of [...ids].sort((a, b) => Number(a.slice(a.lastIndexOf('/') + 1)) - Number(b.slice(b.lastIndexOf('/') + 1))).slice(0, MAX_CLAIM_NOTES)) {
    const ordinal = Number(claimId.slice(claimId.lastIndexOf('/') + 1))
    const serving = instances.filter(i => i.claim?.ordinal === ordinal && (i.state === 'starting' || i.state === 'ready')).sort((a, b) => (b.claim?.epoch ?? 0) - (a.claim?.epoch ?? 0))[0]
    const snapshots = view.snapshots?.(claimId) ?? []
    const newest = snapshots[0]
    const safe = view.isSafeSnapshot !== undefined ? snapshots.find(s => view.isSafeSnapshot!(s)) : undefined
    notes.push({
      claimId,
      epoch: serving?.claim?.epoch ?? newest?.epoch ?? 0,
      ...(serving !== undefined ? { ownerNodeId: serving.nodeId } : {}),
      ...(safe !== undefined ? { safeAgeMs: Math.max(0, nowMs - safe.takenMs), safeHolders: view.snapshotHolders?.(safe).length ?? 0 } : {}),
      ...(newest !== undefined ? { newestAgeMs: Math.max(0, nowMs - newest.takenMs) } : {}),
      snapshots: snapshots.length
    })
  }
  return notes
}
