// The drivers a node offers: always `dir` (under the data dir), and `zfs` when the node was given
// a pool (`cell up --zfs-pool NAME`) and the pool answers. A cell's `[cell.storage] class` picks
// one with driverFor: `zfs` and `dir` ask for that driver and never fall back; `default` (and any
// other hint) takes zfs when offered, else dir.
import { join } from 'node:path'
import { DirDriver } from './dir.ts'
import type { StorageDriver, StorageKind } from './driver.ts'
import { NoStorageClassError } from './errors.ts'
import { openZfsDriver } from './zfs.ts'

export interface Storage {
  /** The classes this node offers, for its heartbeat: `['zfs', 'dir']` or `['dir']`. */
  readonly offered: readonly StorageKind[]
  readonly dir: StorageDriver
  readonly zfs: StorageDriver | undefined
  /** The driver for a manifest's storage class; NoStorageClassError when `zfs` is asked and not offered. */
  driverFor (storageClass: string): StorageDriver
}

/**
 * Open the node's storage. With `zfsPool`, the pool must exist and zfs-fuse must answer, else
 * ZfsUnavailableError (a node told to offer zfs does not start without it). Volumes of the dir
 * driver live under `<dataDir>/volumes`.
 */
export async function createStorage (options: { zfsPool?: string, dataDir: string, signal?: AbortSignal }): Promise<Storage> {
  const dir = new DirDriver(join(options.dataDir, 'volumes'))
  const zfs = options.zfsPool === undefined ? undefined : await openZfsDriver(options.zfsPool, { signal: options.signal })
  const offered: StorageKind[] = zfs === undefined ? ['dir'] : ['zfs', 'dir']
  return {
    offered,
    dir,
    zfs,
    driverFor (storageClass: string): StorageDriver {
      if (storageClass === 'dir') return dir
      if (storageClass === 'zfs') {
        if (zfs === undefined) throw new NoStorageClassError('zfs', offered)
        return zfs
      }
      return zfs ?? dir
    }
  }
}
