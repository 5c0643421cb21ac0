// `/cell/restore/1`: an operator asks the node that owns a claim to restore one of the claim's
// snapshots in place (`cell restore <cell> <tag>`). The owner keeps its claim and epoch: it refuses
// calls, stops the replica, snapshots what the volume holds (so the restore can be undone), restores
// the snapshot (fetched from its holders when this node lacks it) and starts a new replica on it.
//   request body = { cell, tag }     answer frames = { t: 'not-owner' } | { t: 'restored', … } | { t: 'error', name, message }
// Operator role for the cell required (node-host/introspect OperatorGate); a snapshot of an epoch
// above the claim's current one is refused.
import type { Libp2p, PeerId } from '@libp2p/interface'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { serveOperatorProtocol, openOperatorStream, MalformedOperatorRequestError, type Json, type OperatorRequest } from '../introspect/operator-wire.ts'
import type { OperatorGate } from '../introspect/operator-gate.ts'
import type { FleetView } from '../../core/fleet/index.ts'
import type { ReplicaSet } from '../replica-set.ts'
import type { VolumeManager } from './volume-manager.ts'

export const RESTORE_PROTOCOL = '/cell/restore/1'
const TAG = /^snapshot-e\d{1,15}-[0-9TZ]{16}(-\d{1,4})?$/
const CELL = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** The snapshot named is not one the fleet view holds for the cell, or is of a later epoch than the claim. */
export class RestoreRefusedError extends CellError {
  static override readonly errorName = 'RestoreRefusedError'
  static override readonly retry: RetryRule = 'never'
}

export interface RestoreSource {
  view: FleetView
  replicas: ReplicaSet
  volumes: () => VolumeManager | undefined
}

export function restoreStats (): { served: number, refused: number, malformed: number, failed: number } {
  return { served: 0, refused: 0, malformed: 0, failed: 0 }
}

function parseBody (body: Json): { cell: string, tag: string } {
  const { cell, tag } = body
  if (typeof cell !== 'string' || !CELL.test(cell)) throw new MalformedOperatorRequestError('cell must be a cell name')
  if (typeof tag !== 'string' || !TAG.test(tag)) throw new MalformedOperatorRequestError('tag must be a snapshot tag (snapshot-e<epoch>-<UTC>)')
  return { cell, tag }
}

async function handle (source: RestoreSource, req: OperatorRequest): Promise<void> {
  const { cell, tag } = parseBody(req.body)
  const record = source.view.snapshotClaims(cell).flatMap(id => source.view.snapshots(id)).find(s => s.tag === tag)
  if (record === undefined) {
    await req.out.send({ t: 'error', name: 'RestoreRefusedError', message: `the fleet view holds no snapshot ${tag} of ${cell}` })
    return
  }
  const claim = source.volumes()?.claim(record.claimId)
  const replica = source.replicas.list(cell).find(r => r.volume?.claimId === record.claimId && r.state === 'ready')
  if (claim === undefined || replica === undefined) {
    await req.out.send({ t: 'not-owner', claimId: record.claimId })
    return
  }
  if (record.epoch > claim.epoch) {
    await req.out.send({ t: 'error', name: 'RestoreRefusedError', message: `snapshot ${tag} is of epoch ${record.epoch}, above the claim's epoch ${claim.epoch}` })
    return
  }
  try {
    const started = Date.now()
    const next = await source.replicas.restartOnRestoredVolume(replica.instanceId, async () => { await claim.restoreFrom(tag, { signal: req.signal }) }, { signal: req.signal })
    await req.out.send({ t: 'restored', claimId: record.claimId, epoch: claim.epoch, tag, replica: next.instanceId, before: claim.lastSnapshot ?? null, ms: Date.now() - started })
  } catch (err) {
    await req.out.send({ t: 'error', name: (err as Error).name, message: (err as Error).message.slice(0, 500) })
  }
}

export async function serveRestoreProtocol (node: Libp2p, source: RestoreSource, options: { gate: OperatorGate, stats?: ReturnType<typeof restoreStats> }): Promise<void> {
  await serveOperatorProtocol(node, RESTORE_PROTOCOL, async (req) => { await handle(source, req) }, {
    gate: options.gate,
    cellOf: (body) => parseBody(body).cell,
    ...(options.stats !== undefined ? { stats: options.stats } : {})
  })
}

/** Asks `peer` to restore `tag`; resolves with its last frame. */
export async function requestRestore (node: Libp2p, peer: PeerId, chain: Uint8Array, body: { cell: string, tag: string }, options: { signal?: AbortSignal } = {}): Promise<Json> {
  let last: Json = { t: 'error', name: 'MalformedOperatorAnswerError', message: 'no answer' }
  for await (const frame of openOperatorStream(node, peer, RESTORE_PROTOCOL, chain, body, options)) last = frame
  return last
}
