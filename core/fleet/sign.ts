// Origin signatures on node, instance, snapshot, pin, member and down records. Gossipsub's StrictSign proves who published a
// message, but a record relayed in a snapshot arrives from a neighbour; the origin's own
// signature over the record bytes lets any node check it regardless of the path it took.
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { AbortOptions, PrivateKey } from '@libp2p/interface'
import { RecordOriginMismatchError } from './errors.ts'
import { KIND_DOWN, KIND_INSTANCE, KIND_MEMBER, KIND_NODE, KIND_PIN, KIND_SNAPSHOT, encodeDownBody, encodeInstanceBody, encodeMemberBody, encodeNodeBody } from './codec.ts'
import type {
  SignedDownEnvelope, SignedInstanceEnvelope, SignedMemberEnvelope, SignedNodeEnvelope, SignedNodeKeyEnvelope, SignedPinEnvelope, SignedSnapshotEnvelope
} from './codec.ts'
import type { DownRecord, InstanceRecord, MemberRecord, NodeRecord } from './records.ts'
import { encodePinBody, encodeSnapshotBody } from './snapshots.ts'
import type { PinRecord, SnapshotRecord } from './snapshots.ts'

// Domain separation: a fleet signature can never be replayed as a signature over anything else
// the same peer key signs (gossipsub messages, noise handshakes, peer records).
const DOMAIN = new TextEncoder().encode('cell/fleet/1 record\0')

function signedPayload (kind: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(DOMAIN.length + 1 + body.length)
  out.set(DOMAIN, 0)
  out[DOMAIN.length] = kind
  out.set(body, DOMAIN.length + 1)
  return out
}

export async function signRecord (privateKey: PrivateKey, kind: 'node', record: NodeRecord, options?: AbortOptions): Promise<SignedNodeEnvelope>
export async function signRecord (privateKey: PrivateKey, kind: 'instance', record: InstanceRecord, options?: AbortOptions): Promise<SignedInstanceEnvelope>
export async function signRecord (privateKey: PrivateKey, kind: 'snapshot', record: SnapshotRecord, options?: AbortOptions): Promise<SignedSnapshotEnvelope>
export async function signRecord (privateKey: PrivateKey, kind: 'pin', record: PinRecord, options?: AbortOptions): Promise<SignedPinEnvelope>
export async function signRecord (privateKey: PrivateKey, kind: 'member', record: MemberRecord, options?: AbortOptions): Promise<SignedMemberEnvelope>
/** A down report is signed by its reporter (`record.nodeId`), not by the subject. */
export async function signRecord (privateKey: PrivateKey, kind: 'down', record: DownRecord, options?: AbortOptions): Promise<SignedDownEnvelope>
export async function signRecord (privateKey: PrivateKey, kind: SignedNodeKeyEnvelope['kind'], record: NodeRecord | InstanceRecord | SnapshotRecord | PinRecord | MemberRecord | DownRecord, options: AbortOptions = {}): Promise<SignedNodeKeyEnvelope> {
  options.signal?.throwIfAborted()
  const signer = peerIdFromPrivateKey(privateKey).toString()
  if (signer !== record.nodeId) {
    throw new RecordOriginMismatchError(`record for node ${record.nodeId} cannot be signed by ${signer}`)
  }
  const body = BODY_ENCODERS[kind](record as never)
  const signature = await privateKey.sign(signedPayload(KIND_CODES[kind], body), options)
  return { kind, record, body, signature } as SignedNodeKeyEnvelope
}

/** The body encoder of each origin-signed kind (each validates its record first). */
const BODY_ENCODERS: { [K in SignedNodeKeyEnvelope['kind']]: (record: Extract<SignedNodeKeyEnvelope, { kind: K }>['record']) => Uint8Array } = {
  node: encodeNodeBody, instance: encodeInstanceBody, snapshot: encodeSnapshotBody, pin: encodePinBody, member: encodeMemberBody, down: encodeDownBody
}

const KIND_CODES = { node: KIND_NODE, instance: KIND_INSTANCE, snapshot: KIND_SNAPSHOT, pin: KIND_PIN, member: KIND_MEMBER, down: KIND_DOWN } as const

/**
 * True when `signature` is the record's node key over its body. Never throws on bad input:
 * unparseable peer ids or key types without an inline public key (RSA) verify as false.
 */
export async function verifyRecord (envelope: SignedNodeKeyEnvelope, options: AbortOptions = {}): Promise<boolean> {
  options.signal?.throwIfAborted()
  let publicKey
  try {
    publicKey = peerIdFromString(envelope.record.nodeId).publicKey
  } catch {
    return false
  }
  if (publicKey == null) return false
  const kind = KIND_CODES[envelope.kind]
  try {
    return await publicKey.verify(signedPayload(kind, envelope.body), envelope.signature, options)
  } catch {
    // An abort is not a bad signature: surface it instead of counting the record as forged.
    options.signal?.throwIfAborted()
    return false
  }
}
