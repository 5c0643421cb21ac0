// The requester's side of `/cell/logs/1` (`cell logs`): asks every node that runs a replica of the
// cell, merges what they say into one sequence of entries and, following, keeps one stream per node
// for as long as the node is in the fleet view: a node that starts hosting the cell is asked too, a
// stream that breaks is asked again with the last sequence number seen per replica (no gap, no
// duplicate), and the replicas of a node that leaves the view end with a reason.
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { Mesh } from '../../core/mesh/index.ts'
import { meshGate } from '../artifacts/artifact-exchange.ts'
import { openOperatorStream, type Json } from '../introspect/operator-wire.ts'
import { NotAuthorizedError } from '../introspect/operator-gate.ts'
import { LOGS_PROTOCOL, MAX_CURSORS, type LogsRequest } from './log-protocol.ts'

const log = logger('cell:logs')

interface Base { ts: number, cell: string, version: string, replica: string, node: string }
export type LogEntry =
  | Base & { kind: 'line', stream: 'stdout' | 'stderr', msg: string, seq: number }
  | Base & { kind: 'started' | 'ended', reason?: string }
  | Base & { kind: 'gap', missed: number }

export interface LogsQuery {
  cell: string
  follow: boolean
  replica?: string
  sinceMs?: number
  tail?: number
}

export interface FollowLogsOptions {
  signal?: AbortSignal
  /** A node could not be asked (not a refusal: those fail the whole read). */
  onWarning?: (text: string) => void
  /** Deadline of each node's answer when not following (default 10 s). */
  timeoutMs?: number
  /** Re-ask backoff after a broken stream, first and largest. */
  minBackoffMs?: number
  maxBackoffMs?: number
  /** Not following: characters of log lines kept from all nodes together (default 64 Mi); past it the read stops with a warning. */
  maxChars?: number
}

const MAX_NODES = 128
const MAX_ENDED = 1024

/**
 * The peer id of `nodeId`, its TCP/WebSocket addresses from the fleet view put in the peer store
 * first: a client keeps connections to a few nodes only and must be able to dial any other.
 */
export async function dialableNode (mesh: Mesh, nodeId: string): Promise<PeerId> {
  const peer = peerIdFromString(nodeId)
  const addrs = (mesh.view.node(nodeId)?.addrs ?? []).filter(a => a.includes('/tcp/') && !a.includes('/p2p-circuit') && !a.includes('/webrtc')).slice(0, 8)
  if (addrs.length > 0) {
    try {
      await mesh.libp2p.peerStore.merge(peer, { multiaddrs: addrs.map(a => multiaddr(a.includes('/p2p/') ? a.slice(0, a.indexOf('/p2p/')) : a)) })
    } catch (err) {
      log('addresses of %s not stored: %s', nodeId, (err as Error).message)
    }
  }
  return peer
}

/** Nodes of the view that hold an instance (any state) of `cell`. */
function hostingNodes (mesh: Mesh, cell: string): string[] {
  const nodes = new Set(mesh.view.instances(cell).map(i => i.nodeId))
  return [...nodes].slice(0, MAX_NODES)
}

/** Turns one answer frame into entries; updates `cursors`/`announced` of that node's replicas. (Exported for its tests.) */
export function entriesOf (frame: Json, cell: string, node: string, state: NodeState): LogEntry[] {
  // Every answer frame names its replica (1-128 characters, like a request's replica filter).
  if (typeof frame.replica !== 'string' || frame.replica.length === 0 || frame.replica.length > 128) return []
  const replica = frame.replica
  // An ended replica is done (its id is never reused): nothing about it is kept again.
  if (state.ended.has(replica)) return []
  // A node names at most MAX_CURSORS live replicas of the cell (what a resumed request can carry):
  // one that keeps naming new ones without ever ending them gets no more state here.
  if (!state.versions.has(replica) && !state.cursors.has(replica) && !state.announced.has(replica) &&
    Math.max(state.versions.size, state.cursors.size, state.announced.size) >= MAX_CURSORS) {
    if (state.overflow++ === 0) log.error('%s: node %s names more than %d replicas of %s at once; the rest are not followed', cell, node, MAX_CURSORS, cell)
    return []
  }
  const version = typeof frame.version === 'string' ? frame.version : (state.versions.get(replica) ?? '')
  if (version !== '') state.versions.set(replica, version)
  const base = { cell, version, replica, node }
  switch (frame.t) {
    case 'start':
      if (state.announced.has(replica) || state.ended.has(replica)) return []
      state.announced.add(replica)
      return [{ ...base, kind: 'started', ts: typeof frame.startedMs === 'number' ? frame.startedMs : Date.now(), ...(typeof frame.state === 'string' ? { reason: frame.state } : {}) }]
    case 'lines': {
      if (!Array.isArray(frame.lines) || state.ended.has(replica)) return []
      const out: LogEntry[] = []
      const cursor = state.cursors.get(replica) ?? 0
      let last = cursor
      for (const l of frame.lines as unknown[]) {
        if (!Array.isArray(l) || l.length !== 4) continue
        const [seq, ts, stream, msg] = l as [unknown, unknown, unknown, unknown]
        if (typeof seq !== 'number' || typeof ts !== 'number' || typeof msg !== 'string') continue
        // A line at or before the cursor was printed already (a resumed stream never repeats one).
        if (seq <= last) continue
        last = seq
        out.push({ ...base, kind: 'line', ts, stream: stream === 1 ? 'stderr' : 'stdout', msg, seq })
      }
      state.cursors.set(replica, last)
      return out
    }
    case 'gap': {
      const from = Number(frame.from)
      const to = Number(frame.to)
      if (!Number.isFinite(from) || !Number.isFinite(to) || to < from) return []
      state.cursors.set(replica, Math.max(state.cursors.get(replica) ?? 0, to))
      return [{ ...base, kind: 'gap', ts: Date.now(), missed: to - from + 1 }]
    }
    case 'end':
      if (state.ended.has(replica)) return []
      markEnded(state, replica)
      return [{ ...base, kind: 'ended', ts: typeof frame.ts === 'number' ? frame.ts : Date.now(), reason: typeof frame.reason === 'string' ? frame.reason.slice(0, 300) : 'ended' }]
    default:
      return []
  }
}

export interface NodeState {
  cursors: Map<string, number>
  announced: Set<string>
  ended: Set<string>
  versions: Map<string, string>
  /** Frames about replicas past MAX_CURSORS, dropped. */
  overflow: number
}

/** Forgets an ended replica but its name (the newest MAX_ENDED), so a long follow holds no more. */
function markEnded (state: NodeState, replica: string): void {
  state.ended.add(replica)
  state.cursors.delete(replica)
  state.announced.delete(replica)
  state.versions.delete(replica)
  if (state.ended.size > MAX_ENDED) state.ended.delete(state.ended.values().next().value!)
}

/** What the follower keeps about one node's replicas. (Exported for its tests.) */
export function newState (): NodeState {
  return { cursors: new Map(), announced: new Set(), ended: new Set(), versions: new Map(), overflow: 0 }
}

function chainFor (mesh: Mesh, cell: string): Uint8Array {
  const gate = meshGate(mesh.libp2p)
  return gate?.chain(mesh.view.claimants(cell)[0]) ?? new Uint8Array(0)
}

function requestOf (query: LogsQuery, state: NodeState, resume: boolean): LogsRequest {
  const req: LogsRequest = { cell: query.cell, follow: query.follow }
  if (query.replica !== undefined) req.replica = query.replica
  if (!resume) {
    if (query.sinceMs !== undefined) req.sinceMs = query.sinceMs
    if (query.tail !== undefined) req.tail = query.tail
  } else {
    req.cursors = Object.fromEntries([...state.cursors].filter(([id]) => state.announced.has(id) && !state.ended.has(id)).slice(0, MAX_CURSORS))
  }
  return req
}

/**
 * Reads the logs of `query.cell` once (every line the nodes hold, oldest first) and returns them.
 * A node that refuses fails the read with NotAuthorizedError; one that cannot be reached is a warning.
 */
export async function readLogs (mesh: Mesh, query: LogsQuery, options: FollowLogsOptions = {}): Promise<LogEntry[]> {
  const all: LogEntry[] = []
  // What a node holds is bounded (its replicas' log rings), but a node could send lines for the
  // whole deadline: the read keeps at most maxChars characters of them, then stops every stream.
  const maxChars = options.maxChars ?? 64 * 1024 * 1024
  let chars = 0
  const full = new AbortController()
  await Promise.all(hostingNodes(mesh, query.cell).map(async (node) => {
    const state = newState()
    const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs ?? 10_000), full.signal, ...(options.signal !== undefined ? [options.signal] : [])])
    try {
      for await (const frame of openOperatorStream(mesh.libp2p, await dialableNode(mesh, node), LOGS_PROTOCOL, chainFor(mesh, query.cell), { ...requestOf({ ...query, follow: false }, state, false) }, { signal })) {
        if (full.signal.aborted) break
        for (const e of entriesOf(frame, query.cell, node, state)) {
          if (e.kind !== 'line' && e.kind !== 'gap') continue
          chars += e.kind === 'line' ? e.msg.length : 0
          if (chars > maxChars) {
            full.abort(new Error('log read budget spent'))
            options.onWarning?.(`stopped reading at ${maxChars} characters of log lines: narrow it with --replica, --tail or --since`)
            break
          }
          all.push(e)
        }
        if (frame.t === 'done') break
      }
    } catch (err) {
      if (err instanceof NotAuthorizedError) throw err
      if (full.signal.aborted) return
      options.onWarning?.(`node …${node.slice(-6)} did not answer: ${(err as Error).name}: ${(err as Error).message}`)
    }
  }))
  return all.sort((a, b) => a.ts - b.ts || (a.kind === 'line' && b.kind === 'line' && a.replica === b.replica ? a.seq - b.seq : 0))
}

/**
 * Follows the logs of `query.cell` across the fleet until `signal` aborts, calling `onEntry` for
 * each line, start, end and gap. Rejects with NotAuthorizedError when a node refuses the operator.
 */
export async function followLogs (mesh: Mesh, query: LogsQuery, onEntry: (entry: LogEntry) => void, options: FollowLogsOptions = {}): Promise<void> {
  const outer = options.signal
  const controller = new AbortController()
  const signal = outer !== undefined ? AbortSignal.any([outer, controller.signal]) : controller.signal
  const sessions = new Map<string, { state: NodeState, running: Promise<void> }>()
  let failure: Error | undefined
  let finish!: () => void
  const finished = new Promise<void>((resolve) => { finish = resolve })
  const fail = (err: Error): void => { failure ??= err; controller.abort(err); finish() }

  const session = async (node: string, state: NodeState): Promise<void> => {
    let backoffMs = options.minBackoffMs ?? 250
    let resume = false
    while (!signal.aborted && mesh.view.node(node) !== undefined) {
      try {
        for await (const frame of openOperatorStream(mesh.libp2p, await dialableNode(mesh, node), LOGS_PROTOCOL, chainFor(mesh, query.cell), { ...requestOf(query, state, resume) }, { signal })) {
          backoffMs = options.minBackoffMs ?? 250
          for (const e of entriesOf(frame, query.cell, node, state)) onEntry(e)
        }
        log('log stream of %s ended; asking again', node)
      } catch (err) {
        if (err instanceof NotAuthorizedError) { fail(err); return }
        if (signal.aborted) return
        log('log stream of %s broke: %s', node, (err as Error).message)
      }
      resume = true
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { signal.removeEventListener('abort', stop); resolve() }, backoffMs)
        const stop = (): void => { clearTimeout(timer); resolve() }
        signal.addEventListener('abort', stop, { once: true })
      })
      backoffMs = Math.min(options.maxBackoffMs ?? 2_000, backoffMs * 2)
    }
    if (signal.aborted) return
    // The node left the view: what it ran is gone with it.
    for (const replica of [...state.announced]) {
      const version = state.versions.get(replica) ?? ''
      markEnded(state, replica)
      onEntry({ kind: 'ended', ts: Date.now(), cell: query.cell, version, replica, node, reason: `node …${node.slice(-6)} left the fleet` })
    }
    sessions.delete(node)
  }

  const reconcile = (): void => {
    if (signal.aborted) return
    for (const node of hostingNodes(mesh, query.cell)) {
      if (sessions.has(node) || sessions.size >= MAX_NODES) continue
      const state = newState()
      sessions.set(node, { state, running: session(node, state).catch((err: Error) => { fail(err) }) })
    }
  }
  const onChange = (): void => { reconcile() }
  mesh.view.addEventListener('change', onChange)
  // The view's expiry is quiet (no change event): look again now and then.
  const timer = setInterval(reconcile, 1_000)
  const onAbort = (): void => { finish() }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    reconcile()
    await finished
    await Promise.allSettled([...sessions.values()].map(async s => await s.running))
  } finally {
    clearInterval(timer)
    mesh.view.removeEventListener('change', onChange)
    signal.removeEventListener('abort', onAbort)
  }
  if (failure !== undefined) throw failure
}
