// The zfs driver on a real zfs-fuse pool: a dataset per claim with the claim as quota, writes
// past it fail inside the writer with EDQUOT/ENOSPC while everything else keeps working, create
// is idempotent, replace swaps contents atomically and keeps the old ones on failure.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { constants, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkSendStream, openZfsDriver } from '../../node-host/storage/zfs.ts'
import type { ZfsDriver } from '../../node-host/storage/zfs.ts'
import { createStorage } from '../../node-host/storage/storage.ts'
import { InvalidStorageNameError, NoStorageClassError, ZfsUnavailableError } from '../../node-host/storage/errors.ts'
import { createTestPool } from './zfs-pool.ts'
import type { TestPool } from './zfs-pool.ts'

const exec = promisify(execFile)
const MiB = 1024 * 1024

// Runs in its own process, as a replica would: write 1 MiB blocks until the filesystem refuses.
const WRITER = `
const fs = require('node:fs')
const path = process.argv[1]
const block = Buffer.alloc(1024 * 1024, 7)
let written = 0
try {
  const fd = fs.openSync(path, 'w')
  for (;;) { fs.writeSync(fd, block); fs.fsyncSync(fd); written += block.length; if (written > 64 * 1024 * 1024) break }
  fs.closeSync(fd)
  console.log(JSON.stringify({ code: 'none', errno: 0, written }))
} catch (err) {
  console.log(JSON.stringify({ code: err.code, errno: err.errno, written }))
}
`

let pool: TestPool
let zfs: ZfsDriver

beforeAll(async () => {
  pool = await createTestPool({ sizeBytes: 512 * MiB })
  zfs = await openZfsDriver(pool.name)
}, 150_000)
afterAll(async () => { await pool?.destroy() })

describe('zfs driver', () => {
  it('a dataset per claim, quota = claim, mounted under the pool', async () => {
    const claim = { cell: 'ledger', ordinal: 0 }
    const mount = await zfs.create(claim, 8 * MiB)
    expect(mount).toBe(`${pool.mountpoint}/cell/ledger/0`)
    expect(zfs.mountpoint(claim)).toBe(mount)
    const { stdout } = await exec('zfs', ['get', '-Hp', '-o', 'value', 'quota,mounted', `${pool.name}/cell/ledger/0`])
    expect(stdout.trim().split('\n')).toEqual([String(8 * MiB), 'yes'])
    await writeFile(join(mount, 'entries.log'), 'first\n')
    // Idempotent: a second create keeps the data and applies a new quota.
    expect(await zfs.create(claim, 16 * MiB)).toBe(mount)
    expect(await readFile(join(mount, 'entries.log'), 'utf8')).toBe('first\n')
    const { stdout: q } = await exec('zfs', ['get', '-Hp', '-o', 'value', 'quota', `${pool.name}/cell/ledger/0`])
    expect(q.trim()).toBe(String(16 * MiB))
    expect(await zfs.exists(claim)).toBe(true)
    expect(await zfs.exists({ cell: 'ledger', ordinal: 9 })).toBe(false)
  })

  it('writing past the claim fails inside the writer with EDQUOT/ENOSPC; the host and other claims keep working', async () => {
    const full = { cell: 'filler', ordinal: 0 }
    const other = { cell: 'filler', ordinal: 1 }
    const mount = await zfs.create(full, 4 * MiB)
    const otherMount = await zfs.create(other, 4 * MiB)
    const { stdout } = await exec(process.execPath, ['-e', WRITER, join(mount, 'big')], { timeout: 30_000 })
    const result = JSON.parse(stdout) as { code: string, errno: number, written: number }
    // Node (libuv) has no name for EDQUOT (code 'UNKNOWN'): compare the errno itself.
    expect([-constants.errno.EDQUOT, -constants.errno.ENOSPC]).toContain(result.errno)
    expect(result.written).toBeLessThanOrEqual(5 * MiB)
    // Nothing else broke: the other claim, the pool, and this process.
    await writeFile(join(otherMount, 'ok'), 'still writable')
    expect(await readFile(join(otherMount, 'ok'), 'utf8')).toBe('still writable')
    const { stdout: used } = await exec('zfs', ['get', '-Hp', '-o', 'value', 'used', `${pool.name}/cell/filler/0`])
    expect(Number(used.trim())).toBeLessThanOrEqual(5 * MiB)
    // Freeing space in the full claim makes it writable again.
    await writeFile(join(mount, 'big'), '')
    await writeFile(join(mount, 'small'), 'x')
    expect(await readFile(join(mount, 'small'), 'utf8')).toBe('x')
  })

  it('snapshots are listed oldest first; replace swaps in new contents, and a failing fill keeps the old', async () => {
    const claim = { cell: 'swap', ordinal: 3 }
    const mount = await zfs.create(claim, 8 * MiB)
    await writeFile(join(mount, 'a'), 'old')
    await zfs.snapshot(claim, 's1')
    await zfs.snapshot(claim, 's2')
    expect(await zfs.listSnapshots(claim)).toEqual(['s1', 's2'])
    expect(await zfs.withSnapshotFiles(claim, 's1', async dir => await readFile(join(dir, 'a'), 'utf8'))).toBe('old')

    await expect(zfs.replace(claim, 8 * MiB, async dir => {
      await writeFile(join(dir, 'half'), 'x')
      throw new Error('fill failed')
    })).rejects.toThrow('fill failed')
    expect(await readdir(mount)).toEqual(['a'])
    expect(await zfs.listSnapshots(claim)).toEqual(['s1', 's2'])

    expect(await zfs.replace(claim, 8 * MiB, async dir => { await writeFile(join(dir, 'b'), 'new') })).toBe(mount)
    expect(await readdir(mount)).toEqual(['b'])
    const { stdout } = await exec('zfs', ['list', '-H', '-o', 'name', '-r', `${pool.name}/cell/swap`])
    expect(stdout.trim().split('\n')).toEqual([`${pool.name}/cell/swap`, `${pool.name}/cell/swap/3`])
    await zfs.destroy(claim)
    expect(await zfs.exists(claim)).toBe(false)
  })

  it('usage counts what the quota counts; recover finishes a swap a crash interrupted', async () => {
    const claim = { cell: 'rec', ordinal: 0 }
    const mount = await zfs.create(claim, 8 * MiB)
    await writeFile(join(mount, 'two-mib'), Buffer.alloc(2 * MiB, 1))
    await exec('sync')
    const usage = await zfs.usage(claim)
    expect(usage.quotaBytes).toBe(8 * MiB)
    // `used` follows the writes once zfs-fuse committed them (a transaction group): most of them by now.
    expect(usage.usedBytes).toBeGreaterThan(MiB)
    // A crash left a half-made restore of rec/0 and rec/1 set aside with no rec/1 in place.
    await exec('zfs', ['create', `${pool.name}/cell/rec/0-restore-deadbeef`])
    await exec('zfs', ['create', `${pool.name}/cell/rec/1-old-cafebabe`])
    await writeFile(join(pool.mountpoint, 'cell/rec/1-old-cafebabe/kept'), 'kept')
    const done = await zfs.recover()
    expect(done.sort()).toEqual([`${pool.name}/cell/rec/0-restore-deadbeef`, `${pool.name}/cell/rec/1-old-cafebabe -> ${pool.name}/cell/rec/1`])
    const { stdout } = await exec('zfs', ['list', '-H', '-o', 'name', '-r', `${pool.name}/cell/rec`])
    expect(stdout.trim().split('\n')).toEqual([`${pool.name}/cell/rec`, `${pool.name}/cell/rec/0`, `${pool.name}/cell/rec/1`])
    expect(await readFile(join(zfs.mountpoint({ cell: 'rec', ordinal: 1 }), 'kept'), 'utf8')).toBe('kept')
    expect(await zfs.recover()).toEqual([])
  })

  it('a send stream is checked whole: an empty or cut stream is told apart from a sound one', async () => {
    const claim = { cell: 'sender', ordinal: 0 }
    const mount = await zfs.create(claim, 8 * MiB)
    await writeFile(join(mount, 'f'), Buffer.alloc(200_000, 3))
    await zfs.snapshot(claim, 's1')
    const bytes = await zfs.send(claim, 's1', undefined, async stream => {
      const parts: Uint8Array[] = []
      for await (const c of stream) parts.push(c)
      return Buffer.concat(parts)
    })
    expect(bytes.length).toBeGreaterThan(200_000)
    const file = join(mount, 'stream')
    await writeFile(file, bytes)
    expect(await checkSendStream(file)).toBeUndefined()
    await writeFile(file, bytes.subarray(0, bytes.length - 100))
    expect(await checkSendStream(file)).toMatch(/END record/)
    await writeFile(file, bytes.subarray(400))
    expect(await checkSendStream(file)).toMatch(/BEGIN record/)
    await writeFile(file, '')
    expect(await checkSendStream(file)).toMatch(/0 bytes/)
  })

  it('a node whose zfs-fuse daemon does not answer gets ZfsUnavailableError', async () => {
    // The daemon is hidden, not stopped (other suites share it): a private mount namespace covers
    // its socket directory with an empty one, and a node process opens the pool from inside.
    const empty = await mkdtemp(join(tmpdir(), 'cell-no-zfs-'))
    const script = `const m = await import(${JSON.stringify(join(import.meta.dirname, '../../node-host/storage/zfs.ts'))}); try { await m.openZfsDriver(${JSON.stringify(pool.name)}); console.log('{"name":"opened"}') } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })) }`
    try {
      const { stdout } = await exec('unshare', ['-m', 'sh', '-c', 'mount --bind "$1" /run/zfs && exec "$2" --input-type=module -e "$3"', 'sh', empty, process.execPath, script], { timeout: 30_000 })
      const result = JSON.parse(stdout) as { name: string, message: string }
      expect(result.name).toBe('ZfsUnavailableError')
      expect(result.message).toMatch(/zfs-fuse/)
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })

  it('refuses bad names and a missing pool by name', async () => {
    await expect(zfs.create({ cell: 'Bad_Name', ordinal: 0 }, 8 * MiB)).rejects.toBeInstanceOf(InvalidStorageNameError)
    await expect(zfs.create({ cell: 'ok', ordinal: -1 }, 8 * MiB)).rejects.toBeInstanceOf(InvalidStorageNameError)
    await expect(zfs.snapshot({ cell: 'ok', ordinal: 0 }, 'x;rm -rf /')).rejects.toBeInstanceOf(InvalidStorageNameError)
    await expect(openZfsDriver(`${pool.name}missing`)).rejects.toBeInstanceOf(ZfsUnavailableError)
    await expect(createStorage({ zfsPool: `${pool.name}missing`, dataDir: '/tmp' })).rejects.toBeInstanceOf(ZfsUnavailableError)
    const dirOnly = await createStorage({ dataDir: '/tmp/cell-storage-test' })
    expect(dirOnly.offered).toEqual(['dir'])
    expect(() => dirOnly.driverFor('zfs')).toThrow(NoStorageClassError)
    expect(dirOnly.driverFor('default').kind).toBe('dir')
    const both = await createStorage({ zfsPool: pool.name, dataDir: '/tmp/cell-storage-test' })
    expect(both.offered).toEqual(['zfs', 'dir'])
    expect(both.driverFor('zfs').kind).toBe('zfs')
    expect(both.driverFor('default').kind).toBe('zfs')
    expect(both.driverFor('dir').kind).toBe('dir')
  })
})
