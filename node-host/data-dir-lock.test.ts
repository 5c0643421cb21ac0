import { describe, expect, it, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { DataDirInUseError, DataDirUnusableError, LOCK_FILE, STALE_MS, lockDataDir, prepareDataDir, processStart } from './data-dir-lock.ts'

const dirs: string[] = []
async function freshDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cell-lock-'))
  dirs.push(dir)
  return dir
}
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

/** A process that runs until killed, and a promise of its exit. */
function sleeper (): { pid: number, exited: Promise<void>, kill: () => void } {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  return { pid: child.pid!, exited, kill: () => { child.kill('SIGKILL') } }
}

async function writeHolder (dir: string, holder: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, LOCK_FILE), JSON.stringify(holder))
}

describe('preparing a data directory', () => {
  it('makes it with its parents, mode 0700, accepts one that exists, and names a file in the way', async () => {
    const root = await freshDir()
    const dir = join(root, 'a', 'b')
    await prepareDataDir(dir)
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    await prepareDataDir(dir)
    await writeFile(join(root, 'file'), 'x')
    await expect(prepareDataDir(join(root, 'file'))).rejects.toThrow(DataDirUnusableError)
    await expect(prepareDataDir(join(root, 'file'))).rejects.toThrow(/^cannot use .*\/file as a node's data directory: it \(or a parent\) is a file, not a directory$/)
    await expect(prepareDataDir(join(root, 'file', 'below'))).rejects.toThrow(/is a file, not a directory/)
  })
})

describe('the data directory lock', () => {
  it('refuses a second holder in this process until the first releases it, and leaves no temporary file', async () => {
    const dir = await freshDir()
    const first = await lockDataDir(dir)
    const held = JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')) as { pid: number, start: string, host: string }
    expect(held).toMatchObject({ pid: process.pid, start: processStart(process.pid), host: hostname() })
    await expect(lockDataDir(dir)).rejects.toThrow(DataDirInUseError)
    await expect(lockDataDir(dir)).rejects.toThrow(new RegExp(`in use by another cell node in this process \\(pid ${process.pid}\\)`))
    await first.release()
    expect(await readdir(dir)).toEqual([])
    const second = await lockDataDir(dir)
    await first.release() // a second release of the old lock leaves the new one alone
    expect(await readdir(dir)).toEqual([LOCK_FILE])
    await second.release()
    expect(await readdir(dir)).toEqual([])
  })

  it('refuses a lock held by another running process, and takes it over once that process is gone', async () => {
    const dir = await freshDir()
    const other = sleeper()
    try {
      await writeHolder(dir, { pid: other.pid, start: processStart(other.pid), host: hostname(), sinceMs: 1 })
      await expect(lockDataDir(dir)).rejects.toThrow(new RegExp(`pid ${other.pid}, since 1970-01-01T00:00:00.001Z\\); stop it first, or pass another --data`))
    } finally {
      other.kill()
      await other.exited
    }
    // A starter killed between writing its temporary file and removing it left this behind.
    await writeFile(join(dir, `.${LOCK_FILE}.${other.pid}.0badf00d`), '{}')
    const lock = await lockDataDir(dir)
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid })
    expect(await readdir(dir)).toEqual([LOCK_FILE])
    await lock.release()
  })

  it('takes over a lock whose pid now belongs to another process (started later: a reused pid)', async () => {
    const dir = await freshDir()
    const other = sleeper()
    try {
      await writeHolder(dir, { pid: other.pid, start: String(Number(processStart(other.pid)) - 1), host: hostname(), sinceMs: 1 })
      const lock = await lockDataDir(dir)
      await lock.release()
    } finally {
      other.kill()
      await other.exited
    }
  })

  it('takes over a lock of this pid written by an earlier process (a restarted container\'s pid 1)', async () => {
    const dir = await freshDir()
    await writeHolder(dir, { pid: process.pid, start: String(Number(processStart(process.pid)) - 1), host: hostname(), sinceMs: 1 })
    const lock = await lockDataDir(dir)
    await lock.release()
  })

  it('honours another host\'s lock while its holder touches it, takes it over once it stops; never one it cannot read', async () => {
    const dir = await freshDir()
    await writeHolder(dir, { pid: 1, start: '1', host: `${hostname()}-elsewhere`, sinceMs: 1 })
    await expect(lockDataDir(dir)).rejects.toThrow(new RegExp(`pid 1 on ${hostname()}-elsewhere`))
    // Untouched for longer than STALE_MS: its holder is gone (a container restarted under a new host name).
    const old = new Date(Date.now() - STALE_MS - 1_000)
    await utimes(join(dir, LOCK_FILE), old, old)
    await (await lockDataDir(dir)).release()
    await writeFile(join(dir, LOCK_FILE), 'not json')
    await expect(lockDataDir(dir)).rejects.toThrow(/cannot read; if no node runs on this directory, remove .*node\.lock/)
    for (const broken of [{ pid: -3, start: '1', host: hostname(), sinceMs: 1 }, { pid: 1, start: '1', host: hostname(), sinceMs: 1e300 }, { pid: 1, start: 1, host: hostname(), sinceMs: 1 }]) {
      await writeFile(join(dir, LOCK_FILE), JSON.stringify(broken))
      await expect(lockDataDir(dir)).rejects.toThrow(/cannot read/)
    }
    await writeFile(join(dir, LOCK_FILE), 'x'.repeat(10_000))
    await expect(lockDataDir(dir)).rejects.toThrow(/cannot read/)
    expect((await readdir(dir)).sort()).toEqual([LOCK_FILE])
  })

  it('is touched by its holder, so another host sees it held', async () => {
    const dir = await freshDir()
    const lock = await lockDataDir(dir, { refreshMs: 20 })
    const old = new Date(Date.now() - 3_600_000)
    await utimes(join(dir, LOCK_FILE), old, old)
    const deadline = Date.now() + 5_000
    while ((await stat(join(dir, LOCK_FILE))).mtimeMs < Date.now() - 60_000) {
      if (Date.now() > deadline) throw new Error('the lock was not touched within 5 s')
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    await lock.release()
    expect(await readdir(dir)).toEqual([])
  })

  it('lets exactly one of several processes starting at once take a stale lock', async () => {
    const dir = await freshDir()
    const gone = sleeper()
    gone.kill()
    await gone.exited
    await writeHolder(dir, { pid: gone.pid, start: '1', host: hostname(), sinceMs: 1 })
    // Each process loads the code, says ready, and on 'go' (sent to all at once) tries once and
    // says won or the error's name; it holds what it won until its stdin ends.
    const script = `
      import { lockDataDir } from ${JSON.stringify(join(import.meta.dirname, 'data-dir-lock.ts'))}
      console.log('ready')
      process.stdin.once('data', async () => {
        try { await lockDataDir(process.argv[1]); console.log('won') } catch (err) { console.log(err.name) }
        process.stdin.once('end', () => process.exit(0))
        process.stdin.resume()
      })`
    const procs = Array.from({ length: 6 }, () => spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['pipe', 'pipe', 'inherit'] }))
    const lines = procs.map((p) => {
      const got: string[] = []
      let waiting: (() => void) | undefined
      let buf = ''
      p.stdout.on('data', (b: Buffer) => {
        buf += b.toString()
        let nl: number
        while ((nl = buf.indexOf('\n')) !== -1) { got.push(buf.slice(0, nl)); buf = buf.slice(nl + 1); waiting?.() }
      })
      p.once('exit', () => { waiting?.() })
      return async (n: number): Promise<string | undefined> => {
        while (got.length < n && p.exitCode === null) await new Promise<void>((resolve) => { waiting = resolve })
        return got[n - 1]
      }
    })
    expect(await Promise.all(lines.map(async line => await line(1)))).toEqual(Array(6).fill('ready'))
    for (const p of procs) p.stdin.write('go\n')
    const said = await Promise.all(lines.map(async line => await line(2)))
    for (const p of procs) p.stdin.end()
    await Promise.all(procs.map(async p => await new Promise(resolve => p.exitCode !== null ? resolve(null) : p.once('exit', resolve))))
    expect(said.filter(s => s === 'won')).toHaveLength(1)
    expect(said.filter(s => s !== 'won')).toEqual(Array(5).fill('DataDirInUseError'))
    expect((await readdir(dir)).filter(n => n !== LOCK_FILE)).toEqual([])
  })
})
