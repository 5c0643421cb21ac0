// What still holds the event loop after a long-running command says it stopped. `cell up` closes
// everything it opened and then lets the process end by itself; a handle that outlives the stop (a
// timer nobody cleared, a socket, a child's pipe) would keep a stopped node's process around, and a
// supervisor would SIGKILL it. So the command gives the loop a few seconds after `stopped`, then
// names what is left on stderr and exits anyway.
//
// CELL_TRACE_HANDLES=1 (the soak sets it) records where each handle was made (an async_hooks init
// hook with a stack per handle, promises excluded), so the report names the code that leaked it.

import { createHook } from 'node:async_hooks'

/** Most handles tracked at once; the oldest are forgotten first (a node makes and frees them all day). */
const MAX_TRACKED = 20_000
/** Frames kept per handle, after the hook's own. */
const FRAMES = 8

interface Tracked { type: string, stack: string, resource: WeakRef<object> }

let tracked: Map<number, Tracked> | undefined

/** Starts recording where handles are made, once, when CELL_TRACE_HANDLES=1. */
export function traceHandlesFromEnv (env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.CELL_TRACE_HANDLES !== '1' || tracked !== undefined) return tracked !== undefined
  const map = new Map<number, Tracked>()
  tracked = map
  createHook({
    init (asyncId, type, trigger, resource) {
      if (type === 'PROMISE') return
      const limit = Error.stackTraceLimit
      Error.stackTraceLimit = 40
      // Without the first line (`Error`) and this hook's own frame.
      const frames = (new Error().stack ?? '').split('\n').slice(2).map(l => l.trim())
      Error.stackTraceLimit = limit
      // Node's own frames say nothing about who leaked it; a handle made in a callback (a listen
      // after a lookup) has none of ours, so it takes the stack of what triggered it.
      const ours = frames.filter(f => !/\(node:|^at node:|^at \[/.test(f)).slice(0, FRAMES).join(' | ')
      const parent = ours !== '' ? undefined : map.get(trigger)
      const stack = ours !== '' ? ours : `(from ${parent?.type ?? 'an untracked resource'}) ${parent?.stack ?? frames.slice(0, FRAMES).join(' | ')}`
      map.set(asyncId, { type, stack, resource: new WeakRef(resource as object) })
      if (map.size > MAX_TRACKED) map.delete(map.keys().next().value as number)
    },
    destroy (asyncId) { map.delete(asyncId) }
  }).enable()
  return true
}

/** `TCPSERVERWRAP` and `TCPServerWrap`, `TCPWRAP` and `TCPSocketWrap`: one key. */
const kindOf = (type: string): string => type.toLowerCase().replace(/wrap|socket|reqcallback/g, '')

interface TimerLike { hasRef?: () => boolean, _destroyed?: boolean, _idleTimeout?: number }

/**
 * One line per kind of handle still active (`Timeout ×2, TCPSocketWrap ×1`), and, when tracing, where
 * each live one was made (timers only while armed and holding the loop).
 */
export function describeOpenHandles (): string {
  const counts = new Map<string, number>()
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1)
  const summary = [...counts].map(([type, n]) => `${type} ×${n}`).join(', ') || 'nothing'
  if (tracked === undefined) return summary
  // Only kinds that are active now (the hook's names are spelled differently: TCPSERVERWRAP, TCPServerWrap).
  const active = new Set([...counts.keys()].map(kindOf))
  const made: string[] = []
  for (const t of tracked.values()) {
    const r = t.resource.deref() as TimerLike | undefined
    if (r === undefined || !active.has(kindOf(t.type))) continue
    if (t.type === 'Timeout' && (r._destroyed === true || r.hasRef?.() === false || (r._idleTimeout ?? 0) < 0)) continue
    if (t.type !== 'Timeout' && typeof r.hasRef === 'function' && !r.hasRef()) continue
    made.push(`  ${t.type}${t.type === 'Timeout' ? ` (${r._idleTimeout} ms)` : ''} made at ${t.stack}`)
    if (made.length >= 40) break
  }
  return `${summary}\n${made.join('\n')}`
}

/**
 * After a command printed that it stopped: if the process is still alive `graceMs` later, say what
 * held it on `write` and exit with the exit code already set. The timer itself holds nothing.
 */
export function exitIfStillHeld (graceMs: number, write: (text: string) => void = (t) => { process.stderr.write(t) }): void {
  const timer = setTimeout(() => {
    write(`cell: stopped, but the process was still held ${(graceMs / 1000).toFixed(0)} s later by ${describeOpenHandles()}\n(a bug: every handle should be closed by then; exiting anyway${tracked === undefined ? '; CELL_TRACE_HANDLES=1 names where they were made' : ''})\n`)
    process.exit(process.exitCode ?? 0)
  }, graceMs)
  timer.unref()
}
