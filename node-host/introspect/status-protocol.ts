// `/cell/status/1`: an operator asks a full node why it does what it does about a cell (or about
// every cell of the operator's authority): the autonomic loop's last reasons, halts, retire, the
// releases it prepared or failed to, its replicas with their states and crash reasons, and the
// loop's last error. The gossiped view says *what* runs; this says *why*, from each node.
//   request body = { cell?: string }        answer = one frame { t: 'status', ...NodeStatusReport }
import type { Libp2p, PeerId } from '@libp2p/interface'
import { MalformedOperatorRequestError, MalformedOperatorAnswerError, serveOperatorProtocol, openOperatorStream, MAX_FRAME_BYTES, type Json } from './operator-wire.ts'
import type { OperatorGate } from './operator-gate.ts'
import type { ClaimVoters } from '../volumes/voter-health.ts'
import { MAX_VOTERS } from '../../core/claims/index.ts'

export const STATUS_PROTOCOL = '/cell/status/1'
const MAX_CELLS = 64
const MAX_REASONS = 24
const MAX_REPLICAS = 64
const MAX_TEXT = 400
/** Claims of one cell a report names (the ones the node owns), each with at most 5 voters. */
const MAX_CLAIMS = 16
/** Peers of the other dissemination mode a report names. */
export const MAX_MISMATCHES = 8

export interface ReplicaStatus {
  replica: string
  version: string
  state: string
  startedMs: number
  readyMs?: number
  endedMs?: number
  exitReason?: string
  stderrTail?: string[]
}

export interface NodeCellStatus {
  cell: string
  /** Why the loop's last tick decided what it did. */
  reasons: string[]
  /** Releases prepared (fetched, verified, unpacked) here, with their sequence number and signer. */
  prepared: Array<{ version: string, digest: string, seq: number, authority: string }>
  unprepared: Array<{ version: string, attempts: number, error: string }>
  /** Releases this node halted, and why. */
  halted: Array<{ version: string, digest: string, metric: string, reason: string }>
  retired?: { authority: string, seq: number }
  replicas: ReplicaStatus[]
  /** The loop's last error starting a replica of this cell here. */
  lastError?: { atMs: number, message: string }
  /** The last start of a replica the claims declined here (another node holds the claim, a former owner is awaited): not a failure. */
  lastDecline?: { atMs: number, message: string }
  /** The replica count the loop's last tick aimed for, when it decided one. */
  desiredReplicas?: number
  /** min_replicas, max_replicas, update and canary_weight of the newest release prepared here (canaryWeight absent from older nodes). */
  policy?: { minReplicas: number, maxReplicas: number, update: string, canaryWeight?: number }
  /** The cell's claims this node owns, with their voters live or gone in its view. */
  claims?: ClaimVoters[]
}

export interface NodeStatusReport {
  node: string
  /** Set when cells were left out to fit one frame. */
  truncated?: boolean
  counters: Record<string, number>
  /** The loop's last tick error (node-wide); a cell's own spawn errors are in its NodeCellStatus. */
  lastError?: { atMs: number, message: string }
  cells: NodeCellStatus[]
  /** Connected peers that disseminate the other way (a mixed fleet; docs/biology.md "Scale"), at most MAX_MISMATCHES. */
  mismatches?: Array<{ peerId: string, theirs: string }>
}

/** What a full node hands the status server. */
export interface StatusSource {
  nodeId: string
  /** Cells this node knows (release store and view). */
  cells: () => string[]
  /** Authorities that claim `cell` here. */
  claimants: (cell: string) => string[]
  cell: (cell: string) => NodeCellStatus
  counters: () => Record<string, number>
  lastError: () => { atMs: number, message: string } | undefined
  /** Connected peers of the other dissemination mode. */
  mismatches?: () => Array<{ peerId: string, theirs: string }>
}

const clip = (s: string): string => s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) + '…' : s

/** The report for `cell`, or for every cell `authority` claims here. */
export function statusReport (source: StatusSource, cell: string | undefined, authority: string): NodeStatusReport {
  const cells = cell !== undefined ? [cell] : source.cells().filter(c => source.claimants(c).includes(authority)).slice(0, MAX_CELLS)
  const lastError = source.lastError()
  const mismatches = (source.mismatches?.() ?? []).slice(0, MAX_MISMATCHES).map(m => ({ peerId: m.peerId, theirs: m.theirs }))
  return {
    node: source.nodeId,
    counters: source.counters(),
    ...(mismatches.length > 0 ? { mismatches } : {}),
    ...(lastError !== undefined ? { lastError: { atMs: lastError.atMs, message: clip(lastError.message) } } : {}),
    cells: cells.map(c => {
      const s = source.cell(c)
      return {
        ...s,
        reasons: s.reasons.slice(0, MAX_REASONS).map(clip),
        prepared: s.prepared.slice(-16),
        unprepared: s.unprepared.slice(0, 8).map(u => ({ ...u, error: clip(u.error) })),
        halted: s.halted.slice(0, 8).map(h => ({ ...h, reason: clip(h.reason) })),
        ...(s.lastError !== undefined ? { lastError: { atMs: s.lastError.atMs, message: clip(s.lastError.message) } } : {}),
        ...(s.lastDecline !== undefined ? { lastDecline: { atMs: s.lastDecline.atMs, message: clip(s.lastDecline.message) } } : {}),
        ...(s.claims !== undefined ? { claims: s.claims.slice(0, MAX_CLAIMS).map(c => ({ ...c, voters: c.voters.slice(0, MAX_VOTERS) })) } : {}),
        replicas: s.replicas.slice(-MAX_REPLICAS).map(r => ({ ...r, ...(r.exitReason !== undefined ? { exitReason: clip(r.exitReason) } : {}), ...(r.stderrTail !== undefined ? { stderrTail: r.stderrTail.slice(-5).map(clip) } : {}) }))
      }
    })
  }
}

function parseStatusRequest (body: Json): { cell?: string } {
  const { cell } = body
  if (cell === undefined) return {}
  if (typeof cell !== 'string' || cell.length === 0 || cell.length > 255) throw new MalformedOperatorRequestError('status request: cell must be a name of 1-255 characters')
  return { cell }
}

export async function serveStatusProtocol (node: Libp2p, source: StatusSource, options: { gate: OperatorGate, stats?: { served: number, refused: number, malformed: number, failed: number } }): Promise<void> {
  await serveOperatorProtocol(node, STATUS_PROTOCOL, async (req) => {
    const { cell } = parseStatusRequest(req.body)
    const report = statusReport(source, cell, req.verified.authority)
    // One frame: a node-wide report of many cells sheds its last cells (and says so) to fit.
    let frame: Json = { t: 'status', ...report }
    while (new TextEncoder().encode(JSON.stringify(frame)).length > MAX_FRAME_BYTES - 64 && report.cells.length > 0) {
      report.cells.pop()
      frame = { t: 'status', ...report, truncated: true }
    }
    await req.out.send(frame)
  }, { gate: options.gate, cellOf: (body) => parseStatusRequest(body).cell, ...(options.stats !== undefined ? { stats: options.stats } : {}) })
}

/**
 * A status frame as a report, or MalformedOperatorAnswerError. A node of another version may send
 * a cell's claims in another shape: those are dropped, so the CLI never reads what it cannot.
 */
export function readStatusReport (frame: Json): NodeStatusReport {
  if (frame.t !== 'status' || typeof frame.node !== 'string' || !Array.isArray(frame.cells)) throw new MalformedOperatorAnswerError(`${STATUS_PROTOCOL}: not a status report`)
  const report = frame as unknown as NodeStatusReport
  for (const c of report.cells) {
    if (typeof c !== 'object' || c === null) throw new MalformedOperatorAnswerError(`${STATUS_PROTOCOL}: a cell of the report is not an object`)
    if (c.claims !== undefined && !(Array.isArray(c.claims) && c.claims.every(isClaimVoters))) delete c.claims
  }
  return report
}

function isClaimVoters (c: unknown): c is ClaimVoters {
  const v = c as ClaimVoters | null
  return typeof v === 'object' && v !== null && typeof v.claimId === 'string' && typeof v.epoch === 'number' && (v.gen === undefined || (Number.isSafeInteger(v.gen) && v.gen >= 0)) && (v.replaceAfterMs === undefined || (Number.isSafeInteger(v.replaceAfterMs) && v.replaceAfterMs >= 0)) && Array.isArray(v.voters) && v.voters.length <= MAX_VOTERS &&
    v.voters.every(x => typeof x === 'object' && x !== null && typeof x.peerId === 'string' && typeof x.live === 'boolean' && (x.goneMs === undefined || typeof x.goneMs === 'number') && (x.silent === undefined || typeof x.silent === 'boolean'))
}

/** Asks `peer` for its status report (of `cell`, or of every cell of the requester's authority). */
export async function fetchStatus (node: Libp2p, peer: PeerId, chain: Uint8Array, cell: string | undefined, options: { signal?: AbortSignal } = {}): Promise<NodeStatusReport> {
  for await (const frame of openOperatorStream(node, peer, STATUS_PROTOCOL, chain, cell !== undefined ? { cell } : {}, options)) {
    return readStatusReport(frame)
  }
  throw new MalformedOperatorAnswerError(`${STATUS_PROTOCOL}: no status report`)
}
