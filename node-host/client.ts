// Short-lived client peers for the CLI and scripts: an ephemeral libp2p identity holding a caller
// grant from the user's authority key, joined to the fleet through bootstrap addresses.
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { CellError } from '../core/errors.ts'
import { Mesh } from '../core/mesh/index.ts'
import { Credentials, authorityIdOf, type AuthorityKey, type Certificate } from '../core/identity/index.ts'
import { systemClock, type Clock } from '../core/ports.ts'
import type { Dissemination, InstanceRecord } from '../core/fleet/index.ts'
import { clientTransports } from './client-transports.ts'
import { authorityKey, bootstrapList, disseminationOf } from './cli/fleet-options.ts'
import * as capsidErrors from './capsid/errors.ts'
import type { Tracer } from '../core/telemetry/tracer.ts'
import { isCrashLooping } from '../core/biology/index.ts'
import { haltsOf, grantedHalt, runsInstead, crashReports, describeCrashes, ReleaseCrashLoopingError, ReleaseHaltedError } from './crash-report.ts'
import { nodeNoiseCrypto } from './noise-crypto.ts'
import { SelfGrants } from './self-grants.ts'
import { ReleasePolicies } from '../browser-host/release-policies.ts'

export class FleetUnreachableError extends CellError { static override readonly errorName = 'FleetUnreachableError' }
export class WaitTimeoutError extends CellError { static override readonly errorName = 'WaitTimeoutError' }

export interface ClientInit {
  /** Fleet nodes to join through; default CELL_BOOTSTRAP (comma-separated), else `bootstrap` of $CELL_HOME/node.toml. */
  bootstrap?: string[]
  /** Signs this peer's caller grant. */
  authorityKey?: AuthorityKey
  /** A grant already issued to `privateKey`'s peer id. */
  grant?: Certificate
  privateKey?: Ed25519PrivateKey
  trust?: string[]
  listen?: boolean
  /**
   * Keep connections to this many full nodes, re-dialing lost ones with backoff (default 1): a
   * bootstrap dial refused once (libp2p limits inbound connections per host and second) is retried.
   */
  keep?: number
  /** Calls run in client spans (core/telemetry/tracer.ts) whose traceparent travels in the call frame. */
  tracer?: Tracer
  clock?: Clock
  /** Validity of the caller grant issued with `authorityKey` (default CLIENT_GRANT_MS; tests). */
  grantValidityMs?: number
  /** How fleet records travel; default CELL_DISSEMINATION, else `dissemination` of $CELL_HOME/node.toml, else 'fleet'. */
  dissemination?: Dissemination
}

/** The authority key of this user: CELL_AUTHORITY_KEY, else $CELL_HOME/authority.key (as `cell keygen` wrote it). */
export async function readHomeAuthorityKey (): Promise<AuthorityKey> {
  return await authorityKey(undefined)
}

export async function createClient (init: ClientInit = {}): Promise<Mesh> {
  const bootstrap = init.bootstrap ?? await bootstrapList(undefined)
  if (bootstrap.length === 0) throw new FleetUnreachableError('no bootstrap address: pass --bootstrap <multiaddr>, set CELL_BOOTSTRAP or bootstrap in $CELL_HOME/node.toml')
  const clock = init.clock ?? systemClock
  const privateKey = init.privateKey ?? await generateKeyPair('Ed25519')
  const credentials = new Credentials({ peerKey: privateKey, clock })
  const trusted = new Set(init.trust ?? [])
  // A caller (and operator) grant from the user's own key: 1 hour, looked at every quarter of that
  // and renewed at half while the client runs (a service calling cells for days; it was issued once and every call
  // was refused after an hour).
  let renewer: SelfGrants | undefined
  if (init.authorityKey != null) {
    const validityMs = init.grantValidityMs ?? CLIENT_GRANT_MS
    renewer = new SelfGrants({ keys: [init.authorityKey], credentials, clock, roles: ['caller', 'operator'], validityMs, checkMs: Math.min(3_600_000, Math.max(1_000, Math.floor(validityMs / 4))) })
    await renewer.renew()
    trusted.add(authorityIdOf(init.authorityKey.publicKey))
  }
  if (init.grant != null) {
    credentials.addGrant(init.grant)
    trusted.add(init.grant.issuer)
  }
  let policies: ReleasePolicies | undefined
  const mesh = await Mesh.create({
    privateKey,
    noiseCrypto: nodeNoiseCrypto,
    transports: clientTransports(),
    // The canary split of the author's Cell.toml, read from each called cell's newest artifact.
    canaryWeightOf: (cell) => policies?.want(cell)?.canaryWeight,
    listen: init.listen === true ? ['/ip4/127.0.0.1/tcp/0'] : [],
    bootstrap,
    dhtClientMode: true,
    keeper: { keep: init.keep ?? 1, minBackoffMs: 250, maxBackoffMs: 2_000 },
    credentials,
    trusted,
    clock,
    dissemination: init.dissemination ?? await disseminationOf(undefined),
    ...(init.tracer !== undefined ? { tracer: init.tracer } : {}),
    // Replica failures travel by name; rebuild them as the classes Node callers can match on.
    errorClasses: Object.values(capsidErrors).filter((v) => typeof v === 'function') as any
  })
  policies = new ReleasePolicies(mesh.libp2p, mesh.view, () => mesh.libp2p.getPeers().map(String).filter(id => mesh.view.node(id)?.roles.includes('full') === true), { onDemand: true })
  const ownPolicies = policies
  mesh.onStop(() => { ownPolicies.close() })
  await mesh.start()
  if (renewer !== undefined) {
    const grants = renewer
    grants.start()
    mesh.onStop(() => { grants.stop() })
  }
  return mesh
}

/** How long a client's self-issued caller grant lasts (renewed at half of it while the client runs). */
export const CLIENT_GRANT_MS = 3_600_000

/**
 * Resolve when `test` holds for the fleet view, re-checking on every change, or fail at the deadline.
 * With `holdMs`, it must hold at every check for that long (the view changes at each heartbeat), so
 * a state the fleet only passes through on its way elsewhere does not count.
 */
export async function waitForView<T> (mesh: Mesh, test: () => T | undefined, what: string, options: { timeoutMs?: number, signal?: AbortSignal, seen?: () => string, holdMs?: number, tickMs?: number } = {}): Promise<T> {
  let holdingSince: number | undefined
  const check = (): T | undefined => {
    const value = test()
    if (value === undefined) { holdingSince = undefined; return undefined }
    holdingSince ??= Date.now()
    return Date.now() - holdingSince >= (options.holdMs ?? 0) ? value : undefined
  }
  const found = check()
  if (found !== undefined) return found
  const timeoutMs = options.timeoutMs ?? 30_000
  return await new Promise<T>((resolve, reject) => {
    const onChange = (): void => {
      const value = check()
      if (value !== undefined) { cleanup(); resolve(value) }
    }
    // With `tickMs`, also look again on a timer: a test that depends on time passes with a quiet view.
    const ticker = options.tickMs !== undefined ? setInterval(onChange, Math.max(10, options.tickMs)) : undefined
    const timer = setTimeout(() => {
      cleanup()
      const seen = options.seen?.()
      reject(new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${what}${seen != null ? ` (${seen})` : ''}`))
    }, timeoutMs)
    const onAbort = (): void => { cleanup(); reject(options.signal?.reason) }
    const cleanup = (): void => {
      clearTimeout(timer)
      if (ticker !== undefined) clearInterval(ticker)
      mesh.view.removeEventListener('change', onChange)
      options.signal?.removeEventListener('abort', onAbort)
    }
    mesh.view.addEventListener('change', onChange)
    options.signal?.addEventListener('abort', onAbort)
  })
}

/**
 * Wait until at least `count` ready replicas of `cell` (optionally of one digest) are in the view.
 * With `digest` and `authority` (the release's), it ends as soon as the fleet halts that artifact
 * (`ReleaseHaltedError`, or `ReleaseCrashLoopingError` with nothing to fall back to), by a node that
 * holds the authority's host grant for the cell: no node starts a halted artifact again.
 */
export async function waitForReplicas (mesh: Mesh, cell: string, options: { count?: number, digest?: string, authority?: string, timeoutMs?: number, signal?: AbortSignal } = {}): Promise<InstanceRecord[]> {
  // Say what the fleet did show, so a timeout points at the cause (no nodes, or replicas crashing,
  // with the crash reason their heartbeats carry).
  const seen = (): string => {
    const instances = mesh.view.instances(cell).filter(i => options.digest == null || i.digest === options.digest)
    const states = instances.map(i => `${i.version} ${i.state} on …${i.nodeId.slice(-6)}`)
    const crashes = describeCrashes(crashReports(mesh.view, cell, options.digest))
    return `seen ${mesh.view.nodes().length} node(s), ${instances.length} instance(s)${states.length > 0 ? `: ${states.slice(0, 8).join(', ')}` : ''}${crashes.length > 0 ? `; ${crashes.join('; ')}` : ''}`
  }
  const { digest, authority } = options
  // Nodes whose halts did not count (no host grant for the cell from the authority).
  const skip = new Set<string>()
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  for (;;) {
    let halted = false
    const found = await waitForView(mesh, () => {
      if (digest != null && authority != null && haltsOf(mesh.view, cell, digest, skip).length > 0) { halted = true; return [] }
      const ready = mesh.replicas(cell).filter(i => digest == null || i.digest === digest)
      return ready.length >= (options.count ?? 1) ? ready : undefined
    }, `${options.count ?? 1} ready replica(s) of ${cell}`, { ...options, timeoutMs: Math.max(0, deadline - Date.now()), seen })
    if (!halted || digest == null || authority == null) return found
    const halt = await grantedHalt(mesh.view, mesh.hostGrant, authority, cell, digest, skip)
    if (halt === undefined) continue
    const by = `node …${halt.nodeId.slice(-6)}: ${halt.reason}`
    if (isCrashLooping(halt)) throw new ReleaseCrashLoopingError(`${cell}@${halt.version} is crash-looping and will not be started again until another artifact is published or rolled back to (${by}); ${seen()}`)
    throw new ReleaseHaltedError(`${cell}@${halt.version} is halted (${by}): ${runsInstead(mesh.replicas(cell), halt)}, and no node starts ${halt.version} again until another artifact is published or rolled back to; ${seen()}`)
  }
}
