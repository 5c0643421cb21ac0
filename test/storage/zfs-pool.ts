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
  destroy (): Promise<void>
}

async function answers (ms = 10_000): Promise<boolean> {
  try { await exec('zpool', ['list'], { timeout: ms, killSignal: 'SIGKILL' }); return true } catch { return false }
}

/**
 * Make sure the zfs-fuse daemon runs, starting it if needed; a daemon that runs and does not answer
 * `zpool list` within `deadlineMs` is restarted once (`restart`); throws when that does not help.
 */
export async function ensureZfsFuse (deadlineMs = 30_000, restart = true): Promise<void> {
  const probeMs = Math.min(10_000, deadlineMs)
  if (await answers(probeMs)) return
  const running = await exec('pgrep', ['-x', 'zfs-fuse']).then(() => true, () => false)
  if (running && restart) {
    const until = Date.now() + deadlineMs
    while (Date.now() < until) {
      if (await answers(probeMs)) return
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    await restartZfsFuse(`zpool list got no answer within ${deadlineMs} ms`)
    return
  }
  if (!running) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('zfs-fuse', [], { stdio: 'ignore' })
      child.once('error', reject)
      child.once('exit', () => { resolve() })
    })
  }
  const until = Date.now() + deadlineMs
  while (!await answers(probeMs)) {
    if (Date.now() > until) throw new Error(`zfs-fuse did not answer zpool list within ${deadlineMs} ms`)
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
export async function restartZfsFuse (why: string): Promise<void> {
  process.stderr.write(`zfs-pool: zfs-fuse stopped serving its mounts (${why}); restarting it\n`)
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

async function makePool (name: string, file: string, deadlineMs: number): Promise<boolean> {
  try {
    await exec('zpool', ['create', '-f', name, file], { timeout: deadlineMs, killSignal: 'SIGKILL' })
  } catch (err) {
    if ((err as { killed?: boolean }).killed === true) return false
    throw err
  }
  return await mountAnswers(`/${name}`, deadlineMs / 2)
}

/**
 * A fresh pool on a sparse file of `sizeBytes`. `deadlineMs` (default 30 s) bounds each zpool
 * command and the wait for the daemon; the mount must answer within half of it.
 */
export async function createTestPool (options: { sizeBytes?: number, prefix?: string, deadlineMs?: number } = {}): Promise<TestPool> {
  const deadlineMs = options.deadlineMs ?? 30_000
  await ensureZfsFuse(deadlineMs)
  const dir = await mkdtemp(join(tmpdir(), 'cell-zpool-'))
  const file = join(dir, 'pool.img')
  let name = `${options.prefix ?? 'celltest'}${randomBytes(4).toString('hex')}`
  const fh = await open(file, 'w')
  await fh.truncate(options.sizeBytes ?? 1024 ** 3)
  await fh.close()
  if (!await makePool(name, file, deadlineMs)) {
    await restartZfsFuse(`the new pool ${name} or its mount did not answer within ${deadlineMs} ms`)
    await rmdir(`/${name}`).catch(() => {})
    // A fresh file too: the first create may have written labels to it.
    const again = await open(file, 'w')
    await again.truncate(options.sizeBytes ?? 1024 ** 3)
    await again.close()
    name = `${options.prefix ?? 'celltest'}${randomBytes(4).toString('hex')}`
    if (!await makePool(name, file, deadlineMs)) throw new Error(`zfs-fuse: the pool ${name}'s mount did not answer even after a restart of the daemon`)
  }
  let destroyed = false
  return {
    name,
    mountpoint: `/${name}`,
    async destroy () {
      if (destroyed) return
      destroyed = true
      for (let i = 0; i < 10; i++) {
        try { await exec('zpool', ['destroy', '-f', name], { timeout: deadlineMs, killSignal: 'SIGKILL' }); break } catch (err) {
          if (/no such pool/.test(String((err as { stderr?: string }).stderr))) break
          const hung = (err as { killed?: boolean }).killed === true
          if (hung || i === 9) {
            // Busy or hung because its mount hangs (the daemon's state, see the top): the restart drops the pool.
            if (!await mountAnswers(`/${name}`, deadlineMs / 2)) { await restartZfsFuse(`the pool ${name} ${hung ? `did not go within ${deadlineMs} ms` : 'stays busy'} and its mount does not answer`); break }
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
