// Snapshot records from takeSnapshot's SnapshotInfo (the gossip and pinning of them is in
// test/integration/snapshot-pins.test.ts).
import { describe, it, expect } from 'vitest'
import { checkSnapshotRecord, SNAPSHOT_LIMITS } from '../../core/fleet/index.ts'
import { snapshotRecordOf } from './snapshot-records.ts'
import type { SnapshotInfo } from './snapshots.ts'

const d = (n: number): string => 'sha256:' + n.toString(16).padStart(64, '0')
const NODE = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'

function info (chunks: number): SnapshotInfo {
  const chunkDigests = Array.from({ length: chunks }, (_, i) => d(100 + i))
  return {
    tag: 'snapshot-e3-20261130T120000Z', epoch: 3, takenMs: 1, claim: 'ledger/2', sizeBytes: 10,
    plain: { manifestDigest: d(1), configDigest: d(2), layerDigest: d(3), bytes: 10 },
    zfs: { manifestDigest: d(4), baseTag: 'snapshot-e3-20261130T110000Z', chunkDigests, bytes: 10 },
    blobs: [d(1), d(2), d(3), d(4), d(5), ...chunkDigests]
  }
}

describe('snapshotRecordOf', () => {
  it('names every blob, the manifests and the ZFS base', () => {
    const r = snapshotRecordOf(info(3), NODE, [new Uint8Array([1])])
    expect(r).toMatchObject({ nodeId: NODE, cell: 'ledger', claimId: 'ledger/2', epoch: 3, plainManifestDigest: d(1), zfsManifestDigest: d(4), zfsBaseTag: 'snapshot-e3-20261130T110000Z' })
    expect(r.blobs).toHaveLength(8)
    expect(checkSnapshotRecord({ ...r, seq: 1, sentMs: 1 })).toBeTruthy()
  })

  it('leaves out a ZFS artifact of more chunks than a record may name: the plain image still restores anywhere', () => {
    const r = snapshotRecordOf(info(SNAPSHOT_LIMITS.blobs), NODE, [])
    expect(r.zfsManifestDigest).toBeUndefined()
    expect(r.zfsBaseTag).toBeUndefined()
    expect(r.blobs).toEqual([d(1), d(2), d(3)])
    expect(checkSnapshotRecord({ ...r, seq: 1, sentMs: 1 })).toBeTruthy()
  })
})
