// The storage driver port (DESIGN §6): a volume per claim, snapshots of it, and a way to replace
// its contents atomically. Two adapters: `zfs` (zfs.ts: a dataset per claim, `quota` = claim,
// send/receive streams) and `dir` (dir.ts: a plain directory, no quota, snapshots as copies).
// snapshots.ts builds the OCI snapshots on top of this port; nothing above it runs zfs itself.
//
// A claim is `{ cell, ordinal }`, written `<cell>/<ordinal>` (`ledger/0`): the cell name is a DNS
// label (core/manifest isCellName), the ordinal a small non-negative integer. Snapshot names are
// registry-valid tags (snapshots.ts makes them), which are also valid ZFS snapshot names.
import { isCellName } from '../../core/manifest/version.ts'
import { InvalidStorageNameError } from './errors.ts'

export type StorageKind = 'zfs' | 'dir'

export interface Claim {
  readonly cell: string
  readonly ordinal: number
}

/** Every method takes these last; `signal` aborts a running command (its half-made work is removed). */
export interface StorageCallOptions {
  signal?: AbortSignal
}

export const MAX_ORDINAL = 65_535
/** An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; ZFS accepts the same characters in a snapshot name. */
const SNAPSHOT_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

export function claimId (claim: Claim): string {
  checkClaim(claim)
  return `${claim.cell}/${claim.ordinal}`
}

/** `ledger/0` → `{ cell: 'ledger', ordinal: 0 }`; InvalidStorageNameError otherwise. */
export function parseClaimId (id: string): Claim {
  const m = /^([^/]+)\/(0|[1-9]\d{0,4})$/.exec(id)
  if (m === null) throw new InvalidStorageNameError(`claim id ${JSON.stringify(id)} is not <cell>/<ordinal>`)
  return checkClaim({ cell: m[1], ordinal: Number(m[2]) })
}

export function checkClaim (claim: Claim): Claim {
  if (!isCellName(claim.cell)) throw new InvalidStorageNameError(`claim cell ${JSON.stringify(claim.cell)} is not a DNS label`)
  if (!Number.isSafeInteger(claim.ordinal) || claim.ordinal < 0 || claim.ordinal > MAX_ORDINAL) {
    throw new InvalidStorageNameError(`claim ordinal ${String(claim.ordinal)} is not an integer in 0..${MAX_ORDINAL}`)
  }
  return claim
}

export function checkSnapshotName (name: string): string {
  if (typeof name !== 'string' || !SNAPSHOT_NAME.test(name)) throw new InvalidStorageNameError(`snapshot name ${JSON.stringify(name)} is not a registry tag`)
  return name
}

export interface StorageDriver {
  readonly kind: StorageKind
  /**
   * Create the claim's volume and return its mountpoint. Idempotent: an existing volume keeps its
   * data (zfs: its quota is set to `quotaBytes`; dir: no quota, `quotaBytes` only bounds restores).
   */
  create (claim: Claim, quotaBytes: number, options?: StorageCallOptions): Promise<string>
  exists (claim: Claim, options?: StorageCallOptions): Promise<boolean>
  /** Where the volume is (or will be) mounted: the host path bound to the capsid's /cell/data. */
  mountpoint (claim: Claim): string
  /** Take a point-in-time snapshot named `name` (zfs: atomic; dir: a copy of the tree). */
  snapshot (claim: Claim, name: string, options?: StorageCallOptions): Promise<void>
  /** The claim's snapshot names on this driver, oldest first. */
  listSnapshots (claim: Claim, options?: StorageCallOptions): Promise<string[]>
  destroySnapshot (claim: Claim, name: string, options?: StorageCallOptions): Promise<void>
  /** Run `fn` with a directory holding the snapshot's files (zfs: a temporary clone), then release it. */
  withSnapshotFiles<T> (claim: Claim, name: string, fn: (dir: string) => Promise<T>, options?: StorageCallOptions): Promise<T>
  /**
   * Make a fresh, empty volume, let `fill` write into it, then swap it in place of the claim's
   * volume (created if absent). If `fill` or the swap fails, the fresh volume is removed and the
   * existing one is untouched. Returns the mountpoint.
   */
  replace (claim: Claim, quotaBytes: number, fill: (dir: string) => Promise<void>, options?: StorageCallOptions): Promise<string>
  /** Remove the volume and all its snapshots (no error when absent). */
  destroy (claim: Claim, options?: StorageCallOptions): Promise<void>
  /** Bytes the volume uses (zfs: `used`, snapshots included, what the quota counts) and its quota (zfs only). */
  usage (claim: Claim, options?: StorageCallOptions): Promise<{ usedBytes: number, quotaBytes?: number }>
  /**
   * Finish what a crash interrupted (call at node start, before any volume is used): half-made
   * restores and snapshot reads are removed; a volume set aside by a swap that did not complete is
   * put back when the claim has none. Returns the names it removed or put back.
   */
  recover (options?: StorageCallOptions): Promise<string[]>
}

/** A producer of one `zfs send` stream, consumed chunk by chunk. */
export type StreamSource = () => AsyncIterable<Uint8Array>

export interface ZfsStorageDriver extends StorageDriver {
  readonly kind: 'zfs'
  readonly pool: string
  /**
   * `zfs send` of snapshot `name` (incremental from `base` when given), spooled to a file in
   * `spoolDir` (default: the temp dir) and checked whole (BEGIN and END records), then handed to
   * `consume`. A failed or incomplete send rejects before consume runs.
   */
  send<T> (claim: Claim, name: string, base: string | undefined, consume: (stream: AsyncIterable<Uint8Array>) => Promise<T>, options?: StorageCallOptions & { spoolDir?: string }): Promise<T>
  /**
   * `zfs recv` of a full stream then incrementals, in order, into a fresh dataset that is swapped
   * in place of the claim's volume as `replace` does. The received snapshots stay on the dataset
   * (bases for the next incremental). Each stream is spooled to a file in `spoolDir` (default: the
   * temp dir) before zfs reads it.
   */
  receive (claim: Claim, quotaBytes: number, streams: StreamSource[], options?: StorageCallOptions & { spoolDir?: string }): Promise<string>
}

export function isZfsDriver (driver: StorageDriver): driver is ZfsStorageDriver {
  return driver.kind === 'zfs'
}
