// The ZFS test fixture's recovery from a zfs-fuse that stopped serving (zfs-pool.ts): one wedged
// daemon once failed every ZFS suite of a CI run. A stopped daemon (SIGSTOP) answers neither
// `zpool` nor its mounts, the worst case of that wedge: createTestPool still hands out a working
// pool (on a restarted daemon), and destroy() still removes its pool.
import { describe, it, expect, afterEach } from 'vitest'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createTestPool, ensureZfsFuse, mountAnswers, type TestPool } from './zfs-pool.ts'

const exec = promisify(execFile)
const MiB = 1024 * 1024

async function daemonPid (): Promise<string> {
  return (await exec('pgrep', ['-x', 'zfs-fuse'])).stdout.trim()
}

async function stopDaemon (): Promise<string> {
  const pid = await daemonPid()
  await exec('kill', ['-STOP', pid])
  return pid
}

const pools: TestPool[] = []
afterEach(async () => {
  // Whatever a failing test left: a stopped daemon is continued (the next suites need it).
  await exec('pkill', ['-CONT', '-x', 'zfs-fuse']).catch(() => {})
  for (const p of pools.splice(0)) await p.destroy()
}, 180_000)

describe('zfs-pool: a wedged zfs-fuse', () => {
  it('createTestPool restarts a daemon that does not answer and hands out a pool that works', async () => {
    await ensureZfsFuse(5000)
    const before = await stopDaemon()
    const pool = await createTestPool({ sizeBytes: 256 * MiB, deadlineMs: 5000 })
    pools.push(pool)
    expect(await daemonPid()).not.toBe(before)
    await exec('sh', ['-c', `echo written > ${pool.mountpoint}/f && cat ${pool.mountpoint}/f`], { timeout: 15_000 })
    expect((await exec('zpool', ['list', '-H', '-o', 'name'])).stdout.split('\n')).toContain(pool.name)
  }, 180_000)

  it('destroy() removes a pool whose daemon stopped answering', async () => {
    const pool = await createTestPool({ sizeBytes: 256 * MiB, deadlineMs: 5000 })
    expect(await mountAnswers(pool.mountpoint)).toBe(true)
    const before = await stopDaemon()
    await pool.destroy()
    expect(await daemonPid()).not.toBe(before)
    expect((await exec('zpool', ['list', '-H', '-o', 'name'])).stdout.split('\n')).not.toContain(pool.name)
  }, 180_000)
})
