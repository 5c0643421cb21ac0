// Local storage of a full node (DESIGN §6): drivers (zfs, dir), OCI snapshot layouts, restore.
export { createStorage } from './storage.ts'
export type { Storage } from './storage.ts'
export { claimId, parseClaimId, checkClaim, isZfsDriver } from './driver.ts'
export type { Claim, StorageDriver, StorageKind, StorageCallOptions, ZfsStorageDriver, StreamSource } from './driver.ts'
export { DirDriver } from './dir.ts'
export { ZfsDriver, openZfsDriver } from './zfs.ts'
export { OciLayout, MEDIA, REF_NAME } from './oci-layout.ts'
export type { Descriptor, ImageManifest } from './oci-layout.ts'
export { takeSnapshot, listSnapshots, restoreSnapshot, pruneSnapshots, snapshotTag, layoutDirFor, DEFAULT_SNAPSHOT_LIMITS, ANNOTATION } from './snapshots.ts'
export type { SnapshotInfo, RestoreResult, SnapshotLimits } from './snapshots.ts'
export {
  ZfsUnavailableError, NoStorageClassError, InvalidStorageNameError, StorageCommandError,
  SnapshotCorruptError, SnapshotNotFoundError, SnapshotLimitError, StaleSnapshotError
} from './errors.ts'
