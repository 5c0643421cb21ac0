// Binary codec for fleet records. Layout (all integers minimal LEB128, floats big-endian f64):
//   envelope = version:u8 kind:u8 payload        (kind 1 node, 2 instance, 3 release, 4 desired, 5 retire, 6 snapshot, 7 pin,
//                                                  8 member, 9 down)
//     node/instance/snapshot/pin/member/down payload = body:bytes signature:bytes   (signature by the body's nodeId)
//     release/desired/retire payload = signed:bytes       (opaque, produced by core/identity)
//   bundle   = version:u8 0x10 count:uvarint (ageMs:uvarint envelope:bytes)*
// A gossip message or a sync frame is either one envelope or one bundle, at most 64 KiB.
// Decoding validates every field and throws only MalformedFleetRecordError.
import { ByteReader, ByteWriter } from './bytes.ts'
import { MalformedFleetRecordError } from './errors.ts'
import {
  FLEET_WIRE_VERSION, INSTANCE_STATES, LIMITS, MAX_MESSAGE_BYTES, PREPARED_STATES,
  checkDownRecord, checkInstanceRecord, checkMemberRecord, checkNodeRecord
} from './records.ts'
import type { DownRecord, InstanceRecord, InstanceState, MemberRecord, NodePrepared, NodeRecord } from './records.ts'
import { EXIT_LIMITS } from './records.ts'
import { MAX_PIN_BODY_BYTES, MAX_SNAPSHOT_BODY_BYTES, decodePinBody, decodeSnapshotBody } from './snapshots.ts'
import type { PinRecord, SnapshotRecord } from './snapshots.ts'

export const KIND_NODE = 1
export const KIND_INSTANCE = 2
export const KIND_RELEASE = 3
export const KIND_DESIRED = 4
export const KIND_RETIRE = 5
export const KIND_SNAPSHOT = 6
export const KIND_PIN = 7
export const KIND_MEMBER = 8
export const KIND_DOWN = 9
export const KIND_BUNDLE = 0x10

const MAX_NODE_BODY_BYTES = 16 * 1024
const MAX_INSTANCE_BODY_BYTES = 2 * 1024
/** 64 cells of at most 128 ASCII bytes each, plus the fixed fields. */
const MAX_MEMBER_BODY_BYTES = 10 * 1024
const MAX_DOWN_BODY_BYTES = 512

export interface SignedNodeEnvelope { kind: 'node', record: NodeRecord, body: Uint8Array, signature: Uint8Array }
export interface SignedInstanceEnvelope { kind: 'instance', record: InstanceRecord, body: Uint8Array, signature: Uint8Array }
export interface SignedReleaseEnvelope { kind: 'release' | 'desired' | 'retire', signed: Uint8Array }
export interface SignedSnapshotEnvelope { kind: 'snapshot', record: SnapshotRecord, body: Uint8Array, signature: Uint8Array }
export interface SignedPinEnvelope { kind: 'pin', record: PinRecord, body: Uint8Array, signature: Uint8Array }
export interface SignedMemberEnvelope { kind: 'member', record: MemberRecord, body: Uint8Array, signature: Uint8Array }
/** A down report, signed by its reporter (`record.nodeId`). */
export interface SignedDownEnvelope { kind: 'down', record: DownRecord, body: Uint8Array, signature: Uint8Array }
/** Records signed by their own node's key (origin-signed, relayable). */
export type SignedNodeKeyEnvelope = SignedNodeEnvelope | SignedInstanceEnvelope | SignedSnapshotEnvelope | SignedPinEnvelope | SignedMemberEnvelope | SignedDownEnvelope
export type FleetEnvelope = SignedNodeEnvelope | SignedInstanceEnvelope | SignedReleaseEnvelope | SignedSnapshotEnvelope | SignedPinEnvelope | SignedMemberEnvelope | SignedDownEnvelope

export interface FrameEntry {
  envelope: FleetEnvelope
  /** How long the sender had held the record (0 when it is the origin). */
  ageMs: number
  /** The envelope's exact bytes, kept for relaying (snapshots). */
  bytes: Uint8Array
}

export function encodeNodeBody (record: NodeRecord): Uint8Array {
  const r = checkNodeRecord(record)
  const w = new ByteWriter(MAX_NODE_BODY_BYTES)
  w.string(r.nodeId, LIMITS.peerIdChars)
  w.uvarint(r.addrs.length)
  for (const a of r.addrs) w.string(a, LIMITS.addrChars)
  const c = r.capacity
  w.uvarint(c.slots).uvarint(c.freeSlots).uvarint(c.cpuCores).uvarint(c.memoryBytes).uvarint(c.freeMemoryBytes)
  if (c.diskFreeBytes === undefined) w.u8(0)
  else w.u8(1).uvarint(c.diskFreeBytes)
  w.f64(r.load.cpuPercent).f64(r.load.memoryPercent)
  w.uvarint(r.roles.length)
  for (const role of r.roles) w.string(role, LIMITS.roleChars)
  w.uvarint(r.startedMs).uvarint(r.seq).uvarint(r.sentMs)
  // Optional tail: the host grants the node holds (encoded certificates), so peers can check that an
  // instance it reports runs under a grant from the cell's authority.
  w.u8(r.grants?.length ?? 0)
  for (const g of r.grants ?? []) w.bytes(g, LIMITS.grantBytes)
  // …and the releases it halted, so nodes that missed the crashes (or join later) stop them too.
  w.u8(r.halts?.length ?? 0)
  for (const h of r.halts ?? []) {
    w.string(h.cell, LIMITS.idChars).string(h.version, LIMITS.versionChars).string(h.digest, LIMITS.digestChars)
    w.uvarint(h.atMs).string(h.reason, LIMITS.haltReasonChars * 4)
  }
  // …and, only when it has any, what became of its recent releases (a record without them encodes
  // as before, so nodes that predate the field still read it).
  if ((r.prepared?.length ?? 0) > 0) {
    w.u8(r.prepared!.length)
    for (const p of r.prepared!) {
      w.string(p.cell, LIMITS.idChars).string(p.version, LIMITS.versionChars).string(p.digest, LIMITS.digestChars)
      w.u8(PREPARED_STATES.indexOf(p.state)).string(p.reason ?? '', LIMITS.preparedReasonChars * 4)
    }
  }
  return w.finish()
}

export function decodeNodeBody (body: Uint8Array): NodeRecord {
  const r = new ByteReader(body)
  const nodeId = r.string(LIMITS.peerIdChars)
  const addrs: string[] = []
  for (let n = r.count(LIMITS.addrs, 'addrs'); n > 0; n--) addrs.push(r.string(LIMITS.addrChars))
  const slots = r.uvarint()
  const freeSlots = r.uvarint()
  const cpuCores = r.uvarint()
  const memoryBytes = r.uvarint()
  const freeMemoryBytes = r.uvarint()
  const hasDisk = r.u8()
  if (hasDisk > 1) throw new MalformedFleetRecordError('invalid diskFreeBytes flag')
  const capacity: NodeRecord['capacity'] = { slots, freeSlots, cpuCores, memoryBytes, freeMemoryBytes }
  if (hasDisk === 1) capacity.diskFreeBytes = r.uvarint()
  const load = { cpuPercent: r.f64(), memoryPercent: r.f64() }
  const roles: string[] = []
  for (let n = r.count(LIMITS.roles, 'roles'); n > 0; n--) roles.push(r.string(LIMITS.roleChars))
  const record: NodeRecord = { nodeId, addrs, capacity, load, roles, startedMs: r.uvarint(), seq: r.uvarint(), sentMs: r.uvarint() }
  const grants = r.u8()
  if (grants > LIMITS.grants) throw new MalformedFleetRecordError('invalid grants')
  if (grants > 0) {
    record.grants = []
    for (let i = 0; i < grants; i++) record.grants.push(r.bytes(LIMITS.grantBytes).slice())
  }
  const halts = r.u8()
  if (halts > LIMITS.halts) throw new MalformedFleetRecordError('invalid halts')
  if (halts > 0) {
    record.halts = []
    for (let i = 0; i < halts; i++) {
      record.halts.push({ cell: r.string(LIMITS.idChars), version: r.string(LIMITS.versionChars), digest: r.string(LIMITS.digestChars), atMs: r.uvarint(), reason: r.string(LIMITS.haltReasonChars * 4) })
    }
  }
  if (r.remaining > 0) {
    const prepared = r.u8()
    if (prepared === 0 || prepared > LIMITS.prepared) throw new MalformedFleetRecordError('invalid prepared')
    record.prepared = []
    for (let i = 0; i < prepared; i++) {
      const entry: NodePrepared = { cell: r.string(LIMITS.idChars), version: r.string(LIMITS.versionChars), digest: r.string(LIMITS.digestChars), state: 'prepared' }
      const state = PREPARED_STATES[r.u8()]
      if (state === undefined) throw new MalformedFleetRecordError('invalid prepared.state')
      entry.state = state
      const reason = r.string(LIMITS.preparedReasonChars * 4)
      if (reason !== '') entry.reason = reason
      record.prepared.push(entry)
    }
  }
  r.end()
  return checkNodeRecord(record)
}

export function encodeInstanceBody (record: InstanceRecord): Uint8Array {
  const r = checkInstanceRecord(record)
  const w = new ByteWriter(MAX_INSTANCE_BODY_BYTES)
  w.string(r.instanceId, LIMITS.idChars).string(r.cell, LIMITS.idChars).string(r.version, LIMITS.versionChars)
  w.string(r.digest, LIMITS.digestChars).string(r.nodeId, LIMITS.peerIdChars)
  w.uvarint(r.startedMs).u8(INSTANCE_STATES.indexOf(r.state))
  w.f64(r.cpuPercent).uvarint(r.memoryBytes).f64(r.memoryPercent).f64(r.qps).f64(r.p99Ms)
  w.uvarint(r.inflight).uvarint(r.sentMs).uvarint(r.seq)
  // Optional tail: readyMs (0 = not ready yet) and the idempotent method names.
  w.uvarint(r.readyMs ?? 0).u8(r.idempotent?.length ?? 0)
  for (const m of r.idempotent ?? []) w.string(m, LIMITS.idChars)
  w.uvarint(r.endedMs ?? 0)
  // Optional tail since issue 8: a crashed replica's exit reason and last stderr lines. Nothing is
  // written when neither is set, so such records keep their old bytes.
  if (r.exitReason !== undefined || r.stderrTail !== undefined || r.claim !== undefined || r.refreshMs !== undefined) {
    w.string(r.exitReason ?? '', EXIT_LIMITS.exitReasonChars * 4).u8(r.stderrTail?.length ?? 0)
    for (const l of r.stderrTail ?? []) w.string(l, EXIT_LIMITS.stderrBytes)
  }
  // Optional tail since issue 10: a stateful replica's claim ordinal and epoch (after an exit report,
  // empty when there is none).
  // Optional tail since per-cell dissemination: refreshMs, after an (empty) exit report and a claim
  // slot written as ordinal 0, epoch 0 when there is no claim (a real claim's epoch is at least 1).
  // Nothing is written without refreshMs, so fleet-mode records keep their bytes.
  if (r.claim !== undefined) w.uvarint(r.claim.ordinal).uvarint(r.claim.epoch)
  else if (r.refreshMs !== undefined) w.uvarint(0).uvarint(0)
  if (r.refreshMs !== undefined) w.uvarint(r.refreshMs)
  return w.finish()
}

export function decodeInstanceBody (body: Uint8Array): InstanceRecord {
  const r = new ByteReader(body)
  const instanceId = r.string(LIMITS.idChars)
  const cell = r.string(LIMITS.idChars)
  const version = r.string(LIMITS.versionChars)
  const digest = r.string(LIMITS.digestChars)
  const nodeId = r.string(LIMITS.peerIdChars)
  const startedMs = r.uvarint()
  const stateIndex = r.u8()
  const state: InstanceState | undefined = INSTANCE_STATES[stateIndex]
  if (state === undefined) throw new MalformedFleetRecordError('invalid state')
  const record: InstanceRecord = {
    instanceId, cell, version, digest, nodeId, startedMs, state,
    cpuPercent: r.f64(), memoryBytes: r.uvarint(), memoryPercent: r.f64(), qps: r.f64(), p99Ms: r.f64(),
    inflight: r.uvarint(), sentMs: r.uvarint(), seq: r.uvarint()
  }
  const readyMs = r.uvarint()
  if (readyMs > 0) record.readyMs = readyMs
  const methods = r.u8()
  if (methods > LIMITS.methods) throw new MalformedFleetRecordError('invalid idempotent')
  if (methods > 0) {
    record.idempotent = []
    for (let i = 0; i < methods; i++) record.idempotent.push(r.string(LIMITS.idChars))
  }
  const endedMs = r.uvarint()
  if (endedMs > 0) record.endedMs = endedMs
  if (r.remaining > 0) {
    const exitReason = r.string(EXIT_LIMITS.exitReasonChars * 4)
    const lines = r.u8()
    if (lines > EXIT_LIMITS.stderrLines) throw new MalformedFleetRecordError('invalid exit report')
    if (exitReason !== '') record.exitReason = exitReason
    if (lines > 0) {
      record.stderrTail = []
      for (let i = 0; i < lines; i++) record.stderrTail.push(r.string(EXIT_LIMITS.stderrBytes))
    }
    // An empty exit report is written only before a claim slot: alone it would not round-trip.
    if (r.remaining > 0) {
      const ordinal = r.uvarint()
      const epoch = r.uvarint()
      if (epoch > 0) record.claim = { ordinal, epoch }
      // The empty claim slot (0, 0) is written only before refreshMs.
      else if (ordinal !== 0 || r.remaining === 0) throw new MalformedFleetRecordError('invalid claim')
      if (r.remaining > 0) record.refreshMs = r.uvarint()
    } else if (lines === 0 && exitReason === '') throw new MalformedFleetRecordError('invalid exit report')
  }
  r.end()
  return checkInstanceRecord(record)
}

export function encodeMemberBody (record: MemberRecord): Uint8Array {
  const r = checkMemberRecord(record)
  const w = new ByteWriter(MAX_MEMBER_BODY_BYTES)
  w.string(r.nodeId, LIMITS.peerIdChars).uvarint(r.seq).uvarint(r.sentMs).uvarint(r.nodeSeq)
  w.uvarint(r.slots).uvarint(r.freeSlots).f64(r.cpuPercent).f64(r.memoryPercent).u8(r.leaving ? 1 : 0)
  w.uvarint(r.cells.length)
  for (const cell of r.cells) w.string(cell, LIMITS.idChars)
  return w.finish()
}

export function decodeMemberBody (body: Uint8Array): MemberRecord {
  const r = new ByteReader(body)
  const nodeId = r.string(LIMITS.peerIdChars)
  const seq = r.uvarint()
  const sentMs = r.uvarint()
  const nodeSeq = r.uvarint()
  const slots = r.uvarint()
  const freeSlots = r.uvarint()
  const cpuPercent = r.f64()
  const memoryPercent = r.f64()
  const leaving = r.u8()
  if (leaving > 1) throw new MalformedFleetRecordError('invalid leaving flag')
  const cells: string[] = []
  for (let n = r.count(LIMITS.memberCells, 'cells'); n > 0; n--) cells.push(r.string(LIMITS.idChars))
  r.end()
  return checkMemberRecord({ nodeId, seq, sentMs, nodeSeq, slots, freeSlots, cpuPercent, memoryPercent, leaving: leaving === 1, cells })
}

export function encodeDownBody (record: DownRecord): Uint8Array {
  const r = checkDownRecord(record)
  const w = new ByteWriter(MAX_DOWN_BODY_BYTES)
  w.string(r.nodeId, LIMITS.peerIdChars).string(r.subject, LIMITS.peerIdChars)
  w.uvarint(r.subjectSeq).uvarint(r.seq).uvarint(r.sentMs)
  return w.finish()
}

export function decodeDownBody (body: Uint8Array): DownRecord {
  const r = new ByteReader(body)
  const record: DownRecord = { nodeId: r.string(LIMITS.peerIdChars), subject: r.string(LIMITS.peerIdChars), subjectSeq: r.uvarint(), seq: r.uvarint(), sentMs: r.uvarint() }
  r.end()
  return checkDownRecord(record)
}

export function encodeEnvelope (envelope: FleetEnvelope): Uint8Array {
  const w = new ByteWriter(MAX_MESSAGE_BYTES)
  w.u8(FLEET_WIRE_VERSION)
  switch (envelope.kind) {
    case 'node':
      w.u8(KIND_NODE).bytes(envelope.body, MAX_NODE_BODY_BYTES).bytes(envelope.signature, LIMITS.signatureBytes)
      break
    case 'instance':
      w.u8(KIND_INSTANCE).bytes(envelope.body, MAX_INSTANCE_BODY_BYTES).bytes(envelope.signature, LIMITS.signatureBytes)
      break
    case 'snapshot':
      w.u8(KIND_SNAPSHOT).bytes(envelope.body, MAX_SNAPSHOT_BODY_BYTES).bytes(envelope.signature, LIMITS.signatureBytes)
      break
    case 'pin':
      w.u8(KIND_PIN).bytes(envelope.body, MAX_PIN_BODY_BYTES).bytes(envelope.signature, LIMITS.signatureBytes)
      break
    case 'member':
      w.u8(KIND_MEMBER).bytes(envelope.body, MAX_MEMBER_BODY_BYTES).bytes(envelope.signature, LIMITS.signatureBytes)
      break
    case 'down':
      w.u8(KIND_DOWN).bytes(envelope.body, MAX_DOWN_BODY_BYTES).bytes(envelope.signature, LIMITS.signatureBytes)
      break
    case 'release':
    case 'desired':
    case 'retire':
      w.u8(envelope.kind === 'release' ? KIND_RELEASE : envelope.kind === 'desired' ? KIND_DESIRED : KIND_RETIRE).bytes(envelope.signed, LIMITS.signedReleaseBytes)
      break
    default:
      throw new MalformedFleetRecordError('unknown envelope kind')
  }
  return w.finish()
}

function readEnvelopePayload (r: ByteReader, kind: number): FleetEnvelope {
  switch (kind) {
    case KIND_NODE: {
      const body = r.bytes(MAX_NODE_BODY_BYTES).slice()
      const signature = r.bytes(LIMITS.signatureBytes).slice()
      return { kind: 'node', record: decodeNodeBody(body), body, signature }
    }
    case KIND_INSTANCE: {
      const body = r.bytes(MAX_INSTANCE_BODY_BYTES).slice()
      const signature = r.bytes(LIMITS.signatureBytes).slice()
      return { kind: 'instance', record: decodeInstanceBody(body), body, signature }
    }
    case KIND_SNAPSHOT: {
      const body = r.bytes(MAX_SNAPSHOT_BODY_BYTES).slice()
      const signature = r.bytes(LIMITS.signatureBytes).slice()
      return { kind: 'snapshot', record: decodeSnapshotBody(body), body, signature }
    }
    case KIND_PIN: {
      const body = r.bytes(MAX_PIN_BODY_BYTES).slice()
      const signature = r.bytes(LIMITS.signatureBytes).slice()
      return { kind: 'pin', record: decodePinBody(body), body, signature }
    }
    case KIND_MEMBER: {
      const body = r.bytes(MAX_MEMBER_BODY_BYTES).slice()
      const signature = r.bytes(LIMITS.signatureBytes).slice()
      return { kind: 'member', record: decodeMemberBody(body), body, signature }
    }
    case KIND_DOWN: {
      const body = r.bytes(MAX_DOWN_BODY_BYTES).slice()
      const signature = r.bytes(LIMITS.signatureBytes).slice()
      return { kind: 'down', record: decodeDownBody(body), body, signature }
    }
    case KIND_RELEASE:
    case KIND_DESIRED:
    case KIND_RETIRE: {
      const signed = r.bytes(LIMITS.signedReleaseBytes).slice()
      if (signed.length === 0) throw new MalformedFleetRecordError('empty signed release')
      return { kind: kind === KIND_RELEASE ? 'release' : kind === KIND_DESIRED ? 'desired' : 'retire', signed }
    }
    default:
      throw new MalformedFleetRecordError(`unknown record kind ${kind}`)
  }
}

function readHeader (bytes: Uint8Array): { r: ByteReader, kind: number } {
  if (!(bytes instanceof Uint8Array)) throw new MalformedFleetRecordError('not bytes')
  if (bytes.length > MAX_MESSAGE_BYTES) throw new MalformedFleetRecordError('message too large')
  const r = new ByteReader(bytes)
  const version = r.u8()
  if (version !== FLEET_WIRE_VERSION) throw new MalformedFleetRecordError(`unsupported wire version ${version}`)
  return { r, kind: r.u8() }
}

export function decodeEnvelope (bytes: Uint8Array): FleetEnvelope {
  const { r, kind } = readHeader(bytes)
  const envelope = readEnvelopePayload(r, kind)
  r.end()
  return envelope
}

/** Decodes one gossip message or sync frame: a single envelope or a bundle of them. */
export function decodeFrame (bytes: Uint8Array): FrameEntry[] {
  const { r, kind } = readHeader(bytes)
  if (kind !== KIND_BUNDLE) {
    const envelope = readEnvelopePayload(r, kind)
    r.end()
    return [{ envelope, ageMs: 0, bytes: bytes.slice() }]
  }
  const out: FrameEntry[] = []
  for (let n = r.count(LIMITS.bundleEntries, 'bundle entries'); n > 0; n--) {
    const ageMs = r.uvarint()
    const inner = r.bytes(MAX_MESSAGE_BYTES)
    const entry = decodeEnvelope(inner)
    out.push({ envelope: entry, ageMs, bytes: inner.slice() })
  }
  r.end()
  return out
}

function uvarintLength (v: number): number {
  let n = 1
  while (v >= 0x80) { v = Math.floor(v / 0x80); n++ }
  return n
}

export interface BundleItem { bytes: Uint8Array, ageMs: number }

/**
 * Packs encoded envelopes into bundles of at most `maxFrameBytes` each, in order. Each bundle is
 * a standalone frame, so a receiver can apply frames as they arrive.
 */
export function encodeBundles (items: Iterable<BundleItem>, maxFrameBytes = MAX_MESSAGE_BYTES): Uint8Array[] {
  const frames: Uint8Array[] = []
  let batch: BundleItem[] = []
  let size = 0
  const headerMax = 2 + uvarintLength(LIMITS.bundleEntries)
  const flush = (): void => {
    if (batch.length === 0) return
    const w = new ByteWriter(maxFrameBytes)
    w.u8(FLEET_WIRE_VERSION).u8(KIND_BUNDLE).uvarint(batch.length)
    for (const item of batch) w.uvarint(item.ageMs).bytes(item.bytes, MAX_MESSAGE_BYTES)
    frames.push(w.finish())
    batch = []
    size = 0
  }
  for (const item of items) {
    const itemBytes = uvarintLength(item.ageMs) + uvarintLength(item.bytes.length) + item.bytes.length
    if (headerMax + itemBytes > maxFrameBytes) throw new MalformedFleetRecordError('record larger than a frame')
    if (batch.length >= LIMITS.bundleEntries || headerMax + size + itemBytes > maxFrameBytes) flush()
    batch.push(item)
    size += itemBytes
  }
  flush()
  return frames
}
