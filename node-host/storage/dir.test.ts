// The dir driver: volumes as directories, snapshots as copies, replace by rename, usage, and
// recovery of a swap a crash interrupted.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DirDriver } from './dir.ts'
import { SnapshotNotFoundError } from './errors.ts'

let root: string
let dir: DirDriver
const claim = { cell: 'ledger', ordinal: 0 }

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cell-dir-'))
  dir = new DirDriver(root)
})
afterEach(async () => { await rm(root, { recursive: true, force: true }) })

describe('dir driver', () => {
  it('create is idempotent, snapshots are copies, replace swaps, usage sums the files', async () => {
    const mount = await dir.create(claim, 1 << 20)
    expect(mount).toBe(join(root, 'cell', 'ledger', '0'))
    await writeFile(join(mount, 'a'), 'one')
    expect(await dir.create(claim, 1 << 20)).toBe(mount)
    expect(await readFile(join(mount, 'a'), 'utf8')).toBe('one')
    await dir.snapshot(claim, 's1')
    await writeFile(join(mount, 'a'), 'two!')
    expect(await dir.listSnapshots(claim)).toEqual(['s1'])
    expect(await dir.withSnapshotFiles(claim, 's1', async d => await readFile(join(d, 'a'), 'utf8'))).toBe('one')
    await expect(dir.withSnapshotFiles(claim, 'nope', async d => d)).rejects.toBeInstanceOf(SnapshotNotFoundError)
    expect(await dir.usage(claim)).toEqual({ usedBytes: 4 })
    await expect(dir.replace(claim, 1 << 20, async () => { throw new Error('fill failed') })).rejects.toThrow('fill failed')
    expect(await readdir(join(root, 'cell', 'ledger'))).toEqual(['0'])
    await dir.replace(claim, 1 << 20, async d => { await writeFile(join(d, 'b'), 'new') })
    expect(await readdir(mount)).toEqual(['b'])
    await dir.destroy(claim)
    expect(await dir.exists(claim)).toBe(false)
    expect(await dir.listSnapshots(claim)).toEqual([])
  })

  it('recover removes half-made restores and puts back a volume set aside', async () => {
    const cellDir = join(root, 'cell', 'ledger')
    await mkdir(join(cellDir, '.0.restore-deadbeef'), { recursive: true })
    await mkdir(join(cellDir, '.1.old-cafebabe'), { recursive: true })
    await writeFile(join(cellDir, '.1.old-cafebabe', 'kept'), 'kept')
    await mkdir(join(cellDir, '2'))
    await mkdir(join(cellDir, '.2.old-00000000'))
    await mkdir(join(root, 'snapshots', 'ledger', '0', '.tmp-1234'), { recursive: true })
    expect((await dir.recover()).sort()).toEqual(['ledger/.0.restore-deadbeef', 'ledger/.1.old-cafebabe -> ledger/1', 'ledger/.2.old-00000000', 'snapshots/ledger/0/.tmp-1234'])
    expect((await readdir(cellDir)).sort()).toEqual(['1', '2'])
    expect(await readFile(join(cellDir, '1', 'kept'), 'utf8')).toBe('kept')
    expect(await dir.recover()).toEqual([])
  })
})
