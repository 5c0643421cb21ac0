// Reactive glue between a FleetSource and the components. The view fires a 'change' per record
// (every node and replica heartbeats each second), so reads are coalesced to one refresh per
// `refreshMs`; a clock tick re-reads too, because records age out of the view without an event.
import { createMemo, createSignal, onCleanup } from 'solid-js'
import type { Accessor } from 'solid-js'
import { CHANGE_EVENT, MAX_WARNING_CHARS, MAX_WARNINGS, STATUS_EVENT, WARNINGS_EVENT } from './source.ts'
import type { CellPolicy, FleetSource, InstanceRecord, NodeRecord } from './source.ts'
import {
  callSplit, cellSample, createCallTally, createCellHistory, describeError, displayStatus, pruneHistory, qpsShareByDigest,
  recordEvent, recordSample, replicaSummary, rolloutEvents, rolloutProgress, tallyCall, targetOf, crashNotes, haltNote, claimNotes
} from './model.ts'
import type { CellMark, CellSample, DisplayStatus, ErrorDescription, HistoryEvent, ReleaseRef, ReplicaSummary, RolloutProgress, ShareRow, CrashNote, HaltNote, ClaimNote } from './model.ts'

/**
 * The halt that explains what the cell runs: of the release the rules chose first, which the fleet
 * fell back from (or, crash-looping, has nothing left to run). Halts of releases a later publish or
 * a rollback moved past explain nothing now (absent key then).
 */
function haltOf (nodes: readonly NodeRecord[], cell: string, halted: ReleaseRef | undefined): { halt?: HaltNote } {
  const note = halted === undefined ? undefined : haltNote(nodes, cell, halted.digest)
  return note !== undefined ? { halt: note } : {}
}

export interface StoreOptions {
  now?: () => number
  refreshMs?: number
  /** A 'live' source that delivered nothing for this long is shown stale (default 5 s). */
  staleAfterMs?: number
  /** Points kept per cell and series for the charts (default 900: 15 min at one per second, then downsampled). */
  historySize?: number
  /** Time the charts cover (default 15 min). */
  historyWindowMs?: number
  tickMs?: number
  /** Cells charted at most (history is bounded like everything else). */
  maxCells?: number
}

export interface CellModel {
  name: string
  target?: ReleaseRef
  policy?: CellPolicy
  instances: InstanceRecord[]
  replicas: ReplicaSummary
  rollout: RolloutProgress
  qpsShare: ShareRow[]
  calls: ShareRow[]
  /** Why its replicas crashed (from their heartbeats), and a halt or crash-looping mark of its target. */
  crashes: CrashNote[]
  halt?: HaltNote
  /** A stateful cell's claims: owner, epoch, newest safe snapshot (empty for a stateless cell). */
  storage: ClaimNote[]
}

export interface CallOutcome {
  id: number
  cell: string
  method: string
  ok: boolean
  result?: unknown
  error?: ErrorDescription
  route?: ReleaseRef & { nodeId: string }
  ms: number
}

export interface FleetStore {
  status: Accessor<DisplayStatus>
  statusReason: Accessor<string | undefined>
  now: Accessor<number>
  /** True until the first fleet record arrived (or the view was non-empty at mount). */
  loading: Accessor<boolean>
  lastChangeMs: Accessor<number | undefined>
  nodes: Accessor<NodeRecord[]>
  cells: Accessor<CellModel[]>
  history: Accessor<ReadonlyMap<string, CellSample[]>>
  /** Rollout events per cell within the history window (release/desired seen, halt, retire). */
  events: Accessor<ReadonlyMap<string, HistoryEvent[]>>
  /** The tab's own connections (peer ids), when the source tells; undefined otherwise. */
  connections: Accessor<string[] | undefined>
  /** The source's warnings (bounded: MAX_WARNINGS, each MAX_WARNING_CHARS); empty without any. */
  warnings: Accessor<string[]>
  call: (cell: string, method: string, request: unknown, options?: { signal?: AbortSignal }) => Promise<CallOutcome>
}

/** A source's warnings as the dashboard shows them: strings only, at most MAX_WARNINGS, each cut to MAX_WARNING_CHARS. */
export function boundWarnings (list: readonly unknown[] | undefined): string[] {
  if (!Array.isArray(list)) return []
  return list.slice(0, 64).filter((w): w is string => typeof w === 'string' && w !== '').slice(0, MAX_WARNINGS)
    .map(w => w.length > MAX_WARNING_CHARS ? `${w.slice(0, MAX_WARNING_CHARS - 1)}…` : w)
}

const sameStrings = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i])

export function createFleetStore (source: FleetSource, options: StoreOptions = {}): FleetStore {
  const clock = options.now ?? (() => Date.now())
  const refreshMs = options.refreshMs ?? 250
  const staleAfterMs = options.staleAfterMs ?? 5000
  const ring = createCellHistory({ maxPoints: options.historySize ?? 900, windowMs: options.historyWindowMs, maxCells: options.maxCells })
  const marks = new Map<string, CellMark>()
  const maxCells = options.maxCells ?? 256
  const view = source.view

  const [now, setNow] = createSignal(clock())
  const [revision, setRevision] = createSignal(0)
  const [sourceStatus, setSourceStatus] = createSignal(source.status)
  const [statusReason, setStatusReason] = createSignal(source.statusReason)
  const initiallyEmpty = view.nodes().length === 0 && view.cells().length === 0
  const [lastChangeMs, setLastChangeMs] = createSignal<number | undefined>(initiallyEmpty ? undefined : clock())
  const [history, setHistory] = createSignal<ReadonlyMap<string, CellSample[]>>(new Map())
  const [events, setEvents] = createSignal<ReadonlyMap<string, HistoryEvent[]>>(new Map())
  const tally = createCallTally()
  const [warnings, setWarnings] = createSignal(boundWarnings(source.warnings?.()), { equals: sameStrings })
  const [tallyRevision, setTallyRevision] = createSignal(0)

  let pending: ReturnType<typeof setTimeout> | undefined
  const onChange = (): void => {
    setLastChangeMs(clock())
    if (pending !== undefined) return
    pending = setTimeout(() => { pending = undefined; setRevision(r => r + 1) }, refreshMs)
  }
  const onStatus = (): void => {
    setSourceStatus(source.status)
    setStatusReason(source.statusReason)
  }
  const onWarnings = (): void => { setWarnings(boundWarnings(source.warnings?.())) }
  view.addEventListener(CHANGE_EVENT, onChange)
  source.addEventListener(STATUS_EVENT, onStatus)
  source.addEventListener(WARNINGS_EVENT, onWarnings)

  const nodes = createMemo(() => {
    revision(); now()
    return view.nodes().sort((a, b) => a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0)
  })

  const cells = createMemo((): CellModel[] => {
    revision(); tallyRevision()
    const t = now()
    return view.cells().slice(0, maxCells).map(name => {
      const instances = view.instances(name)
      const nodeRecords = view.nodes()
      const newest = view.release(name)
      const { target, halted } = targetOf(name, view.releases?.(name) ?? (newest !== undefined ? [newest] : []), view.desired(name), nodeRecords)
      const policy = source.policy?.(name)
      return {
        name,
        target,
        policy,
        instances,
        replicas: replicaSummary(instances, policy),
        rollout: rolloutProgress(instances, target, policy, t),
        qpsShare: qpsShareByDigest(instances, target),
        calls: callSplit(tally, name, target),
        crashes: crashNotes(instances),
        storage: claimNotes(view, name, instances, t),
        ...haltOf(nodeRecords, name, halted)
      }
    })
  })

  const sample = (t: number): void => {
    const list = cells()
    const names = new Set(list.map(c => c.name))
    pruneHistory(ring, names)
    for (const k of [...marks.keys()]) if (!names.has(k)) marks.delete(k)
    for (const c of list) {
      recordSample(ring, c.name, cellSample(c.instances, t))
      const { mark, events: seen } = rolloutEvents(marks.get(c.name), c.target, c.halt, c.instances, t)
      marks.set(c.name, mark)
      for (const e of seen) recordEvent(ring, c.name, e)
    }
    setHistory(new Map(ring.samples))
    setEvents(new Map(ring.events))
  }

  const tick = setInterval(() => {
    const t = clock()
    setNow(t)
    if (displayStatus(sourceStatus(), lastChangeMs(), t, staleAfterMs) !== 'connecting') sample(t)
  }, options.tickMs ?? 1000)

  onCleanup(() => {
    clearInterval(tick)
    if (pending !== undefined) clearTimeout(pending)
    view.removeEventListener(CHANGE_EVENT, onChange)
    source.removeEventListener(STATUS_EVENT, onStatus)
    source.removeEventListener(WARNINGS_EVENT, onWarnings)
  })

  let callId = 0
  const call = async (cell: string, method: string, request: unknown, opts: { signal?: AbortSignal } = {}): Promise<CallOutcome> => {
    const id = ++callId
    const started = clock()
    try {
      let result: unknown
      let route: CallOutcome['route']
      if (source.callRouted !== undefined) {
        const r = await source.callRouted(cell, method, request, opts)
        result = r.result
        route = r.route === undefined ? undefined : { version: r.route.version, digest: r.route.digest, nodeId: r.route.nodeId }
      } else {
        result = await source.call(cell, method, request, opts)
      }
      tallyCall(tally, cell, route, true)
      return { id, cell, method, ok: true, result, route, ms: clock() - started }
    } catch (err) {
      return { id, cell, method, ok: false, error: describeError(err), ms: clock() - started }
    } finally {
      setTallyRevision(r => r + 1)
    }
  }

  return {
    // A live peer always hears at least its full node's heartbeat; until then it is still connecting.
    status: () => sourceStatus() === 'live' && lastChangeMs() === undefined ? 'connecting' : displayStatus(sourceStatus(), lastChangeMs(), now(), staleAfterMs),
    statusReason,
    now,
    loading: () => lastChangeMs() === undefined,
    lastChangeMs,
    nodes,
    cells,
    history,
    events,
    connections: () => { now(); return source.connections?.() },
    warnings,
    call
  }
}
