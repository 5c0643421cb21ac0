// Every decoder that reads bytes (or text) a peer, a file or an operator hands the node, with valid
// encodings of each kind as seeds for the structure-aware mutations in fuzz-harness.ts. A decoder
// either returns or throws a named CellError subclass; anything else is a crash.
import { readFileSync } from 'node:fs'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { FrameDecoder, FrameEncoder, FrameType } from '../../core/wire/index.ts'
import { decodeHello, decodeHelloAck, decodeErrorPayload, decodeCredit, decodeGoAway, encodeHello, encodeHelloAck, encodeErrorPayload, encodeCredit, encodeGoAway } from '../../core/synapse/handshake.ts'
import {
  decodeEnvelope, decodeFrame, decodeInstanceBody, decodeNodeBody, encodeBundles, encodeEnvelope, encodeInstanceBody, encodeNodeBody,
  type FleetEnvelope
} from '../../core/fleet/codec.ts'
import { decodePinBody, decodeSnapshotBody, encodePinBody, encodeSnapshotBody } from '../../core/fleet/snapshots.ts'
import { decodeLengthPrefixed, encodeLengthPrefixed } from '../../core/fleet/framing.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { makeInstanceRecord, makeNodeRecord, makePinRecord, makeSnapshotRecord } from '../../core/fleet/testing.ts'
import {
  decodeCertificate, decodeChain, decodeDesiredVersion, decodeGrantToken, decodeRelease, decodeRetire, encodeCertificate, encodeChain,
  encodeDesiredVersion, encodeGrantToken, encodeRelease, encodeRetire, generateAuthority, issueGrant, issueSession, signDesiredVersion,
  signRelease, signRetire
} from '../../core/identity/index.ts'
import { decodeClaimFrame, encodeClaimAnswer, encodeClaimRefusal, encodeClaimRequest } from '../../core/claims/codec.ts'
import { parseManifest } from '../../core/manifest/parse.ts'
import { decodeJson } from '../../core/mesh/json.ts'
import { decodeArtifactRequest, encodeArtifactRequest } from '../../node-host/artifacts/artifact-exchange.ts'
import { decodeMetricsRequest, encodeMetricsRequest } from '../../node-host/telemetry/metrics-exchange.ts'
import { decodeOperatorRequest, encodeOperatorRequest } from '../../node-host/introspect/operator-wire.ts'
import { parseLogsRequest } from '../../node-host/logs/log-protocol.ts'
import { decodeSnapshotBlobRequest, encodeSnapshotBlobRequest } from '../../node-host/storage/blob-exchange.ts'

export interface DecoderTarget {
  name: string
  /** Valid encodings the mutations start from. */
  seeds: Uint8Array[]
  /** Text decoders get the bytes as (lossy) UTF-8. */
  text?: boolean
  /** decode returns a promise. */
  async?: boolean
  decode: (bytes: Uint8Array) => unknown
}

const utf8 = new TextEncoder()
const HEX64 = 'ab'.repeat(32)

/** Decodes `bytes` as a stream of chunks (split at `cut`) through an async decoder. */
async function * chunked (bytes: Uint8Array, cut: number): AsyncGenerator<Uint8Array> {
  const at = bytes.length === 0 ? 0 : cut % (bytes.length + 1)
  yield bytes.subarray(0, at)
  yield bytes.subarray(at)
}

export async function decoderTargets (): Promise<DecoderTarget[]> {
  const authority = await generateAuthority()
  const hostKey = await generateKeyPair('Ed25519')
  const host = peerIdFromPrivateKey(hostKey).toString()
  const now = 1_800_000_000_000
  const grant = await issueGrant(authority, { subject: host, roles: ['host', 'caller'], notBeforeMs: now - 60_000, notAfterMs: now + 86_400_000, cells: ['billing', 'ledger'] })
  const session = await issueSession(hostKey, grant, { subject: host, roles: ['caller'], notBeforeMs: now, notAfterMs: now + 600_000, cells: ['billing'] })
  const chain = encodeChain([grant, session])
  const release = await signRelease({ cell: 'billing', version: '1.2.3', digest: HEX64, seq: 7, createdMs: now }, authority)
  const desired = await signDesiredVersion({ cell: 'billing', version: '1.2.2', digest: HEX64, seq: 8, createdMs: now, reason: 'rollback: error rate 4%' }, authority)
  const retire = await signRetire({ cell: 'billing', seq: 9, createdMs: now, reason: 'retired by operator' }, authority)
  const node = makeNodeRecord(host, { addrs: ['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/4002/ws'], roles: ['host', 'full'] })
  const instance = makeInstanceRecord(host)
  const snapshot = makeSnapshotRecord(host)
  const pin = makePinRecord(host, snapshot)
  const envelopes: FleetEnvelope[] = [
    await signRecord(hostKey, 'node', node),
    await signRecord(hostKey, 'instance', instance),
    await signRecord(hostKey, 'snapshot', snapshot),
    await signRecord(hostKey, 'pin', pin),
    { kind: 'release', signed: encodeRelease(release) },
    { kind: 'desired', signed: encodeDesiredVersion(desired) },
    { kind: 'retire', signed: encodeRetire(retire) }
  ]
  const envelopeBytes = envelopes.map(encodeEnvelope)
  const bundles = encodeBundles(envelopeBytes.map((bytes, i) => ({ bytes, ageMs: i * 100 })))

  const enc = new FrameEncoder()
  enc.encode({ type: FrameType.HELLO, id: 0, payload: encodeHello({ version: 1, cell: 'billing', credentials: chain, maxFrameBytes: 65536 }) })
  enc.encode({ type: FrameType.CALL, id: 3, method: 1, methodName: 'charge', timeoutMs: 5000, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', payload: utf8.encode('{"amount":5}') })
  enc.encode({ type: FrameType.RESULT, id: 3, payload: utf8.encode('{"id":"c-1"}') })
  enc.encode({ type: FrameType.CREDIT, id: 5, payload: encodeCredit(64) })
  const frames = enc.take().slice()

  const A = host
  const voters = [A, '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN']
  const claimFrames = [
    encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: '0123456789abcdef', voters }, chain),
    encodeClaimRequest({ kind: 'accept', claimId: 'ledger/1', ballot: { counter: 8, proposer: A }, nonce: '0123456789abcdef', voters, value: { owner: A, epoch: 3, leaseMs: 10_000, state: 'held', voters } }, chain),
    encodeClaimAnswer({ kind: 'promise', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: 'ffffffffffffffff', accepted: { ballot: { counter: 6, proposer: A }, value: { owner: A, epoch: 2, leaseMs: 500, state: 'released', voters } }, waitMs: 12 }, chain),
    encodeClaimAnswer({ kind: 'reject', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: '0000000000000000', phase: 'accept', reason: 'lease-held', holder: A, epoch: 2, waitMs: 900 }, chain),
    encodeClaimRefusal(2)
  ]
  const manifests = ['billing', 'ledger'].map(name => utf8.encode(readFileSync(new URL(`../../examples/${name}/Cell.toml`, import.meta.url), 'utf8')))

  return [
    {
      name: 'wire frames (core/wire FrameDecoder)',
      seeds: [frames],
      decode: (bytes) => {
        let n = 0
        const decoder = new FrameDecoder(() => { n++ }, { maxFrameBytes: 4096 })
        // Two pushes, so split frames take the copying path too.
        const cut = bytes.length >> 1
        decoder.push(bytes.subarray(0, cut))
        decoder.push(bytes.subarray(cut))
        return n
      }
    },
    { name: 'synapse HELLO payload', seeds: [encodeHello({ version: 1, cell: 'billing', credentials: chain, maxFrameBytes: 65536 })], decode: decodeHello },
    { name: 'synapse HELLO_ACK payload', seeds: [encodeHelloAck({ version: 1, credentials: chain, maxFrameBytes: 65536 })], decode: decodeHelloAck },
    { name: 'synapse REJECT / ERROR payload', seeds: [encodeErrorPayload('NoReplicaError', 'no replica of billing')], decode: decodeErrorPayload },
    { name: 'synapse CREDIT payload', seeds: [encodeCredit(64), encodeCredit(2 ** 31)], decode: decodeCredit },
    { name: 'synapse GOAWAY payload', seeds: [encodeGoAway(3), encodeGoAway(0xffff_ffff)], decode: decodeGoAway },
    { name: 'fleet envelope (core/fleet decodeEnvelope)', seeds: envelopeBytes, decode: decodeEnvelope },
    { name: 'fleet bundle frame (core/fleet decodeFrame)', seeds: bundles, decode: decodeFrame },
    { name: 'fleet node body', seeds: [encodeNodeBody(node)], decode: decodeNodeBody },
    { name: 'fleet instance body', seeds: [encodeInstanceBody(instance)], decode: decodeInstanceBody },
    { name: 'fleet snapshot body', seeds: [encodeSnapshotBody(snapshot)], decode: decodeSnapshotBody },
    { name: 'fleet pin body', seeds: [encodePinBody(pin)], decode: decodePinBody },
    { name: 'certificate (core/identity decodeCertificate)', seeds: [encodeCertificate(grant), encodeCertificate(session)], decode: decodeCertificate },
    { name: 'certificate chain (core/identity decodeChain)', seeds: [chain, encodeChain([grant])], decode: decodeChain },
    { name: 'release record', seeds: [encodeRelease(release)], decode: decodeRelease },
    { name: 'desired-version record', seeds: [encodeDesiredVersion(desired)], decode: decodeDesiredVersion },
    { name: 'retire record', seeds: [encodeRetire(retire)], decode: decodeRetire },
    { name: 'grant token (core/identity decodeGrantToken)', seeds: [utf8.encode(encodeGrantToken(grant))], text: true, decode: (b) => decodeGrantToken(new TextDecoder().decode(b)) },
    { name: 'claim frame (core/claims decodeClaimFrame)', seeds: claimFrames, decode: decodeClaimFrame },
    { name: 'Cell.toml (core/manifest parseManifest)', seeds: manifests, text: true, decode: (b) => parseManifest(new TextDecoder().decode(b)) },
    { name: 'typed-call JSON payload (core/mesh decodeJson)', seeds: [utf8.encode('{"amount":5,"tags":["a","b"],"x":null}')], text: true, decode: decodeJson },
    { name: 'length-prefixed frames (fleet-sync, operator answers)', seeds: [concat([encodeLengthPrefixed(bundles[0]), encodeLengthPrefixed(utf8.encode('{"ok":true}'))])], async: true, decode: async (b) => await drain(decodeLengthPrefixed(chunked(b, b[0] ?? 0), 8192)) },
    { name: 'artifact request (node-host artifact exchange)', seeds: [encodeArtifactRequest(HEX64, chain)], decode: decodeArtifactRequest },
    { name: 'metrics request (node-host metrics exchange)', seeds: [encodeMetricsRequest({ kind: 'node' }, chain), encodeMetricsRequest({ kind: 'cell', cell: 'billing' }, chain)], decode: decodeMetricsRequest },
    {
      name: 'operator request (logs, status, restore: node-host operator-wire)',
      seeds: [
        encodeOperatorRequest(chain, { cell: 'billing', follow: true, since: 60_000 }),
        encodeOperatorRequest(chain, { cell: 'ledger', tag: 'snapshot-e3-20261130T120000Z' })
      ],
      decode: decodeOperatorRequest
    },
    {
      name: 'logs request (node-host logs protocol: operator request, then parseLogsRequest)',
      seeds: [
        encodeOperatorRequest(chain, { cell: 'billing', follow: true, sinceMs: 1_800_000_000_000, tail: 100 }),
        encodeOperatorRequest(chain, { cell: 'ledger', follow: false, replica: 'i-1a2b', cursors: { 'i-1a2b': 17, 'i-3c4d': 0 } })
      ],
      text: true,
      decode: (b) => parseLogsRequest(decodeOperatorRequest(b).body)
    },
    { name: 'snapshot blob request (node-host storage blob exchange)', seeds: [encodeSnapshotBlobRequest('ledger/0', `sha256:${HEX64}`, chain)], decode: decodeSnapshotBlobRequest }
  ]
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

async function drain (frames: AsyncIterable<Uint8Array>): Promise<number> {
  let n = 0
  for await (const _ of frames) n++
  return n
}
