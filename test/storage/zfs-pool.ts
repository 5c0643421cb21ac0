// File-backed zfs-fuse pools for tests and benches: a sparse file in a temp dir, a random pool
// name, destroyed (pool, file, mount dir) by destroy(), which is safe to call twice. Starts the
// zfs-fuse daemon when none runs (it daemonises) and waits for `zpool list` to answer.
//
// zfs-fuse sometimes stops serving the FUSE mounts it makes while still answering `zpool` on its
// socket: a new pool's root mount never answers, every process touching it waits in the kernel
// (fuse_get_req), `zfs create` under it hangs and `zpool destroy` says "pool is busy" — and every
// pool made after it is the same, so one wedge failed all the ZFS suites of a CI run. That is the
// daemon's state, not something a test did: createTestPool reads the new pool's mount from a child
// process with a deadline, and when it does not answer restarts the daemon (abort its FUSE
// connections, kill it, unmount what it left, forget the pool cache) and makes the pool again, once,
// saying so on stderr. destroy() does the same when the pool stays busy because its mount hangs.
// A restart drops every pool of the old daemon: a suite that needs several takes them from
// createTestPools, which makes again those made before a restart.
//
// Two `zpool create` at once wedge it that way (measured: 3 of 10 fresh daemons, and a warm one
// within two tries; one after the other, 0 of 10), and test files run in parallel workers: every
// `zpool create` and `zpool destroy` here takes a lock file (flock) shared by all processes.
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const exec = promisify(execFile)

export interface TestPool {
  name: string
  /** The pool's mountpoint (`/<name>`). */
  mountpoint: string
  /** The daemon generation it was made on (zfsFuseGeneration()); a later restart dropped it. */
  generation: number
  destroy (): Promise<void>
}

const ZPOOL_LOCK = join(tmpdir(), 'cell-zpool.lock')
const LOCK_WAIT_S = 120

/**
 * `zpool <args>` under ZPOOL_LOCK, killed after `deadlineMs` (not counting the wait for the lock).
 * Rejects like execFile; `killed` is true when the deadline killed it.
 */
async function zpoolLocked (args: string[], deadlineMs: number): Promise<void> {
  try {
    await exec('flock', ['-w', String(LOCK_WAIT_S), '-E', '75', ZPOOL_LOCK, 'timeout', '-s', 'KILL', String(deadlineMs / 1000), 'zpool', ...args],
      { timeout: LOCK_WAIT_S * 1000 + deadlineMs + 10_000, killSignal: 'SIGKILL' })
  } catch (err) {
    const e = err as { code?: number, killed?: boolean }
    if (e.code === 75) throw new Error(`zfs-pool: another process held ${ZPOOL_LOCK} for ${LOCK_WAIT_S} s (zpool ${args[0]})`)
    if (e.code === 137) e.killed = true // timeout(1) killed zpool
    throw err
  }
}

async function answers (ms = 10_000): Promise<boolean> {
  try { await exec('zpool', ['list'], { timeout: ms, killSignal: 'SIGKILL' }); return true } catch { return false }
}

/**
 * Make sure the zfs-fuse daemon runs, starting it if needed; a daemon that runs and does not answer
 * `zpool list` within `deadlineMs` is restarted once (`restart`); throws when that does not help.
 */
export async function ensureZfsFuse (deadlineMs = 30_000, restart = true): Promise<void> {
  // The daemon this caller probes: if another caller restarts it meanwhile, this one must not
  // restart the new one too.
  const seen = generation
  const probeMs = Math.min(10_000, deadlineMs)
  if (await answers(probeMs)) return
  const running = await exec('pgrep', ['-x', 'zfs-fuse']).then(() => true, () => false)
  if (!running) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('zfs-fuse', [], { stdio: 'ignore' })
      child.once('error', reject)
      child.once('exit', () => { resolve() })
    })
  }
  const until = Date.now() + deadlineMs
  while (!await answers(probeMs)) {
    if (Date.now() > until) {
      // A daemon that was already running and stays silent is restarted; one just started is not.
      if (running && restart) { await recover(`zpool list got no answer within ${deadlineMs} ms`, seen); return }
      throw new Error(`zfs-fuse did not answer zpool list within ${deadlineMs} ms`)
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

/** Does the FUSE mount at `path` answer a directory read within `ms`? Asked from a child process (killable), never from this one. */
export async function mountAnswers (path: string, ms = 15_000): Promise<boolean> {
  try { await exec('ls', ['-a', path], { timeout: ms, killSignal: 'SIGKILL' }); return true } catch { return false }
}

/**
 * Restart a zfs-fuse that stopped serving its mounts: abort its FUSE connections (so the processes
 * waiting on them get ENOTCONN and exit), kill it, lazily unmount every mount it made, forget the
 * pool cache (else the new daemon imports the wedged pools again), start it and wait for it.
 * Every pool of the old daemon is gone afterwards.
 */
async function restartZfsFuse (why: string): Promise<void> {
  // What waits on it, for whoever reads the log: processes in uninterruptible sleep, and where.
  const waiting = await exec('ps', ['-eo', 'pid,stat,etimes,wchan:24,args'], { timeout: 10_000 })
    .then(r => r.stdout.split('\n').filter(l => / D/.test(l.slice(0, 16))).slice(0, 10).map(l => l.trim().slice(0, 160)), () => [] as string[])
  process.stderr.write(`zfs-pool: zfs-fuse stopped serving its mounts (${why}); restarting it${waiting.length > 0 ? `; waiting on it:\n  ${waiting.join('\n  ')}` : ''}\n`)
  // zfs-fuse's mounts (its datasets, fuse.zfs, and its /zfs-kstat), read from mountinfo: touching them could hang.
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').flatMap(line => {
    const [left, right] = line.split(' - ')
    const f = left?.split(' ') ?? []
    const type = right?.split(' ')[0]
    return type === 'fuse.zfs' || (type === 'fuse' && right.split(' ')[1] === 'kstat') ? [{ minor: f[2].split(':')[1], path: f[4] }] : []
  })
  // The FUSE connection of a mount is named by its device minor; aborting it fails its waiting requests.
  const connections = '/sys/fs/fuse/connections'
  await exec('mount', ['-t', 'fusectl', 'none', connections], { timeout: 10_000 }).catch(() => {})
  for (const m of mounts) await writeFile(join(connections, m.minor, 'abort'), '1').catch(() => {})
  await exec('pkill', ['-KILL', '-x', 'zfs-fuse']).catch(() => {})
  const until = Date.now() + 30_000
  while (await exec('pgrep', ['-x', 'zfs-fuse']).then(() => true, () => false)) {
    if (Date.now() > until) throw new Error('zfs-fuse did not exit within 30 s of SIGKILL')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  for (const m of mounts.reverse()) await exec('umount', ['-l', m.path], { timeout: 10_000 }).catch(() => {})
  await rm('/var/lib/zfs/zpool.cache', { force: true })
  await ensureZfsFuse(30_000, false)
}

/** How many times this process restarted the daemon; a pool made before the last restart is gone. */
let generation = 0
let restarting: Promise<void> | undefined
/**
 * Whether the daemon has made a pool since this process last restarted it. A daemon just started
 * is slow to make its first pool on a loaded machine (a CI run saw it miss 3 s and be restarted a
 * second time): until it has made one, pool creation waits at least FRESH_DAEMON_MS, whatever
 * shorter deadline the caller asked for to notice a hung daemon quickly.
 */
let proven = true
const FRESH_DAEMON_MS = 20_000
const patience = (deadlineMs: number): number => proven ? deadlineMs : Math.max(deadlineMs, FRESH_DAEMON_MS)

/** The daemon's current generation (see TestPool.generation). */
export function zfsFuseGeneration (): number { return generation }

/**
 * restartZfsFuse, once for everyone who saw the same daemon fail: a caller that saw generation
 * `seen` fail and finds a restart under way, or already done since, does not restart again (two
 * concurrent createTestPool calls on one wedged daemon restart it once).
 */
async function recover (why: string, seen: number): Promise<void> {
  if (restarting !== undefined) { await restarting; return }
  if (generation !== seen) return
  generation++
  proven = false
  restarting = restartZfsFuse(why).finally(() => { restarting = undefined })
  await restarting
}

async function makePool (name: string, file: string, sizeBytes: number, deadlineMs: number): Promise<boolean> {
  // A fresh file each time: a create that was killed may have written labels to it.
  const fh = await open(file, 'w')
  await fh.truncate(sizeBytes)
  await fh.close()
  try {
    await zpoolLocked(['create', '-f', name, file], deadlineMs)
  } catch (err) {
    if ((err as { killed?: boolean }).killed === true) return false
    throw err
  }
  const answered = await mountAnswers(`/${name}`, deadlineMs / 2)
  if (answered) proven = true
  return answered
}

export interface TestPoolOptions {
  sizeBytes?: number
  prefix?: string
  /**
   * Bounds each zpool command and the wait for the daemon; the new mount must answer within half
   * (default 20 s; at least 20 s on a daemon that has made no pool since this process restarted it).
   */
  deadlineMs?: number
}

/** A fresh pool on a sparse file of `sizeBytes` (default 1 GiB). */
export async function createTestPool (options: TestPoolOptions = {}): Promise<TestPool> {
  const deadlineMs = options.deadlineMs ?? 20_000
  const sizeBytes = options.sizeBytes ?? 1024 ** 3
  await ensureZfsFuse(patience(deadlineMs))
  const dir = await mkdtemp(join(tmpdir(), 'cell-zpool-'))
  const file = join(dir, 'pool.img')
  const newName = (): string => `${options.prefix ?? 'celltest'}${randomBytes(4).toString('hex')}`
  let name = newName()
  let made = generation
  let makeMs = patience(deadlineMs)
  if (!await makePool(name, file, sizeBytes, makeMs)) {
    await recover(`the new pool ${name} or its mount did not answer within ${makeMs} ms`, made)
    await rmdir(`/${name}`).catch(() => {})
    name = newName()
    made = generation
    makeMs = patience(deadlineMs)
    if (!await makePool(name, file, sizeBytes, makeMs)) throw new Error(`zfs-fuse: the pool ${name}'s mount did not answer even after a restart of the daemon`)
  }
  let destroyed = false
  return {
    name,
    mountpoint: `/${name}`,
    generation: made,
    async destroy () {
      if (destroyed) return
      destroyed = true
      for (let i = 0; i < 10 && made === generation; i++) {
        try { await zpoolLocked(['destroy', '-f', name], deadlineMs); break } catch (err) {
          if (/no such pool/.test(String((err as { stderr?: string }).stderr))) break
          const hung = (err as { killed?: boolean }).killed === true
          if (hung || i === 9) {
            // Busy or hung because its mount hangs (the daemon's state, see the top): the restart drops the pool.
            if (!await mountAnswers(`/${name}`, deadlineMs / 2)) { await recover(`the pool ${name} ${hung ? `did not go within ${deadlineMs} ms` : 'stays busy'} and its mount does not answer`, made); break }
            if (i === 9) throw err
          }
          await new Promise(resolve => setTimeout(resolve, 100 * (i + 1)))
        }
      }
      await rmdir(`/${name}`).catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/**
 * `count` pools that all live on the same daemon: when making one of them restarted it (which drops
 * the ones made before), those are made again, at most twice over.
 */
export async function createTestPools (count: number, options: TestPoolOptions = {}, hooks: { beforeMaking?: (index: number) => Promise<void> } = {}): Promise<TestPool[]> {
  const pools: TestPool[] = []
  for (let round = 0; round < 3; round++) {
    for (let i = pools.length - 1; i >= 0; i--) {
      if (pools[i].generation !== generation) { await pools[i].destroy(); pools.splice(i, 1) }
    }
    while (pools.length < count) {
      await hooks.beforeMaking?.(pools.length)
      pools.push(await createTestPool(options))
    }
    if (pools.every(p => p.generation === generation)) return pools
  }
  await Promise.all(pools.map(async p => { await p.destroy() }))
  throw new Error(`zfs-fuse: could not make ${count} pools on one daemon (it was restarted while they were made, three times)`)
}
