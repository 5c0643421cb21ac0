// fleet-sync: anti-entropy pull over `/cell/fleet-sync/1`. A joining node asks a connected
// neighbour for its snapshot and merges it, instead of waiting a heartbeat interval or more for
// gossip to fill its view. Every record in a snapshot carries its origin's signature, so the
// neighbour can relay but never forge. The snapshot is served only to a peer whose request carries
// a grant (any role) from an authority this node trusts: fleet membership, not anyone who dials.
//   request  = lp(version:u8 0x21 chain:bytes)        chain ≤ 4096 bytes, leaf = the Noise peer id
//            | lp(version:u8 0x22 chain:lp-bytes filter) filter = cells:count (cell:lp-string)*
//                                                                  nodes:count (peerId:lp-string)*
//              at most 64 cells and 64 node ids, not both empty: the records of those cells (with the
//              node records of their hosts) and the full records of those nodes, not the whole view
//            | lp(version:u8 0x23 chain:lp-bytes scopes:count scope*)   per-cell anti-entropy by range digests
//              scope = tag:u8 (0 members | 2 releases | 1 cell, cell:lp-string) buckets:uvarint digest:lp-bytes (8 × buckets)
//              buckets a power of two 1..1024, members and releases at most once, 64 cells, 4096 buckets in all:
//              the records behind the buckets whose digests differ from the server's (FleetView.rangeDigest)
//   response = lp(snapshot frame)* then close
//            | lp(version:u8 0x2f code:u8) then close  refusal (core/fleet/peer-grant.ts codes)
// The old request lp(version 0x20) carries no grant and is refused with code 1 (TruncatedChainError).
import { logger } from '@libp2p/logger'
import type { AbortOptions, PeerId, Stream, Connection, StreamHandlerOptions, TypedEventTarget, Libp2pEvents, IdentifyResult } from '@libp2p/interface'
import { systemClock, systemRandom } from '../ports.ts'
import type { Clock, Random } from '../ports.ts'
import { CellError } from '../errors.ts'
import type { RetryRule } from '../errors.ts'
import { ByteReader, ByteWriter } from './bytes.ts'
import { decodeFrame, encodeBundles } from './codec.ts'
import type { BundleItem, FrameEntry } from './codec.ts'
import { FleetSyncError, FleetSyncTimeoutError, MalformedFleetRecordError } from './errors.ts'
import { decodeLengthPrefixed, encodeLengthPrefixed } from './framing.ts'
import { FLEET_SYNC_PROTOCOL, FLEET_WIRE_VERSION, LIMITS, MAX_MESSAGE_BYTES, checkCellName, checkPeerId } from './records.ts'
import { RANGE_DIGEST_MAX_BUCKETS, checkBucketCount, diffRangeDigests } from './view.ts'
import type { FleetView, RangeScope } from './view.ts'
import { PeerGrantGate, MAX_REQUEST_CHAIN_BYTES, isRefusal, refusalCode, refusalError, type GrantCredentialsPort, type PeerGrantGateInit } from './peer-grant.ts'
import { TruncatedChainError } from '../identity/errors.ts'

const log = logger('cell:fleet:sync')
/** The unauthenticated request of the first version: refused, but by name. */
const LEGACY_REQUEST_KIND = 0x20
const REQUEST_KIND = 0x21
/** A request with a filter (cells and/or nodes): the chain is length-prefixed, the filter follows. */
const FILTERED_REQUEST_KIND = 0x22
/** A per-cell anti-entropy request: range digests of the members layer and of some cells. */
const DIGEST_REQUEST_KIND = 0x23
const REFUSAL_KIND = 0x2f
/** lp(version, 0x2e, code): refused the full view for the grant (code as a refusal), public cells follow. */
const PUBLIC_ONLY_KIND = 0x2e
/** An auto-pull refused for this node's grant is retried after 5 s, doubling up to 60 s, at most 8 times. */
const REFUSED_RETRY_MS = 5_000
const REFUSED_RETRY_MAX_MS = 60_000
const MAX_REFUSED_RETRIES = 8
/** Peers remembered as speaking the protocol, for anti-entropy picks (oldest forgotten first). */
const MAX_SYNC_PEERS = 256
/** 'digest' anti-entropy: peers besides the round's peer asked about followed cells in one round. */
const MAX_CELL_PEERS_PER_ROUND = 4

/** A fleet-sync request's filter has too many entries, an invalid name, is empty or does not decode. */
export class FleetSyncFilterError extends CellError {
  static override readonly errorName = 'FleetSyncFilterError'
  static override readonly retry: RetryRule = 'never'
}

/** Bounds of a pull's filter: a pull asks for a few cells or nodes, never a list of the fleet. */
export const SYNC_FILTER_LIMITS = { cells: 64, nodes: 64, sample: 64 } as const

/**
 * What a pull asks for instead of the whole view: the records of `cells` (releases, desired, retire,
 * snapshots, pins and instances of those cells, and the node records of the nodes hosting those
 * instances) and the full node records of `nodes` (with their member records and the down reports
 * about them). At least one entry; at most SYNC_FILTER_LIMITS of each.
 */
export interface FleetSyncFilter {
  cells?: readonly string[]
  nodes?: readonly string[]
  /**
   * A caller's sample: at most this many instances per filtered cell (1..SYNC_FILTER_LIMITS.sample),
   * ready ones first, picked at random by the server so callers spread over a big cell's replicas,
   * without their hosts' node and member records (the caller has them, or pulls the one it lacks).
   */
  sample?: number
}

/** Bounds of a digest request: the members and releases scopes and at most 64 cells, at most 4096 buckets (32 KiB of digests) in all. */
export const DIGEST_LIMITS = { cells: 64, totalBuckets: 4096, maxBuckets: RANGE_DIGEST_MAX_BUCKETS } as const

/** One scope of a digest request: the requester's range digest of it (FleetView.rangeDigest). */
export interface DigestScope {
  scope: RangeScope
  buckets: number
  digest: Uint8Array
}

/** A decoded fleet-sync request. `legacy`: the first version, which carries no grant. */
export interface FleetSyncRequest {
  legacy: boolean
  chain: Uint8Array
  filter?: { cells: string[], nodes: string[], sample?: number }
  /** A digest request (anti-entropy in per-cell mode): the scopes and the requester's digests. */
  digests?: DigestScope[]
}

/** Largest encoded filter: two counts and 64 names of at most 128 bytes each, twice. */
const MAX_FILTER_BYTES = 2 * (5 + SYNC_FILTER_LIMITS.cells * (2 + LIMITS.idChars))
/** Largest request frame: version, kind, the chain with its length, the filter. */
export const MAX_SYNC_REQUEST_BYTES = 2 + 5 + MAX_REQUEST_CHAIN_BYTES + MAX_FILTER_BYTES

/** Largest digest request frame: version, kind, chain, count, 66 scope headers, 4096 digests. */
export const MAX_DIGEST_REQUEST_BYTES = 2 + 5 + MAX_REQUEST_CHAIN_BYTES + 5 + (2 + DIGEST_LIMITS.cells) * (1 + 2 + LIMITS.idChars + 3 + 3) + DIGEST_LIMITS.totalBuckets * 8

/** Digest scopes checked against the bounds and name rules: FleetSyncFilterError otherwise. */
function checkDigests (scopes: readonly DigestScope[]): DigestScope[] {
  if (scopes.length === 0) throw new FleetSyncFilterError('a fleet-sync digest request without scopes')
  const layers = new Set<string>()
  const cells = new Set<string>()
  let total = 0
  for (const { scope, buckets, digest } of scopes) {
    if (scope.kind !== 'cell') {
      if (layers.has(scope.kind)) throw new FleetSyncFilterError(`a fleet-sync digest request names the ${scope.kind} scope twice`)
      layers.add(scope.kind)
    } else {
      try {
        checkCellName(scope.cell)
      } catch (err) {
        throw new FleetSyncFilterError('a fleet-sync digest request names an invalid cell', { cause: err })
      }
      if (cells.has(scope.cell)) throw new FleetSyncFilterError(`a fleet-sync digest request names cell ${scope.cell} twice`)
      cells.add(scope.cell)
      if (cells.size > DIGEST_LIMITS.cells) throw new FleetSyncFilterError(`a fleet-sync digest request names more than ${DIGEST_LIMITS.cells} cells`)
    }
    try {
      checkBucketCount(buckets)
    } catch (err) {
      throw new FleetSyncFilterError(`a fleet-sync digest of ${String(buckets)} buckets (a power of two, 1..${RANGE_DIGEST_MAX_BUCKETS})`, { cause: err })
    }
    if (digest.length !== buckets * 8) throw new FleetSyncFilterError(`a fleet-sync digest of ${digest.length} bytes for ${buckets} buckets`)
    total += buckets
    if (total > DIGEST_LIMITS.totalBuckets) throw new FleetSyncFilterError(`a fleet-sync digest request of more than ${DIGEST_LIMITS.totalBuckets} buckets`)
  }
  return [...scopes]
}

/** The digest request frame (without its length prefix). FleetSyncFilterError when over its bounds. */
export function encodeDigestRequest (chain: Uint8Array, scopes: readonly DigestScope[]): Uint8Array {
  const checked = checkDigests(scopes)
  const w = new ByteWriter(MAX_DIGEST_REQUEST_BYTES, 1024)
  w.u8(FLEET_WIRE_VERSION).u8(DIGEST_REQUEST_KIND).bytes(chain, MAX_REQUEST_CHAIN_BYTES).uvarint(checked.length)
  for (const { scope, buckets, digest } of checked) {
    if (scope.kind === 'members') w.u8(0)
    else if (scope.kind === 'releases') w.u8(2)
    else w.u8(1).string(scope.cell, LIMITS.idChars)
    w.uvarint(buckets).bytes(digest, DIGEST_LIMITS.maxBuckets * 8)
  }
  return w.finish()
}

function parseDigestRequest (frame: Uint8Array): FleetSyncRequest {
  if (frame.length > MAX_DIGEST_REQUEST_BYTES) throw new FleetSyncFilterError(`a fleet-sync digest request of ${frame.length} bytes`)
  const r = new ByteReader(frame.subarray(2))
  try {
    const chain = r.bytes(MAX_REQUEST_CHAIN_BYTES)
    const scopes: DigestScope[] = []
    let total = 0
    for (let n = r.count(2 + DIGEST_LIMITS.cells, 'digest scopes'); n > 0; n--) {
      const tag = r.u8()
      if (tag !== 0 && tag !== 1 && tag !== 2) throw new FleetSyncFilterError(`a fleet-sync digest scope of kind ${tag}`)
      const scope: RangeScope = tag === 0 ? { kind: 'members' } : tag === 2 ? { kind: 'releases' } : { kind: 'cell', cell: r.string(LIMITS.idChars) }
      const buckets = r.uvarint()
      if (buckets > DIGEST_LIMITS.maxBuckets || total + buckets > DIGEST_LIMITS.totalBuckets) throw new FleetSyncFilterError(`a fleet-sync digest of ${buckets} buckets`)
      total += buckets
      // Copied: the frame's buffer is not kept.
      scopes.push({ scope, buckets, digest: r.bytes(DIGEST_LIMITS.maxBuckets * 8).slice() })
    }
    r.end()
    return { legacy: false, chain, digests: checkDigests(scopes) }
  } catch (err) {
    if (err instanceof FleetSyncFilterError) throw err
    throw new FleetSyncFilterError('an undecodable fleet-sync digest request', { cause: err })
  }
}

/**
 * Buckets for a range digest of about `entries` entries whose records weigh `recordBytes` each: the
 * power of two nearest to √(entries × recordBytes / 8), which balances the request (8 bytes a bucket)
 * against one differing bucket's records, at most the entries (rounded up to a power of two) and
 * RANGE_DIGEST_MAX_BUCKETS. 10,000 members (~1.3 kB each): 1,024; 1,000: 512; a cell of 2,000
 * instances (~300 B): 256.
 */
export function digestBuckets (entries: number, recordBytes: number): number {
  if (entries <= 1) return 1
  const ideal = Math.sqrt(entries * recordBytes / 8)
  const pow = 2 ** Math.round(Math.log2(Math.max(1, ideal)))
  const cap = 2 ** Math.ceil(Math.log2(entries))
  return Math.min(RANGE_DIGEST_MAX_BUCKETS, pow, cap)
}

/**
 * Anti-entropy period for per-cell mode ('digest' rounds): 60 s. At 10,000 nodes a round costs a node
 * about 9.6 kB of request (1,024 member buckets, the release layer's, its followed cells') and the
 * records of the few buckets that differ (records in flight, misses): the scale model
 * (test/sim/gossip-scale.ts) puts it at about 0.5 kB/s inbound per node (0.6 at the p99; 30 s: about 1.1).
 */
export const PER_CELL_ANTI_ENTROPY_MS = 60_000

/** Typical record weights for digestBuckets: a node + member record, an instance record, a release-layer record (signed envelopes). */
export const DIGEST_RECORD_BYTES = { member: 1_300, instance: 300, release: 500 } as const

/** A filter checked against the bounds and name rules (duplicates removed, order kept). */
function checkFilter (filter: FleetSyncFilter): { cells: string[], nodes: string[], sample?: number } {
  const cells = [...new Set(filter.cells ?? [])]
  const nodes = [...new Set(filter.nodes ?? [])]
  if (cells.length > SYNC_FILTER_LIMITS.cells) throw new FleetSyncFilterError(`a fleet-sync filter names ${cells.length} cells, at most ${SYNC_FILTER_LIMITS.cells}`)
  if (nodes.length > SYNC_FILTER_LIMITS.nodes) throw new FleetSyncFilterError(`a fleet-sync filter names ${nodes.length} nodes, at most ${SYNC_FILTER_LIMITS.nodes}`)
  if (cells.length === 0 && nodes.length === 0) throw new FleetSyncFilterError('an empty fleet-sync filter (send no filter for the whole view)')
  try {
    for (const c of cells) checkCellName(c)
    for (const n of nodes) checkPeerId(n, 'filter node id')
  } catch (err) {
    throw new FleetSyncFilterError('a fleet-sync filter names an invalid cell or node id', { cause: err })
  }
  if (filter.sample === undefined) return { cells, nodes }
  if (!Number.isSafeInteger(filter.sample) || filter.sample < 1 || filter.sample > SYNC_FILTER_LIMITS.sample) throw new FleetSyncFilterError(`a fleet-sync sample of ${String(filter.sample)} instances (1..${SYNC_FILTER_LIMITS.sample})`)
  if (cells.length === 0) throw new FleetSyncFilterError('a fleet-sync sample without cells')
  return { cells, nodes, sample: filter.sample }
}

/** The request frame (without its length prefix): the whole view, or only what `filter` names. */
export function encodeSyncRequest (chain: Uint8Array, filter?: FleetSyncFilter): Uint8Array {
  if (filter === undefined) {
    const request = new Uint8Array(2 + chain.length)
    request.set([FLEET_WIRE_VERSION, REQUEST_KIND])
    request.set(chain, 2)
    return request
  }
  const { cells, nodes, sample } = checkFilter(filter)
  const w = new ByteWriter(MAX_SYNC_REQUEST_BYTES)
  w.u8(FLEET_WIRE_VERSION).u8(FILTERED_REQUEST_KIND).bytes(chain, MAX_REQUEST_CHAIN_BYTES)
  w.uvarint(cells.length)
  for (const c of cells) w.string(c, LIMITS.idChars)
  w.uvarint(nodes.length)
  for (const n of nodes) w.string(n, LIMITS.peerIdChars)
  // Optional trailing field: a request without it is byte for byte what it was.
  if (sample !== undefined) w.uvarint(sample)
  return w.finish()
}

/**
 * Decodes a request frame (untrusted bytes). Throws FleetSyncError for a frame that is no request
 * and FleetSyncFilterError for a filtered request whose filter is malformed, empty or over its bounds.
 */
export function parseSyncRequest (frame: Uint8Array): FleetSyncRequest {
  if (frame.length < 2 || frame[0] !== FLEET_WIRE_VERSION) throw new FleetSyncError('invalid fleet-sync request')
  if (frame[1] === LEGACY_REQUEST_KIND) return { legacy: true, chain: frame.subarray(2) }
  if (frame[1] === REQUEST_KIND) return { legacy: false, chain: frame.subarray(2) }
  if (frame[1] === DIGEST_REQUEST_KIND) return parseDigestRequest(frame)
  if (frame[1] !== FILTERED_REQUEST_KIND) throw new FleetSyncError('invalid fleet-sync request')
  if (frame.length > MAX_SYNC_REQUEST_BYTES) throw new FleetSyncFilterError(`a fleet-sync request of ${frame.length} bytes`)
  const r = new ByteReader(frame.subarray(2))
  try {
    const chain = r.bytes(MAX_REQUEST_CHAIN_BYTES)
    const cells: string[] = []
    for (let n = r.count(SYNC_FILTER_LIMITS.cells, 'filter cells'); n > 0; n--) cells.push(r.string(LIMITS.idChars))
    const nodes: string[] = []
    for (let n = r.count(SYNC_FILTER_LIMITS.nodes, 'filter nodes'); n > 0; n--) nodes.push(r.string(LIMITS.peerIdChars))
    const sample = r.remaining > 0 ? r.uvarint() : undefined
    r.end()
    return { legacy: false, chain, filter: checkFilter({ cells, nodes, ...(sample !== undefined ? { sample } : {}) }) }
  } catch (err) {
    if (err instanceof FleetSyncFilterError) throw err
    throw new FleetSyncFilterError('an undecodable fleet-sync filter', { cause: err })
  }
}

/**
 * Keeps at most `sample` instance records per cell: ready ones first, each group in random order
 * (partial Fisher-Yates), so that callers of a big cell spread over its replicas.
 */
function sampleInstances (entries: FrameEntry[], sample: number, random: Random): FrameEntry[] {
  const byCell = new Map<string, { ready: FrameEntry[], other: FrameEntry[] }>()
  const rest: FrameEntry[] = []
  for (const e of entries) {
    if (e.envelope.kind !== 'instance') { rest.push(e); continue }
    const { cell, state } = e.envelope.record
    const group = byCell.get(cell) ?? { ready: [], other: [] }
    byCell.set(cell, group);
    (state === 'ready' ? group.ready : group.other).push(e)
  }
  const pick = (from: FrameEntry[], n: number): FrameEntry[] => {
    const k = Math.min(n, from.length)
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(random.next() * (from.length - i))
      ;[from[i], from[j]] = [from[j], from[i]]
    }
    return from.slice(0, k)
  }
  for (const { ready, other } of byCell.values()) {
    const chosen = pick(ready, sample)
    rest.push(...chosen, ...pick(other, sample - chosen.length))
  }
  return rest
}

/** Options of one pull: a signal, and optionally a filter (see FleetSyncFilter). */
export interface FleetSyncPullOptions extends AbortOptions, FleetSyncFilter {}

/**
 * Options of a digest pull: the members layer (default true), the release layer (releases, desired,
 * retire, snapshots, pins; default true) and the cells whose instances to compare (at most 64).
 */
export interface DigestPullOptions extends AbortOptions {
  members?: boolean
  releases?: boolean
  cells?: readonly string[]
}

/**
 * The scopes of a digest request for `view`: the members layer, the release layer and `cells`, each with the bucket count
 * digestBuckets picks for its size, halved (largest first) until all fit in DIGEST_LIMITS.totalBuckets.
 */
export function digestScopes (view: FleetView, options: { members?: boolean, releases?: boolean, cells?: readonly string[] }, nowMs?: number): DigestScope[] {
  const cells = [...new Set(options.cells ?? [])]
  if (cells.length > DIGEST_LIMITS.cells) throw new FleetSyncFilterError(`a digest pull of ${cells.length} cells, at most ${DIGEST_LIMITS.cells}`)
  const plan: Array<{ scope: RangeScope, buckets: number }> = []
  if (options.members !== false) plan.push({ scope: { kind: 'members' }, buckets: digestBuckets(view.nodes(nowMs).length, DIGEST_RECORD_BYTES.member) })
  if (options.releases !== false) plan.push({ scope: { kind: 'releases' }, buckets: digestBuckets(view.rangeSize({ kind: 'releases' }, nowMs), DIGEST_RECORD_BYTES.release) })
  for (const cell of cells) plan.push({ scope: { kind: 'cell', cell }, buckets: digestBuckets(view.instances(cell, nowMs).length, DIGEST_RECORD_BYTES.instance) })
  let total = plan.reduce((n, p) => n + p.buckets, 0)
  while (total > DIGEST_LIMITS.totalBuckets) {
    const largest = plan.reduce((a, b) => (b.buckets > a.buckets ? b : a))
    largest.buckets /= 2
    total -= largest.buckets
  }
  return plan.map(p => ({ ...p, digest: view.rangeDigest(p.scope, p.buckets, nowMs) }))
}

/**
 * What a server answers a digest request with: for each scope, the records of the buckets whose
 * digests differ from this view's (in random order of buckets, so that a response cut at
 * `maxBytes` still spreads over rounds), packed into frames of at most `maxFrameBytes`. Cell scopes
 * `cells` rejects (a public-only requester) are skipped.
 */
export function answerDigests (view: FleetView, scopes: readonly DigestScope[], options: { maxFrameBytes: number, maxBytes: number, random?: Random, cells?: (cell: string) => boolean, nowMs?: number }): Uint8Array[] {
  const random = options.random ?? systemRandom
  const items: BundleItem[] = []
  let total = 0
  for (const { scope, buckets, digest } of scopes) {
    // A public-only requester: its public cells' instances and the members layer, as its whole-view pull gets (releases of
    // every cell are not sorted out here: it gets none by digest).
    if (options.cells !== undefined && (scope.kind === 'releases' || (scope.kind === 'cell' && !options.cells(scope.cell)))) continue
    const differing = diffRangeDigests(view.rangeDigest(scope, buckets, options.nowMs), digest)
    if (differing.length === 0) continue
    for (let i = differing.length - 1; i > 0; i--) {
      const j = Math.floor(random.next() * (i + 1))
      ;[differing[i], differing[j]] = [differing[j], differing[i]]
    }
    const byBucket = new Map<number, BundleItem[]>()
    for (const { bucket, bytes, ageMs } of view.rangeRecords(scope, buckets, new Set(differing), options.nowMs)) {
      const list = byBucket.get(bucket) ?? []
      byBucket.set(bucket, list)
      list.push({ bytes, ageMs })
    }
    for (const bucket of differing) {
      const records = byBucket.get(bucket) ?? []
      const bytes = records.reduce((n, r) => n + r.bytes.length + 16, 0)
      if (total + bytes > options.maxBytes) break
      total += bytes
      items.push(...records)
    }
  }
  return items.length === 0 ? [] : encodeBundles(items, options.maxFrameBytes)
}

/**
 * Narrows whole-view snapshot frames (already limited to the filter's cells) to what `filter`
 * asks for: records of the filtered cells as they came, and of the records that belong to one node
 * (node, member) only those of the filter's nodes and of the nodes hosting an instance in the
 * frames; down reports only about or by those nodes. Re-bundled into frames of at most `maxFrameBytes`.
 */
export function narrowSnapshot (frames: readonly Uint8Array[], filter: { cells: readonly string[], nodes: readonly string[], sample?: number }, maxFrameBytes: number, random: Random = systemRandom): Uint8Array[] {
  let entries: FrameEntry[] = []
  for (const frame of frames) entries.push(...decodeFrame(frame))
  if (filter.sample !== undefined) entries = sampleInstances(entries, filter.sample, random)
  const wantedNodes = new Set(filter.nodes)
  for (const e of entries) {
    const env = e.envelope as { kind: string, record?: { nodeId?: unknown } }
    // A sample carries instances only: the caller holds the node records from the members topic, and
    // its view pulls the record of a host it does not know (need-node), so they are not sent again.
    if (env.kind === 'instance' && typeof env.record?.nodeId === 'string' && filter.sample === undefined) wantedNodes.add(env.record.nodeId)
  }
  const items: BundleItem[] = []
  for (const e of entries) {
    const env = e.envelope as { kind: string, record?: { nodeId?: unknown, subject?: unknown } }
    const nodeId = env.record?.nodeId
    const perNode = env.kind === 'node' || env.kind === 'member'
    if (perNode && !(typeof nodeId === 'string' && wantedNodes.has(nodeId))) continue
    if (env.kind === 'down') {
      const subject = env.record?.subject
      if (!(typeof subject === 'string' && wantedNodes.has(subject))) continue
    }
    items.push({ bytes: e.bytes, ageMs: e.ageMs })
  }
  return encodeBundles(items, maxFrameBytes)
}

export interface FleetSyncInit {
  view: FleetView
  clock?: Clock
  protocol?: string
  /** Largest snapshot frame accepted or sent (default 64 KiB). */
  maxFrameBytes?: number
  /** Most frames accepted in one pull (default 600, i.e. ~37 MiB). */
  maxFrames?: number
  /** Deadline for a whole pull or serve (default 10 s). */
  timeoutMs?: number
  /** Pull automatically from the first N peers identified as speaking the protocol (default 2; 0 disables). */
  autoPull?: number
  /** Snapshots served at the same time across all peers (default 4); extra requests are refused. */
  maxConcurrentServes?: number
  maxInboundStreams?: number
  /**
   * Authorities whose grants (any role) admit a requester; read live. Without it (and without
   * `gate`) the service serves any peer: only unit tests of gossip do that, the mesh always passes it.
   */
  trusted?: ReadonlySet<string>
  /** This node's grants, presented in its own pulls (core/identity Credentials fits). */
  credentials?: GrantCredentialsPort
  /** A prepared gate instead of `trusted` + `credentials` (shared with `/cell/artifact/1`). */
  gate?: PeerGrantGate
  /** Told each requester the gate made from `trusted` admitted (PeerGrantGateInit.onAdmitted). */
  onGrantAdmitted?: PeerGrantGateInit['onAdmitted']
  /** Requests waiting to be read and checked at once (default 16); extra streams are refused. */
  maxPendingRequests?: number
  /** Deadline for a requester to send its request (default 2 s). */
  requestTimeoutMs?: number
  /**
   * Cells any authenticated peer may see (Cell.toml `public = true`). A requester refused for its
   * grant then gets a snapshot of these cells only, after a public-only marker that names the
   * refusal, so public cells stay callable by peers of any authority. Without it they get nothing.
   */
  publicCells?: (cell: string) => boolean
  /**
   * Anti-entropy: every `antiEntropyMs` (jittered ±50 %), pull from one random connected peer that
   * speaks the protocol, so a node that missed a gossiped release or heartbeat catches up. 0 or
   * absent disables it.
   */
  antiEntropyMs?: number
  /** Which peers anti-entropy may pull from (the mesh: full nodes only). Default any. */
  antiEntropyPeer?: (peerId: string) => boolean
  /**
   * What an anti-entropy round pulls. 'whole' (default, fleet mode): the peer's whole view. 'digest'
   * (per-cell mode): a digest request (digestPull) for the members layer, the release layer
   * (releases, desired, retire, snapshots, pins) and the cells `antiEntropyCells` names (at most 64 a
   * round, rotating through longer lists): only the records of buckets whose digests differ come
   * back, nothing when the views agree.
   */
  antiEntropyMode?: 'whole' | 'digest'
  /** 'digest' anti-entropy: the cells this node follows (FleetGossip.followed()); read each round. */
  antiEntropyCells?: () => readonly string[]
  /** Most bytes of records one digest request is answered with (default 1 MiB); the rest waits for the next round. */
  maxDigestResponseBytes?: number
  random?: Random
}

/** Narrow slice of libp2p's components this service needs. */
export interface FleetSyncComponents {
  registrar: {
    handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string, options?: AbortOptions) => Promise<void>
  }
  connectionManager: {
    openStream: (peer: PeerId, protocol: string, options?: AbortOptions) => Promise<Stream>
  }
  events?: TypedEventTarget<Libp2pEvents>
}

export interface FleetSyncResult {
  frames: number
  /** Bytes of the snapshot frames received (without length prefixes). */
  bytes?: number
  accepted: number
  dropped: number
  /** Set when the peer refused this node's grant and sent its public cells only: the refusal's name. */
  publicOnly?: string
}

export interface FleetSyncStats {
  pulls: number
  pullFailures: number
  served: number
  serveFailures: number
  /** Requests refused for load (concurrent serves or pending requests over their limits). */
  refused: number
  /** Requests refused because they carried no valid grant from a trusted authority. */
  unauthorized: number
  /**
   * Requests refused for a malformed, empty or oversized filter (FleetSyncFilterError). Optional in
   * the type only so stats fakes elsewhere need not list it; the service always sets it.
   */
  badFilters?: number
  /** Digest requests answered (per-cell anti-entropy). */
  digestServes?: number
}

/**
 * Events: 'pulled' (CustomEvent<{ peer: string, result: FleetSyncResult }>), 'served' (CustomEvent<{ peer: string }>)
 * and 'unauthorized' (CustomEvent<{ peer: string, error: Error }>, a request refused for its grant).
 */
export interface FleetSync extends EventTarget {
  start: () => Promise<void>
  stop: () => Promise<void>
  /**
   * Fetches `peer`'s snapshot and merges it into the view; with `cells` and/or `nodes`, only those
   * cells' records and those nodes' full records (see FleetSyncFilter; FleetSyncFilterError before
   * anything is sent when the filter is over its bounds or names an invalid cell or node id).
   */
  pull: (peer: PeerId, options?: FleetSyncPullOptions) => Promise<FleetSyncResult>
  /**
   * Anti-entropy by range digests (per-cell mode): sends this view's digests of the members layer
   * and the release layer (unless `members` / `releases` is false) and of `cells` (at most 64), and merges the records the peer holds
   * in the buckets whose digests differ from its own: one node changed, one bucket's records; views
   * that agree, nothing but the request. Bucket counts come from digestBuckets.
   */
  digestPull: (peer: PeerId, options?: DigestPullOptions) => Promise<FleetSyncResult>
  /** One anti-entropy pull from a random connected peer (what the periodic timer runs). */
  antiEntropyRound: (options?: AbortOptions) => Promise<FleetSyncResult | undefined>
  stats: () => FleetSyncStats
  /** The grant gate of this node's mesh protocols; undefined when the service serves any peer. */
  readonly gate: PeerGrantGate | undefined
}

class DefaultFleetSync extends EventTarget implements FleetSync {
  private readonly components: FleetSyncComponents
  private readonly view: FleetView
  private readonly clock: Clock
  private readonly protocol: string
  private readonly maxFrameBytes: number
  private readonly maxFrames: number
  private readonly timeoutMs: number
  private readonly autoPull: number
  private readonly maxConcurrentServes: number
  private readonly maxInboundStreams: number
  private readonly maxPendingRequests: number
  private readonly requestTimeoutMs: number
  readonly gate: PeerGrantGate | undefined
  private readonly publicCells: ((cell: string) => boolean) | undefined
  private readonly autoPulled = new Set<string>()
  private readonly counters: FleetSyncStats = { pulls: 0, pullFailures: 0, served: 0, serveFailures: 0, refused: 0, unauthorized: 0, badFilters: 0, digestServes: 0 }
  private serving = 0
  private pending = 0
  /** Pending retries of refused auto-pulls (at most `autoPull` at a time). */
  private readonly retryTimers = new Set<unknown>()
  private readonly random: Random
  private readonly antiEntropyMs: number
  /** Connected peers that announced the protocol (identify), for anti-entropy. */
  private readonly syncPeers = new Map<string, PeerId>()
  private antiEntropyTimer: unknown
  private started = false
  private shutdown = new AbortController()

  constructor (components: FleetSyncComponents, init: FleetSyncInit) {
    super()
    this.components = components
    this.view = init.view
    this.clock = init.clock ?? systemClock
    this.protocol = init.protocol ?? FLEET_SYNC_PROTOCOL
    this.maxFrameBytes = init.maxFrameBytes ?? MAX_MESSAGE_BYTES
    this.maxFrames = init.maxFrames ?? 600
    this.timeoutMs = init.timeoutMs ?? 10_000
    this.autoPull = init.autoPull ?? 2
    this.maxConcurrentServes = init.maxConcurrentServes ?? 4
    this.maxInboundStreams = init.maxInboundStreams ?? 2
    this.maxPendingRequests = init.maxPendingRequests ?? 16
    this.requestTimeoutMs = init.requestTimeoutMs ?? 2_000
    this.gate = init.gate ?? (init.trusted != null ? new PeerGrantGate({ trusted: init.trusted, credentials: init.credentials, clock: this.clock, ...(init.onGrantAdmitted !== undefined ? { onAdmitted: init.onGrantAdmitted } : {}) }) : undefined)
    this.publicCells = init.publicCells
    this.random = init.random ?? systemRandom
    this.antiEntropyMs = init.antiEntropyMs ?? 0
    this.antiEntropyPeer = init.antiEntropyPeer
    this.antiEntropyMode = init.antiEntropyMode ?? 'whole'
    this.antiEntropyCells = init.antiEntropyCells
    this.maxDigestResponseBytes = init.maxDigestResponseBytes ?? 1024 * 1024
    this.onIdentify = this.onIdentify.bind(this)
    this.onDisconnect = this.onDisconnect.bind(this)
  }

  private readonly antiEntropyPeer: ((peerId: string) => boolean) | undefined
  private readonly antiEntropyMode: 'whole' | 'digest'
  private readonly antiEntropyCells: (() => readonly string[]) | undefined
  private readonly maxDigestResponseBytes: number
  /** 'digest' anti-entropy: where the next round starts in a followed-cells list longer than 64. */
  private cellCursor = 0

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, (stream, connection) => { void this.serve(stream, connection) }, {
      maxInboundStreams: this.maxInboundStreams,
      maxOutboundStreams: 2
    })
    this.components.events?.addEventListener('peer:identify', this.onIdentify)
    this.components.events?.addEventListener('peer:disconnect', this.onDisconnect)
    this.scheduleAntiEntropy()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.components.events?.removeEventListener('peer:identify', this.onIdentify)
    this.components.events?.removeEventListener('peer:disconnect', this.onDisconnect)
    this.clock.clearTimeout(this.antiEntropyTimer)
    this.syncPeers.clear()
    for (const timer of this.retryTimers) this.clock.clearTimeout(timer)
    this.retryTimers.clear()
    this.autoPulled.clear()
    this.shutdown.abort(new FleetSyncError('fleet-sync stopped'))
    await this.components.registrar.unhandle(this.protocol)
  }

  stats (): FleetSyncStats {
    return { ...this.counters }
  }

  private onDisconnect (evt: CustomEvent<PeerId>): void {
    this.syncPeers.delete(evt.detail.toString())
  }

  private scheduleAntiEntropy (): void {
    if (!this.started || this.antiEntropyMs <= 0) return
    const delayMs = Math.round(this.antiEntropyMs * (0.5 + this.random.next()))
    this.antiEntropyTimer = this.clock.setTimeout(() => { void this.antiEntropyRound().finally(() => { this.scheduleAntiEntropy() }) }, delayMs)
  }

  /** One anti-entropy pull from a random eligible peer; resolves with its result, or undefined when no peer qualifies. */
  async antiEntropyRound (options: AbortOptions = {}): Promise<FleetSyncResult | undefined> {
    const eligible = [...this.syncPeers.values()].filter(p => this.antiEntropyPeer?.(p.toString()) ?? true)
    if (eligible.length === 0) return undefined
    const peer = eligible[Math.floor(this.random.next() * eligible.length)]
    try {
      const signal = AbortSignal.any([this.shutdown.signal, ...(options.signal !== undefined ? [options.signal] : [])])
      const result = this.antiEntropyMode === 'digest'
        ? await this.digestRound(peer, eligible, signal)
        : await this.pull(peer, { signal })
      if (result.accepted > 0) log('anti-entropy from %p: %d records accepted', peer, result.accepted)
      return result
    } catch (err) {
      log('anti-entropy pull from %p failed: %e', peer, err)
      return undefined
    }
  }

  /**
   * One 'digest' round: the members and release layers with `peer`; each followed cell with a
   * connected peer that hosts it (its member record lists the cell: a peer that does not follow a
   * cell holds none of its instances to compare), at most MAX_CELL_PEERS_PER_ROUND other peers a
   * round; cells without a known connected host go to `peer`. A failed pull to another peer is
   * logged and the round goes on; the result sums the pulls.
   */
  private async digestRound (peer: PeerId, eligible: readonly PeerId[], signal: AbortSignal): Promise<FleetSyncResult> {
    const main = peer.toString()
    const byPeer = new Map<string, { peer: PeerId, cells: string[] }>([[main, { peer, cells: [] }]])
    for (const cell of this.roundCells()) {
      const hostIds = new Set(this.view.hostsOf(cell))
      const hosts = eligible.filter(p => hostIds.has(p.toString()))
      let target = byPeer.get(main)!
      if (hosts.length > 0 && !hosts.some(h => h.toString() === main)) {
        const host = hosts[Math.floor(this.random.next() * hosts.length)]
        const known = byPeer.get(host.toString())
        if (known !== undefined) target = known
        else if (byPeer.size <= MAX_CELL_PEERS_PER_ROUND) {
          target = { peer: host, cells: [] }
          byPeer.set(host.toString(), target)
        }
      }
      target.cells.push(cell)
    }
    const total: FleetSyncResult = { frames: 0, bytes: 0, accepted: 0, dropped: 0 }
    for (const [key, { peer: p, cells }] of byPeer) {
      const isMain = key === main
      try {
        const r = await this.digestPull(p, { cells, members: isMain, releases: isMain, signal })
        total.frames += r.frames
        total.bytes = (total.bytes ?? 0) + (r.bytes ?? 0)
        total.accepted += r.accepted
        total.dropped += r.dropped
      } catch (err) {
        if (isMain) throw err
        log('anti-entropy digest pull of %d cells from %p failed: %e', cells.length, p, err)
      }
    }
    return total
  }

  /** 'digest' anti-entropy: the followed cells of this round, at most DIGEST_LIMITS.cells, rotating through a longer list. */
  private roundCells (): string[] {
    const all = [...new Set(this.antiEntropyCells?.() ?? [])]
    if (all.length <= DIGEST_LIMITS.cells) return all
    const start = this.cellCursor % all.length
    this.cellCursor = (start + DIGEST_LIMITS.cells) % all.length
    return Array.from({ length: DIGEST_LIMITS.cells }, (_, i) => all[(start + i) % all.length])
  }

  async digestPull (peer: PeerId, options: DigestPullOptions = {}): Promise<FleetSyncResult> {
    options.signal?.throwIfAborted()
    const request = encodeDigestRequest(this.gate?.chain() ?? new Uint8Array(0), digestScopes(this.view, options))
    return await this.request(peer, request, options)
  }

  private onIdentify (evt: CustomEvent<IdentifyResult>): void {
    const { peerId, protocols } = evt.detail
    if (!protocols.includes(this.protocol)) return
    const key = peerId.toString()
    this.syncPeers.delete(key)
    if (this.syncPeers.size >= MAX_SYNC_PEERS) this.syncPeers.delete(this.syncPeers.keys().next().value as string)
    this.syncPeers.set(key, peerId)
    if (this.autoPulled.size >= this.autoPull) return
    if (this.autoPulled.has(key)) return
    this.autoPulled.add(key)
    this.autoPullFrom(peerId, key, 0)
  }

  private autoPullFrom (peerId: PeerId, key: string, refusals: number): void {
    this.pull(peerId, { signal: this.shutdown.signal }).then(
      (r) => {
        log('auto-pulled %d records from %p%s', r.accepted, peerId, r.publicOnly !== undefined ? ` (public cells only: ${r.publicOnly})` : '')
        // Public cells only, for our grant: as for a refusal, ask again later (a grant may arrive).
        if (r.publicOnly !== undefined) this.retryRefused(peerId, key, refusals)
      },
      (err) => {
        log('auto-pull from %p failed: %e', peerId, err)
        if (isRefusal(err)) {
          this.retryRefused(peerId, key, refusals)
          return
        }
        // A failed pull frees its slot so the next identified peer is tried.
        this.autoPulled.delete(key)
      }
    )
  }

  private retryRefused (peerId: PeerId, key: string, refusals: number): void {
    if (!this.started || refusals >= MAX_REFUSED_RETRIES) {
      this.autoPulled.delete(key)
      return
    }
    // Refused for our grant: a grant may arrive later (a tab imports a token), so ask the same
    // peer again after a growing pause instead of waiting for a new identify.
    const delayMs = Math.min(REFUSED_RETRY_MAX_MS, REFUSED_RETRY_MS * 2 ** refusals)
    const timer = this.clock.setTimeout(() => {
      this.retryTimers.delete(timer)
      if (this.started) this.autoPullFrom(peerId, key, refusals + 1)
      else this.autoPulled.delete(key)
    }, delayMs)
    this.retryTimers.add(timer)
  }


  /** An AbortSignal that fires on the caller's signal, on stop, or at the deadline (on the injected clock). */
  private deadline (signal: AbortSignal | undefined, timeoutMs = this.timeoutMs): { signal: AbortSignal, clear: () => void } {
    const controller = new AbortController()
    const timer = this.clock.setTimeout(() => { controller.abort(new FleetSyncTimeoutError(`fleet-sync exceeded ${timeoutMs} ms`)) }, timeoutMs)
    const signals = [controller.signal, this.shutdown.signal]
    if (signal !== undefined) signals.push(signal)
    return { signal: AbortSignal.any(signals), clear: () => { this.clock.clearTimeout(timer) } }
  }

  async pull (peer: PeerId, options: FleetSyncPullOptions = {}): Promise<FleetSyncResult> {
    options.signal?.throwIfAborted()
    const filtered = options.cells !== undefined || options.nodes !== undefined
    // Checked (and encoded) before a stream opens: a bad filter is the caller's mistake, not the peer's.
    const request = encodeSyncRequest(this.gate?.chain() ?? new Uint8Array(0), filtered ? { cells: options.cells, nodes: options.nodes, ...(options.sample !== undefined ? { sample: options.sample } : {}) } : undefined)
    return await this.request(peer, request, options)
  }

  /** Sends one request frame and merges the snapshot frames that answer it. */
  private async request (peer: PeerId, request: Uint8Array, options: AbortOptions): Promise<FleetSyncResult> {
    const { signal, clear } = this.deadline(options.signal)
    const result: FleetSyncResult = { frames: 0, bytes: 0, accepted: 0, dropped: 0 }
    let stream: Stream | undefined
    const onAbort = (): void => { stream?.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      stream = await this.components.connectionManager.openStream(peer, this.protocol, { signal })
      // Start reading before sending so no response chunk can arrive unobserved.
      const frames = decodeLengthPrefixed(stream, this.maxFrameBytes)
      const first = frames.next()
      stream.send(encodeLengthPrefixed(request))
      for (let next = await first; next.done !== true; next = await frames.next()) {
        signal.throwIfAborted()
        if (result.frames === 0 && result.publicOnly === undefined && next.value.length === 3 && next.value[0] === FLEET_WIRE_VERSION) {
          if (next.value[1] === REFUSAL_KIND) throw refusalError(next.value[2], `fleet-sync from ${peer.toString()}`)
          if (next.value[1] === PUBLIC_ONLY_KIND) {
            result.publicOnly = refusalError(next.value[2], `fleet-sync from ${peer.toString()}`).name
            continue
          }
        }
        if (++result.frames > this.maxFrames) throw new FleetSyncError(`snapshot exceeds ${this.maxFrames} frames`)
        result.bytes = (result.bytes ?? 0) + next.value.length
        const merged = await this.view.merge(next.value, { from: peer.toString(), signal })
        result.accepted += merged.accepted
        result.dropped += merged.dropped
      }
      signal.throwIfAborted()
      await stream.close({ signal })
      this.counters.pulls++
      this.dispatchEvent(new CustomEvent('pulled', { detail: { peer: peer.toString(), result } }))
      log('pulled %d frames from %p: %d accepted, %d dropped', result.frames, peer, result.accepted, result.dropped)
      return result
    } catch (err) {
      this.counters.pullFailures++
      stream?.abort(err instanceof Error ? err : new FleetSyncError('pull failed'))
      if (signal.aborted) {
        if (options.signal?.aborted === true) throw options.signal.reason
        throw signal.reason instanceof FleetSyncTimeoutError || signal.reason instanceof FleetSyncError
          ? signal.reason
          : new FleetSyncError('fleet-sync aborted', { cause: signal.reason })
      }
      if (err instanceof FleetSyncError || err instanceof MalformedFleetRecordError || isRefusal(err)) throw err
      throw new FleetSyncError(`fleet-sync pull from ${peer.toString()} failed`, { cause: err })
    } finally {
      signal.removeEventListener('abort', onAbort)
      clear()
    }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    // Reading and checking a request has its own small pool and a short deadline, so peers that
    // dial and say nothing (or present junk) cannot hold the serve slots of fleet members.
    if (this.pending >= this.maxPendingRequests) {
      this.counters.refused++
      stream.abort(new FleetSyncError('too many pending fleet-sync requests'))
      return
    }
    this.pending++
    const peer = connection.remotePeer.toString()
    let admitted = false
    let publicOnly = false
    let filter: FleetSyncRequest['filter']
    let digests: FleetSyncRequest['digests']
    const request = this.deadline(undefined, Math.min(this.requestTimeoutMs, this.timeoutMs))
    const onRequestAbort = (): void => { stream.abort(request.signal.reason) }
    request.signal.addEventListener('abort', onRequestAbort, { once: true })
    try {
      const requests = decodeLengthPrefixed(stream, Math.max(MAX_SYNC_REQUEST_BYTES, MAX_DIGEST_REQUEST_BYTES))
      const first = await requests.next()
      // Stop listening: the requester sends nothing more, and this detaches the stream listeners.
      await requests.return(undefined)
      const frame = first.done === true ? undefined : first.value
      if (frame == null) throw new FleetSyncError('invalid fleet-sync request')
      // Cheap checks before the grant's signatures: a malformed or oversized filter is refused by name.
      let parsed: FleetSyncRequest
      try {
        parsed = parseSyncRequest(frame)
      } catch (err) {
        if (err instanceof FleetSyncFilterError) this.counters.badFilters = (this.counters.badFilters ?? 0) + 1
        throw err
      }
      filter = parsed.filter
      digests = parsed.digests
      if (this.gate != null) {
        try {
          if (parsed.legacy) throw new TruncatedChainError('a fleet-sync request without a grant')
          await this.gate.check(parsed.chain, peer, { signal: request.signal })
        } catch (err) {
          if (!isRefusal(err)) throw err
          this.counters.unauthorized++
          this.dispatchEvent(new CustomEvent('unauthorized', { detail: { peer, error: err } }))
          if (this.publicCells !== undefined) {
            stream.send(encodeLengthPrefixed(new Uint8Array([FLEET_WIRE_VERSION, PUBLIC_ONLY_KIND, refusalCode(err)])))
            publicOnly = true
          } else {
            stream.send(encodeLengthPrefixed(new Uint8Array([FLEET_WIRE_VERSION, REFUSAL_KIND, refusalCode(err)])))
            await stream.close({ signal: request.signal })
            return
          }
        }
      }
      admitted = true
    } catch (err) {
      this.counters.serveFailures++
      log('fleet-sync request from %p failed: %e', connection.remotePeer, err)
      stream.abort(err instanceof Error ? err : new FleetSyncError('request failed'))
    } finally {
      request.signal.removeEventListener('abort', onRequestAbort)
      request.clear()
      this.pending--
    }
    if (admitted || publicOnly) await this.sendSnapshot(stream, peer, publicOnly ? this.publicCells : undefined, filter, digests)
  }

  /** The frames a request gets: the whole view (or its public cells), or what its filter names. */
  private snapshotFrames (cells: ((cell: string) => boolean) | undefined, filter: FleetSyncRequest['filter'], digests?: FleetSyncRequest['digests']): Uint8Array[] {
    // Leave room for the length prefix inside the requester's frame limit.
    const maxFrameBytes = this.maxFrameBytes - 8
    if (digests !== undefined) {
      this.counters.digestServes = (this.counters.digestServes ?? 0) + 1
      return answerDigests(this.view, digests, { maxFrameBytes, maxBytes: this.maxDigestResponseBytes, random: this.random, ...(cells !== undefined ? { cells } : {}) })
    }
    if (filter === undefined) return this.view.snapshot({ maxFrameBytes, ...(cells !== undefined ? { cells } : {}) })
    const asked = new Set(filter.cells)
    const inCells = (c: string): boolean => asked.has(c) && (cells?.(c) ?? true)
    // Only the node, member and down records the filter can get (its nodes and, unless it asks for a
    // sample, the hosts of its cells' instances) are encoded: at thousands of nodes a whole-view
    // snapshot per pull costs megabytes, most of them thrown away again by narrowSnapshot, and under
    // maxSnapshotBytes it could end before the asked cells' instances.
    const nodes = new Set(filter.nodes)
    const frames = this.view.snapshot({ maxFrameBytes, cells: inCells, nodes: (n) => nodes.has(n), withHosts: filter.sample === undefined })
    return narrowSnapshot(frames, filter, maxFrameBytes, this.random)
  }

  private async sendSnapshot (stream: Stream, peer: string, cells?: (cell: string) => boolean, filter?: FleetSyncRequest['filter'], digests?: FleetSyncRequest['digests']): Promise<void> {
    if (this.serving >= this.maxConcurrentServes) {
      this.counters.refused++
      stream.abort(new FleetSyncError('too many concurrent fleet-sync requests'))
      return
    }
    this.serving++
    const { signal, clear } = this.deadline(undefined)
    const onAbort = (): void => { stream.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      for (const frame of this.snapshotFrames(cells, filter, digests)) {
        if (!stream.send(encodeLengthPrefixed(frame))) await stream.onDrain({ signal })
      }
      await stream.close({ signal })
      this.counters.served++
      this.dispatchEvent(new CustomEvent('served', { detail: { peer } }))
    } catch (err) {
      this.counters.serveFailures++
      log('serving fleet-sync to %s failed: %e', peer, err)
      stream.abort(err instanceof Error ? err : new FleetSyncError('serve failed'))
    } finally {
      signal.removeEventListener('abort', onAbort)
      clear()
      this.serving--
    }
  }
}

/** libp2p service factory: `services: { fleetSync: fleetSync({ view }) }`. */
export function fleetSync (init: FleetSyncInit): (components: FleetSyncComponents) => FleetSync {
  return (components) => new DefaultFleetSync(components, init)
}
