// One node per data directory. Two `cell up --data D` at once would share one peer identity, one
// release store, one set of volumes and claims: two processes answering as the same node, each
// thinking it owns the same claim. The first takes `D/node.lock`; a second start fails with
// DataDirInUseError naming the holder, until the holder stops or dies.
//
// The lock file holds the holder's pid, its process start time (/proc/<pid>/stat field 22, so a
// reused pid after a crash or reboot, or a restarted container's pid 1, is not mistaken for the
// holder) and its host name. It appears whole or not at all (written to a temporary name, then
// hard-linked into place: link() fails if the lock exists). The holder touches the file every
// REFRESH_MS. A lock whose holder is gone is taken over (see lockDataDir): on this host, when its
// pid no longer runs the process that wrote it; from another host (a container restarted under a new
// host name on the same volume, a shared disk), when it has not been touched for STALE_MS.
import { link, mkdir, readdir, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import { CellError, type RetryRule } from '../core/errors.ts'

export const LOCK_FILE = 'node.lock'

/** Lock files larger than this are not a lock this code wrote. */
const MAX_LOCK_BYTES = 4096
/** How often a holder touches its lock. */
export const REFRESH_MS = 10_000
/** A lock of another host untouched this long is its holder's no more. */
export const STALE_MS = 60_000

/** Another node runs on this data directory (or one this node cannot read holds it): nothing started. */
export class DataDirInUseError extends CellError {
  static override readonly errorName = 'DataDirInUseError'
  static override readonly retry: RetryRule = 'never'
}

/** The data directory cannot be made or is not a directory (a file, no permission, a read-only or full disk). */
export class DataDirUnusableError extends CellError {
  static override readonly errorName = 'DataDirUnusableError'
  static override readonly retry: RetryRule = 'never'
}

/** Makes `dir` (mode 0700, parents as needed) or checks the one there: DataDirUnusableError otherwise. */
export async function prepareDataDir (dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const what = e.code === 'EEXIST' || e.code === 'ENOTDIR' ? 'it (or a parent) is a file, not a directory' : `${e.code ?? e.name}: ${e.message}`
    throw new DataDirUnusableError(`cannot use ${resolve(dir)} as a node's data directory: ${what}`, { cause: err })
  }
  const info = await stat(dir)
  if (!info.isDirectory()) throw new DataDirUnusableError(`cannot use ${resolve(dir)} as a node's data directory: it is not a directory`)
}

interface Holder { pid: number, start: string, host: string, sinceMs: number }

/**
 * Directories this process holds or is taking (set before the first await, so two nodes of one
 * process never race each other): a second node in the same process is refused as well.
 */
const heldHere = new Map<string, DataDirLock | 'taking'>()

export class DataDirLock {
  private released = false
  readonly dir: string
  readonly path: string
  private readonly holder: Holder
  private readonly timer: ReturnType<typeof setInterval>

  constructor (dir: string, path: string, holder: Holder, refreshMs = REFRESH_MS) {
    this.dir = dir
    this.path = path
    this.holder = holder
    this.timer = setInterval(() => { void this.refresh() }, refreshMs)
    this.timer.unref()
  }

  /** Touches the lock file, so that a node on another host sees it held (REFRESH_MS). */
  async refresh (): Promise<void> {
    if (this.released) return
    const now = new Date()
    await utimes(this.path, now, now).catch(() => {})
  }

  /** Removes the lock if it is still this process's; safe to call twice. */
  async release (): Promise<void> {
    if (this.released) return
    this.released = true
    clearInterval(this.timer)
    if (heldHere.get(this.dir) === this) heldHere.delete(this.dir)
    const now = parseHolder(await readFile(this.path, 'utf8').catch(() => ''))
    if (now !== undefined && sameHolder(now, this.holder)) await unlink(this.path).catch(() => {})
  }
}

/** The start time of process `pid` in clock ticks since boot, or undefined if there is no such process. */
export function processStart (pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may hold spaces or ')': fields count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[19]
  } catch {
    return undefined
  }
}

function parseHolder (text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Partial<Holder>
    if (typeof h.pid !== 'number' || !Number.isSafeInteger(h.pid) || h.pid <= 0) return undefined
    if (typeof h.start !== 'string' || typeof h.host !== 'string' || typeof h.sinceMs !== 'number') return undefined
    if (!Number.isSafeInteger(h.sinceMs) || h.sinceMs < 0 || h.sinceMs > 8.64e15) return undefined // a date
    return h as Holder
  } catch {
    return undefined
  }
}

function sameHolder (a: Holder, b: Holder): boolean {
  return a.pid === b.pid && a.start === b.start && a.host === b.host && a.sinceMs === b.sinceMs
}

function describe (h: Holder): string {
  return `pid ${h.pid}${h.host !== hostname() ? ` on ${h.host}` : ''}, since ${new Date(h.sinceMs).toISOString()}`
}

/**
 * Whether the process that wrote `h` still holds it: on this host, whether its pid runs the process
 * that wrote it (this process included: another thread's node); from another host, whether the file
 * was touched within STALE_MS.
 */
function holderAlive (h: Held): boolean {
  if (h.host !== hostname()) return Date.now() - h.touchedMs < STALE_MS
  const start = processStart(h.pid)
  return start !== undefined && start === h.start
}

interface Held extends Holder { touchedMs: number }

/** Reads a lock-format file: its holder, undefined when unreadable, 'gone' when it does not exist. */
async function readHolder (path: string): Promise<Held | undefined | 'gone'> {
  let text: string
  let touchedMs: number
  try {
    text = await readFile(path, 'utf8')
    touchedMs = (await stat(path)).mtimeMs
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone'
    throw err
  }
  const holder = text.length <= MAX_LOCK_BYTES ? parseHolder(text) : undefined
  return holder !== undefined ? { ...holder, touchedMs } : undefined
}

/** Temporary lock files of starters that died before removing theirs (their pid runs no more). */
async function removeOrphans (dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names) {
    const m = ORPHAN.exec(name)
    if (m != null && Number(m[1]) !== process.pid && processStart(Number(m[1])) === undefined) await unlink(join(dir, name)).catch(() => {})
  }
}
const ORPHAN = /^\.node\.lock\.(\d{1,10})\.[0-9a-f]{8}$/

const inUse = (key: string, h: Holder): DataDirInUseError =>
  new DataDirInUseError(`${key} is in use by another cell node (${describe(h)}); stop it first, or pass another --data`)

/**
 * Takes `dir`'s lock for this process (the directory must exist). Throws DataDirInUseError when a
 * running process holds it; takes over a lock its holder left behind.
 *
 * Only `link()` creates the lock, and a stale lock is removed only by the starter holding
 * `node.lock.takeover` (made the same way), after reading under it that the lock is still the stale
 * one: of several nodes starting at once on a directory with a stale lock, exactly one gets it.
 */
export async function lockDataDir (dir: string, options: { nowMs?: number, refreshMs?: number } = {}): Promise<DataDirLock> {
  const nowMs = options.nowMs ?? Date.now()
  const key = resolve(dir)
  const path = join(key, LOCK_FILE)
  const takeover = `${path}.takeover`
  if (heldHere.has(key)) throw new DataDirInUseError(`${key} is in use by another cell node in this process (pid ${process.pid}); stop it first, or pass another --data`)
  heldHere.set(key, 'taking')
  const holder: Holder = { pid: process.pid, start: processStart(process.pid) ?? '', host: hostname(), sinceMs: nowMs }
  const tmp = join(key, `.${LOCK_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`)
  let taken = false
  const linked = async (to: string): Promise<boolean> => {
    try {
      await link(tmp, to)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw err
    }
  }
  try {
    await writeFile(tmp, JSON.stringify(holder) + '\n', { mode: 0o600 })
    for (let attempt = 0; attempt < 4; attempt++) {
      if (await linked(path)) {
        const lock = new DataDirLock(key, path, holder, options.refreshMs)
        heldHere.set(key, lock)
        taken = true
        await removeOrphans(key)
        return lock
      }
      const current = await readHolder(path)
      if (current === 'gone') continue // released since link() failed: try again
      if (current === undefined) throw new DataDirInUseError(`${key} has a ${LOCK_FILE} this node cannot read; if no node runs on this directory, remove ${path}`)
      if (holderAlive(current)) throw inUse(key, current)
      // Its holder is gone (crashed, killed, or the machine restarted): take it over under the takeover lock.
      if (!await linked(takeover)) {
        const other = await readHolder(takeover)
        if (other === 'gone') continue
        if (other !== undefined && holderAlive(other)) throw new DataDirInUseError(`${key} is being taken by another cell node starting at the same moment (${describe(other)}); stop it first, or pass another --data`)
        // A takeover lock left by a starter that died within it (or unreadable): removed, then try again.
        await unlink(takeover).catch(() => {})
        continue
      }
      try {
        const still = await readHolder(path)
        if (still !== 'gone' && still !== undefined && sameHolder(still, current)) await unlink(path)
      } finally {
        await unlink(takeover).catch(() => {})
      }
    }
    const last = await readHolder(path)
    throw last !== 'gone' && last !== undefined ? inUse(key, last) : new DataDirInUseError(`${key}: could not take ${LOCK_FILE} after 4 attempts; another cell node is starting on it`)
  } finally {
    if (!taken) heldHere.delete(key)
    await unlink(tmp).catch(() => {})
  }
}
