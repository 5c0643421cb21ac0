// `/cell/snapshot-blob/1`: fetch one blob of a claim's snapshot by sha256 digest from a node that
// holds it (the claim's owner or a pinning holder). A protocol of its own rather than
// `/cell/artifact/1`: snapshot blobs hold a cell's private data, so only a peer holding a HOST grant
// for the cell from an authority that claims it (and this node trusts) is served, where artifacts
// go to any fleet member; and a blob (a tar layer, a ZFS-send chunk) may be far larger than an
// artifact, so it streams to a temporary file in the claim's OCI layout and is renamed to its
// digest only after it hashed right (OciLayout.importBlob), never held whole in memory.
//   request  = version:u8 (1) chainLength:u16be chain claimLength:u8 claimId digest:32
//   response = 0x00 size:u64be bytes… | 0x01 (not held here) | 0x02 code:u8 (refused; core/fleet/peer-grant.ts codes)
// Both sides bound every wait: the server its read of the request and the whole serve, the
// fetcher each silence between chunks and its caller's deadline. A blob that fails (refused,
// stalled, truncated, forged) is fetched again from the next holder, then from DHT providers.
import { existsSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import { fromHex, toHex } from '../../core/identity/bytes.ts'
import { MAX_CHAIN_BYTES, TruncatedChainError, UnknownAuthorityError, verifyChain } from '../../core/identity/index.ts'
import { isRefusal, refusalCode, refusalError } from '../../core/fleet/peer-grant.ts'
import { parseClaimId } from '../../core/fleet/snapshots.ts'
import type { FleetView } from '../../core/fleet/view.ts'
import { artifactCid } from '../artifacts/artifact-exchange.ts'
import { ProviderPenalties } from '../artifacts/provider-penalties.ts'
import { OciLayout } from './oci-layout.ts'
import { SnapshotCorruptError } from './errors.ts'
import { layoutDirFor } from './snapshots.ts'

export const SNAPSHOT_BLOB_PROTOCOL = '/cell/snapshot-blob/1'
const REQUEST_VERSION = 1
const DIGEST_BYTES = 32
const MAX_CLAIM_BYTES = 255
const MAX_REQUEST_BYTES = 1 + 2 + MAX_CHAIN_BYTES + 1 + MAX_CLAIM_BYTES + DIGEST_BYTES
const FOUND = 0
const NOT_FOUND = 1
const REFUSED = 2
/** Largest blob fetched by default (a claim's tar layer can be as large as the claim). */
export const DEFAULT_MAX_BLOB_BYTES = 8 * 1024 ** 3
const DEFAULT_IDLE_MS = 10_000
const DEFAULT_DIAL_TIMEOUT_MS = 5_000
const DEFAULT_SERVE_TIMEOUT_MS = 30 * 60_000
const HEX_DIGEST = /^sha256:([0-9a-f]{64})$/

const log = logger('cell:snapshot-blob')

export class SnapshotBlobNotFoundError extends CellError {
  static override readonly errorName = 'SnapshotBlobNotFoundError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** The transfer failed (stream error, bad status, a size past the bound, a short stream). */
export class SnapshotBlobFetchError extends CellError {
  static override readonly errorName = 'SnapshotBlobFetchError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** A holder went silent longer than the idle deadline; another holder may well answer. */
export class SnapshotBlobStalledError extends CellError {
  static override readonly errorName = 'SnapshotBlobStalledError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** No holder (named or found in the DHT) served a blob that hashed right. */
export class SnapshotBlobUnavailableError extends CellError {
  static override readonly errorName = 'SnapshotBlobUnavailableError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
export class MalformedSnapshotBlobRequestError extends CellError {
  static override readonly errorName = 'MalformedSnapshotBlobRequestError'
  static override readonly retry: RetryRule = 'never'
}

export function encodeSnapshotBlobRequest (claimId: string, digest: string, chain: Uint8Array): Uint8Array {
  const claim = new TextEncoder().encode(claimId)
  const hex = HEX_DIGEST.exec(digest)?.[1]
  if (hex === undefined) throw new MalformedSnapshotBlobRequestError(`${JSON.stringify(digest)} is not a sha256 digest`)
  if (claim.length === 0 || claim.length > MAX_CLAIM_BYTES) throw new MalformedSnapshotBlobRequestError(`claim id of ${claim.length} bytes`)
  if (chain.length > MAX_CHAIN_BYTES) throw new MalformedSnapshotBlobRequestError(`chain of ${chain.length} bytes exceeds ${MAX_CHAIN_BYTES}`)
  const out = new Uint8Array(1 + 2 + chain.length + 1 + claim.length + DIGEST_BYTES)
  const view = new DataView(out.buffer)
  out[0] = REQUEST_VERSION
  view.setUint16(1, chain.length)
  out.set(chain, 3)
  out[3 + chain.length] = claim.length
  out.set(claim, 4 + chain.length)
  out.set(fromHex(hex, DIGEST_BYTES, 'blob digest'), 4 + chain.length + claim.length)
  return out
}

export function decodeSnapshotBlobRequest (bytes: Uint8Array): { claimId: string, digest: string, chain: Uint8Array } {
  const bad = (why: string): never => { throw new MalformedSnapshotBlobRequestError(`not a snapshot-blob request: ${why}`) }
  if (bytes.length < 4 || bytes[0] !== REQUEST_VERSION) bad(`version ${bytes[0]}`)
  const chainLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(1)
  if (chainLength > MAX_CHAIN_BYTES) bad(`chain of ${chainLength} bytes`)
  if (bytes.length < 4 + chainLength) bad('truncated')
  const claimLength = bytes[3 + chainLength]
  if (bytes.length !== 4 + chainLength + claimLength + DIGEST_BYTES) bad(`${bytes.length} bytes`)
  let claimId = ''
  try {
    claimId = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(4 + chainLength, 4 + chainLength + claimLength))
    parseClaimId(claimId)
  } catch {
    bad('claim id')
  }
  return { chain: bytes.subarray(3, 3 + chainLength), claimId, digest: `sha256:${toHex(bytes.subarray(4 + chainLength + claimLength))}` }
}

/**
 * Iterates a stream's chunks, aborting it when the caller's signal fires or when no chunk arrives
 * for `idleMs` (then the iteration throws `stalled()`).
 */
async function * chunks (stream: Stream, options: { signal: AbortSignal, clock: Clock, idleMs: number, stalled: () => Error }): AsyncGenerator<Uint8Array> {
  const { signal, clock } = options
  signal.throwIfAborted()
  let stall: Error | undefined
  let timer: unknown
  const arm = (): void => {
    clock.clearTimeout(timer)
    timer = clock.setTimeout(() => { stall = options.stalled(); stream.abort(stall) }, options.idleMs)
  }
  const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new SnapshotBlobFetchError('aborted')) }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    arm()
    for await (const chunk of stream) {
      arm()
      yield chunk instanceof Uint8Array ? chunk : chunk.subarray()
    }
  } catch (err) {
    if (stall !== undefined) throw stall
    throw err
  } finally {
    clock.clearTimeout(timer)
    signal.removeEventListener('abort', onAbort)
  }
  if (stall !== undefined) throw stall
  signal.throwIfAborted()
}

/** Reads exactly `n` bytes from the front of `source`, returning them and the rest of the first chunk that held them. */
async function take (source: AsyncIterator<Uint8Array>, n: number, pending: Uint8Array): Promise<{ head: Uint8Array, rest: Uint8Array }> {
  let buf = pending
  while (buf.length < n) {
    const next = await source.next()
    if (next.done === true) return { head: buf, rest: new Uint8Array(0) }
    const merged = new Uint8Array(buf.length + next.value.length)
    merged.set(buf)
    merged.set(next.value, buf.length)
    buf = merged
  }
  return { head: buf.subarray(0, n), rest: buf.subarray(n) }
}

export interface SnapshotBlobServeStats { served: number, bytes: number, notFound: number, refused: number, failed: number, busy: number }

export interface SnapshotBlobServerInit {
  /** Who claims which cell (releases and desired records): a requester needs a host grant from one of them. */
  view: Pick<FleetView, 'claimants'>
  /** Authorities this node trusts (read live). */
  trusted: ReadonlySet<string>
  /** Claim layouts live at `<dataDir>/snapshots/<cell>/<ordinal>` (owner's and pinned copies alike). */
  dataDir: string
  clock?: Clock
  /** Silence tolerated while reading a request (default 2 s). */
  requestIdleMs?: number
  /** Deadline of one whole serve (default 30 min). */
  timeoutMs?: number
  /** Blobs served at once (default 4); more are refused (the fetcher tries another holder). */
  maxConcurrent?: number
  maxInboundStreams?: number
}

export interface SnapshotBlobServer {
  readonly stats: SnapshotBlobServeStats
  stop: () => Promise<void>
}

/** Serves claim blobs under `dataDir` to peers holding a host grant for the claim's cell. */
export async function serveSnapshotBlobs (node: Libp2p, init: SnapshotBlobServerInit): Promise<SnapshotBlobServer> {
  const clock = init.clock ?? systemClock
  const requestIdleMs = init.requestIdleMs ?? 2_000
  const timeoutMs = init.timeoutMs ?? DEFAULT_SERVE_TIMEOUT_MS
  const maxConcurrent = init.maxConcurrent ?? 4
  const stats: SnapshotBlobServeStats = { served: 0, bytes: 0, notFound: 0, refused: 0, failed: 0, busy: 0 }
  let active = 0
  await node.handle(SNAPSHOT_BLOB_PROTOCOL, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    if (active >= maxConcurrent) {
      stats.busy++
      stream.abort(new SnapshotBlobFetchError('too many snapshot blobs in flight'))
      return
    }
    active++
    const deadline = new AbortController()
    const timer = clock.setTimeout(() => { deadline.abort(new SnapshotBlobStalledError(`serving a snapshot blob to ${peer} exceeded ${timeoutMs} ms`)) }, timeoutMs)
    const signal = deadline.signal
    try {
      // The request: everything until the requester closes its side, at most MAX_REQUEST_BYTES.
      const parts: Uint8Array[] = []
      let size = 0
      for await (const c of chunks(stream, { signal, clock, idleMs: requestIdleMs, stalled: () => new SnapshotBlobStalledError(`${peer} went silent mid-request`) })) {
        size += c.length
        if (size > MAX_REQUEST_BYTES) throw new MalformedSnapshotBlobRequestError(`request exceeds ${MAX_REQUEST_BYTES} bytes`)
        parts.push(c)
      }
      const bytes = new Uint8Array(size)
      let at = 0
      for (const p of parts) { bytes.set(p, at); at += p.length }
      const request = decodeSnapshotBlobRequest(bytes)
      const claim = parseClaimId(request.claimId)
      try {
        // A HOST grant for this cell from an authority that claims it: callers and strangers never read a cell's data.
        const authorities = init.view.claimants(claim.cell).filter(a => init.trusted.has(a))
        if (authorities.length === 0) throw new UnknownAuthorityError(`no trusted authority claims cell ${claim.cell}`)
        if (request.chain.length === 0) throw new TruncatedChainError('no grant presented')
        await verifyChain(request.chain, { remotePeerId: peer, trusted: new Set(authorities), requiredRole: 'host', cell: claim.cell, nowMs: clock.now(), signal })
      } catch (err) {
        if (!isRefusal(err)) throw err
        stats.refused++
        log('refused snapshot blob %s of %s to %s: %s', request.digest.slice(7, 19), request.claimId, peer, (err as Error).name)
        stream.send(Uint8Array.of(REFUSED, refusalCode(err)))
        await stream.close({ signal })
        return
      }
      const dir = layoutDirFor(init.dataDir, claim)
      const hex = request.digest.slice(7)
      const path = `${dir}/blobs/sha256/${hex}`
      const st = existsSync(path) ? await stat(path) : undefined
      if (st === undefined || !st.isFile()) {
        stats.notFound++
        stream.send(Uint8Array.of(NOT_FOUND))
        await stream.close({ signal })
        return
      }
      const header = new Uint8Array(9)
      header[0] = FOUND
      new DataView(header.buffer).setBigUint64(1, BigInt(st.size))
      stream.send(header)
      // readBlob hashes as it reads: a blob corrupted on this disk aborts the stream instead of completing.
      for await (const piece of OciLayout.open(dir).readBlob(request.digest, st.size, signal)) {
        if (!stream.send(piece)) await stream.onDrain({ signal })
        stats.bytes += piece.length
      }
      await stream.close({ signal })
      stats.served++
    } catch (err) {
      stats.failed++
      log('serving a snapshot blob to %s failed: %e', peer, err)
      stream.abort(err instanceof Error ? err : new SnapshotBlobFetchError('serve failed'))
    } finally {
      clock.clearTimeout(timer)
      active--
    }
  }, { maxInboundStreams: init.maxInboundStreams ?? 16 })
  return {
    stats,
    stop: async () => { await node.unhandle(SNAPSHOT_BLOB_PROTOCOL) }
  }
}

export interface FetchSnapshotBlobOptions {
  claimId: string
  digest: string
  /** The claim's layout on this node: the blob lands in it, verified, or not at all. */
  layout: OciLayout
  /** This node's credential chain for the cell's authority (host role), e.g. Mesh.credentialsFor(cell). */
  chain: Uint8Array
  /** Largest blob accepted (default 8 GiB); a holder announcing more is refused before a byte is written. */
  maxBytes?: number
  signal?: AbortSignal
  /** Longest silence between chunks (default 10 s). */
  idleMs?: number
  /** Deadline for opening the stream (default 5 s). */
  dialTimeoutMs?: number
  clock?: Clock
}

/**
 * Fetches one blob from `peer` into `options.layout`: streamed to a temporary file, size-bounded,
 * renamed to its digest only if it hashes right. Throws SnapshotCorruptError for forged or
 * truncated bytes, the identity error the holder refused with, or a SnapshotBlob*Error.
 */
export async function fetchSnapshotBlob (node: Libp2p, peer: PeerId, options: FetchSnapshotBlobOptions): Promise<{ bytes: number }> {
  const clock = options.clock ?? systemClock
  const what = `fetching blob ${options.digest.slice(7, 19)} of ${options.claimId} from ${peer.toString()}`
  const request = encodeSnapshotBlobRequest(options.claimId, options.digest, options.chain)
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BLOB_BYTES
  const signal = options.signal ?? new AbortController().signal
  const dial = new AbortController()
  const dialMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS
  const dialTimer = clock.setTimeout(() => { dial.abort(new SnapshotBlobStalledError(`${what}: no stream within ${dialMs} ms`)) }, dialMs)
  let stream: Stream | undefined
  try {
    try {
      stream = await node.dialProtocol(peer, SNAPSHOT_BLOB_PROTOCOL, { signal: AbortSignal.any([signal, dial.signal]) })
    } finally {
      clock.clearTimeout(dialTimer)
    }
    stream.send(request)
    await stream.close({ signal })
    const idleMs = options.idleMs ?? DEFAULT_IDLE_MS
    const source = chunks(stream, { signal, clock, idleMs, stalled: () => new SnapshotBlobStalledError(`${what}: holder silent for ${idleMs} ms`) })
    const first = await take(source, 1, new Uint8Array(0))
    if (first.head.length === 0) throw new SnapshotBlobFetchError(`${what}: closed without an answer`)
    const status = first.head[0]
    if (status === NOT_FOUND) throw new SnapshotBlobNotFoundError(`${peer.toString()} does not hold blob ${options.digest} of ${options.claimId}`)
    if (status === REFUSED) {
      const code = await take(source, 1, first.rest)
      throw refusalError(code.head[0] ?? 0, `snapshot blob holder ${peer.toString()}`)
    }
    if (status !== FOUND) throw new SnapshotBlobFetchError(`${what}: unknown status ${status}`)
    const sized = await take(source, 8, first.rest)
    if (sized.head.length < 8) throw new SnapshotBlobFetchError(`${what}: closed before the size`)
    const size = new DataView(sized.head.buffer, sized.head.byteOffset, 8).getBigUint64(0)
    if (size > BigInt(maxBytes)) throw new SnapshotBlobFetchError(`${what}: holder announces ${size} bytes, more than ${maxBytes}`)
    let received = 0
    async function * body (): AsyncGenerator<Uint8Array> {
      if (sized.rest.length > 0) { received += sized.rest.length; yield sized.rest }
      for (let next = await source.next(); next.done !== true; next = await source.next()) {
        received += next.value.length
        yield next.value
      }
    }
    // importBlob refuses more than `size` bytes and any bytes that do not hash to the digest.
    await options.layout.importBlob(options.digest, body(), { maxBytes: Number(size), signal })
    if (received !== Number(size)) throw new SnapshotCorruptError(`${what}: ${received} of ${size} bytes`, options.digest)
    return { bytes: received }
  } catch (err) {
    stream?.abort(err instanceof Error ? err : new SnapshotBlobFetchError(what))
    if (dial.signal.aborted && stream == null && !signal.aborted) throw dial.signal.reason
    if (signal.aborted) throw signal.reason
    if (err instanceof CellError || isRefusal(err)) throw err
    throw new SnapshotBlobFetchError(`${what} failed`, { cause: err })
  }
}

export interface FetchSnapshotBlobsOptions extends Omit<FetchSnapshotBlobOptions, 'digest'> {
  digests: readonly string[]
  /** Peer ids to try first, in order: the holders named in pin and snapshot records (the owner among them). */
  holders: readonly string[]
  /** Holders that failed recently; tried last. Failures are recorded here. */
  penalties?: ProviderPenalties
  /** Most holders contacted per blob (default 8). */
  maxHolders?: number
  /** Look up more holders in the DHT when the named ones fail (default true). */
  useDht?: boolean
}

export interface FetchSnapshotBlobsResult {
  fetched: number
  present: number
  bytes: number
  /** Blobs refused by digest (forged or truncated), per holder that sent them. */
  corrupt: Array<{ peer: string, digest: string }>
}

/**
 * Fetches every blob in `digests` the layout lacks, one at a time: each from the named holders
 * first, then DHT providers; a blob that failed (refused, stalled, truncated, forged) is fetched
 * again from the next holder. Blobs already in the layout are kept (they were verified when they
 * were written). Throws SnapshotBlobUnavailableError naming the first blob no holder served.
 */
export async function fetchSnapshotBlobs (node: Libp2p, options: FetchSnapshotBlobsOptions): Promise<FetchSnapshotBlobsResult> {
  const result: FetchSnapshotBlobsResult = { fetched: 0, present: 0, bytes: 0, corrupt: [] }
  const maxHolders = options.maxHolders ?? 8
  const penalties = options.penalties
  const self = node.peerId.toString()
  for (const digest of options.digests) {
    options.signal?.throwIfAborted()
    if (await options.layout.hasBlob(digest)) { result.present++; continue }
    const tried = new Set<string>()
    const deferred: string[] = []
    const errors: unknown[] = []
    const attempt = async (id: string, allowPenalised: boolean): Promise<boolean> => {
      if (id === self || tried.has(id) || tried.size >= maxHolders) return false
      if (!allowPenalised && penalties?.has(id) === true) {
        if (!deferred.includes(id)) deferred.push(id)
        return false
      }
      tried.add(id)
      let peer: PeerId
      try { peer = peerIdFromString(id) } catch { return false }
      try {
        const got = await fetchSnapshotBlob(node, peer, { ...options, digest })
        result.fetched++
        result.bytes += got.bytes
        return true
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        if (err instanceof SnapshotCorruptError) {
          result.corrupt.push({ peer: id, digest })
          log.error('%s sent blob %s of %s that does not hash right: refused', id, digest, options.claimId)
        } else {
          log('blob %s of %s from %s failed: %e', digest.slice(7, 19), options.claimId, id, err)
        }
        if (!(err instanceof SnapshotBlobNotFoundError)) penalties?.add(id, (err as Error)?.name ?? 'Error')
        errors.push(err)
        return false
      }
    }
    let done = false
    for (const id of options.holders) if (!done) done = await attempt(id, false)
    if (!done && options.useDht !== false) {
      try {
        const hex = HEX_DIGEST.exec(digest)?.[1] ?? ''
        for await (const provider of node.contentRouting.findProviders(artifactCid(hex), { signal: options.signal })) {
          done = await attempt(provider.id.toString(), false)
          if (done || tried.size >= maxHolders) break
        }
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        errors.push(err)
      }
    }
    for (const id of deferred) if (!done) done = await attempt(id, true)
    if (!done) throw new SnapshotBlobUnavailableError(`no holder served blob ${digest} of ${options.claimId} (tried ${tried.size})`, { cause: errors.at(-1) })
  }
  return result
}

/** Announces this node as a provider of each blob in the DHT (CID of the digest, as for artifacts); failures are logged. */
export async function provideSnapshotBlobs (node: Libp2p, digests: readonly string[], options: { signal?: AbortSignal } = {}): Promise<number> {
  let provided = 0
  for (const digest of digests) {
    const hex = HEX_DIGEST.exec(digest)?.[1]
    if (hex === undefined) continue
    try {
      await node.contentRouting.provide(artifactCid(hex), { signal: options.signal })
      provided++
    } catch (err) {
      if (options.signal?.aborted === true) return provided
      log('providing blob %s failed: %e', digest.slice(7, 19), err)
    }
  }
  return provided
}

export { ProviderPenalties }
