// `cell retire`: sign a retire record for a cell under a sequence number above every record the fleet
// holds for it, gossip it, and wait until no replica of it runs anywhere. The nodes' autonomic loops
// drain their replicas and stop hosting the cell; a later `cell publish` (or rollback), which signs
// a higher seq, brings it back. Nothing here touches replicas directly.
import { logger } from '@libp2p/logger'
import { CellError, type RetryRule } from '../core/errors.ts'
import { encodeRetire, signRetire, type AuthorityKey } from '../core/identity/index.ts'
import type { Mesh } from '../core/mesh/index.ts'
import { FLEET_RELEASE_TOPIC } from '../core/fleet/index.ts'
import { waitForView } from './client.ts'

const log = logger('cell:retire')

/** The fleet view holds no release or desired record of the cell signed by this key: nothing to retire. */
export class NothingToRetireError extends CellError {
  static override readonly errorName = 'NothingToRetireError'
  static override readonly retry: RetryRule = 'never'
}

export const RETIRE_REASON = 'retired by operator'

export interface RetireOptions {
  /** Wait until no replica runs (default true); false returns once gossiped. */
  wait?: boolean
  timeoutMs?: number
  /** How long to wait for the view to learn the cell before giving up (default 5 s). */
  lookupMs?: number
  signal?: AbortSignal
}

export interface RetireResult {
  cell: string
  seq: number
  /** The signed record as gossiped (kept so tests can replay it). */
  bytes: Uint8Array
  /** Nodes that ran replicas of the cell when it was retired (and have drained them, when waited for). */
  nodes: string[]
  /** Replicas seen running (or already draining) when it was retired. */
  replicas: number
}

export async function retireCell (mesh: Mesh, cell: string, key: AuthorityKey, options: RetireOptions = {}): Promise<RetireResult> {
  const timeoutMs = options.timeoutMs ?? 60_000
  await waitForView(mesh, () => mesh.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs: Math.min(15_000, timeoutMs), signal: options.signal })
  try {
    await waitForView(mesh, () => mesh.view.releaseOf(key.id, cell) ?? mesh.view.desiredOf(key.id, cell), `a release of ${cell} signed by this key`, { timeoutMs: options.lookupMs ?? 5_000, signal: options.signal })
  } catch (err) {
    options.signal?.throwIfAborted()
    throw new NothingToRetireError(`the fleet view holds no release of ${cell} signed by authority ${key.id}: nothing to retire`, { cause: err })
  }
  // Above every record of the cell (and the clock): it takes effect now, and the next publish, which
  // signs at or above the clock a moment later, brings the cell back.
  const seq = Math.max(mesh.view.releaseOf(key.id, cell)?.seq ?? 0, mesh.view.desiredOf(key.id, cell)?.seq ?? 0, mesh.view.retiredOf(key.id, cell)?.seq ?? 0, Date.now()) + 1
  const bytes = encodeRetire(await signRetire({ cell, seq, createdMs: Date.now(), reason: RETIRE_REASON }, key, { signal: options.signal }))
  // Replicas that ran when it was retired, as heartbeats show them (the view may still be filling
  // in when the record goes out: replicas seen running or draining while waiting count too).
  const ran = new Map<string, string>()
  const note = (): void => {
    for (const i of mesh.view.instances(cell)) {
      if ((i.state === 'starting' || i.state === 'ready' || i.state === 'draining') && ran.size < 4096) ran.set(`${i.nodeId}/${i.instanceId}`, i.nodeId)
    }
  }
  note()
  await waitForView(mesh, () => mesh.libp2p.services.pubsub.getSubscribers(FLEET_RELEASE_TOPIC).length > 0 ? true : undefined, 'a fleet node subscribed to releases', { timeoutMs: Math.min(15_000, timeoutMs), signal: options.signal })
  await mesh.gossip.publishRetire(bytes, { signal: options.signal })
  const publishedMs = Date.now()
  log('retired %s seq %d; %d replica(s) seen running', cell, seq, ran.size)
  if (options.wait !== false) {
    // Done when every node in view has sent a heartbeat since the record went out (so the view is
    // not simply empty because it is young) and none of them runs a replica of the cell.
    await waitForView(mesh, () => {
      note()
      const nodes = mesh.view.nodes()
      if (nodes.length === 0 || nodes.some(n => (mesh.view.lastSeenMs('node', n.nodeId) ?? 0) <= publishedMs)) return undefined
      return mesh.view.liveInstances(cell).length === 0 ? true : undefined
    }, `every replica of ${cell} to drain`, {
      timeoutMs,
      signal: options.signal,
      seen: () => {
        const left = mesh.view.liveInstances(cell)
        return `${left.length} replica(s) still running: ${left.slice(0, 8).map(i => `${i.version} ${i.state} on …${i.nodeId.slice(-6)}`).join(', ')}`
      }
    })
  }
  const nodes = [...new Set(ran.values())].sort()
  return { cell, seq, bytes, nodes, replicas: ran.size }
}
