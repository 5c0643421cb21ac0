// `cell rollback`: sign a desired-version record naming an earlier release under a sequence number
// above anything the fleet has seen for the cell, gossip it, and wait until the fleet runs it. The
// nodes' autonomic loops displace the current version exactly as in a rollout; nothing here
// touches replicas directly.
import { logger } from '@libp2p/logger'
import { CellError } from '../core/errors.ts'
import { signDesiredVersion, encodeDesiredVersion, type AuthorityKey } from '../core/identity/index.ts'
import { isVersion } from '../core/manifest/version.ts'
import type { Mesh } from '../core/mesh/index.ts'
import { FLEET_RELEASE_TOPIC } from '../core/fleet/index.ts'
import { waitForReplicas, waitForView } from './client.ts'
import { finalPrepareReport, waitForPrepareReport, formatPrepareReport, ReleaseNotReadyError, type NodePrepareStatus } from './prepare-report.ts'
import { InvalidDigestError } from './ribosome/errors.ts'
import { grantedHalt, ReleaseHaltedError } from './crash-report.ts'

// --digest that is not 64 hex characters fails with the artifact store's InvalidDigestError.
export { InvalidDigestError }

const log = logger('cell:rollback')

/** The version is not a semantic version. */
export class InvalidRollbackVersionError extends CellError { static override readonly errorName = 'InvalidRollbackVersionError' }
/** Nothing in the fleet view says which artifact the version is: the operator must pass --digest. */
export class UnknownVersionError extends CellError { static override readonly errorName = 'UnknownVersionError' }

export const ROLLBACK_REASON = 'rollback by operator'

export interface RollbackOptions {
  /** The artifact digest of the version; looked up in the fleet view when absent. */
  digest?: string
  /** Ready replicas of the version to wait for (default 1, 0 returns once gossiped). */
  waitReplicas?: number
  timeoutMs?: number
  /** How long to wait for the view to fill before giving up on finding the digest (default 5 s). */
  lookupMs?: number
  signal?: AbortSignal
  /** Once replicas are ready, how long the other nodes get to report whether they prepared it (default 10 s). */
  reportMs?: number
}

export interface RollbackResult {
  cell: string
  version: string
  digest: string
  seq: number
  /** The signed record as gossiped (kept so tests can replay it). */
  bytes: Uint8Array
  ready: number
  /** Per full node: prepared the version, failed (and why), still preparing, or not reported. */
  nodes: NodePrepareStatus[]
}

const DIGEST = /^[0-9a-f]{64}$/

/**
 * The digest of `cell@version` as the fleet knows it: a release of that version the view keeps (the
 * newest and up to RELEASE_HISTORY - 1 before it, highest seq first) or the desired record naming
 * it (signed), else the heartbeat of any instance still running it. Undefined when none is known.
 */
export function digestOfVersion (mesh: Mesh, cell: string, version: string, authority?: string): string | undefined {
  const records = authority !== undefined ? [...mesh.view.releasesOf(authority, cell), mesh.view.desiredOf(authority, cell)] : [...mesh.view.releases(cell), mesh.view.desired(cell)]
  for (const r of records) {
    if (r?.version === version) return r.digest
  }
  const digests = new Set(mesh.view.instances(cell).filter(i => i.version === version).map(i => i.digest))
  // Two artifacts under one version number: refuse to guess.
  return digests.size === 1 ? [...digests][0] : undefined
}

/** Throws the named error for a bad version or digest; returns the digest normalised to lower case. */
export function checkRollbackArgs (version: string, digest: string | undefined): string | undefined {
  if (!isVersion(version)) throw new InvalidRollbackVersionError(`"${version}" is not a semantic version (MAJOR.MINOR.PATCH)`)
  const d = digest?.toLowerCase()
  if (d != null && !DIGEST.test(d)) throw new InvalidDigestError(`--digest must be 64 hex characters (the sha256 \`cell build\` prints), got "${digest ?? ''}"`)
  return d
}

export async function rollback (mesh: Mesh, cell: string, version: string, key: AuthorityKey, options: RollbackOptions = {}): Promise<RollbackResult> {
  let digest = checkRollbackArgs(version, options.digest)
  const timeoutMs = options.timeoutMs ?? 60_000

  // The view needs a connection and a round of gossip (or anti-entropy) before it knows the cell.
  await waitForView(mesh, () => mesh.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs: Math.min(15_000, timeoutMs), signal: options.signal })
  // One pull of the whole view from a neighbour: the halt check below reads every node's record,
  // and a client that has just started may not have heard them all through gossip yet.
  await mesh.libp2p.services.fleetSync.pull(mesh.libp2p.getPeers()[0], { signal: AbortSignal.any([AbortSignal.timeout(Math.min(10_000, timeoutMs)), ...(options.signal !== undefined ? [options.signal] : [])]) })
    .catch((err) => { options.signal?.throwIfAborted(); log('pull of the fleet view failed: %e', err) })
  if (digest == null) {
    try {
      digest = await waitForView(mesh, () => digestOfVersion(mesh, cell, version, key.id), `the digest of ${cell}@${version}`, { timeoutMs: options.lookupMs ?? 5_000, signal: options.signal })
    } catch (err) {
      options.signal?.throwIfAborted()
      throw new UnknownVersionError(`the fleet view names no artifact for ${cell}@${version} (no release, desired record or running instance of it): pass --digest with its sha256`, { cause: err })
    }
  }

  // A halted artifact never becomes a target again (halts are per artifact, and kept): a desired
  // record naming it would only move the fleet to the newest release older than it. Say so instead.
  const halt = await grantedHalt(mesh.view, mesh.hostGrant, key.id, cell, digest)
  if (halt !== undefined) {
    throw new ReleaseHaltedError(`${cell}@${version} is halted (node …${halt.nodeId.slice(-6)}: ${halt.reason}), and the fleet does not run a halted artifact again: publish a fixed version, or roll back to another`)
  }

  // Above every record of the cell and above the clock, so a later publish (which signs at >= now)
  // still rolls forward, and no earlier record can win.
  // (Above a retire record too: a rollback brings a retired cell back.)
  const seq = Math.max(mesh.view.desiredOf(key.id, cell)?.seq ?? 0, mesh.view.releaseOf(key.id, cell)?.seq ?? 0, mesh.view.retiredOf(key.id, cell)?.seq ?? 0, Date.now()) + 1
  const signed = await signDesiredVersion({ cell, version, digest, seq, reason: ROLLBACK_REASON, createdMs: Date.now() }, key, { signal: options.signal })
  const bytes = encodeDesiredVersion(signed)
  await waitForView(mesh, () => mesh.libp2p.services.pubsub.getSubscribers(FLEET_RELEASE_TOPIC).length > 0 ? true : undefined, 'a fleet node subscribed to releases', { timeoutMs: Math.min(15_000, timeoutMs), signal: options.signal })
  await mesh.gossip.publishDesired(bytes, { signal: options.signal })
  log('rollback %s to %s (%s) seq %d', cell, version, digest.slice(0, 12), seq)

  let ready = 0
  const wait = options.waitReplicas ?? 1
  if (wait > 0) {
    try {
      ready = (await waitForReplicas(mesh, cell, { digest, authority: key.id, count: wait, timeoutMs, signal: options.signal })).length
    } catch (err) {
      options.signal?.throwIfAborted()
      // Per-cell: pulls the nodes' records first (their prepared lists are not gossiped), briefly.
      const nodes = await finalPrepareReport(mesh, cell, digest, { timeoutMs: Math.min(options.reportMs ?? 10_000, 5_000), authority: key.id })
      throw new ReleaseNotReadyError(`the rollback of ${cell} to ${version} was gossiped, but ${(err as Error).message}\n${formatPrepareReport(nodes)}`, nodes, { cause: err })
    }
  }
  const nodes = await waitForPrepareReport(mesh, cell, digest, { timeoutMs: wait > 0 ? (options.reportMs ?? 10_000) : 0, authority: key.id, signal: options.signal })
  return { cell, version, digest, seq, bytes, ready, nodes }
}
