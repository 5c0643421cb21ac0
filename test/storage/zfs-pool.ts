// File-backed zfs-fuse pools for tests and benches: a sparse file in a temp dir, a random pool
// name, destroyed (pool, file, mount dir) by destroy(), which is safe to call twice. Starts the
// zfs-fuse daemon when none runs (it daemonises) and waits for `zpool list` to answer.
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm, rmdir } from 'node:fs/promises'
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

async function answers (): Promise<boolean> {
  try { await exec('zpool', ['list'], { timeout: 10_000 }); return true } catch { return false }
}

/** Make sure the zfs-fuse daemon runs, starting it if needed; throws after `deadlineMs`. */
export async function ensureZfsFuse (deadlineMs = 30_000): Promise<void> {
  if (await answers()) return
  const running = await exec('pgrep', ['-x', 'zfs-fuse']).then(() => true, () => false)
  if (!running) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('zfs-fuse', [], { stdio: 'ignore' })
      child.once('error', reject)
      child.once('exit', () => { resolve() })
    })
  }
  const until = Date.now() + deadlineMs
  while (!await answers()) {
    if (Date.now() > until) throw new Error(`zfs-fuse did not answer zpool list within ${deadlineMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

/** A fresh pool on a sparse file of `sizeBytes`. */
export async function createTestPool (options: { sizeBytes?: number, prefix?: string } = {}): Promise<TestPool> {
  await ensureZfsFuse()
  const dir = await mkdtemp(join(tmpdir(), 'cell-zpool-'))
  const file = join(dir, 'pool.img')
  const name = `${options.prefix ?? 'celltest'}${randomBytes(4).toString('hex')}`
  const fh = await open(file, 'w')
  await fh.truncate(options.sizeBytes ?? 1024 ** 3)
  await fh.close()
  await exec('zpool', ['create', '-f', name, file], { timeout: 60_000 })
  let destroyed = false
  return {
    name,
    mountpoint: `/${name}`,
    async destroy () {
      if (destroyed) return
      destroyed = true
      for (let i = 0; i < 10; i++) {
        try { await exec('zpool', ['destroy', '-f', name], { timeout: 60_000 }); break } catch (err) {
          if (/no such pool/.test(String((err as { stderr?: string }).stderr))) break
          if (i === 9) throw err
          await new Promise(resolve => setTimeout(resolve, 100 * (i + 1)))
        }
      }
      await rmdir(`/${name}`).catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  }
}
