import { CellError } from '../../core/errors.ts'
import type { RetryRule } from '../../core/errors.ts'

// Errors of the local storage layer (drivers, OCI layout, snapshots). Storage calls are not
// replica calls, but the retry rule still says what a caller may do: `nothing-ran` = nothing was
// changed on this node, so another node (or a later attempt) may try; `never` = the same input
// fails the same way.

/** The zfs driver was asked for but the pool is missing or the zfs-fuse daemon does not answer. */
export class ZfsUnavailableError extends CellError {
  static override readonly errorName = 'ZfsUnavailableError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** The storage class a cell asked for (`zfs`, `dir`) is not offered by this node (or by any node). */
export class NoStorageClassError extends CellError {
  static override readonly errorName = 'NoStorageClassError'
  static override readonly retry: RetryRule = 'nothing-ran'
  readonly storageClass: string
  readonly offered: readonly string[]
  constructor (storageClass: string, offered: readonly string[], options?: { cause?: unknown }) {
    super(`storage class ${JSON.stringify(storageClass)} is not offered (offered: ${offered.length === 0 ? 'none' : offered.join(', ')})`, options)
    this.storageClass = storageClass
    this.offered = offered
  }
}

/** A claim (`<cell>/<ordinal>`), pool, snapshot name or tag is not well formed. */
export class InvalidStorageNameError extends CellError {
  static override readonly errorName = 'InvalidStorageNameError'
  static override readonly retry: RetryRule = 'never'
}

/** A `zfs`/`zpool` command exited non-zero; `stderr` holds its (bounded) message. */
export class StorageCommandError extends CellError {
  static override readonly errorName = 'StorageCommandError'
  static override readonly retry: RetryRule = 'never'
  readonly command: string
  readonly stderr: string
  constructor (command: string, stderr: string, options?: { cause?: unknown }) {
    super(`${command} failed: ${stderr.trim() || 'no message'}`, options)
    this.command = command
    this.stderr = stderr
  }
}

/**
 * A `zfs`/`zpool` command did not finish within its deadline and was killed: the ZFS daemon
 * (zfs-fuse) or the pool is stuck. What the command did before is unknown, so it is not retried.
 */
export class StorageTimeoutError extends CellError {
  static override readonly errorName = 'StorageTimeoutError'
  static override readonly retry: RetryRule = 'never'
  readonly command: string
  readonly timeoutMs: number
  constructor (command: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(`${command} did not finish within ${timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`} and was killed: the ZFS daemon or the pool is stuck (with zfs-fuse, restart the daemon)`, options)
    this.command = command
    this.timeoutMs = timeoutMs
  }
}

/** A blob does not hash to its digest, is truncated, or a manifest in the layout is malformed: never restored. */
export class SnapshotCorruptError extends CellError {
  static override readonly errorName = 'SnapshotCorruptError'
  static override readonly retry: RetryRule = 'never'
  readonly digest: string | undefined
  constructor (message: string, digest?: string, options?: { cause?: unknown }) {
    super(message, options)
    this.digest = digest
  }
}

/** The snapshot (tag) or one of the blobs it needs is not in the layout. */
export class SnapshotNotFoundError extends CellError {
  static override readonly errorName = 'SnapshotNotFoundError'
  static override readonly retry: RetryRule = 'never'
}

/** A snapshot or an archive exceeds a bound (entries, bytes, chunks, a disallowed entry type). */
export class SnapshotLimitError extends CellError {
  static override readonly errorName = 'SnapshotLimitError'
  static override readonly retry: RetryRule = 'never'
}

/** The snapshot is of a lower epoch than the caller has seen: restoring it could undo newer writes (fencing). */
export class StaleSnapshotError extends CellError {
  static override readonly errorName = 'StaleSnapshotError'
  static override readonly retry: RetryRule = 'never'
}
