// Stateful cells on a full node: the storage drivers it offers (node-host/storage), its vote on
// claims (a ClaimAcceptor serving `/cell/claim/1`, state on disk), its own claims (a
// ClaimRegisterClient) and the VolumeManager that opens a replica's claim volume. full-node.ts
// builds one of these and hands `manager` to the ReplicaSet.
import { logger } from '@libp2p/logger'
import type { Libp2p } from '@libp2p/interface'
import { ClaimAcceptor, ClaimRegisterClient, HostGrantGate, cellOfClaim, chooseVoters, libp2pClaimTransport, ownerClock, unansweredMs, voterClock, serveClaimProtocol } from '../../core/claims/index.ts'
import { offersStorageClass, storageRole } from '../../core/biology/storage-class.ts'
import type { Clock } from '../../core/ports.ts'
import type { FleetView } from '../../core/fleet/index.ts'
import type { GrantCredentialsPort } from '../../core/fleet/peer-grant.ts'
import { createStorage, type Storage } from '../storage/storage.ts'
import { join } from 'node:path'
import type { Registry } from 'prom-client'
import { AcceptorFileStore } from '../claims/acceptor-file-store.ts'
import { registerClaimMetrics } from '../claims/claim-metrics.ts'
import { registerVolumeMetrics } from './volume-metrics.ts'
import { VolumeManager, type SnapshotPort, type VolumeManagerInit } from './volume-manager.ts'
import { describeClaimVoters, silentForMs, voterVerdict, VoterSightings, type ClaimVoters } from './voter-health.ts'
import type { SpawnSpec } from '../replica-set.ts'

const log = logger('cell:volumes')

export interface NodeVolumesInit {
  selfId: string
  dataDir: string
  zfsPool?: string
  clock: Clock
  view: FleetView
  credentials: GrantCredentialsPort
  /** Authorities this node trusts (read live). */
  trusted: ReadonlySet<string>
  /** Lease length of the claims this node owns (default 15 s). */
  leaseMs?: number
  /** Tuning of the volume manager (tests shorten waits). */
  tuning?: Partial<Pick<VolumeManagerInit, 'leaseGuardMs' | 'handoverSafeMs' | 'firstSnapshotMs' | 'maxLeaseWaitMs' | 'handoverSyncMs' | 'formerOwnerWaitMs'>>
  /**
   * A voter of a claim this node owns that has been out of the fleet this long, or in it without
   * answering the claim's rounds (silent: see SILENT_LEASES), is replaced by a live storage node (the
   * claim moves to its next generation; `cell up --voter-replace-after`). Default 5 minutes; 0 never
   * replaces.
   */
  voterReplaceAfterMs?: number
  /** How often the owner looks at its claims' voters (default 15 s; tests shorten it). */
  voterCheckMs?: number
}

/**
 * Does `view` show that claim `claimId` exists: snapshot records of it, or a replica that holds (or
 * held) it at some epoch? The replica's instance record names its claim from the moment it starts,
 * long before a first snapshot is safe: without it, a node whose view differs from the creator's in
 * two of the three voters could create the claim a second time in that window (VolumeManager
 * refuses with ClaimVotersUnknownError instead, and leaves the claim to a node that knows its voters).
 */
export function claimSeen (view: Pick<FleetView, 'snapshots' | 'instances'>, claimId: string): boolean {
  if (view.snapshots(claimId).length > 0) return true
  const ordinal = Number(claimId.slice(claimId.indexOf('/') + 1))
  return view.instances(cellOfClaim(claimId)).some(i => i.claim !== undefined && i.claim.ordinal === ordinal)
}

/** How long a voter may be gone before the owner replaces it, by default. */
export const DEFAULT_VOTER_REPLACE_AFTER_MS = 5 * 60_000

/** Most node ids remembered as seen since start (a fleet view holds fewer full nodes). */
const MAX_SEEN = 4096
/** How often the owner checks its claims' voters: logs the gone ones, replaces those gone long enough. */
const VOTER_CHECK_MS = 15_000
/** How often the owner notes which of its claims' voters are in its view (when each was last live, or came back). */
const VOTER_LOOK_MS = 1_000
/** A voter gone this long is logged (once per absence) by the claim's owner. */
const VOTER_GONE_LOG_MS = 60_000
/**
 * A voter in the fleet that has not answered the owner's claim rounds for this many leases (renewed
 * every quarter of one: eight rounds or more) is silent: it counts as gone (its register cannot vote: a
 * full disk, a broken store, a wedged process), is shown and logged as such, and is replaced after
 * `voterReplaceAfterMs` of silence like a voter out of the fleet.
 */
const SILENT_LEASES = 2

export class NodeVolumes {
  readonly storage: Storage
  readonly acceptor: ClaimAcceptor
  /** This node's proposer, once started. */
  client?: ClaimRegisterClient
  readonly gate: HostGrantGate
  manager?: VolumeManager
  private readonly init: NodeVolumesInit
  private unserve?: () => Promise<void>
  private readonly served = { served: 0, malformed: 0, failed: 0 }
  /** Nodes that were live in this node's view at some moment since it started (VolumeManager `seenSinceStart`). */
  private readonly seen = new Set<string>()
  /** When this node last saw each voter of its own claims live, and when each last came back (only those: bounded by claims × 5). */
  private readonly voterSightings = new VoterSightings()
  /** Claims whose voters are being replaced right now (one move per claim at a time). */
  private readonly moving = new Set<string>()
  /** `claim|voter` pairs logged as gone, so each absence is logged once. */
  private readonly votersLogged = new Set<string>()
  private voterTimer: unknown
  private stopped = false
  private readonly onViewChange = (evt: Event): void => {
    const change = (evt as CustomEvent<{ key: string, nodeId?: string }>).detail
    for (const id of [change.nodeId, change.key]) if (id !== undefined && !this.seen.has(id) && this.init.view.node(id) !== undefined) this.noteSeen(id)
  }

  private constructor (init: NodeVolumesInit, storage: Storage) {
    this.init = init
    this.storage = storage
    // Proposers and voters of a claim must hold a host grant for its cell from an authority this
    // node trusts that claims the cell.
    this.gate = new HostGrantGate({
      authoritiesOf: (cell) => new Set(init.view.claimants(cell).filter(a => init.trusted.has(a))),
      credentials: init.credentials,
      clock: init.clock
    })
    this.acceptor = new ClaimAcceptor({ selfId: init.selfId, store: new AcceptorFileStore(join(init.dataDir, 'claims', 'acceptor.json')), clock: voterClock(init.clock), gate: this.gate })
  }

  /** Opens the drivers (ZfsUnavailableError when a pool was named and does not answer). */
  static async create (init: NodeVolumesInit): Promise<NodeVolumes> {
    const storage = await createStorage({ dataDir: init.dataDir, ...(init.zfsPool !== undefined ? { zfsPool: init.zfsPool } : {}) })
    // Half-made volumes of a run that was killed (a restore's fresh dataset, a snapshot's clone) go first.
    for (const driver of [storage.zfs, storage.dir]) {
      const removed = await driver?.recover().catch((err: Error) => { log.error('recovering %s volumes: %s', driver.kind, err.message); return [] })
      if (removed !== undefined && removed.length > 0) log('removed %d half-made %s volume(s) of the last run', removed.length, driver?.kind)
    }
    return new NodeVolumes(init, storage)
  }

  /** Roles for the node record: the storage classes this node offers. */
  roles (): string[] {
    return this.storage.offered.map(storageRole)
  }

  /** What `cell up` prints about storage at start. */
  summary (): string {
    return this.storage.zfs !== undefined
      ? `zfs pool ${this.init.zfsPool ?? '?'} and dir: stateful cells get a dataset each with their claim as quota`
      : 'dir only (no --zfs-pool): volumes are plain directories without quota; cells asking for class = "zfs" are not placed here'
  }

  /** Serves `/cell/claim/1` and builds the volume manager; call once the libp2p node runs. */
  async start (libp2p: Libp2p, snapshots: SnapshotPort): Promise<VolumeManager> {
    const { init } = this
    for (const n of init.view.nodes()) this.noteSeen(n.nodeId)
    init.view.addEventListener('change', this.onViewChange)
    this.unserve = await serveClaimProtocol(libp2p, this.acceptor, { clock: init.clock, stats: this.served })
    // The owner counts its leases on ownerClock (monotonic, or wall-clock elapsed time when larger: a
    // suspended machine ends its leases early), voters theirs on voterClock (the smaller): see core/claims.
    const owner = ownerClock(init.clock)
    const client = new ClaimRegisterClient({
      selfId: init.selfId,
      transport: libp2pClaimTransport(libp2p, { local: { selfId: init.selfId, acceptor: this.acceptor } }),
      clock: owner,
      timers: init.clock,
      gate: this.gate,
      leaseMs: init.leaseMs ?? 15_000,
      // A round is a stream to each voter and an fsync there: on a busy machine a second is not
      // enough, and a quorum that answers slowly is still a quorum.
      phaseTimeoutMs: 3_000,
      timeoutMs: 15_000
    })
    this.client = client
    this.manager = new VolumeManager({
      selfId: init.selfId,
      dataDir: init.dataDir,
      clock: init.clock,
      monotonicNow: () => owner.nowMs(),
      drivers: this.storage.offered.map(kind => kind === 'zfs' ? this.storage.zfs! : this.storage.dir),
      register: client,
      snapshots,
      voters: async (spec, claimId) => await this.voters(spec, claimId),
      isServing: (nodeId, cell) => init.view.liveInstances(cell).some(i => i.nodeId === nodeId && i.state === 'ready'),
      knownVoters: (claimId) => this.acceptor.place(claimId),
      claimExists: (claimId) => claimSeen(init.view, claimId),
      seenSinceStart: (nodeId) => this.seenSinceStart(nodeId),
      ...init.tuning
    })
    // Every second a look at which voters are in the view (when each was last live, when one came
    // back: cheap, and what "gone for" and "silent for" count from), every voterCheckMs the check
    // that logs and replaces (each replacement is a claim round: not every second).
    const checkMs = init.voterCheckMs ?? VOTER_CHECK_MS
    const lookMs = Math.min(VOTER_LOOK_MS, checkMs)
    let lastCheck = init.clock.now()
    const look = (): void => {
      if (this.stopped) return
      try {
        if (init.clock.now() - lastCheck >= checkMs) {
          lastCheck = init.clock.now()
          this.checkVoters()
        } else {
          this.claimVoters()
        }
      } catch (err) {
        log.error('checking the voters of this node\'s claims: %s', (err as Error).message)
      } finally {
        if (!this.stopped) this.voterTimer = init.clock.setTimeout(look, lookMs)
      }
    }
    if (!this.stopped) this.voterTimer = init.clock.setTimeout(look, lookMs)
    return this.manager
  }

  /**
   * The claims this node holds and their voters: live in this node's view or not, and for at least
   * how long not (since it last saw the voter live while holding a claim it votes on, else since it
   * first found it gone: never more than it knows); a voter in view that has not answered this
   * node's rounds for SILENT_LEASES leases is not live either (silent, for as long as it has not
   * answered, counted from its return when it came back into the view or restarted since: the
   * rounds it missed while out count as gone, VoterSightings). For `cell status`, metrics, logs.
   */
  claimVoters (): ClaimVoters[] {
    const now = this.init.clock.now()
    const silentAfterMs = SILENT_LEASES * (this.init.leaseMs ?? 15_000)
    return (this.manager?.claims() ?? []).map(c => ({
      claimId: c.claimId,
      epoch: c.epoch,
      ...(c.gen > 0 ? { gen: c.gen } : {}),
      serving: c.serving,
      replaceAfterMs: this.init.voterReplaceAfterMs ?? DEFAULT_VOTER_REPLACE_AFTER_MS,
      voters: c.voters.map(peerId => {
        const record = this.init.view.node(peerId)
        if (peerId === this.init.selfId || record !== undefined) {
          const backMs = this.voterSightings.note(peerId, true, record?.startedMs, now)
          const heard = this.client?.heard(c.claimId, peerId)
          const silentMs = heard === undefined ? 0 : silentForMs(unansweredMs(heard), backMs, now)
          return silentMs >= silentAfterMs ? { peerId, live: false, silent: true, goneMs: silentMs } : { peerId, live: true }
        }
        this.voterSightings.note(peerId, false, undefined, now)
        return { peerId, live: false, goneMs: this.voterSightings.goneForMs(peerId, now) }
      })
    }))
  }

  /** Notes which voters are live, logs a voter gone for a minute (once per absence) and its return. */
  private checkVoters (): void {
    const claims = this.claimVoters()
    const current = new Set<string>()
    for (const c of claims) {
      for (const v of c.voters) {
        const key = `${c.claimId}|${v.peerId}`
        current.add(key)
        if (!v.live && (v.goneMs ?? 0) >= VOTER_GONE_LOG_MS && !this.votersLogged.has(key)) {
          this.votersLogged.add(key)
          const line = describeClaimVoters(c, id => `…${id.slice(-6)}`, ms => `${Math.round(ms / 1000)} s`)
          log.error('%s', line)
        } else if (v.live && this.votersLogged.delete(key)) {
          log('%s: voter …%s is back (in the fleet, answering: %s)', c.claimId, v.peerId.slice(-6), voterVerdict(c.voters))
        }
      }
    }
    for (const key of this.votersLogged) if (!current.has(key)) this.votersLogged.delete(key)
    const voters = new Set(claims.flatMap(c => c.voters.map(v => v.peerId)))
    this.voterSightings.keepOnly(voters)
    for (const c of claims) this.replaceGoneVoters(c)
  }

  /**
   * Voters gone (or silent) for `voterReplaceAfterMs` are replaced while a majority of the claim's voters is
   * still live (after that the claim can neither renew nor move): the same choice as a new claim's
   * voters (rendezvous hash over the live nodes that offer the cell's storage class), from the
   * nodes not voting on it yet. One move per claim at a time; a failed one is tried again at the
   * next check.
   */
  private replaceGoneVoters (c: ClaimVoters): void {
    const afterMs = this.init.voterReplaceAfterMs ?? DEFAULT_VOTER_REPLACE_AFTER_MS
    if (afterMs <= 0 || c.serving === false || this.moving.has(c.claimId)) return
    const gone = c.voters.filter(v => !v.live && (v.goneMs ?? 0) >= afterMs).map(v => v.peerId)
    if (gone.length === 0 || voterVerdict(c.voters) === 'stuck') return
    const open = this.manager?.claim(c.claimId)
    if (open === undefined) return
    const cls = open.spec.manifest?.storage?.class ?? 'default'
    const current = new Set(c.voters.map(v => v.peerId))
    const candidates = this.storageCandidates(cls).filter(id => !current.has(id))
    const chosen = chooseVoters(c.claimId, candidates, Math.min(gone.length, candidates.length))
    if (chosen.length === 0) {
      const key = `${c.claimId}|no-candidate`
      if (!this.votersLogged.has(key)) {
        this.votersLogged.add(key)
        log.error('%s: voter%s %s gone for good, but no other node offers storage class "%s" to replace %s', c.claimId, gone.length > 1 ? 's' : '', gone.map(id => `…${id.slice(-6)}`).join(', '), cls, gone.length > 1 ? 'them' : 'it')
      }
      return
    }
    const replaced = gone.slice(0, chosen.length)
    const next = [...c.voters.map(v => v.peerId).filter(id => !replaced.includes(id)), ...chosen]
    this.moving.add(c.claimId)
    open.replaceVoters(next).then(
      (lease) => {
        if (this.manager !== undefined) this.manager.counters.voterMoves++
        for (const id of replaced) this.votersLogged.delete(`${c.claimId}|${id}`)
        log.error('%s: replaced voter%s %s (out of the fleet, or silent in it, for %s s or more) with %s; the claim is in generation %d now, voters %s', c.claimId, replaced.length > 1 ? 's' : '', replaced.map(id => `…${id.slice(-6)}`).join(', '), Math.round(afterMs / 1000), chosen.map(id => `…${id.slice(-6)}`).join(', '), lease.gen ?? 0, lease.voters.map(id => `…${id.slice(-6)}`).join(', '))
      },
      (err: Error) => {
        if (this.manager !== undefined) this.manager.counters.voterMoveFailures++
        log.error('%s: replacing voter%s %s failed (tried again in %d s): %s: %s', c.claimId, replaced.length > 1 ? 's' : '', replaced.map(id => `…${id.slice(-6)}`).join(', '), Math.round((this.init.voterCheckMs ?? VOTER_CHECK_MS) / 1000), err.name, err.message)
      }
    ).finally(() => { this.moving.delete(c.claimId) })
  }

  /** Claim register and volume metrics in the node's registry (call once, after start). */
  registerMetrics (registry: Registry): void {
    registerClaimMetrics(registry, { acceptor: this.acceptor, ...(this.client !== undefined ? { client: this.client } : {}), serve: this.served })
    if (this.manager !== undefined) registerVolumeMetrics(registry, this.manager, { claimVoters: () => this.claimVoters() })
  }

  /**
   * The claim's voters: the three nodes in view that offer the cell's storage class with the highest
   * rendezvous hash for the claim id (core/claims chooseVoters), this node among the candidates. A
   * host grant is not checked here: voters and proposers check each other's on every round, and a
   * check that fails for a moment must not move the set. Three, not five: a node briefly missing
   * from one view changes at most one member. The register fixes the set when the claim is created
   * and names it back (ClaimVotersMismatchError) to a node whose view moved since.
   */
  async voters (spec: SpawnSpec, claimId: string): Promise<string[]> {
    const candidates = this.storageCandidates(spec.manifest?.storage?.class ?? 'default')
    const voters = chooseVoters(claimId, candidates, Math.min(3, candidates.length))
    log('voters of %s: %s (of %d candidates)', claimId, voters.map(v => `…${v.slice(-6)}`).join(', '), candidates.length)
    return voters
  }

  /** The full nodes in view that offer storage class `cls`, this node among them: who may vote on a claim. */
  private storageCandidates (cls: string): string[] {
    const candidates = this.init.view.nodes().filter(n => n.roles.includes('full') && offersStorageClass(n.roles, cls)).map(n => n.nodeId)
    if (!candidates.includes(this.init.selfId)) candidates.push(this.init.selfId)
    return candidates
  }

  /** Was `nodeId` a live node in this node's view at any moment since start? */
  seenSinceStart (nodeId: string): boolean {
    if (this.seen.has(nodeId)) return true
    if (this.init.view.node(nodeId) === undefined) return false
    this.noteSeen(nodeId)
    return true
  }

  private noteSeen (nodeId: string): void {
    this.seen.add(nodeId)
    if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.values().next().value as string)
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.voterTimer !== undefined) this.init.clock.clearTimeout(this.voterTimer)
    this.voterTimer = undefined
    this.init.view.removeEventListener('change', this.onViewChange)
    await this.unserve?.().catch(() => {})
    this.unserve = undefined
  }
}
