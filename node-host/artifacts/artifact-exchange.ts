// `/cell/artifact/1`: fetch a cell artifact by digest from a peer that provides it. Artifacts are found
// through kad-dht provider records keyed by a CID of the artifact's sha256, and every byte fetched is
// verified against the digest before anyone may run it. Only peers holding a grant (any role) from an
// authority the server trusts are served: the request carries the requester's credential chain.
//   request  = version:u8 (2) chainLength:u16be chain digest:32      (version 1 was the hex digest as text)
//   response = 0x00 artifact bytes | 0x01 (not found) | 0x02 code:u8 (refused; core/fleet/peer-grant.ts codes)
// Both sides bound every wait: the server its read of the request and the whole serve, the requester
// each silence (a provider that sends one byte and goes quiet) as well as the caller's deadline.
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { CellError } from '../../core/errors.ts'
import { sha256Hex } from '../../core/identity/index.ts'
import { fromHex, toHex } from '../../core/identity/bytes.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import { PeerGrantGate, MAX_REQUEST_CHAIN_BYTES, isRefusal, refusalCode, refusalError } from '../../core/fleet/peer-grant.ts'
import { ProviderPenalties } from './provider-penalties.ts'

export { ProviderPenalties } from './provider-penalties.ts'

export const ARTIFACT_PROTOCOL = '/cell/artifact/1'
export const MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
const REQUEST_VERSION = 2
const DIGEST_BYTES = 32
const MAX_REQUEST_BYTES = 1 + 2 + MAX_REQUEST_CHAIN_BYTES + DIGEST_BYTES
const FOUND = 0
const NOT_FOUND = 1
const REFUSED = 2
const CHUNK_BYTES = 64 * 1024
const SHA256_CODE = 0x12
/** Default silence a requester tolerates between chunks (and the server between request bytes). */
export const DEFAULT_IDLE_MS = 2_000
const DEFAULT_DIAL_TIMEOUT_MS = 5_000
const DEFAULT_FETCH_TIMEOUT_MS = 30_000
const SERVE_TIMEOUT_MS = 30_000

const log = logger('cell:artifact')

export class ArtifactNotFoundError extends CellError { static override readonly errorName = 'ArtifactNotFoundError' }
export class ArtifactDigestMismatchError extends CellError { static override readonly errorName = 'ArtifactDigestMismatchError' }
export class ArtifactFetchError extends CellError { static override readonly errorName = 'ArtifactFetchError' }
export class MalformedArtifactRequestError extends CellError { static override readonly errorName = 'MalformedArtifactRequestError' }
/** A provider went silent for longer than the idle deadline; another provider may well answer. */
export class ArtifactStalledError extends CellError { static override readonly errorName = 'ArtifactStalledError' }
/** The caller's deadline for the fetch passed. */
export class ArtifactTimeoutError extends CellError { static override readonly errorName = 'ArtifactTimeoutError' }
/** serveArtifacts found no grant gate (options.gate or the mesh's fleet-sync gate) and would serve anyone. */
export class ArtifactGateMissingError extends CellError { static override readonly errorName = 'ArtifactGateMissingError' }

export interface ArtifactSource {
  get(digest: string): Promise<Uint8Array | undefined>
}

export function artifactCid (digest: string): CID {
  return CID.createV1(raw.code, createDigest(SHA256_CODE, fromHex(digest, 32, 'artifact digest')))
}

/** The grant gate a mesh's libp2p node carries on its fleet-sync service, if any. */
export function meshGate (node: Libp2p): PeerGrantGate | undefined {
  const gate = (node.services as { fleetSync?: { gate?: unknown } } | undefined)?.fleetSync?.gate
  return gate instanceof PeerGrantGate ? gate : undefined
}

interface ReadOptions {
  signal: AbortSignal
  clock: Clock
  /** Longest silence between chunks before the stream is aborted with `stalled()`. */
  idleMs: number
  stalled: () => Error
}

/**
 * Reads `stream` to its end, at most `maxBytes`. Both the caller's signal and a silence longer than
 * `idleMs` abort the stream itself, which is what ends a `for await` that waits for a byte.
 */
async function readAll (stream: Stream, maxBytes: number, options: ReadOptions): Promise<Uint8Array> {
  const { signal, clock } = options
  signal.throwIfAborted()
  let stall: Error | undefined
  let timer: unknown
  const arm = (): void => {
    clock.clearTimeout(timer)
    timer = clock.setTimeout(() => { stall = options.stalled(); stream.abort(stall) }, options.idleMs)
  }
  const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new ArtifactTimeoutError('aborted')) }
  signal.addEventListener('abort', onAbort, { once: true })
  const parts: Uint8Array[] = []
  let total = 0
  try {
    arm()
    for await (const chunk of stream) {
      arm()
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      total += bytes.byteLength
      if (total > maxBytes) {
        stream.abort(new ArtifactFetchError('too large'))
        throw new ArtifactFetchError(`response exceeds ${maxBytes} bytes`)
      }
      parts.push(bytes)
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
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

async function sendAll (stream: Stream, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
  for (let at = 0; at < bytes.byteLength; at += CHUNK_BYTES) {
    if (!stream.send(bytes.subarray(at, at + CHUNK_BYTES))) await stream.onDrain({ signal })
  }
}

export function encodeArtifactRequest (digest: string, chain: Uint8Array): Uint8Array {
  if (chain.length > MAX_REQUEST_CHAIN_BYTES) throw new MalformedArtifactRequestError(`chain of ${chain.length} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
  const out = new Uint8Array(1 + 2 + chain.length + DIGEST_BYTES)
  out[0] = REQUEST_VERSION
  new DataView(out.buffer).setUint16(1, chain.length)
  out.set(chain, 3)
  out.set(fromHex(digest, DIGEST_BYTES, 'artifact digest'), 3 + chain.length)
  return out
}

export function decodeArtifactRequest (bytes: Uint8Array): { digest: string, chain: Uint8Array } {
  if (bytes.length < 3 || bytes[0] !== REQUEST_VERSION) throw new MalformedArtifactRequestError(`not an artifact request of version ${REQUEST_VERSION}`)
  const chainLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(1)
  if (chainLength > MAX_REQUEST_CHAIN_BYTES) throw new MalformedArtifactRequestError(`chain of ${chainLength} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
  if (bytes.length !== 3 + chainLength + DIGEST_BYTES) throw new MalformedArtifactRequestError(`request of ${bytes.length} bytes, expected ${3 + chainLength + DIGEST_BYTES}`)
  return { chain: bytes.subarray(3, 3 + chainLength), digest: toHex(bytes.subarray(3 + chainLength)) }
}

export interface ServeArtifactsOptions {
  /** Who may fetch; default: the gate of the node's mesh (its fleet-sync service). */
  gate?: PeerGrantGate
  clock?: Clock
  /** Silence tolerated while reading a request (default 2 s). */
  idleMs?: number
  /** Deadline of one whole serve (default 30 s). */
  timeoutMs?: number
  maxInboundStreams?: number
  /** Counters this server bumps (refusals are also counted by the gate's own stats). */
  stats?: ArtifactServeStats
}

export interface ArtifactServeStats { served: number, notFound: number, refused: number, failed: number }

export function artifactServeStats (): ArtifactServeStats {
  return { served: 0, notFound: 0, refused: 0, failed: 0 }
}

/** Serve artifacts from `source` to peers that present a grant the gate admits. */
export async function serveArtifacts (node: Libp2p, source: ArtifactSource, options: ServeArtifactsOptions = {}): Promise<void> {
  const gate = options.gate ?? meshGate(node)
  if (gate == null) throw new ArtifactGateMissingError('serveArtifacts needs a grant gate: pass options.gate or a mesh node whose fleet-sync has `trusted`')
  const clock = options.clock ?? systemClock
  const idleMs = options.idleMs ?? DEFAULT_IDLE_MS
  const timeoutMs = options.timeoutMs ?? SERVE_TIMEOUT_MS
  const counters = options.stats ?? artifactServeStats()
  await node.handle(ARTIFACT_PROTOCOL, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const deadline = new AbortController()
    const timer = clock.setTimeout(() => { deadline.abort(new ArtifactTimeoutError(`serving an artifact to ${peer} exceeded ${timeoutMs} ms`)) }, timeoutMs)
    const signal = deadline.signal
    try {
      const request = decodeArtifactRequest(await readAll(stream, MAX_REQUEST_BYTES, {
        signal, clock, idleMs, stalled: () => new ArtifactStalledError(`${peer} went silent mid-request`)
      }))
      try {
        await gate.check(request.chain, peer, { signal })
      } catch (err) {
        if (!isRefusal(err)) throw err
        counters.refused++
        stream.send(Uint8Array.of(REFUSED, refusalCode(err)))
        await stream.close({ signal })
        return
      }
      const bytes = await source.get(request.digest)
      if (bytes == null) {
        counters.notFound++
        stream.send(Uint8Array.of(NOT_FOUND))
      } else {
        stream.send(Uint8Array.of(FOUND))
        await sendAll(stream, bytes, signal)
        counters.served++
      }
      await stream.close({ signal })
    } catch (err) {
      counters.failed++
      log('serving artifact to %s failed: %e', peer, err)
      stream.abort(err as Error)
    } finally {
      clock.clearTimeout(timer)
    }
  }, { maxInboundStreams: options.maxInboundStreams ?? 32 })
}

export interface FetchArtifactOptions {
  signal?: AbortSignal
  maxBytes?: number
  /** Overall deadline when no signal is given (default 30 s). */
  timeoutMs?: number
  /** Longest silence between chunks from the provider (default 2 s). */
  idleMs?: number
  /** Deadline for opening the stream (default 5 s, within the overall deadline). */
  dialTimeoutMs?: number
  /** Presents this node's grant; default: the gate of the node's mesh. */
  gate?: PeerGrantGate
  /** Prefer the grant from this authority (e.g. the release's) when presenting one. */
  authority?: string
  clock?: Clock
}

/** The error to throw when `signal` ended a fetch: a deadline becomes ArtifactTimeoutError, a caller's abort its reason. */
function abortError (signal: AbortSignal, what: string, cause: unknown): unknown {
  const reason = signal.reason
  if (reason instanceof ArtifactTimeoutError) return reason
  if ((reason as { name?: string })?.name === 'TimeoutError') return new ArtifactTimeoutError(`${what}: deadline passed`, { cause: cause ?? reason })
  return reason
}

/** Fetch one artifact from one peer and verify it. */
export async function fetchArtifact (node: Libp2p, peer: PeerId, digest: string, options: FetchArtifactOptions = {}): Promise<Uint8Array> {
  const clock = options.clock ?? systemClock
  const what = `fetching ${digest.slice(0, 12)} from ${peer.toString()}`
  let deadlineTimer: unknown
  let signal = options.signal
  if (signal == null) {
    const deadline = new AbortController()
    const timeoutMs = options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS
    deadlineTimer = clock.setTimeout(() => { deadline.abort(new ArtifactTimeoutError(`${what} exceeded ${timeoutMs} ms`)) }, timeoutMs)
    signal = deadline.signal
  }
  const gate = options.gate ?? meshGate(node)
  const request = encodeArtifactRequest(digest, gate?.chain(options.authority) ?? new Uint8Array(0))
  // Opening the stream (dial, Noise, yamux, multistream-select) gets its own bound inside the deadline.
  const dial = new AbortController()
  const dialMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS
  const dialTimer = clock.setTimeout(() => { dial.abort(new ArtifactStalledError(`${what}: no stream within ${dialMs} ms`)) }, dialMs)
  let stream: Stream | undefined
  try {
    try {
      stream = await node.dialProtocol(peer, ARTIFACT_PROTOCOL, { signal: AbortSignal.any([signal, dial.signal]) })
    } finally {
      clock.clearTimeout(dialTimer)
    }
    stream.send(request)
    // Closing our side waits at most for one small write; unread answers are buffered meanwhile.
    await stream.close({ signal })
    const idleMs = options.idleMs ?? DEFAULT_IDLE_MS
    const response = await readAll(stream, 1 + (options.maxBytes ?? MAX_ARTIFACT_BYTES), {
      signal, clock, idleMs, stalled: () => new ArtifactStalledError(`${what}: provider silent for ${idleMs} ms`)
    })
    if (response.byteLength === 0) throw new ArtifactFetchError(`peer ${peer.toString()} closed without an answer`)
    if (response[0] === NOT_FOUND) throw new ArtifactNotFoundError(`peer ${peer.toString()} does not have artifact ${digest}`)
    if (response[0] === REFUSED) throw refusalError(response[1] ?? 0, `artifact provider ${peer.toString()}`)
    if (response[0] !== FOUND) throw new ArtifactFetchError(`peer ${peer.toString()} answered with unknown status ${response[0]}`)
    const bytes = response.subarray(1)
    const actual = await sha256Hex(bytes)
    if (actual !== digest) throw new ArtifactDigestMismatchError(`artifact from ${peer.toString()} hashes to ${actual}, expected ${digest}`)
    return bytes
  } catch (err) {
    stream?.abort(err instanceof Error ? err : new ArtifactFetchError(what))
    if (dial.signal.aborted && stream == null && !signal.aborted) throw dial.signal.reason
    if (signal.aborted) throw abortError(signal, what, err)
    if (err instanceof CellError) throw err
    throw new ArtifactFetchError(`${what} failed`, { cause: err })
  } finally {
    clock.clearTimeout(deadlineTimer)
  }
}

export interface FindArtifactOptions extends Omit<FetchArtifactOptions, 'signal'> {
  signal?: AbortSignal
  /** Peers to try first (e.g. connected peers, the publisher). */
  hint?: PeerId[]
  /** Most providers contacted in one fetch (default 16). */
  maxProviders?: number
  /** Providers that stalled or failed recently; they are tried last, after everyone else. */
  penalties?: ProviderPenalties
}

/**
 * Find providers of `digest` in the DHT (trying `hint` peers first, e.g. the publisher) and fetch from the
 * first that answers with matching bytes. Providers in `penalties` are deferred to the end, and every
 * failure (a stall, a refusal, forged bytes) is recorded there for the next fetch.
 */
export async function findAndFetchArtifact (node: Libp2p, digest: string, options: FindArtifactOptions = {}): Promise<Uint8Array> {
  const clock = options.clock ?? systemClock
  let signal = options.signal
  let deadlineTimer: unknown
  if (signal == null) {
    const deadline = new AbortController()
    const timeoutMs = options.timeoutMs ?? 60_000
    deadlineTimer = clock.setTimeout(() => { deadline.abort(new ArtifactTimeoutError(`fetching ${digest.slice(0, 12)} exceeded ${timeoutMs} ms`)) }, timeoutMs)
    signal = deadline.signal
  }
  const maxProviders = options.maxProviders ?? 16
  const penalties = options.penalties
  const tried = new Set<string>()
  const deferred: PeerId[] = []
  const errors: unknown[] = []
  const attempt = async (peer: PeerId, allowPenalised: boolean): Promise<Uint8Array | undefined> => {
    const id = peer.toString()
    if (peer.equals(node.peerId) || tried.has(id) || tried.size >= maxProviders) return undefined
    if (!allowPenalised && penalties?.has(id) === true) {
      if (!deferred.some(p => p.equals(peer)) && deferred.length < maxProviders) deferred.push(peer)
      return undefined
    }
    tried.add(id)
    try {
      return await fetchArtifact(node, peer, digest, { ...options, signal })
    } catch (err) {
      if (err instanceof ArtifactDigestMismatchError) log.error('%s served a forged artifact: %e', peer, err)
      if (!(err instanceof ArtifactNotFoundError)) penalties?.add(id, (err as Error)?.name ?? 'Error')
      errors.push(err)
      if (signal.aborted) throw abortError(signal, `fetching ${digest.slice(0, 12)}`, err)
      return undefined
    }
  }
  try {
    for (const peer of options.hint ?? []) {
      const got = await attempt(peer, false)
      if (got != null) return got
    }
    try {
      for await (const provider of node.contentRouting.findProviders(artifactCid(digest), { signal })) {
        const got = await attempt(provider.id, false)
        if (got != null) return got
        if (tried.size >= maxProviders) break
      }
    } catch (err) {
      if (signal.aborted) throw abortError(signal, `fetching ${digest.slice(0, 12)}`, err)
      // No content routing or a DHT failure: the deferred providers may still have it.
      errors.push(err)
    }
    for (const peer of deferred) {
      const got = await attempt(peer, true)
      if (got != null) return got
    }
    throw new ArtifactNotFoundError(`no provider served artifact ${digest} (tried ${tried.size})`, { cause: errors[0] })
  } finally {
    clock.clearTimeout(deadlineTimer)
  }
}
