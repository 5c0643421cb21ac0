import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openRunDir } from './run-dir.ts'

let root = ''
let parent = ''
let dataDir = ''
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'cell-run-dir-test-'))
  parent = join(root, 'tmp')
  dataDir = join(root, 'data')
  await mkdir(parent)
  await mkdir(dataDir)
})
afterEach(async () => { await rm(root, { recursive: true, force: true }) })

const recorded = async (name: string): Promise<string> => (await readFile(join(dataDir, 'run', `${name}.path`), 'utf8')).trim()

describe('a node\'s run directory', () => {
  it('is made fresh under the parent, private to this user, recorded in the data dir, and removed with its record', async () => {
    const dir = await openRunDir(dataDir, 'run', { parent })
    expect(dir.path).toMatch(new RegExp(`^${parent}/cell-run-[A-Za-z0-9]{6}$`))
    expect((await stat(dir.path)).mode & 0o777).toBe(0o700)
    expect(await recorded('run')).toBe(dir.path)
    const other = await openRunDir(join(root, 'other-data'), 'run', { parent })
    expect(other.path).not.toBe(dir.path)
    await dir.remove()
    expect(existsSync(dir.path)).toBe(false)
    expect(existsSync(join(dataDir, 'run', 'run.path'))).toBe(false)
    await dir.remove()
    expect(existsSync(other.path)).toBe(true)
  })

  it('removes what a killed run left (its sockets, copies) at the next start, and only that', async () => {
    const killed = await openRunDir(dataDir, 'run', { parent })
    await mkdir(join(killed.path, 'billing-1.0.0-abcd'))
    await writeFile(join(killed.path, 'billing-1.0.0-abcd', 'cell.mjs'), 'x')
    const wt = await openRunDir(dataDir, 'wt', { parent })
    // The process was killed: nothing removed. The next start of the same node:
    const next = await openRunDir(dataDir, 'run', { parent })
    expect(existsSync(killed.path)).toBe(false)
    expect(existsSync(next.path)).toBe(true)
    expect(await recorded('run')).toBe(next.path)
    // Another kind of run dir of the same node is its own record's business.
    expect(existsSync(wt.path)).toBe(true)
    // The killed run's handle must not remove the new run's record.
    await killed.remove()
    expect(await recorded('run')).toBe(next.path)
  })

  it('never removes what a forged or stale record names: another place, a link, another user\'s directory', async () => {
    const record = join(dataDir, 'run', 'run.path')
    await mkdir(join(dataDir, 'run'))
    const keep = join(root, 'keep')
    await mkdir(keep)
    await writeFile(join(keep, 'file'), 'precious')
    // Outside the parent, or not a name this code makes.
    for (const named of [keep, join(parent, 'keep'), join(parent, 'cell-run-toolongname'), join(parent, 'cell-wt-abcdef'), '/']) {
      if (named.startsWith(parent)) await mkdir(named, { recursive: true })
      await writeFile(record, named + '\n')
      const dir = await openRunDir(dataDir, 'run', { parent })
      expect(existsSync(named)).toBe(true)
      await dir.remove()
    }
    // A link with the right name, pointing at a directory elsewhere.
    const link = join(parent, 'cell-run-link00')
    await symlink(keep, link)
    await writeFile(record, link + '\n')
    await (await openRunDir(dataDir, 'run', { parent })).remove()
    expect(existsSync(link)).toBe(true)
    expect(await readFile(join(keep, 'file'), 'utf8')).toBe('precious')
    // A directory with the right name that another user owns (made there by that user).
    if (process.getuid?.() === 0) {
      const theirs = join(parent, 'cell-run-theirs')
      await mkdir(theirs)
      await chown(theirs, 65534, 65534)
      await writeFile(record, theirs + '\n')
      await (await openRunDir(dataDir, 'run', { parent })).remove()
      expect(existsSync(theirs)).toBe(true)
    }
  })

  it('refuses a name that could leave the parent', async () => {
    await expect(openRunDir(dataDir, '../x', { parent })).rejects.toThrow(/lowercase letters/)
  })
})
