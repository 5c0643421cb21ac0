// Snapshot and pin records (issue 10 point 4): a claim's owner announces each snapshot it took
// (`snapshot`), and every other node that fetched and verified all of a snapshot's blobs says so
// (`pin`). A snapshot counts as safe once two nodes other than its owner pin it. Both records are
// signed by their node like heartbeats (domain "cell/fleet/1 record\0" + kind 6 or 7), bounded and
// validated here; the view (view.ts) keeps them per claim and decides which count.
//   snapshot body = nodeId cell ordinal epoch tag takenMs sizeBytes plain:32 flags(zfs manifest, zfs base tag)
//                   [zfs:32] [baseTag] blobs:count (digest:32)* grants:u8 (grant:bytes)* seq sentMs
//   pin body      = nodeId owner cell ordinal epoch tag manifest:32 seq sentMs
import { ByteReader, ByteWriter } from './bytes.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { LIMITS, checkCellName, checkPeerId, checkToken, checkUint } from './records.ts'

export const SNAPSHOT_LIMITS = {
  /** Blobs one snapshot may name (manifests, configs, the tar layer, ZFS-send chunks). */
  blobs: 1024,
  /** Largest claim ordinal (`ledger/0` … `ledger/65535`). */
  ordinal: 65_535,
  tagChars: 128,
  /** Host grants a snapshot record carries (the owner's grant for the cell, so it counts after the owner died). */
  grants: 2
} as const

export const MAX_SNAPSHOT_BODY_BYTES = 48 * 1024
export const MAX_PIN_BODY_BYTES = 1024

/** "The owner of `claimId` took snapshot `tag` at `epoch`; these are its blobs." */
export interface SnapshotRecord {
  /** The claim's owner node at `epoch`; the record must be signed by this key. */
  nodeId: string
  cell: string
  /** `<cell>/<ordinal>`. */
  claimId: string
  epoch: number
  /** Registry-valid tag `snapshot-e<epoch>-<UTC>`, shown to people as `<cell>@snapshot-<time>`. */
  tag: string
  takenMs: number
  sizeBytes: number
  /** `sha256:<hex>` of the plain image manifest (one tar+gzip layer). */
  plainManifestDigest: string
  /** `sha256:<hex>` of the ZFS-send artifact manifest, when the owner has ZFS. */
  zfsManifestDigest?: string
  /** The tag of the snapshot an incremental ZFS send is based on. */
  zfsBaseTag?: string
  /** Every blob of the snapshot (`sha256:<hex>`), at most SNAPSHOT_LIMITS.blobs, no duplicates. */
  blobs: string[]
  /** The owner's encoded host grant(s) for the cell: the record stays checkable after its node record expired. */
  grants?: Uint8Array[]
  /** Per-node monotonic sequence number (re-announcements carry a higher one). */
  seq: number
  sentMs: number
}

/** "I (`nodeId`) hold and verified every blob of `owner`'s snapshot `tag` of `claimId`." */
export interface PinRecord {
  /** The holder; the record must be signed by this key. */
  nodeId: string
  owner: string
  cell: string
  claimId: string
  epoch: number
  tag: string
  /** Must equal the snapshot record's plainManifestDigest: a pin names content, not just a tag. */
  manifestDigest: string
  seq: number
  sentMs: number
}

const DIGEST = /^sha256:[0-9a-f]{64}$/
/** OCI distribution's tag grammar. */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
const ORDINAL = /^(0|[1-9][0-9]{0,4})$/

function fail (what: string): never {
  throw new MalformedFleetRecordError(`invalid ${what}`)
}

export function checkDigest (value: unknown, what = 'digest'): string {
  if (typeof value !== 'string' || !DIGEST.test(value)) fail(what)
  return value
}

/** `<cell>/<ordinal>` split into its parts; throws MalformedFleetRecordError when not well formed. */
export function parseClaimId (claimId: unknown): { cell: string, ordinal: number } {
  if (typeof claimId !== 'string') fail('claimId')
  const slash = claimId.lastIndexOf('/')
  if (slash <= 0) fail('claimId')
  const cell = checkCellName(claimId.slice(0, slash))
  const tail = claimId.slice(slash + 1)
  if (!ORDINAL.test(tail) || Number(tail) > SNAPSHOT_LIMITS.ordinal) fail('claimId')
  return { cell, ordinal: Number(tail) }
}

function checkClaim (cell: string, claimId: string): void {
  checkCellName(cell)
  if (parseClaimId(claimId).cell !== cell) fail('claimId')
}

function checkTag (tag: unknown, epoch: number): string {
  checkToken(tag, SNAPSHOT_LIMITS.tagChars, 'tag', TAG)
  // The tag names its epoch (DESIGN §6): a record cannot pass an old epoch's snapshot off as a newer one.
  if (!(tag as string).startsWith(`snapshot-e${epoch}-`)) fail('tag epoch')
  return tag as string
}

export function checkSnapshotRecord (r: SnapshotRecord): SnapshotRecord {
  if (r == null || typeof r !== 'object') fail('snapshot record')
  checkPeerId(r.nodeId)
  checkClaim(r.cell, r.claimId)
  checkUint(r.epoch, 'epoch')
  checkTag(r.tag, r.epoch)
  checkUint(r.takenMs, 'takenMs')
  checkUint(r.sizeBytes, 'sizeBytes')
  checkDigest(r.plainManifestDigest, 'plainManifestDigest')
  if (r.zfsManifestDigest !== undefined) checkDigest(r.zfsManifestDigest, 'zfsManifestDigest')
  if (r.zfsBaseTag !== undefined) {
    if (r.zfsManifestDigest === undefined) fail('zfsBaseTag')
    checkToken(r.zfsBaseTag, SNAPSHOT_LIMITS.tagChars, 'zfsBaseTag', TAG)
  }
  if (!Array.isArray(r.blobs) || r.blobs.length === 0 || r.blobs.length > SNAPSHOT_LIMITS.blobs) fail('blobs')
  const seen = new Set<string>()
  for (const b of r.blobs) {
    checkDigest(b, 'blob digest')
    if (seen.has(b)) fail('blobs (duplicate)')
    seen.add(b)
  }
  // The manifests are blobs of the snapshot too: a holder that fetched every blob can rebuild its index.
  if (!seen.has(r.plainManifestDigest) || (r.zfsManifestDigest !== undefined && !seen.has(r.zfsManifestDigest))) fail('blobs (manifest missing)')
  if (r.grants !== undefined && (!Array.isArray(r.grants) || r.grants.length === 0 || r.grants.length > SNAPSHOT_LIMITS.grants || r.grants.some(g => !(g instanceof Uint8Array) || g.byteLength === 0 || g.byteLength > LIMITS.grantBytes))) fail('grants')
  checkUint(r.seq, 'seq')
  checkUint(r.sentMs, 'sentMs')
  return r
}

export function checkPinRecord (r: PinRecord): PinRecord {
  if (r == null || typeof r !== 'object') fail('pin record')
  checkPeerId(r.nodeId)
  checkPeerId(r.owner, 'owner')
  checkClaim(r.cell, r.claimId)
  checkUint(r.epoch, 'epoch')
  checkTag(r.tag, r.epoch)
  checkDigest(r.manifestDigest, 'manifestDigest')
  checkUint(r.seq, 'seq')
  checkUint(r.sentMs, 'sentMs')
  return r
}

function hexOf (digest: string): Uint8Array {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = parseInt(digest.slice(7 + 2 * i, 9 + 2 * i), 16)
  return out
}

function digestOf (bytes: Uint8Array): string {
  let hex = 'sha256:'
  for (const b of bytes) hex += b.toString(16).padStart(2, '0')
  return hex
}

export function encodeSnapshotBody (record: SnapshotRecord): Uint8Array {
  const r = checkSnapshotRecord(record)
  const w = new ByteWriter(MAX_SNAPSHOT_BODY_BYTES, 1024)
  w.string(r.nodeId, LIMITS.peerIdChars).string(r.cell, LIMITS.idChars).uvarint(parseClaimId(r.claimId).ordinal)
  w.uvarint(r.epoch).string(r.tag, SNAPSHOT_LIMITS.tagChars).uvarint(r.takenMs).uvarint(r.sizeBytes)
  w.raw(hexOf(r.plainManifestDigest))
  w.u8((r.zfsManifestDigest !== undefined ? 1 : 0) | (r.zfsBaseTag !== undefined ? 2 : 0))
  if (r.zfsManifestDigest !== undefined) w.raw(hexOf(r.zfsManifestDigest))
  if (r.zfsBaseTag !== undefined) w.string(r.zfsBaseTag, SNAPSHOT_LIMITS.tagChars)
  w.uvarint(r.blobs.length)
  for (const b of r.blobs) w.raw(hexOf(b))
  w.u8(r.grants?.length ?? 0)
  for (const g of r.grants ?? []) w.bytes(g, LIMITS.grantBytes)
  w.uvarint(r.seq).uvarint(r.sentMs)
  return w.finish()
}

function raw32 (r: ByteReader): Uint8Array {
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = r.u8()
  return out
}

export function decodeSnapshotBody (body: Uint8Array): SnapshotRecord {
  const r = new ByteReader(body)
  const nodeId = r.string(LIMITS.peerIdChars)
  const cell = r.string(LIMITS.idChars)
  const ordinal = r.uvarint()
  if (ordinal > SNAPSHOT_LIMITS.ordinal) throw new MalformedFleetRecordError('invalid ordinal')
  const epoch = r.uvarint()
  const tag = r.string(SNAPSHOT_LIMITS.tagChars)
  const takenMs = r.uvarint()
  const sizeBytes = r.uvarint()
  const plainManifestDigest = digestOf(raw32(r))
  const flags = r.u8()
  if (flags > 3) throw new MalformedFleetRecordError('invalid snapshot flags')
  const record: SnapshotRecord = { nodeId, cell, claimId: `${cell}/${ordinal}`, epoch, tag, takenMs, sizeBytes, plainManifestDigest, blobs: [], seq: 0, sentMs: 0 }
  if ((flags & 1) !== 0) record.zfsManifestDigest = digestOf(raw32(r))
  if ((flags & 2) !== 0) record.zfsBaseTag = r.string(SNAPSHOT_LIMITS.tagChars)
  for (let n = r.count(SNAPSHOT_LIMITS.blobs, 'blobs'); n > 0; n--) record.blobs.push(digestOf(raw32(r)))
  const grants = r.u8()
  if (grants > SNAPSHOT_LIMITS.grants) throw new MalformedFleetRecordError('invalid grants')
  if (grants > 0) {
    record.grants = []
    for (let i = 0; i < grants; i++) record.grants.push(r.bytes(LIMITS.grantBytes).slice())
  }
  record.seq = r.uvarint()
  record.sentMs = r.uvarint()
  r.end()
  return checkSnapshotRecord(record)
}

export function encodePinBody (record: PinRecord): Uint8Array {
  const r = checkPinRecord(record)
  const w = new ByteWriter(MAX_PIN_BODY_BYTES)
  w.string(r.nodeId, LIMITS.peerIdChars).string(r.owner, LIMITS.peerIdChars).string(r.cell, LIMITS.idChars)
  w.uvarint(parseClaimId(r.claimId).ordinal).uvarint(r.epoch).string(r.tag, SNAPSHOT_LIMITS.tagChars)
  w.raw(hexOf(r.manifestDigest)).uvarint(r.seq).uvarint(r.sentMs)
  return w.finish()
}

export function decodePinBody (body: Uint8Array): PinRecord {
  const r = new ByteReader(body)
  const nodeId = r.string(LIMITS.peerIdChars)
  const owner = r.string(LIMITS.peerIdChars)
  const cell = r.string(LIMITS.idChars)
  const ordinal = r.uvarint()
  if (ordinal > SNAPSHOT_LIMITS.ordinal) throw new MalformedFleetRecordError('invalid ordinal')
  const epoch = r.uvarint()
  const tag = r.string(SNAPSHOT_LIMITS.tagChars)
  const manifestDigest = digestOf(raw32(r))
  const record: PinRecord = { nodeId, owner, cell, claimId: `${cell}/${ordinal}`, epoch, tag, manifestDigest, seq: r.uvarint(), sentMs: r.uvarint() }
  r.end()
  return checkPinRecord(record)
}

/**
 * Newest first: a higher epoch beats any lower one whatever the times say (a stale owner's clock
 * proves nothing); within an epoch the later takenMs, then tag and owner for a total order.
 */
export function compareSnapshots (a: Pick<SnapshotRecord, 'epoch' | 'takenMs' | 'tag' | 'nodeId'>, b: Pick<SnapshotRecord, 'epoch' | 'takenMs' | 'tag' | 'nodeId'>): number {
  if (a.epoch !== b.epoch) return b.epoch - a.epoch
  if (a.takenMs !== b.takenMs) return b.takenMs - a.takenMs
  if (a.tag !== b.tag) return a.tag < b.tag ? 1 : -1
  return a.nodeId < b.nodeId ? 1 : a.nodeId > b.nodeId ? -1 : 0
}
