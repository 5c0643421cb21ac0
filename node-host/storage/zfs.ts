// The zfs driver: one dataset per claim, `<pool>/cell/<cell>/<ordinal>`, with `quota` = the claim,
// mounted where the pool's mountpoint puts it (`/<pool>/cell/<cell>/<ordinal>` by default). Real
// `zfs` commands, run without a shell; every name that reaches a command line was validated first.
//
// zfs-fuse specifics this file works around: no `.zfs/snapshot` directory (a snapshot's files are
// read through a temporary clone), rename and destroy need the dataset unmounted first (and may
// report "busy" for a moment after use: retried, bounded), no resume tokens (snapshots.ts chunks
// the streams instead), and a send that, under load, can end early with exit 0 (send streams go
// to a file checked for their BEGIN and END records, and are sent again when cut).
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { spawn } from 'node:child_process'
import { createReadStream, createWriteStream } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { collectStderr, exited, retryBusy, run } from './command.ts'
import { checkClaim, checkSnapshotName } from './driver.ts'
import type { Claim, StorageCallOptions, StreamSource, ZfsStorageDriver } from './driver.ts'
import { InvalidStorageNameError, StorageCommandError, ZfsUnavailableError } from './errors.ts'

const log = logger('cell:storage:zfs')
const SEND_ATTEMPTS = 3
/** A send stream is a sequence of 312-byte dmu_replay_record headers (with payloads): BEGIN first, END last. */
const DRR_BYTES = 312
const DRR_BEGIN = 0
const DRR_END = 5
const DMU_BACKUP_MAGIC = 0x2f5bacbacn

/** Why the stream in `file` is not a whole send stream, or undefined when it is. */
export async function checkSendStream (file: string): Promise<string | undefined> {
  const fh = await open(file, 'r')
  try {
    const { size } = await fh.stat()
    if (size < 2 * DRR_BYTES) return `is ${size} bytes long`
    // Records are in the sender's byte order; the magic tells which.
    const head = Buffer.alloc(16)
    await fh.read(head, 0, 16, 0)
    const little = head.readBigUInt64LE(8) === DMU_BACKUP_MAGIC
    if (!little && head.readBigUInt64BE(8) !== DMU_BACKUP_MAGIC) return 'does not start with a BEGIN record'
    if ((little ? head.readUInt32LE(0) : head.readUInt32BE(0)) !== DRR_BEGIN) return 'does not start with a BEGIN record'
    const tail = Buffer.alloc(4)
    await fh.read(tail, 0, 4, size - DRR_BYTES)
    if ((little ? tail.readUInt32LE(0) : tail.readUInt32BE(0)) !== DRR_END) return 'does not end with an END record'
    return undefined
  } finally {
    await fh.close()
  }
}
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
    return await this.snapshotsOf(this.dataset(claim), options)
  }

  /** Snapshot names of a dataset, oldest first. */
  private async snapshotsOf (ds: string, options: StorageCallOptions): Promise<string[]> {
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

  async send<T> (claim: Claim, name: string, base: string | undefined, consume: (stream: AsyncIterable<Uint8Array>) => Promise<T>, options: StorageCallOptions & { spoolDir?: string } = {}): Promise<T> {
    const ds = this.dataset(claim)
    const args = base === undefined
      ? ['send', `${ds}@${checkSnapshotName(name)}`]
      : ['send', '-i', checkSnapshotName(base), `${ds}@${checkSnapshotName(name)}`]
    // zfs-fuse, with other pools busy in the same daemon, now and then ends a send early and
    // exits 0 (seen: an empty stream). The stream goes to a file, is checked for its BEGIN and
    // END records, and is sent again when they are missing, at most SEND_ATTEMPTS times.
    const spool = join(options.spoolDir ?? tmpdir(), `.zfs-send-${randomBytes(8).toString('hex')}`)
    try {
      for (let attempt = 1; ; attempt++) {
        options.signal?.throwIfAborted()
        const fh = await open(spool, 'w')
        try {
          const child = spawn('zfs', args, { stdio: ['ignore', fh.fd, 'pipe'], signal: options.signal })
          await exited(child, 'zfs', args, collectStderr(child))
        } finally {
          await fh.close()
        }
        const problem = await checkSendStream(spool)
        if (problem === undefined) break
        if (attempt >= SEND_ATTEMPTS) throw new StorageCommandError(`zfs ${args.join(' ')}`, `the stream ${problem}, ${SEND_ATTEMPTS} times`)
        log('zfs send of %s@%s: the stream %s (attempt %d of %d)', ds, name, problem, attempt, SEND_ATTEMPTS)
      }
      return await consume(createReadStream(spool, { highWaterMark: 1024 * 1024 }))
    } finally {
      await rm(spool, { force: true })
    }
  }

  async receive (claim: Claim, quotaBytes: number, streams: StreamSource[], options: StorageCallOptions & { spoolDir?: string } = {}): Promise<string> {
    if (streams.length === 0) throw new StorageCommandError('zfs recv', 'no stream to receive')
    const ds = this.dataset(claim)
    const quota = checkQuota(quotaBytes)
    await run('zfs', ['create', '-p', `${ds.slice(0, ds.lastIndexOf('/'))}`], options)
    // Every stream is spooled to a regular file first, so a stream that fails its digests (they
    // are checked as it is read) never reaches zfs: nothing is received from a corrupt chain.
    const spools: string[] = []
    try {
      for (const source of streams) {
        const spool = join(options.spoolDir ?? tmpdir(), `.zfs-recv-${randomBytes(8).toString('hex')}`)
        spools.push(spool)
        await pipeline(Readable.from(source()), createWriteStream(spool, { flags: 'wx' }), { signal: options.signal })
      }
      const fresh = `${ds}-restore-${randomBytes(4).toString('hex')}`
      try {
        await this.receiveFiles(fresh, spools, options)
        // The chain's earlier snapshots hold blocks the newest no longer has, and a quota counts
        // them: a claim rewritten between snapshots would not fit its own quota (the quota below
        // failed, and the restore fell back to the plain image). Only the newest stays: the base of
        // this owner's next incremental.
        for (const name of (await this.snapshotsOf(fresh, options)).slice(0, -1)) {
          await retryBusy(async () => await run('zfs', ['destroy', `${fresh}@${checkSnapshotName(name)}`], options), options.signal)
        }
        // Received without a quota (a quota on the target refuses the stream), then capped.
        await run('zfs', ['set', `quota=${quota}`, fresh], options)
      } catch (err) {
        if (await this.datasetExists(fresh, {}).catch(() => false)) await this.destroyDataset(fresh, {})
        throw err
      }
      return await this.swapIn(ds, fresh, options)
    } finally {
      for (const spool of spools) await rm(spool, { force: true })
    }
  }

  private async receiveFiles (fresh: string, files: readonly string[], options: StorageCallOptions): Promise<void> {
    for (const file of files) {
      const fh = await open(file, 'r')
      try {
        // -F: the fresh dataset may have been touched (atime) since the last stream; -u: mount once at the end.
        const args = ['recv', '-F', '-u', fresh]
        options.signal?.throwIfAborted()
        const child = spawn('zfs', args, { stdio: [fh.fd, 'ignore', 'pipe'], signal: options.signal })
        await exited(child, 'zfs', args, collectStderr(child))
      } finally {
        await fh.close()
      }
    }
  }

  async destroy (claim: Claim, options: StorageCallOptions = {}): Promise<void> {
    const ds = this.dataset(claim)
    if (await this.datasetExists(ds, options)) await this.destroyDataset(ds, options)
  }

  async usage (claim: Claim, options: StorageCallOptions = {}): Promise<{ usedBytes: number, quotaBytes?: number }> {
    const [used, quota] = (await run('zfs', ['get', '-Hp', '-o', 'value', 'used,quota', this.dataset(claim)], options)).trim().split('\n').map(Number)
    return { usedBytes: used, ...(quota > 0 ? { quotaBytes: quota } : {}) }
  }

  async recover (options: StorageCallOptions = {}): Promise<string[]> {
    const root = `${this.pool}/cell`
    const names = (await run('zfs', ['list', '-H', '-o', 'name', '-t', 'filesystem', '-r', '-d', '2', root], options)).split('\n').filter(n => n !== '')
    const present = new Set(names)
    const done: string[] = []
    for (const name of names) {
      const m = /^(.+\/(?:0|[1-9]\d{0,4}))-(restore|read|old)-[0-9a-f]{8}$/.exec(name)
      if (m === null || !name.startsWith(`${root}/`)) continue
      if (m[2] === 'old' && !present.has(m[1])) {
        await retryBusy(async () => {
          await run('zfs', ['unmount', name], options).catch(() => '')
          return await run('zfs', ['rename', name, m[1]], options)
        }, options.signal)
        await this.ensureMounted(m[1], options)
        present.add(m[1])
        done.push(`${name} -> ${m[1]}`)
      } else {
        await this.destroyDataset(name, options)
        done.push(name)
      }
    }
    return done
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
