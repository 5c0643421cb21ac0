// Message sizes for the gossip scale model, measured by encoding real records with the real codec
// and real signatures (core/fleet), wrapped in a real gossipsub RPC (@libp2p/gossipsub's protobuf
// with StrictSign fields: from, seqno, topic, signature, key), plus the framing below gossipsub:
// the RPC's varint length prefix, a yamux data-frame header (12 bytes) and a Noise frame (2-byte
// length + 16-byte tag). TCP/IP headers are not counted.
//
// The records are what a full node on one network interface gossips today (node-host/full-node.ts):
// six addresses (TCP, WebSockets, WebRTC-direct with its certhash, on a LAN and the loopback
// address, each with /p2p/<id>), one host grant, four roles, no halts, one prepared release.
// The per-cell design's messages are the records core/fleet has for it (records.ts: MemberRecord,
// DownRecord, InstanceRecord.refreshMs), signed with signRecord and encoded with the fleet codec,
// framed as FleetGossip's per-cell tick sends them (core/fleet/gossip.ts): on cellTopic(cell) a
// bundle of the host's changed or due instance records of that cell; on MEMBERS_TOPIC a bundle of
// the member record alone, or of the full node record and a member record (a node record always
// goes with one); a down report alone as a bare envelope (FleetGossip.reportDown).

import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RPC } from '@libp2p/gossipsub/message'
import { encodeBundles, encodeEnvelope } from '../../core/fleet/codec.ts'
import { FLEET_TOPIC, MEMBERS_TOPIC, cellTopic } from '../../core/fleet/records.ts'
import type { DownRecord, InstanceRecord, MemberRecord, NodeRecord } from '../../core/fleet/records.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { generateAuthority } from '../../core/identity/authority.ts'
import { encodeCertificate, issueGrant } from '../../core/identity/certificate.ts'

export const TRANSPORT_OVERHEAD_BYTES = 12 + 2 + 16

export interface GossipSizes {
  /** Wire bytes of one gossipsub message whose data is today's heartbeat bundle: node record + k instance records. */
  todayMessageBytes: (instances: number) => number
  /** The fleet data alone (bundle) of today's heartbeat with k instances. */
  todayDataBytes: (instances: number) => number
  /** Wire bytes of a per-cell message: a bundle of k signed instance records (with refreshMs) on the cell's topic. */
  cellMessageBytes: (instances: number) => number
  /** Wire bytes of one signed member record message (members topic), the node hosting `cells` cells (default 2). */
  memberMessageBytes: number
  memberMessageBytesFor: (cells: number) => number
  /** Wire bytes of one signed down report (members topic). */
  downMessageBytes: number
  /** Wire bytes of a full node record with its member record, one bundle on the members topic (per-cell mode). */
  nodeMessageBytes: number
  /** Wire bytes of an IHAVE control RPC with n message ids on one topic (the fleet topic unless named). */
  ihaveBytes: (ids: number, topic?: string) => number
  /** Wire bytes of an IWANT control RPC with n ids. */
  iwantBytes: (ids: number) => number
  /** Wire bytes of an IDONTWANT control RPC with one id. */
  idontwantBytes: number
  /** Gossipsub message id bytes (publicKeyToProtobuf(key) + 8-byte seqno). */
  messageIdBytes: number
  /** Signed envelopes alone: full node record, instance record (fleet mode / with refreshMs), member record (2 cells), down report. */
  nodeEnvelopeBytes: number
  instanceEnvelopeBytes: number
  cellInstanceEnvelopeBytes: number
  memberEnvelopeBytes: number
  downEnvelopeBytes: number
  /** Gossipsub's per-message bytes around `data` (StrictSign fields and RPC framing), on the fleet topic. */
  gossipsubOverheadBytes: number
  /** The same on the members topic and on a cell topic (the topic name is in every message). */
  membersOverheadBytes: number
  cellOverheadBytes: number
  /** The gossipsub `data` of the sized per-cell messages (cell, member, node: bundles; down: an envelope), for tests to decode and verify. */
  data: { cell: Uint8Array, member: Uint8Array, down: Uint8Array, node: Uint8Array }
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

/** The cell whose records are sized (today's bundle and the per-cell messages use the same one). */
export const SIZED_CELL = 'billing'
/** refreshMs of the sized per-cell instance record: the biggest cell's refresh at 10,000 nodes (1,928 hosts / 2 per s). */
export const SIZED_REFRESH_MS = 964_000
/** Cells a member record lists in `memberMessageBytes` (a node hosts about one replica; two is the conservative side). */
export const SIZED_MEMBER_CELLS = ['billing', 'checkout-api']

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
  // Per-cell mode: the same instance records with the host's refresh promise.
  const cellEnvs: Uint8Array[] = []
  for (let i = 0; i < 8; i++) cellEnvs.push(encodeEnvelope(await signRecord(key, 'instance', { ...instance(i), refreshMs: SIZED_REFRESH_MS })))
  const member = (cells: number): MemberRecord => ({
    nodeId,
    seq: now + 17,
    sentMs: now + 17,
    nodeSeq: now,
    slots: 4,
    freeSlots: 4 - Math.min(4, cells),
    cpuPercent: 57.87,
    memoryPercent: 43.1,
    leaving: false,
    cells: Array.from({ length: cells }, (_, i) => SIZED_MEMBER_CELLS[i] ?? `cell-${String(i).padStart(4, '0')}`).sort()
  })
  const memberEnv = async (cells: number): Promise<Uint8Array> => encodeEnvelope(await signRecord(key, 'member', member(cells)))
  const memberEnvs = await Promise.all([0, 1, 2, 3, 4].map(memberEnv))
  // A down report: this node (the reporter) lost another full node.
  const subject = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const down: DownRecord = { nodeId, subject, subjectSeq: now - 5_000, seq: now + 18, sentMs: now + 18 }
  const downEnv = encodeEnvelope(await signRecord(key, 'down', down))

  const fromBytes = peerIdFromPrivateKey(key).toMultihash().bytes
  const keyBytes = publicKeyToProtobuf(key.publicKey)
  const signature = new Uint8Array(64)
  const seqno = new Uint8Array(8).fill(0xa5)
  const messageIdBytes = keyBytes.length + 8
  const messageRpc = (topic: string, data: Uint8Array): number =>
    RPC.encode({ subscriptions: [], messages: [{ from: fromBytes, data, seqno, topic, signature, key: keyBytes }] }).length
  const oneFrame = (envs: Uint8Array[], what: string): Uint8Array => {
    const frames = encodeBundles(envs.map(bytes => ({ bytes, ageMs: 0 })))
    if (frames.length !== 1) throw new Error(`${what} no longer fits one message`)
    return frames[0]
  }
  const bundle = (k: number): Uint8Array =>
    oneFrame([nodeEnv, ...Array.from({ length: k }, (_, i) => instEnvs[i % instEnvs.length])], `a heartbeat of ${k} instances`)
  const cellBundle = (k: number): Uint8Array =>
    oneFrame(Array.from({ length: k }, (_, i) => cellEnvs[i % cellEnvs.length]), `a cell message of ${k} instances`)
  const ids = (n: number): Uint8Array[] => Array.from({ length: n }, () => new Uint8Array(messageIdBytes))
  const control = (c: Partial<RPC.ControlMessage>): number =>
    wire(RPC.encode({ subscriptions: [], messages: [], control: { ihave: [], iwant: [], graft: [], prune: [], idontwant: [], ...c } }).length)
  const memberFrame = (cells: number): Uint8Array => {
    const env = cells < memberEnvs.length ? memberEnvs[cells] : undefined
    if (env === undefined) throw new Error(`member records are sized for 0..${memberEnvs.length - 1} cells`)
    return oneFrame([env], 'a member record')
  }
  const memberBytes = (cells: number): number => wire(messageRpc(MEMBERS_TOPIC, memberFrame(cells)))
  const nodeFrame = oneFrame([nodeEnv, memberEnvs[SIZED_MEMBER_CELLS.length]], 'a node and member record')
  return {
    todayMessageBytes: (k) => wire(messageRpc(FLEET_TOPIC, bundle(k))),
    todayDataBytes: (k) => bundle(k).length,
    cellMessageBytes: (k) => wire(messageRpc(cellTopic(SIZED_CELL), cellBundle(k))),
    memberMessageBytes: memberBytes(SIZED_MEMBER_CELLS.length),
    memberMessageBytesFor: memberBytes,
    downMessageBytes: wire(messageRpc(MEMBERS_TOPIC, downEnv)),
    nodeMessageBytes: wire(messageRpc(MEMBERS_TOPIC, nodeFrame)),
    ihaveBytes: (n, topic = FLEET_TOPIC) => control({ ihave: [{ topicID: topic, messageIDs: ids(n) }] }),
    iwantBytes: (n) => control({ iwant: [{ messageIDs: ids(n) }] }),
    idontwantBytes: control({ idontwant: [{ messageIDs: ids(1) }] }),
    messageIdBytes,
    nodeEnvelopeBytes: nodeEnv.length,
    instanceEnvelopeBytes: instEnvs[0].length,
    cellInstanceEnvelopeBytes: cellEnvs[0].length,
    memberEnvelopeBytes: memberEnvs[SIZED_MEMBER_CELLS.length].length,
    downEnvelopeBytes: downEnv.length,
    gossipsubOverheadBytes: wire(messageRpc(FLEET_TOPIC, new Uint8Array(0))),
    membersOverheadBytes: wire(messageRpc(MEMBERS_TOPIC, new Uint8Array(0))),
    cellOverheadBytes: wire(messageRpc(cellTopic(SIZED_CELL), new Uint8Array(0))),
    data: { cell: cellBundle(1), member: memberFrame(SIZED_MEMBER_CELLS.length), down: downEnv, node: nodeFrame }
  }
}
