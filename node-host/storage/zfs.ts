// The zfs driver: one dataset per claim, `<pool>/cell/<cell>/<ordinal>`, with `quota` = the claim,
// mounted where the pool's mountpoint puts it (`/<pool>/cell/<cell>/<ordinal>` by default). Real
// `zfs` commands, run without a shell; every name that reaches a command line was validated first.
//
// zfs-fuse specifics this file works around: no `.zfs/snapshot` directory (a snapshot's files are
// read through a temporary clone), rename and destroy need the dataset unmounted first (and may
// report "busy" for a moment after use: retried, bounded), no resume tokens (snapshots.ts chunks
// the streams instead).
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { collectStderr, exited, retryBusy, run } from './command.ts'
import { checkClaim, checkSnapshotName } from './driver.ts'
import type { Claim, StorageCallOptions, StreamSource, ZfsStorageDriver } from './driver.ts'
import { InvalidStorageNameError, StorageCommandError, ZfsUnavailableError } from './errors.ts'

const POOL_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,200}$/

export function checkPoolName (pool: string): string {
  if (!POOL_NAME.test(pool) || /^(mirror|raidz|spare|log)/.test(pool)) throw new InvalidStorageNameError(`zfs pool name ${JSON.stringify(pool)} is not valid`)
  return pool
}

/** Open the pool: ZfsUnavailableError when zfs-fuse is not running or the pool does not exist. */
export async function openZfsDriver (pool: string, options: StorageCallOptions = {}): Promise<ZfsDriver> {
  checkPoolName(pool)
  let pools: string
  try {
    pools = await run('zpool', ['list', '-H', '-o', 'name'], options)
  } catch (err) {
    if (err instanceof ZfsUnavailableError) throw err
    throw new ZfsUnavailableError(`zpool list failed: is the zfs-fuse daemon running? (${(err as Error).message})`, { cause: err })
  }
  if (!pools.split('\n').includes(pool)) throw new ZfsUnavailableError(`zfs pool ${JSON.stringify(pool)} does not exist (zpool list shows: ${pools.trim().split('\n').join(', ') || 'no pools'})`)
  const mount = (await run('zfs', ['get', '-H', '-o', 'value', 'mountpoint', pool], options)).trim()
  if (!mount.startsWith('/')) throw new ZfsUnavailableError(`zfs pool ${pool} has mountpoint ${JSON.stringify(mount)}; the zfs driver needs a mounted pool`)
  await run('zfs', ['create', '-p', `${pool}/cell`], options)
  return new ZfsDriver(pool, mount === '/' ? '' : mount)
}

export class ZfsDriver implements ZfsStorageDriver {
  readonly kind = 'zfs' as const
  readonly pool: string
  private readonly poolMount: string

  constructor (pool: string, poolMount: string) {
    this.pool = checkPoolName(pool)
    this.poolMount = poolMount
  }

  dataset (claim: Claim): string {
    checkClaim(claim)
    return `${this.pool}/cell/${claim.cell}/${claim.ordinal}`
  }

  mountpoint (claim: Claim): string {
    return this.mountOf(this.dataset(claim))
  }

  private mountOf (dataset: string): string {
    return `${this.poolMount}/${dataset.slice(this.pool.length + 1)}`
  }

  private async datasetExists (dataset: string, options: StorageCallOptions): Promise<boolean> {
    try {
      await run('zfs', ['list', '-H', '-o', 'name', dataset], options)
      return true
    } catch (err) {
      if (err instanceof StorageCommandError && /does not exist/.test(err.stderr)) return false
      throw err
    }
  }

  async exists (claim: Claim, options: StorageCallOptions = {}): Promise<boolean> {
    return await this.datasetExists(this.dataset(claim), options)
  }

  async create (claim: Claim, quotaBytes: number, options: StorageCallOptions = {}): Promise<string> {
    const ds = this.dataset(claim)
    const quota = checkQuota(quotaBytes)
    if (await this.datasetExists(ds, options)) {
      await run('zfs', ['set', `quota=${quota}`, ds], options)
      await this.ensureMounted(ds, options)
    } else {
      await run('zfs', ['create', '-p', '-o', `quota=${quota}`, ds], options)
    }
    return this.mountOf(ds)
  }

  private async ensureMounted (ds: string, options: StorageCallOptions): Promise<void> {
    const mounted = (await run('zfs', ['get', '-H', '-o', 'value', 'mounted', ds], options)).trim()
    if (mounted !== 'yes') await run('zfs', ['mount', ds], options)
  }

  async snapshot (claim: Claim, name: string, options: StorageCallOptions = {}): Promise<void> {
    await run('zfs', ['snapshot', `${this.dataset(claim)}@${checkSnapshotName(name)}`], options)
  }

  async listSnapshots (claim: Claim, options: StorageCallOptions = {}): Promise<string[]> {
    const ds = this.dataset(claim)
    const out = await run('zfs', ['list', '-H', '-t', 'snapshot', '-o', 'name', '-s', 'creation', '-d', '1', ds], options)
    return out.split('\n').filter(l => l.startsWith(`${ds}@`)).map(l => l.slice(ds.length + 1))
  }

  async destroySnapshot (claim: Claim, name: string, options: StorageCallOptions = {}): Promise<void> {
    const snap = `${this.dataset(claim)}@${checkSnapshotName(name)}`
    await retryBusy(async () => await run('zfs', ['destroy', snap], options), options.signal)
  }

  async withSnapshotFiles<T> (claim: Claim, name: string, fn: (dir: string) => Promise<T>, options: StorageCallOptions = {}): Promise<T> {
    // zfs-fuse has no .zfs/snapshot directory: read the snapshot through a clone, removed after.
    const clone = `${this.dataset(claim)}-read-${randomBytes(4).toString('hex')}`
    await run('zfs', ['clone', '-o', 'readonly=on', `${this.dataset(claim)}@${checkSnapshotName(name)}`, clone], options)
    try {
      await this.ensureMounted(clone, options)
      return await fn(this.mountOf(clone))
    } finally {
      await this.destroyDataset(clone, {})
    }
  }

  async replace (claim: Claim, quotaBytes: number, fill: (dir: string) => Promise<void>, options: StorageCallOptions = {}): Promise<string> {
    const ds = this.dataset(claim)
    const fresh = `${ds}-restore-${randomBytes(4).toString('hex')}`
    await run('zfs', ['create', '-p', '-o', `quota=${checkQuota(quotaBytes)}`, fresh], options)
    try {
      await fill(this.mountOf(fresh))
    } catch (err) {
      await this.destroyDataset(fresh, {})
      throw err
    }
    return await this.swapIn(ds, fresh, options)
  }

  async send<T> (claim: Claim, name: string, base: string | undefined, consume: (stream: AsyncIterable<Uint8Array>) => Promise<T>, options: StorageCallOptions = {}): Promise<T> {
    const ds = this.dataset(claim)
    const args = base === undefined
      ? ['send', `${ds}@${checkSnapshotName(name)}`]
      : ['send', '-i', checkSnapshotName(base), `${ds}@${checkSnapshotName(name)}`]
    options.signal?.throwIfAborted()
    const child = spawn('zfs', args, { stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal })
    const done = exited(child, 'zfs', args, collectStderr(child))
    done.catch(() => {})
    if (child.stdout === null) throw new StorageCommandError('zfs send', 'no stdout')
    let result: T
    try {
      result = await consume(child.stdout)
    } catch (err) {
      child.kill('SIGKILL')
      await done.catch(() => {})
      throw err
    }
    await done
    return result
  }

  async receive (claim: Claim, quotaBytes: number, streams: StreamSource[], options: StorageCallOptions = {}): Promise<string> {
    if (streams.length === 0) throw new StorageCommandError('zfs recv', 'no stream to receive')
    const ds = this.dataset(claim)
    const quota = checkQuota(quotaBytes)
    const fresh = `${ds}-restore-${randomBytes(4).toString('hex')}`
    await run('zfs', ['create', '-p', `${ds.slice(0, ds.lastIndexOf('/'))}`], options)
    try {
      for (const source of streams) {
        // -F: the fresh dataset may have been touched (atime) since the last stream; -u: mount once at the end.
        const args = ['recv', '-F', '-u', fresh]
        options.signal?.throwIfAborted()
        const child = spawn('zfs', args, { stdio: ['pipe', 'ignore', 'pipe'], signal: options.signal })
        const done = exited(child, 'zfs', args, collectStderr(child))
        done.catch(() => {})
        if (child.stdin === null) throw new StorageCommandError('zfs recv', 'no stdin')
        try {
          await pipeline(Readable.from(source()), child.stdin)
        } catch (err) {
          child.kill('SIGKILL')
          await done.catch(() => {})
          throw err
        }
        await done
      }
      // Received without a quota (a quota on the target refuses the stream), then capped.
      await run('zfs', ['set', `quota=${quota}`, fresh], options)
    } catch (err) {
      if (await this.datasetExists(fresh, {}).catch(() => false)) await this.destroyDataset(fresh, {})
      throw err
    }
    return await this.swapIn(ds, fresh, options)
  }

  async destroy (claim: Claim, options: StorageCallOptions = {}): Promise<void> {
    const ds = this.dataset(claim)
    if (await this.datasetExists(ds, options)) await this.destroyDataset(ds, options)
  }

  /** Put `fresh` at `ds`: old aside, fresh renamed, old destroyed. On failure the old comes back. */
  private async swapIn (ds: string, fresh: string, options: StorageCallOptions): Promise<string> {
    const old = `${ds}-old-${randomBytes(4).toString('hex')}`
    const hadOld = await this.datasetExists(ds, options)
    try {
      await retryBusy(async () => await run('zfs', ['unmount', fresh], {}).catch(err => { if (!/not currently mounted/.test(String((err as Error).message))) throw err; return '' }), options.signal)
      if (hadOld) {
        await retryBusy(async () => await run('zfs', ['unmount', ds], {}).catch(err => { if (!/not currently mounted/.test(String((err as Error).message))) throw err; return '' }), options.signal)
        await retryBusy(async () => await run('zfs', ['rename', ds, old], {}), options.signal)
      }
    } catch (err) {
      if (hadOld) await this.ensureMounted(ds, {}).catch(() => {})
      await this.destroyDataset(fresh, {})
      throw err
    }
    try {
      await retryBusy(async () => await run('zfs', ['rename', fresh, ds], {}), options.signal)
    } catch (err) {
      if (hadOld) {
        await retryBusy(async () => await run('zfs', ['rename', old, ds], {}))
        await this.ensureMounted(ds, {}).catch(() => {})
      }
      await this.destroyDataset(fresh, {})
      throw err
    }
    await this.ensureMounted(ds, {})
    if (hadOld) await this.destroyDataset(old, {})
    return this.mountOf(ds)
  }

  private async destroyDataset (ds: string, options: StorageCallOptions): Promise<void> {
    await retryBusy(async () => {
      await run('zfs', ['unmount', ds], options).catch(() => '')
      return await run('zfs', ['destroy', '-r', ds], options)
    }, options.signal)
  }
}

function checkQuota (quotaBytes: number): number {
  if (!Number.isSafeInteger(quotaBytes) || quotaBytes < 1024 * 1024) throw new InvalidStorageNameError(`quota ${String(quotaBytes)} is not a whole number of bytes ≥ 1 MiB`)
  return quotaBytes
}
