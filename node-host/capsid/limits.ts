// Resource limits of a strict capsid: rlimits (through util-linux `prlimit`, which wraps the
// sandbox command) and, where the host mounts cgroup v1 controllers this process may write, a
// per-replica memory and pids cgroup. The cgroup is made a child of this node's own cgroup so the
// host's own limits still apply on top.
import { readFileSync, existsSync } from 'node:fs'
import { mkdir, writeFile, readFile, rmdir, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'

const log = logger('cell:capsid')

export interface CapsidLimits {
  /** Memory (RSS + page cache + tmpfs pages) of the whole sandbox; enforced by the memory cgroup. */
  memoryBytes: number
  /** Processes and threads in the sandbox; pids cgroup where present, else RLIMIT_NPROC of its uid. */
  pids: number
  /** RLIMIT_NOFILE: descriptors per process. */
  openFiles: number
  /** Size of the private /tmp (a tmpfs, so it is also memory). */
  tmpBytes: number
}

/** Node alone needs ~50 MiB and ~11 threads; these leave room for a real cell and stop a hostile one. */
export const DEFAULT_LIMITS: Readonly<CapsidLimits> = Object.freeze({
  memoryBytes: 512 * 1024 * 1024,
  pids: 128,
  openFiles: 1024,
  tmpBytes: 64 * 1024 * 1024
})

const MIN_LIMITS: Readonly<CapsidLimits> = Object.freeze({ memoryBytes: 64 * 1024 * 1024, pids: 32, openFiles: 64, tmpBytes: 1024 * 1024 })

/** Defaults filled in, each value an integer no lower than what Node itself needs to start. */
export function resolveLimits (limits: Partial<CapsidLimits> = {}): CapsidLimits {
  const out = { ...DEFAULT_LIMITS }
  for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof CapsidLimits>) {
    const v = limits[key]
    if (v !== undefined && Number.isFinite(v)) out[key] = Math.max(MIN_LIMITS[key], Math.floor(v))
  }
  return out
}

/** `prlimit` argv prefix. NPROC is counted per real uid, so it is set only when the replica has a uid of its own. */
export function prlimitArgs (prlimit: string, limits: CapsidLimits, ownUid: boolean): string[] {
  return [
    prlimit,
    `--nofile=${limits.openFiles}:${limits.openFiles}`,
    ...(ownUid ? [`--nproc=${limits.pids}:${limits.pids}`] : []),
    // No core dumps: a crashing replica must not write its memory (maybe secrets) anywhere.
    '--core=0:0',
    '--'
  ]
}

/**
 * Shell snippet that moves itself into each cgroup named before `--`, then execs the rest. The
 * join happens before bwrap starts, so nothing of the sandbox ever runs outside its cgroups.
 */
export const JOIN_CGROUPS_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'

type Controller = 'memory' | 'pids'

interface ControllerRoot { controller: Controller, dir: string }

let controllerRoots: ControllerRoot[] | undefined
let warnedMissing = false

/** Where this process's own memory and pids cgroups (v1) are, if mounted. Read once. */
function ownControllerRoots (): ControllerRoot[] {
  if (controllerRoots !== undefined) return controllerRoots
  const roots: ControllerRoot[] = []
  try {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n')
    for (const controller of ['memory', 'pids'] as const) {
      // mountinfo: "... <mount point> <opts> ... - cgroup cgroup rw,memory"
      const mount = mounts.map(l => l.split(' ')).find(f => {
        const dash = f.indexOf('-')
        return dash > 0 && f[dash + 1] === 'cgroup' && (f[dash + 3] ?? '').split(',').includes(controller)
      })
      const line = own.find(l => l.split(':')[1]?.split(',').includes(controller))
      if (mount === undefined || line === undefined) continue
      const path = line.split(':').slice(2).join(':')
      const dir = join(mount[4], path)
      if (existsSync(join(dir, 'cgroup.procs'))) roots.push({ controller, dir })
    }
  } catch (err) {
    log('no cgroup v1 controllers: %s', (err as Error).message)
  }
  controllerRoots = roots
  return roots
}

let swept: Promise<void> | undefined
/** Leftover replica cgroups are at least this old: younger empty ones may be another node's, being joined. */
const LEFTOVER_AGE_MS = 60_000

/**
 * Once per process: remove empty `cell-*` cgroups left by a node that died without cleaning up
 * (SIGKILL, a crash). rmdir refuses a cgroup that still holds processes, so a live replica's stays.
 */
async function sweepLeftovers (): Promise<void> {
  let removed = 0
  for (const { dir: parent } of ownControllerRoots()) {
    const names = (await readdir(parent).catch(() => [] as string[])).filter(n => n.startsWith('cell-')).slice(0, 4096)
    for (const name of names) {
      const dir = join(parent, name)
      const st = await stat(dir).catch(() => undefined)
      if (st === undefined || Date.now() - st.mtimeMs < LEFTOVER_AGE_MS) continue
      if (await rmdir(dir).then(() => true, () => false)) removed++
    }
  }
  if (removed > 0) log('removed %d leftover replica cgroup(s)', removed)
}

/** One replica's cgroups. Empty (`procsFiles` = []) where the host has none this process may create. */
export class ReplicaCgroups {
  readonly dirs: Array<{ controller: Controller, dir: string }>
  readonly limits: CapsidLimits

  private constructor (dirs: Array<{ controller: Controller, dir: string }>, limits: CapsidLimits) {
    this.dirs = dirs
    this.limits = limits
  }

  static async create (name: string, limits: CapsidLimits): Promise<ReplicaCgroups> {
    swept ??= sweepLeftovers()
    await swept
    const dirs: Array<{ controller: Controller, dir: string }> = []
    for (const { controller, dir: parent } of ownControllerRoots()) {
      const dir = join(parent, name)
      try {
        await mkdir(dir)
        if (controller === 'memory') {
          await writeFile(join(dir, 'memory.limit_in_bytes'), String(limits.memoryBytes))
          // Without this the limit could be dodged into swap where the host has any.
          if (existsSync(join(dir, 'memory.memsw.limit_in_bytes'))) await writeFile(join(dir, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => {})
        } else {
          await writeFile(join(dir, 'pids.max'), String(limits.pids))
        }
        dirs.push({ controller, dir })
      } catch (err) {
        log('cannot use the %s cgroup at %s: %s', controller, dir, (err as Error).message)
        await rmdir(dir).catch(() => {})
      }
    }
    if (dirs.length < 2 && !warnedMissing) {
      warnedMissing = true
      log.error('strict capsids here get no %s cgroup (none mounted, or not writable by this user): memory is bounded only by the V8 heap and processes only by RLIMIT_NPROC where replicas have their own uid',
        dirs.some(d => d.controller === 'memory') ? 'pids' : dirs.some(d => d.controller === 'pids') ? 'memory' : 'memory or pids')
    }
    return new ReplicaCgroups(dirs, limits)
  }

  get procsFiles (): string[] { return this.dirs.map(d => join(d.dir, 'cgroup.procs')) }

  has (controller: Controller): boolean { return this.dirs.some(d => d.controller === controller) }

  /** Why the kernel stopped the replica, if a limit did: read before remove(). */
  async exitReason (): Promise<{ limit: 'memory', reason: string } | undefined> {
    const memory = this.dirs.find(d => d.controller === 'memory')
    if (memory === undefined) return undefined
    const oom = await readFile(join(memory.dir, 'memory.oom_control'), 'utf8').catch(() => '')
    const kills = Number(/^oom_kill (\d+)$/m.exec(oom)?.[1] ?? 0)
    const failcnt = Number((await readFile(join(memory.dir, 'memory.failcnt'), 'utf8').catch(() => '0')).trim())
    if (kills > 0 || (failcnt > 0 && !/^oom_kill /m.test(oom))) {
      return { limit: 'memory', reason: `memory limit of ${Math.round(this.limits.memoryBytes / 1024 / 1024)} MiB reached: the kernel killed the replica` }
    }
    return undefined
  }

  /** Remove the cgroups once the sandbox is gone (its last processes may take a moment to be reaped). */
  async remove (): Promise<void> {
    for (const { dir } of this.dirs) {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir)
          break
        } catch (err: any) {
          if (err?.code === 'ENOENT') break
          if (attempt >= 40) { log.error('cannot remove cgroup %s: %s', dir, err?.message); break }
          await new Promise(resolve => setTimeout(resolve, 50))
        }
      }
    }
  }
}
