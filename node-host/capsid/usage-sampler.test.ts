import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Clock } from '../../core/ports.ts'
import { findBwrap, probeBwrap } from './sandbox.ts'
import { parseProcStat, sampleProcessTree, sampleProcessTrees, UsageSampler, ProcessGoneError } from './usage-sampler.ts'
import type { ReplicaUsage } from './usage-sampler.ts'

const MiB = 1024 * 1024

interface FakeStat { comm?: string, ppid: number, utime?: number, stime?: number, cutime?: number, cstime?: number, start?: number, rss?: number }

// A stat line as the kernel writes it: pid (comm) state, then fields 4..52.
function statLine (pid: number, s: FakeStat): string {
  const f = new Array<number | string>(50).fill(0)
  f[0] = 'S'
  f[1] = s.ppid
  f[11] = s.utime ?? 0
  f[12] = s.stime ?? 0
  f[13] = s.cutime ?? 0
  f[14] = s.cstime ?? 0
  f[19] = s.start ?? 1000
  f[21] = s.rss ?? 0
  return `${pid} (${s.comm ?? 'proc'}) ${f.join(' ')}\n`
}

class FakeProc {
  readonly root: string
  constructor (root: string) { this.root = root }
  async set (pid: number, s: FakeStat): Promise<void> {
    await mkdir(join(this.root, String(pid)), { recursive: true })
    await writeFile(join(this.root, String(pid), 'stat'), statLine(pid, s))
  }

  /** The kernel's children index of one thread: /proc/<pid>/task/<tid>/children. */
  async children (pid: number, tid: number, kids: number[]): Promise<void> {
    await mkdir(join(this.root, String(pid), 'task', String(tid)), { recursive: true })
    await writeFile(join(this.root, String(pid), 'task', String(tid), 'children'), kids.map(k => `${k} `).join(''))
  }

  async remove (pid: number): Promise<void> { await rm(join(this.root, String(pid)), { recursive: true, force: true }) }
}

class FakeClock implements Clock {
  t = 1_000_000
  now (): number { return this.t }
  setTimeout (): unknown { throw new Error('not used') }
  clearTimeout (): void {}
}

describe('parseProcStat', () => {
  it('finds the fields after the last parenthesis when the command name has spaces and parentheses', () => {
    const s = parseProcStat(statLine(123, { comm: 'my (weird) proc) S 9 9', ppid: 7, utime: 11, stime: 22, cutime: 3, cstime: 4, start: 555, rss: 66 }))
    expect(s).toEqual({ pid: 123, ppid: 7, cpuTicks: 40, rssPages: 66, startTicks: 555 })
  })

  it('parses a real line of this process', async () => {
    const { readFile } = await import('node:fs/promises')
    const s = parseProcStat(await readFile('/proc/self/stat', 'utf8'))
    expect(s?.pid).toBeGreaterThan(0)
    expect(s?.ppid).toBeGreaterThan(0)
    expect(s?.rssPages).toBeGreaterThan(0)
  })

  it('rejects malformed lines', () => {
    expect(parseProcStat('')).toBeUndefined()
    expect(parseProcStat('123 (x) S 1 2 3')).toBeUndefined()
    expect(parseProcStat('(x) ' + '1 '.repeat(60))).toBeUndefined()
    expect(parseProcStat(statLine(5, { ppid: 1 }).replace(' 1 ', ' -1 '))).toBeUndefined()
    expect(parseProcStat(statLine(5, { ppid: 1, utime: Number.NaN }))).toBeUndefined()
  })
})

describe('sampleProcessTree over a fake /proc', () => {
  let proc: FakeProc
  beforeEach(async () => { proc = new FakeProc(await mkdtemp(join(tmpdir(), 'cell-fakeproc-'))) })
  afterEach(async () => { await rm(proc.root, { recursive: true, force: true }) })

  it('sums the root and all descendants, skipping unrelated, malformed and half-gone entries', async () => {
    await proc.set(1, { ppid: 0, utime: 9999, rss: 9999, start: 1 })
    await proc.set(100, { ppid: 1, utime: 10, stime: 5, rss: 100, start: 1000 })
    await proc.set(101, { ppid: 100, comm: 'my (weird) proc', utime: 20, cutime: 7, rss: 50, start: 1001 })
    await proc.set(102, { ppid: 101, comm: ') S 1 ', stime: 30, cstime: 1, rss: 25, start: 1002 })
    await proc.set(103, { ppid: 100, utime: 1, rss: 1, start: 1003 })
    await proc.set(200, { ppid: 1, utime: 500, rss: 500, start: 1004 }) // sibling of the root
    // Started before the root: a parent link to a recycled pid, not a descendant.
    await proc.set(300, { ppid: 100, utime: 700, rss: 700, start: 10 })
    await mkdir(join(proc.root, '104')) // exited between readdir and read: no stat
    await mkdir(join(proc.root, '105'))
    await writeFile(join(proc.root, '105', 'stat'), 'garbage')
    await mkdir(join(proc.root, 'self'))
    await writeFile(join(proc.root, 'meminfo'), 'x')

    const t = await sampleProcessTree(100, { procRoot: proc.root, pageSize: 4096 })
    expect(t.pids[0]).toBe(100)
    expect([...t.pids].sort((a, b) => a - b)).toEqual([100, 101, 102, 103])
    expect(t.cpuTicks).toBe(15 + 27 + 31 + 1)
    expect(t.rssBytes).toBe((100 + 50 + 25 + 1) * 4096)
    expect(t.rootStartTicks).toBe(1000)
    expect(t.truncated).toBe(false)

    const small = await sampleProcessTree(100, { procRoot: proc.root, pageSize: 1 })
    expect(small.rssBytes).toBe(176)
  })

  it('bounds the walk and survives a parent cycle', async () => {
    await proc.set(10, { ppid: 12, utime: 1, start: 5 })
    await proc.set(11, { ppid: 10, utime: 1, start: 5 })
    await proc.set(12, { ppid: 11, utime: 1, start: 5 })
    const cyc = await sampleProcessTree(10, { procRoot: proc.root })
    expect([...cyc.pids].sort()).toEqual([10, 11, 12])
    expect(cyc.cpuTicks).toBe(3)

    const capped = await sampleProcessTree(10, { procRoot: proc.root, maxPids: 2 })
    expect(capped.pids).toEqual([10, 11])
    expect(capped.truncated).toBe(true)
  })

  it('samples several roots off one scan, nested roots included, gone roots absent', async () => {
    await proc.set(20, { ppid: 1, utime: 1, rss: 1 })
    await proc.set(21, { ppid: 20, utime: 2, rss: 2 })
    await proc.set(22, { ppid: 21, utime: 4, rss: 4 })
    await proc.set(30, { ppid: 1, utime: 8, rss: 8 })
    const m = await sampleProcessTrees([20, 21, 30, 31, 0, 20], { procRoot: proc.root, pageSize: 1 })
    expect([...m.keys()].sort()).toEqual([20, 21, 30])
    expect(m.get(20)).toMatchObject({ cpuTicks: 7, rssBytes: 7 })
    expect([...(m.get(20)?.pids ?? [])].sort()).toEqual([20, 21, 22])
    expect(m.get(21)).toMatchObject({ cpuTicks: 6, rssBytes: 6, pids: [21, 22] })
    expect(m.get(30)).toMatchObject({ cpuTicks: 8, pids: [30] })
  })

  it('follows the children index of every thread where the kernel keeps one, instead of scanning the table', async () => {
    await proc.set(100, { ppid: 1, utime: 1, rss: 1, start: 1000 })
    await proc.set(200, { ppid: 100, utime: 2, rss: 2, start: 1001 })
    await proc.set(201, { ppid: 100, utime: 4, rss: 4, start: 1001 })
    await proc.set(300, { ppid: 200, utime: 8, rss: 8, start: 1002 })
    // Listed by no thread of the tree: the scan would count it through its parent link, the index does not.
    await proc.set(400, { ppid: 100, utime: 1000, rss: 1000, start: 1003 })
    await proc.set(500, { ppid: 1, utime: 2000, start: 1 })
    // Children of two threads of the root, then of a child; a listed child that is gone is skipped.
    await proc.children(100, 100, [201])
    await proc.children(100, 101, [200, 666])
    await proc.children(200, 200, [300])
    await proc.children(201, 201, [])
    await proc.children(300, 300, [])
    const t = await sampleProcessTree(100, { procRoot: proc.root, pageSize: 1 })
    expect([...t.pids].sort((a, b) => a - b)).toEqual([100, 200, 201, 300])
    expect(t).toMatchObject({ cpuTicks: 15, rssBytes: 15, truncated: false })
    // Bounded like the scan: past maxScan entries the tree is truncated.
    const capped = await sampleProcessTree(100, { procRoot: proc.root, maxScan: 1 })
    expect(capped.pids.length).toBe(2)
    expect(capped.truncated).toBe(true)
  })

  it('rejects a missing root with ProcessGoneError and honours an aborted signal', async () => {
    const err = await sampleProcessTree(4242, { procRoot: proc.root }).catch(e => e)
    expect(err).toBeInstanceOf(ProcessGoneError)
    expect(err.name).toBe('ProcessGoneError')
    expect(err.pid).toBe(4242)
    await expect(sampleProcessTree(-1, { procRoot: proc.root })).rejects.toBeInstanceOf(ProcessGoneError)
    await proc.set(7, { ppid: 1 })
    await expect(sampleProcessTree(7, { procRoot: proc.root, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' })
  })
})

describe('UsageSampler over a fake /proc and clock', () => {
  let proc: FakeProc
  const clock = new FakeClock()
  beforeEach(async () => { proc = new FakeProc(await mkdtemp(join(tmpdir(), 'cell-fakeproc-'))) })
  afterEach(async () => { await rm(proc.root, { recursive: true, force: true }) })

  it('turns tick deltas over clock deltas into percent, and memory into a share of the limit', async () => {
    const s = new UsageSampler({ clock, procRoot: proc.root, memoryLimitBytes: 1000 * 4096 })
    await proc.set(50, { ppid: 1, utime: 100, rss: 250, start: 77 })
    const first = await s.sample(50)
    expect(first).toEqual({ cpuPercent: 0, memoryBytes: 250 * 4096, memoryPercent: 25, intervalMs: 0, pids: 1 })

    clock.t += 2000
    await proc.set(50, { ppid: 1, utime: 150, stime: 50, rss: 250, start: 77 }) // +100 ticks = 1 s of CPU in 2 s
    await proc.set(51, { ppid: 50, rss: 5000, start: 78 })
    const second = await s.sample(50)
    expect(second.cpuPercent).toBeCloseTo(50, 9)
    expect(second.intervalMs).toBe(2000)
    expect(second.memoryPercent).toBe(100) // clamped
    expect(second.pids).toBe(2)

    // Same millisecond: the last figure again, no division by zero.
    expect((await s.sample(50)).cpuPercent).toBeCloseTo(50, 9)
    // Two cores busy for 1 s at 250 ticks per second.
    const fast = new UsageSampler({ clock, procRoot: proc.root, ticksPerSecond: 250 })
    await fast.sample(50)
    clock.t += 1000
    await proc.set(50, { ppid: 1, utime: 650, stime: 50, start: 77 })
    const both = await fast.sample(50, { memoryLimitBytes: 0 })
    expect(both.cpuPercent).toBeCloseTo(200, 9)
    expect(both.memoryPercent).toBe(0)
  })

  it('starts a new baseline when the pid is reused, forgets gone pids, and bounds what it remembers', async () => {
    const s = new UsageSampler({ clock, procRoot: proc.root, maxTracked: 2 })
    await proc.set(60, { ppid: 1, utime: 1000, start: 5 })
    await s.sample(60)
    clock.t += 1000
    await proc.set(60, { ppid: 1, utime: 3, start: 9 }) // a new process with the same pid
    expect((await s.sample(60)).cpuPercent).toBe(0)
    clock.t += 1000
    await proc.set(60, { ppid: 1, utime: 53, start: 9 })
    expect((await s.sample(60)).cpuPercent).toBeCloseTo(50, 9)

    await proc.remove(60)
    await expect(s.sample(60)).rejects.toBeInstanceOf(ProcessGoneError)
    expect(s.tracked).toBe(0)

    for (const pid of [61, 62, 63]) { await proc.set(pid, { ppid: 1 }); await s.sample(pid) }
    expect(s.tracked).toBe(2)
    s.forget(63)
    expect(s.tracked).toBe(1)
  })

  it('sampleMany shares one scan, applies per-replica limits and forgets the gone', async () => {
    const s = new UsageSampler({ clock, procRoot: proc.root, pageSize: 1, ticksPerSecond: 100 })
    await proc.set(70, { ppid: 1, utime: 0, rss: 10 })
    await proc.set(71, { ppid: 1, utime: 0, rss: 10 })
    await proc.set(72, { ppid: 1 })
    await s.sampleMany([{ pid: 70 }, { pid: 71 }, { pid: 72 }])
    expect(s.tracked).toBe(3)
    clock.t += 500
    await proc.set(70, { ppid: 1, utime: 25, rss: 10 })
    await proc.set(71, { ppid: 1, utime: 50, rss: 10 })
    await proc.remove(72)
    const m = await s.sampleMany([{ pid: 70, memoryLimitBytes: 100 }, { pid: 71, memoryLimitBytes: 40 }, { pid: 72 }])
    expect(m.get(70)).toMatchObject({ memoryPercent: 10, intervalMs: 500 })
    expect(m.get(70)?.cpuPercent).toBeCloseTo(50, 9)
    expect(m.get(71)?.cpuPercent).toBeCloseTo(100, 9)
    expect(m.get(71)?.memoryPercent).toBe(25)
    expect(m.has(72)).toBe(false)
    expect(s.tracked).toBe(2)
  })
})

describe('real processes', () => {
  const children: ChildProcess[] = []
  // Each child leads its own process group so afterEach can kill grandchildren too.
  function start (cmd: string, args: string[]): ChildProcess {
    const child = spawn(cmd, args, { detached: true, stdio: 'ignore' })
    children.push(child)
    if (child.pid === undefined) throw new Error(`could not spawn ${cmd}`)
    return child
  }
  const exited = async (c: ChildProcess): Promise<void> => {
    if (c.exitCode !== null || c.signalCode !== null) return
    await new Promise(resolve => c.once('exit', resolve))
  }
  afterEach(async () => {
    for (const c of children.splice(0)) {
      try { process.kill(-(c.pid as number), 'SIGKILL') } catch {}
      await exited(c)
    }
  })

  // Sample every 200 ms until `done` holds or the deadline passes; returns every reading.
  async function sampleUntil (sampler: UsageSampler, pid: number, done: (u: ReplicaUsage) => boolean, ms = 10_000): Promise<ReplicaUsage[]> {
    const readings: ReplicaUsage[] = []
    const deadline = Date.now() + ms
    for (;;) {
      const u = await sampler.sample(pid)
      readings.push(u)
      if (done(u) || Date.now() > deadline) return readings
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }

  it('a busy child climbs above 50% while an idle one stays under 10%', async () => {
    const busy = start('sh', ['-c', 'while :; do :; done'])
    const idle = start('sleep', ['30'])
    const sampler = new UsageSampler()
    const busyReadings = await sampleUntil(sampler, busy.pid as number, u => u.intervalMs > 0 && u.cpuPercent > 50)
    const last = busyReadings[busyReadings.length - 1]
    expect(last.cpuPercent).toBeGreaterThan(50)
    expect(last.cpuPercent).toBeLessThan(150) // one thread cannot use much more than one core
    // The idle child, sampled over several intervals, never gets near.
    const idleReadings = await sampleUntil(sampler, idle.pid as number, () => false, 1000)
    expect(idleReadings.length).toBeGreaterThan(2)
    for (const u of idleReadings) expect(u.cpuPercent).toBeLessThan(10)
  })

  it('a child holding 100 MiB reports it', async () => {
    const fat = start(process.execPath, ['-e', 'const a = Buffer.alloc(100*1024*1024, 1); setInterval(() => a[0]++, 1000)'])
    const sampler = new UsageSampler({ memoryLimitBytes: 1024 * MiB })
    const readings = await sampleUntil(sampler, fat.pid as number, u => u.memoryBytes > 90 * MiB)
    const last = readings[readings.length - 1]
    expect(last.memoryBytes).toBeGreaterThan(90 * MiB)
    expect(last.memoryBytes).toBeLessThan(400 * MiB)
    expect(last.memoryPercent).toBeCloseTo(100 * last.memoryBytes / (1024 * MiB), 9)
  })

  it('sums a tree: a shell waiting on a busy grandchild', async () => {
    // `& wait` forces a real fork: sh would otherwise exec the loop in place.
    const parent = start('sh', ['-c', 'sh -c "while :; do :; done" & wait'])
    const sampler = new UsageSampler()
    const readings = await sampleUntil(sampler, parent.pid as number, u => u.pids >= 2 && u.intervalMs > 0 && u.cpuPercent > 50)
    const last = readings[readings.length - 1]
    expect(last.pids).toBeGreaterThanOrEqual(2)
    expect(last.cpuPercent).toBeGreaterThan(50)
    // The parent alone (it only waits) would be near zero: the figure comes from the grandchild.
    const tree = await sampleProcessTree(parent.pid as number)
    expect(tree.pids[0]).toBe(parent.pid)
    expect(tree.pids.length).toBeGreaterThanOrEqual(2)
  })

  const bwrap = findBwrap()
  const hasBwrap = bwrap !== undefined && probeBwrap(bwrap) === undefined
  it.skipIf(!hasBwrap)('finds a busy process inside a bwrap pid namespace from the bwrap pid', async () => {
    const sandboxed = start(bwrap as string, ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--unshare-pid', '--die-with-parent',
      '--', 'sh', '-c', 'while :; do :; done'])
    const sampler = new UsageSampler()
    const readings = await sampleUntil(sampler, sandboxed.pid as number, u => u.pids >= 2 && u.intervalMs > 0 && u.cpuPercent > 50)
    const last = readings[readings.length - 1]
    expect(last.pids).toBeGreaterThanOrEqual(2) // bwrap, its namespace init and the loop
    expect(last.cpuPercent).toBeGreaterThan(50)
  })

  it('a pid that exited rejects with ProcessGoneError', async () => {
    const brief = start('sleep', ['30'])
    const pid = brief.pid as number
    const sampler = new UsageSampler()
    await sampler.sample(pid)
    expect(sampler.tracked).toBe(1)
    process.kill(-pid, 'SIGKILL')
    await exited(brief) // node reaps it on exit, so /proc/<pid> is gone
    expect(existsSync(`/proc/${pid}`)).toBe(false)
    await expect(sampler.sample(pid)).rejects.toBeInstanceOf(ProcessGoneError)
    expect(sampler.tracked).toBe(0)
  })
})
