// `/cell/artifact/1`: fetch a cell artifact by digest from a peer that provides it. Artifacts are found
// through kad-dht provider records keyed by a CID of the artifact's sha256, and every byte fetched is
// verified against the digest before anyone may run it.
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { CellError } from '../../core/errors.ts'
import { sha256Hex } from '../../core/identity/index.ts'
import { fromHex } from '../../core/identity/bytes.ts'

export const ARTIFACT_PROTOCOL = '/cell/artifact/1'
export const MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
const CHUNK_BYTES = 64 * 1024
const SHA256_CODE = 0x12

const log = logger('cell:artifact')

export class ArtifactNotFoundError extends CellError {}
export class ArtifactDigestMismatchError extends CellError {}
export class ArtifactFetchError extends CellError {}
export class MalformedArtifactRequestError extends CellError {}

export interface ArtifactSource {
  get(digest: string): Promise<Uint8Array | undefined>
}

export function artifactCid (digest: string): CID {
  return CID.createV1(raw.code, createDigest(SHA256_CODE, fromHex(digest, 32, 'artifact digest')))
}

const HEX64 = /^[0-9a-f]{64}$/

async function readAll (stream: Stream, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let total = 0
  for await (const chunk of stream) {
    signal?.throwIfAborted()
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    total += bytes.byteLength
    if (total > maxBytes) {
      stream.abort(new ArtifactFetchError('too large'))
      throw new ArtifactFetchError(`response exceeds ${maxBytes} bytes`)
    }
    parts.push(bytes)
  }
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

async function sendAll (stream: Stream, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
  for (let at = 0; at < bytes.byteLength; at += CHUNK_BYTES) {
    if (!stream.send(bytes.subarray(at, at + CHUNK_BYTES))) await stream.onDrain({ signal })
  }
}

/** Serve artifacts from `source` to any peer that asks by digest. */
export async function serveArtifacts (node: Libp2p, source: ArtifactSource): Promise<void> {
  await node.handle(ARTIFACT_PROTOCOL, async (stream) => {
    const signal = AbortSignal.timeout(30_000)
    try {
      const request = new TextDecoder().decode(await readAll(stream, 128, signal)).trim()
      if (!HEX64.test(request)) throw new MalformedArtifactRequestError('request is not a sha256 hex digest')
      const bytes = await source.get(request)
      if (bytes == null) {
        stream.send(Uint8Array.of(1))
      } else {
        stream.send(Uint8Array.of(0))
        await sendAll(stream, bytes, signal)
      }
      await stream.close({ signal })
    } catch (err) {
      log.error('serving artifact failed: %e', err)
      stream.abort(err as Error)
    }
  }, { maxInboundStreams: 32 })
}

/** Fetch one artifact from one peer and verify it. */
export async function fetchArtifact (node: Libp2p, peer: PeerId, digest: string, options: { signal?: AbortSignal, maxBytes?: number } = {}): Promise<Uint8Array> {
  const signal = options.signal ?? AbortSignal.timeout(30_000)
  const stream = await node.dialProtocol(peer, ARTIFACT_PROTOCOL, { signal })
  stream.send(new TextEncoder().encode(digest + '\n'))
  await stream.close({ signal }).catch(() => {})
  let response: Uint8Array
  try {
    response = await readAll(stream, (options.maxBytes ?? MAX_ARTIFACT_BYTES) + 1, signal)
  } catch (err) {
    if (err instanceof CellError) throw err
    throw new ArtifactFetchError(`fetching ${digest.slice(0, 12)} from ${peer} failed`, { cause: err })
  }
  if (response.byteLength === 0) throw new ArtifactFetchError(`peer ${peer} closed without an answer`)
  if (response[0] === 1) throw new ArtifactNotFoundError(`peer ${peer} does not have artifact ${digest}`)
  const bytes = response.subarray(1)
  const actual = await sha256Hex(bytes)
  if (actual !== digest) throw new ArtifactDigestMismatchError(`artifact from ${peer} hashes to ${actual}, expected ${digest}`)
  return bytes
}

/**
 * Find providers of `digest` in the DHT (trying `hint` peers first, e.g. the publisher) and fetch from the
 * first that answers with matching bytes.
 */
export async function findAndFetchArtifact (node: Libp2p, digest: string, options: { signal?: AbortSignal, hint?: PeerId[], maxProviders?: number } = {}): Promise<Uint8Array> {
  const signal = options.signal ?? AbortSignal.timeout(60_000)
  const tried = new Set<string>()
  const errors: unknown[] = []
  const attempt = async (peer: PeerId): Promise<Uint8Array | undefined> => {
    if (peer.equals(node.peerId) || tried.has(peer.toString())) return undefined
    tried.add(peer.toString())
    try {
      return await fetchArtifact(node, peer, digest, { signal })
    } catch (err) {
      if (err instanceof ArtifactDigestMismatchError) log.error('%s served a forged artifact: %e', peer, err)
      errors.push(err)
      return undefined
    }
  }
  for (const peer of options.hint ?? []) {
    const got = await attempt(peer)
    if (got != null) return got
  }
  for await (const provider of node.contentRouting.findProviders(artifactCid(digest), { signal })) {
    const got = await attempt(provider.id)
    if (got != null) return got
    if (tried.size >= (options.maxProviders ?? 16)) break
  }
  throw new ArtifactNotFoundError(`no provider served artifact ${digest} (tried ${tried.size})`, { cause: errors[0] })
}
