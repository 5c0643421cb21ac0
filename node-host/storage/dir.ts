// The dir driver, the embedded default for laptops: a claim's volume is a plain directory
// `<root>/cell/<cell>/<ordinal>`, with no quota (restores are still bounded by the claim), and a
// snapshot is a copy of the tree under `<root>/snapshots/<cell>/<ordinal>/<name>`, made in a
// temporary directory and renamed into place. A copy is not atomic against a writer the way a ZFS
// snapshot is: each file is copied as it is at that moment.
import { randomBytes } from 'node:crypto'
import { cp, lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { checkClaim, checkSnapshotName } from './driver.ts'
import type { Claim, StorageCallOptions, StorageDriver } from './driver.ts'
import { SnapshotNotFoundError, StorageCommandError } from './errors.ts'

export class DirDriver implements StorageDriver {
  readonly kind = 'dir' as const
  readonly root: string

  constructor (root: string) {
    this.root = root
  }

  mountpoint (claim: Claim): string {
    checkClaim(claim)
    return join(this.root, 'cell', claim.cell, String(claim.ordinal))
  }

  private snapshotsDir (claim: Claim): string {
    checkClaim(claim)
    return join(this.root, 'snapshots', claim.cell, String(claim.ordinal))
  }

  async exists (claim: Claim): Promise<boolean> {
    return await isDir(this.mountpoint(claim))
  }

  async create (claim: Claim, _quotaBytes: number, options: StorageCallOptions = {}): Promise<string> {
    options.signal?.throwIfAborted()
    const dir = this.mountpoint(claim)
    await mkdir(dir, { recursive: true })
    return dir
  }

  async snapshot (claim: Claim, name: string, options: StorageCallOptions = {}): Promise<void> {
    options.signal?.throwIfAborted()
    const target = join(this.snapshotsDir(claim), checkSnapshotName(name))
    if (await isDir(target)) throw new StorageCommandError('dir snapshot', `snapshot ${name} of ${claim.cell}/${claim.ordinal} exists`)
    const tmp = join(this.snapshotsDir(claim), `.tmp-${randomBytes(4).toString('hex')}`)
    await mkdir(this.snapshotsDir(claim), { recursive: true })
    try {
      await cp(this.mountpoint(claim), tmp, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true, errorOnExist: true })
      await rename(tmp, target)
    } catch (err) {
      await rm(tmp, { recursive: true, force: true })
      throw err
    }
  }

  async listSnapshots (claim: Claim): Promise<string[]> {
    const dir = this.snapshotsDir(claim)
    let names: string[]
    try { names = await readdir(dir) } catch { return [] }
    const withTimes = await Promise.all(names.filter(n => !n.startsWith('.')).map(async n => ({ n, t: (await stat(join(dir, n))).mtimeMs })))
    return withTimes.sort((a, b) => a.t - b.t || (a.n < b.n ? -1 : 1)).map(x => x.n)
  }

  async destroySnapshot (claim: Claim, name: string): Promise<void> {
    await rm(join(this.snapshotsDir(claim), checkSnapshotName(name)), { recursive: true, force: true })
  }

  async withSnapshotFiles<T> (claim: Claim, name: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = join(this.snapshotsDir(claim), checkSnapshotName(name))
    if (!await isDir(dir)) throw new SnapshotNotFoundError(`no snapshot ${name} of ${claim.cell}/${claim.ordinal} in ${this.root}`)
    return await fn(dir)
  }

  async replace (claim: Claim, _quotaBytes: number, fill: (dir: string) => Promise<void>, options: StorageCallOptions = {}): Promise<string> {
    options.signal?.throwIfAborted()
    const dir = this.mountpoint(claim)
    const parent = join(dir, '..')
    const hex = randomBytes(4).toString('hex')
    const fresh = join(parent, `.${claim.ordinal}.restore-${hex}`)
    const old = join(parent, `.${claim.ordinal}.old-${hex}`)
    await mkdir(fresh, { recursive: true })
    try {
      await fill(fresh)
      options.signal?.throwIfAborted()
    } catch (err) {
      // A refused archive may still have a write settling: rm retries ENOTEMPTY a few times.
      await rm(fresh, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }).catch(() => {})
      throw err
    }
    const hadOld = await isDir(dir)
    if (hadOld) await rename(dir, old)
    try {
      await rename(fresh, dir)
    } catch (err) {
      if (hadOld) await rename(old, dir)
      await rm(fresh, { recursive: true, force: true })
      throw err
    }
    if (hadOld) await rm(old, { recursive: true, force: true })
    return dir
  }

  async usage (claim: Claim): Promise<{ usedBytes: number }> {
    let usedBytes = 0
    let entries = 0
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (++entries > 1_000_000) return
        const path = join(dir, e.name)
        if (e.isDirectory()) await walk(path)
        else usedBytes += (await lstat(path)).size
      }
    }
    await walk(this.mountpoint(claim))
    return { usedBytes }
  }

  async recover (): Promise<string[]> {
    const done: string[] = []
    const cells = join(this.root, 'cell')
    let cellNames: string[]
    try { cellNames = await readdir(cells) } catch { cellNames = [] }
    for (const cell of cellNames) {
      const dir = join(cells, cell)
      const names = await readdir(dir)
      for (const name of names) {
        const m = /^\.(0|[1-9]\d{0,4})\.(restore|old)-[0-9a-f]{8}$/.exec(name)
        if (m === null) continue
        if (m[2] === 'old' && !await isDir(join(dir, m[1]))) {
          await rename(join(dir, name), join(dir, m[1]))
          done.push(`${cell}/${name} -> ${cell}/${m[1]}`)
        } else {
          await rm(join(dir, name), { recursive: true, force: true })
          done.push(`${cell}/${name}`)
        }
      }
    }
    const snaps = join(this.root, 'snapshots')
    let snapCells: string[]
    try { snapCells = await readdir(snaps) } catch { snapCells = [] }
    for (const cell of snapCells) {
      for (const ordinal of await readdir(join(snaps, cell))) {
        for (const name of await readdir(join(snaps, cell, ordinal))) {
          if (!name.startsWith('.tmp-')) continue
          await rm(join(snaps, cell, ordinal, name), { recursive: true, force: true })
          done.push(`snapshots/${cell}/${ordinal}/${name}`)
        }
      }
    }
    return done
  }

  async destroy (claim: Claim): Promise<void> {
    await rm(this.mountpoint(claim), { recursive: true, force: true })
    await rm(this.snapshotsDir(claim), { recursive: true, force: true })
  }
}

async function isDir (path: string): Promise<boolean> {
  try { return (await stat(path)).isDirectory() } catch { return false }
}
