// `/cell/logs/1`: an operator asks a full node for the stdout/stderr of its replicas of one cell,
// once or following. The node answers from each replica's bounded log ring (node-host/capsid/
// log-ring.ts), whose sequence numbers are the cursors: a requester that lost its stream asks again
// with the last sequence number it saw per replica and gets exactly what came after.
//   request body = { cell, follow, replica?, sinceMs?, tail?, cursors?: { [replica]: seq } }
//   answer frames (after the admission frame, operator-wire.ts):
//     { t: 'start', replica, version, startedMs, state }   a replica this answer covers
//     { t: 'lines', replica, version, lines: [[seq, ts, 0|1 (stdout|stderr), text], …] }
//     { t: 'gap', replica, from, to }                      lines the ring dropped before they were sent
//     { t: 'end', replica, version, ts, reason }           the replica stopped, crashed or is gone
//     { t: 'ping' }                                         following, nothing new for a while
//     { t: 'done' }                                         not following: everything was sent
import type { Libp2p } from '@libp2p/interface'
import type { LogLine } from '../capsid/log-ring.ts'
import { MalformedOperatorRequestError, serveOperatorProtocol, MAX_FRAME_BYTES, type Json, type OperatorRequest } from '../introspect/operator-wire.ts'
import type { OperatorGate } from '../introspect/operator-gate.ts'

export const LOGS_PROTOCOL = '/cell/logs/1'
const MAX_CELL_CHARS = 255
/** Cursors in one request: the replicas of one cell a follower resumes on one node. */
export const MAX_CURSORS = 256
/** Lines per 'lines' frame, and their text at most (a line is ≤ 8192 chars in the ring). */
const BATCH_LINES = 200
const BATCH_CHARS = MAX_FRAME_BYTES / 4
/** Following with nothing to say, the node says so this often (keeps the stream, finds a dead requester). */
export const LOGS_PING_MS = 15_000

export interface LogsRequest {
  cell: string
  follow: boolean
  /** An instance id, or its end (as printed: the random suffix). */
  replica?: string
  /** Only lines at or after this time (epoch ms), for replicas present when the request came. */
  sinceMs?: number
  /** Only the last n lines of each replica present when the request came. */
  tail?: number
  /** Resume: the last sequence number seen per instance id. */
  cursors?: Record<string, number>
}

export function parseLogsRequest (body: Json): LogsRequest {
  const bad = (what: string): never => { throw new MalformedOperatorRequestError(`logs request: ${what}`) }
  const { cell, follow, replica, sinceMs, tail, cursors } = body
  if (typeof cell !== 'string' || cell.length === 0 || cell.length > MAX_CELL_CHARS) bad('cell must be a name of 1-255 characters')
  if (typeof follow !== 'boolean') bad('follow must be a boolean')
  if (replica !== undefined && (typeof replica !== 'string' || replica.length === 0 || replica.length > 128)) bad('replica must be a string of 1-128 characters')
  if (sinceMs !== undefined && (typeof sinceMs !== 'number' || !Number.isFinite(sinceMs))) bad('sinceMs must be a number')
  if (tail !== undefined && (typeof tail !== 'number' || !Number.isInteger(tail) || tail < 0 || tail > 1_000_000)) bad('tail must be an integer 0-1000000')
  const out: LogsRequest = { cell: cell as string, follow: follow as boolean }
  if (replica !== undefined) out.replica = replica as string
  if (sinceMs !== undefined) out.sinceMs = sinceMs as number
  if (tail !== undefined) out.tail = tail as number
  if (cursors !== undefined) {
    if (cursors === null || typeof cursors !== 'object' || Array.isArray(cursors)) bad('cursors must be an object')
    const entries = Object.entries(cursors as Record<string, unknown>)
    if (entries.length > MAX_CURSORS) bad(`at most ${MAX_CURSORS} cursors`)
    out.cursors = {}
    for (const [id, seq] of entries) {
      if (id.length > 128 || typeof seq !== 'number' || !Number.isInteger(seq) || seq < 0) bad('a cursor is not replica → sequence number')
      out.cursors[id] = seq as number
    }
  }
  return out
}

/** One replica as the log server sees it. */
export interface LogReplica {
  instanceId: string
  version: string
  state: 'starting' | 'ready' | 'draining' | 'stopped' | 'crashed'
  startedMs: number
  endedMs?: number
  exitReason?: string
  /** Lines after `seq` still held (LogRing.since); empty while the capsid is not up yet. */
  since: (seq: number, max: number) => LogLine[]
}

/** What a full node hands the log server: its replicas and a way to hear of new lines and exits. */
export interface LogSource {
  replicas: (cell: string) => LogReplica[]
  /** Calls `wake` on each new line, start or exit of any replica; returns the unsubscribe function. */
  watch: (wake: () => void) => () => void
}

const ended = (r: LogReplica): boolean => r.state === 'stopped' || r.state === 'crashed'

export function replicaMatches (instanceId: string, filter: string | undefined): boolean {
  return filter === undefined || instanceId === filter || instanceId.endsWith(`-${filter}`)
}

/** Answers one logs request on `out` until done (not following) or the requester leaves. */
export async function answerLogs (source: LogSource, request: LogsRequest, req: Pick<OperatorRequest, 'out' | 'signal'>, options: { pingMs?: number, now?: () => number } = {}): Promise<void> {
  const { out, signal } = req
  const now = options.now ?? Date.now
  const seen = new Map<string, { cursor: number, ended: boolean, version: string }>()
  let dirty = true
  let wakeUp: (() => void) | undefined
  const wake = (): void => { dirty = true; wakeUp?.() }
  const unwatch = request.follow ? source.watch(wake) : () => {}
  let first = true
  const pass = async (): Promise<void> => {
    const list = source.replicas(request.cell).filter(r => replicaMatches(r.instanceId, request.replica))
    const present = new Set<string>()
    for (const r of list) {
      present.add(r.instanceId)
      let st = seen.get(r.instanceId)
      if (st === undefined) {
        const resumed = request.cursors?.[r.instanceId]
        // Following, a replica that had already ended before the request is not news, unless resumed.
        if (first && request.follow && ended(r) && resumed === undefined) {
          seen.set(r.instanceId, { cursor: 0, ended: true, version: r.version })
          continue
        }
        if (seen.size >= 4 * MAX_CURSORS) continue
        st = { cursor: resumed ?? 0, ended: false, version: r.version }
        seen.set(r.instanceId, st)
        if (resumed === undefined) {
          await out.send({ t: 'start', replica: r.instanceId, version: r.version, startedMs: r.startedMs, state: r.state })
          // --since and --tail cut what replicas present at the request already said; later ones show all.
          if (first && (request.sinceMs !== undefined || request.tail !== undefined)) {
            let held = r.since(0, Number.MAX_SAFE_INTEGER)
            if (request.sinceMs !== undefined) held = held.filter(l => l.atMs >= request.sinceMs!)
            if (request.tail !== undefined) held = held.slice(Math.max(0, held.length - request.tail))
            st.cursor = held.length > 0 ? held[0].seq - 1 : (r.since(0, Number.MAX_SAFE_INTEGER).at(-1)?.seq ?? 0)
          }
        }
      }
      if (st.ended) continue
      for (;;) {
        const lines = r.since(st.cursor, BATCH_LINES)
        if (lines.length === 0) break
        // Lines the ring dropped after this reader's cursor (a slow reader, or a resume from too far
        // back) are said, never silently skipped; history older than a first read is not a gap.
        if (lines[0].seq > st.cursor + 1 && st.cursor > 0) {
          await out.send({ t: 'gap', replica: r.instanceId, from: st.cursor + 1, to: lines[0].seq - 1 })
        }
        const batch: Array<[number, number, number, string]> = []
        let chars = 0
        for (const l of lines) {
          if (batch.length > 0 && chars + l.line.length > BATCH_CHARS) break
          batch.push([l.seq, l.atMs, l.stream === 'stderr' ? 1 : 0, l.line])
          chars += l.line.length
        }
        await out.send({ t: 'lines', replica: r.instanceId, version: r.version, lines: batch })
        st.cursor = batch[batch.length - 1][0]
      }
      if (ended(r)) {
        st.ended = true
        await out.send({ t: 'end', replica: r.instanceId, version: r.version, ts: r.endedMs ?? now(), reason: r.state === 'crashed' ? `crashed: ${r.exitReason ?? 'no reason recorded'}` : 'stopped' })
      }
    }
    // A resumed replica the node no longer has (it restarted, or forgot the tombstone) ends now.
    if (first) {
      for (const id of Object.keys(request.cursors ?? {})) {
        if (!present.has(id)) await out.send({ t: 'end', replica: id, ts: now(), reason: 'gone from the node (it restarted or forgot it)' })
      }
    }
    // A replica forgotten by the node (its tombstone expired) ends too.
    for (const [id, st] of seen) {
      if (present.has(id)) continue
      if (!st.ended) await out.send({ t: 'end', replica: id, version: st.version, ts: now(), reason: 'gone from the node' })
      seen.delete(id)
    }
    first = false
  }
  try {
    for (;;) {
      signal.throwIfAborted()
      dirty = false
      await pass()
      if (!request.follow) {
        await out.send({ t: 'done' })
        return
      }
      if (dirty) continue
      signal.throwIfAborted()
      const woke = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => { done(); resolve(false) }, options.pingMs ?? LOGS_PING_MS)
        const onAbort = (): void => { done(); resolve(true) }
        const done = (): void => { clearTimeout(timer); wakeUp = undefined; signal.removeEventListener('abort', onAbort) }
        wakeUp = () => { done(); resolve(true) }
        signal.addEventListener('abort', onAbort, { once: true })
      })
      if (!woke) await out.send({ t: 'ping' })
    }
  } finally {
    unwatch()
  }
}

export interface ServeLogsOptions {
  gate: OperatorGate
  stats?: { served: number, refused: number, malformed: number, failed: number }
  pingMs?: number
}

/** Serves `/cell/logs/1` from `source` to operators the gate admits. */
export async function serveLogsProtocol (node: Libp2p, source: LogSource, options: ServeLogsOptions): Promise<void> {
  await serveOperatorProtocol(node, LOGS_PROTOCOL, async (req) => {
    await answerLogs(source, parseLogsRequest(req.body), req, { ...(options.pingMs !== undefined ? { pingMs: options.pingMs } : {}) })
  }, {
    gate: options.gate,
    // Parsed again (and refused as malformed) before the gate, so a bad body never reaches it.
    cellOf: (body) => parseLogsRequest(body).cell,
    ...(options.stats !== undefined ? { stats: options.stats } : {})
  })
}
