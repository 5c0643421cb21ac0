// Message sizes for the gossip scale model, measured by encoding real records with the real codec
// and real signatures (core/fleet), wrapped in a real gossipsub RPC (@libp2p/gossipsub's protobuf
// with StrictSign fields: from, seqno, topic, signature, key), plus the framing below gossipsub:
// the RPC's varint length prefix, a yamux data-frame header (12 bytes) and a Noise frame (2-byte
// length + 16-byte tag). TCP/IP headers are not counted.
//
// The records are what a full node on one network interface gossips today (node-host/full-node.ts):
// six addresses (TCP, WebSockets, WebRTC-direct with its certhash, on a LAN and the loopback
// address, each with /p2p/<id>), one host grant, four roles, no halts, one prepared release.

import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RPC } from '@libp2p/gossipsub/message'
import { encodeBundles, encodeEnvelope } from '../../core/fleet/codec.ts'
import { FLEET_TOPIC } from '../../core/fleet/records.ts'
import type { InstanceRecord, NodeRecord } from '../../core/fleet/records.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { generateAuthority } from '../../core/identity/authority.ts'
import { encodeCertificate, issueGrant } from '../../core/identity/certificate.ts'

/** Bytes below the gossipsub RPC for one RPC sent alone: yamux header + Noise length and tag. */
export const TRANSPORT_OVERHEAD_BYTES = 12 + 2 + 16

export interface GossipSizes {
  /** Wire bytes of one gossipsub message whose data is today's heartbeat bundle: node record + k instance records. */
  todayMessageBytes: (instances: number) => number
  /** The fleet data alone (bundle) of today's heartbeat with k instances. */
  todayDataBytes: (instances: number) => number
  /** Wire bytes of a per-cell heartbeat message (new design) carrying k compact instance entries. */
  cellMessageBytes: (instances: number) => number
  /** Wire bytes of one compact member record message (new design, members topic). */
  memberMessageBytes: number
  /** Wire bytes of an IHAVE control RPC with n message ids on the fleet topic (one topic entry). */
  ihaveBytes: (ids: number, topic?: string) => number
  /** Wire bytes of an IWANT control RPC with n ids. */
  iwantBytes: (ids: number) => number
  /** Wire bytes of an IDONTWANT control RPC with one id. */
  idontwantBytes: number
  /** Gossipsub message id bytes (publicKeyToProtobuf(key) + 8-byte seqno). */
  messageIdBytes: number
  /** Signed full node record envelope alone, and one signed instance record envelope alone. */
  nodeEnvelopeBytes: number
  instanceEnvelopeBytes: number
  /** Gossipsub's per-message bytes around `data` (StrictSign fields and RPC framing). */
  gossipsubOverheadBytes: number
}

function uvarintLength (v: number): number {
  let n = 1
  while (v >= 0x80) { v = Math.floor(v / 0x80); n++ }
  return n
}

/** Bytes on the wire for one encoded RPC: length prefix + RPC + transport framing. */
function wire (rpcBytes: number): number {
  return uvarintLength(rpcBytes) + rpcBytes + TRANSPORT_OVERHEAD_BYTES
}

/**
 * Per-cell topic name of the new design (modelled only). The cell name is in the topic, so a
 * compact entry carries neither the cell nor (it is the gossipsub `from`) the node id.
 */
export function cellTopic (cell: string): string {
  return `/cell/c/${cell}/1`
}
export const MEMBERS_TOPIC = '/cell/members/1'

/**
 * Compact instance entry of the new design, in the fleet codec's style (LEB128 integers):
 * instance ordinal, state, release seq (the release itself is on the release topic), startedMs,
 * readyMs delta, cpu and memory in 0.1 %, qps, p99 in 0.1 ms, inflight, per-instance seq, and
 * the node's ed25519 origin signature (64 bytes) as today, so a sync pull can relay the entry
 * without trusting the relay. The node id is the gossipsub `from` (and the signer).
 */
function compactInstanceBytes (): number {
  const started = 1_764_500_000_000
  return uvarintLength(3) + 1 + uvarintLength(42) + uvarintLength(started) + uvarintLength(2_500) +
    uvarintLength(455) + uvarintLength(325) + uvarintLength(1_205) + uvarintLength(88) + uvarintLength(3) + uvarintLength(1_764_500_000_000) +
    1 + 64
}

/**
 * Compact member record (new design): seq, flags (eligible, leaving, sandbox), free slots, cpu/mem
 * buckets, trust-set hash, hash of the full node record (addresses, grants: fetched on demand),
 * the cells it hosts (4-byte hashes), and the origin signature (64 bytes).
 */
function memberRecordBytes (cellsRun: number): number {
  return uvarintLength(1_764_500_000_000) + 1 + 1 + 1 + 1 + 4 + 8 + 1 + 4 * cellsRun + 1 + 64
}

export async function measureGossipSizes (): Promise<GossipSizes> {
  const key = await generateKeyPair('Ed25519')
  const nodeId = peerIdFromPrivateKey(key).toString()
  const authority = await generateAuthority()
  const now = 1_764_500_000_000
  const grant = await issueGrant(authority, { subject: nodeId, roles: ['host'], notBeforeMs: now, notAfterMs: now + 30 * 86_400_000 })
  const certhash = 'uEiD' + 'x'.repeat(43)
  const addrs: string[] = []
  for (const ip of ['10.20.30.40', '127.0.0.1']) {
    addrs.push(`/ip4/${ip}/tcp/4001/p2p/${nodeId}`, `/ip4/${ip}/tcp/4002/ws/p2p/${nodeId}`, `/ip4/${ip}/udp/4003/webrtc-direct/certhash/${certhash}/p2p/${nodeId}`)
  }
  const digest = 'ab'.repeat(32)
  const node: NodeRecord = {
    nodeId,
    addrs,
    capacity: { slots: 4, freeSlots: 3, cpuCores: 8, memoryBytes: 16 * 2 ** 30, freeMemoryBytes: 9 * 2 ** 30 },
    load: { cpuPercent: 12.37, memoryPercent: 43.1 },
    roles: ['full', 'sandbox-strict', 'storage-dir', `trust-${authority.id.slice(0, 16)}`],
    startedMs: now - 3_600_000,
    seq: now,
    sentMs: now,
    grants: [encodeCertificate(grant)],
    prepared: [{ cell: 'billing', version: '1.4.2', digest, state: 'prepared' }]
  }
  const instance = (i: number): InstanceRecord => ({
    instanceId: `billing-1.4.2-${'k3x9q2'}${i}`,
    cell: 'billing',
    version: '1.4.2',
    digest,
    nodeId,
    startedMs: now - 600_000,
    readyMs: now - 598_000,
    state: 'ready',
    cpuPercent: 45.5,
    memoryBytes: 120 * 2 ** 20,
    memoryPercent: 32.5,
    qps: 120.5,
    p99Ms: 8.8,
    inflight: 3,
    sentMs: now,
    seq: now + i,
    idempotent: ['quote']
  })
  const nodeEnv = encodeEnvelope(await signRecord(key, 'node', node))
  const instEnvs: Uint8Array[] = []
  for (let i = 0; i < 8; i++) instEnvs.push(encodeEnvelope(await signRecord(key, 'instance', instance(i))))

  const fromBytes = peerIdFromPrivateKey(key).toMultihash().bytes
  const keyBytes = (await import('@libp2p/crypto/keys')).publicKeyToProtobuf(key.publicKey)
  const signature = new Uint8Array(64)
  const seqno = new Uint8Array(8).fill(0xa5)
  const messageIdBytes = keyBytes.length + 8
  const messageRpc = (topic: string, data: Uint8Array): number =>
    RPC.encode({ subscriptions: [], messages: [{ from: fromBytes, data, seqno, topic, signature, key: keyBytes }] }).length
  const bundle = (k: number): Uint8Array => {
    const frames = encodeBundles([nodeEnv, ...Array.from({ length: k }, (_, i) => instEnvs[i % instEnvs.length])].map(bytes => ({ bytes, ageMs: 0 })))
    if (frames.length !== 1) throw new Error(`a heartbeat of ${k} instances no longer fits one message`)
    return frames[0]
  }
  const ids = (n: number): Uint8Array[] => Array.from({ length: n }, () => new Uint8Array(messageIdBytes))
  const control = (c: Partial<RPC.ControlMessage>): number =>
    wire(RPC.encode({ subscriptions: [], messages: [], control: { ihave: [], iwant: [], graft: [], prune: [], idontwant: [], ...c } }).length)
  const emptyData = messageRpc(FLEET_TOPIC, new Uint8Array(0))
  const cellPayload = (k: number): Uint8Array => new Uint8Array(2 + k * (compactInstanceBytes() + 1))
  return {
    todayMessageBytes: (k) => wire(messageRpc(FLEET_TOPIC, bundle(k))),
    todayDataBytes: (k) => bundle(k).length,
    cellMessageBytes: (k) => wire(messageRpc(cellTopic('billing-service-x'), cellPayload(k))),
    memberMessageBytes: wire(messageRpc(MEMBERS_TOPIC, new Uint8Array(2 + memberRecordBytes(2)))),
    ihaveBytes: (n, topic = FLEET_TOPIC) => control({ ihave: [{ topicID: topic, messageIDs: ids(n) }] }),
    iwantBytes: (n) => control({ iwant: [{ messageIDs: ids(n) }] }),
    idontwantBytes: control({ idontwant: [{ messageIDs: ids(1) }] }),
    messageIdBytes,
    nodeEnvelopeBytes: nodeEnv.length,
    instanceEnvelopeBytes: instEnvs[0].length,
    gossipsubOverheadBytes: wire(emptyData)
  }
}
