// Child processes for multi-process tests: the real `cell` CLI under Node 24, with output captured,
// waits on output lines with deadlines, and a cleanup that always ends every process it started.
import { spawn, type ChildProcess } from 'node:child_process'
import { join, resolve } from 'node:path'

export const projectRoot = resolve(import.meta.dirname, '..', '..')
export const nodeBin = join(projectRoot, 'node_modules', '.bin', 'node')
const cellBin = join(projectRoot, 'node-host', 'cli', 'cell.js')

export interface Proc {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** The first match of `pattern` in the output so far or to come (stdout unless `stream` says stderr). */
  waitFor: (pattern: RegExp, timeoutMs: number, stream?: 'stdout' | 'stderr') => Promise<RegExpMatchArray>
}

/** With `detached`, the process leads its own process group: `process.kill(-pid, sig)` signals it the way a terminal's Ctrl-C does. */
export function cell (args: string[], env: Record<string, string> = {}, options: { detached?: boolean, netns?: string, stdin?: string } = {}): Proc {
  // Several nodes share this machine: each `cell up` serves its metrics on a free port, not 9090.
  // With `netns`, the process runs inside that network namespace (`ip netns exec` execs it: same pid).
  const [command, argv] = options.netns !== undefined ? ['ip', ['netns', 'exec', options.netns, nodeBin, cellBin, ...args]] : [nodeBin, [cellBin, ...args]]
  const child = spawn(command, argv, { cwd: projectRoot, env: { CELL_METRICS: '127.0.0.1:0', ...process.env, ...env }, stdio: [options.stdin !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: options.detached === true })
  if (options.stdin !== undefined) child.stdin!.end(options.stdin)
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  // Keep the tail only: a node that logs errors for minutes must not grow the test's memory unbounded.
  const cap = (s: string): string => s.length > 256 * 1024 ? s.slice(-128 * 1024) : s
  child.stdout!.on('data', (d: Buffer) => { out = cap(out + d.toString()); for (const w of waiters) w() })
  child.stderr!.on('data', (d: Buffer) => { err = cap(err + d.toString()); for (const w of waiters) w() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => { for (const w of waiters) w(); resolve({ code, signal }) })
  })
  const waitFor = async (pattern: RegExp, timeoutMs: number, stream: 'stdout' | 'stderr' = 'stdout'): Promise<RegExpMatchArray> => await new Promise((resolve, reject) => {
    const check = (): void => {
      const m = (stream === 'stderr' ? err : out).match(pattern)
      if (m != null) { done(); resolve(m) } else if (child.exitCode != null || child.signalCode != null) { done(); reject(new Error(`process exited before ${pattern}: ${err.slice(-2000)}`)) }
    }
    const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; stdout: ${out.slice(-1000)} stderr: ${err.slice(-2000)}`)) }, timeoutMs)
    const done = (): void => { clearTimeout(timer); waiters.delete(check) }
    waiters.add(check)
    check()
  })
  return { child, stdout: () => out, stderr: () => err, exited, waitFor }
}

/** The end of every node's stderr (its errors), to explain a failed expectation about the fleet. */
export function fleetLogs (nodes: Proc[], chars = 3000): string {
  return nodes.map((p, i) => `--- node ${i + 1} stderr (last ${chars} chars) ---\n${p.stderr().slice(-chars)}`).join('\n')
}

/** Run to completion with a deadline; kills the process if it overruns. */
export async function cellRun (args: string[], timeoutMs: number, env: Record<string, string> = {}, options: { stdin?: string } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const p = cell(args, env, options)
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs)
  const { code } = await p.exited
  clearTimeout(timer)
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
export async function stopProc (p: Proc, graceMs = 15_000): Promise<void> {
  if (p.child.exitCode != null || p.child.signalCode != null) return
  p.child.kill('SIGTERM')
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs)
  await p.exited
  clearTimeout(timer)
}

/**
 * Start `names.length` full nodes as `cell up` processes under `root`, the first as everyone's
 * bootstrap; each is pushed onto `nodes` as it starts (so the caller's cleanup ends it even if a later
 * one fails), and this resolves with the bootstrap address once all listen. Extra `cell up` arguments
 * go to every node (a function gives each node its own, e.g. its ZFS pool).
 */
export async function startFleet (nodes: Proc[], root: string, keyPath: string, names: string[], extra: string[] | ((name: string, index: number) => string[]) = []): Promise<string> {
  const up = (name: string, bootstrap?: string): Proc => {
    const own = typeof extra === 'function' ? extra(name, names.indexOf(name)) : extra
    const p = cell(['up', '--data', join(root, name), '--authority', keyPath, ...own, ...(bootstrap != null ? ['--bootstrap', bootstrap] : [])])
    nodes.push(p)
    return p
  }
  const first = up(names[0])
  const bootstrap = (await first.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, 60_000))[1]
  const rest = names.slice(1).map(name => up(name, bootstrap))
  await Promise.all(rest.map(async p => await p.waitFor(/listening \/ip4/, 60_000)))
  return bootstrap
}
