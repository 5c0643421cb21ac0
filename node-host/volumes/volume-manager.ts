// The claim volumes of this node's stateful replicas (DESIGN §6). A replica of a cell with
// `[cell.storage]` runs on a numbered claim (`ledger/0`, …) that has one writer at a time:
//  - open: acquire the claim at a new epoch from its voters (core/claims), then use the local volume
//    if this node was its last writer at the previous epoch, else restore the newest safe snapshot
//    (fetched from its holders), then mount it as the capsid's /cell/data;
//  - while open: renew the lease (a quarter of its length), snapshot every `snapshot_every` (and once
//    soon after the start), and stop serving the moment the lease ends by this node's monotonic clock;
//  - close: a final snapshot, wait until two other nodes hold it, then release the claim so the next
//    owner starts at once with nothing acknowledged lost. A fenced replica (lease ended) does none
//    of that: its writes are never restored.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { driverForClass } from '../../core/biology/storage-class.ts'
import type { Clock } from '../../core/ports.ts'
import { ClaimHeldError, ClaimLeaseExpiredError, ClaimLostError, ClaimVotersMismatchError } from '../../core/claims/errors.ts'
import type { ClaimOrigin, ClaimPlace } from '../../core/claims/register.ts'
import { placeOptions } from '../../core/claims/client.ts'
import type { ReplicaVolume, ReplicaVolumes, SpawnSpec } from '../replica-set.ts'
import type { Claim, StorageDriver } from '../storage/driver.ts'
import { NoStorageClassError } from '../storage/errors.ts'

const log = logger('cell:volumes')

/** Every claim of the cell (ordinals 0 … max_replicas-1) is held by a live owner: no replica may start here now. */
export class ClaimsHeldError extends CellError {
  static override readonly errorName = 'ClaimsHeldError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** The claim exists but this node cannot tell who its voters are: another node that knows takes it. */
export class ClaimVotersUnknownError extends CellError {
  static override readonly errorName = 'ClaimVotersUnknownError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/**
 * The claim's last owner let its lease run out without handing the claim over and has not been in
 * this node's view since this node started: it may hold writes no snapshot has (a whole fleet that
 * stopped at once), so the claim is left to it for a while (`formerOwnerWaitMs`) rather than started
 * from an older copy.
 */
export class ClaimOwnerAwaitedError extends CellError {
  static override readonly errorName = 'ClaimOwnerAwaitedError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** A stateful replica was asked for before the node's volumes started (or after they stopped). */
export class ReplicaVolumesUnavailableError extends CellError {
  static override readonly errorName = 'ReplicaVolumesUnavailableError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** A lease as the register granted it (core/claims ClaimLease). */
export interface ClaimLease {
  epoch: number
  leaseMs: number
  /** This node's monotonic time when it sent the round that granted the lease. */
  leaseStartLocalMs: number
  /** The claim's voters (fixed when it was created, replaced by moves). */
  voters: string[]
  /** The claim's generation: 0 until a move replaced a voter (core/claims README "Replacing voters"). */
  gen?: number
  /** Above generation 0: the move that made it. */
  origin?: ClaimOrigin
  /** On acquire: the final snapshot the previous epoch's owner handed over when it released the claim. */
  handedOver?: { epoch: number, tag: string, owner: string }
}

/** The claim's value as the register held it before an acquire (core/claims ClaimValue). */
export interface PreviousClaim { owner: string, epoch: number, state: 'held' | 'released' }

/** The claim register as this manager uses it: core/claims ClaimRegisterClient fits. */
export interface ClaimRegisterPort {
  /** `admit`: called with the register's current value before the new epoch is accepted; throwing refuses the acquire. */
  acquire(claimId: string, voters: readonly string[], options: { signal?: AbortSignal, admit?: (previous: PreviousClaim | null) => void, gen?: number, origin?: ClaimOrigin }): Promise<ClaimLease>
  renew(claimId: string, voters: readonly string[], epoch: number, options: { signal?: AbortSignal, phaseTimeoutMs?: number, gen?: number, origin?: ClaimOrigin }): Promise<ClaimLease>
  /** `final`: the snapshot taken after the replica stopped, which the next owner must restore. */
  release(claimId: string, voters: readonly string[], epoch: number, options: { signal?: AbortSignal, final?: string, gen?: number, origin?: ClaimOrigin }): Promise<void>
  /** The owner replaces the claim's voters (a move to the next generation); the lease comes back from there. */
  move(claimId: string, voters: readonly string[], epoch: number, nextVoters: readonly string[], options: { signal?: AbortSignal, phaseTimeoutMs?: number, gen?: number, origin?: ClaimOrigin }): Promise<ClaimLease>
}

export type SafeWait = 'safe' | 'timeout' | 'nobody'

export interface SafeSnapshot { tag: string, epoch: number, nodeId: string, takenMs: number }

/** Snapshots as this manager uses them (node-host/storage snapshots + the fleet's snapshot records). */
export interface SnapshotPort {
  /** Snapshot the claim, write its OCI images, announce it to the fleet. */
  take(driver: StorageDriver, claim: Claim, epoch: number, options: { signal?: AbortSignal }): Promise<{ tag: string, sizeBytes?: number }>
  /**
   * Resolves 'safe' once two nodes other than this one hold every blob of `tag`, 'timeout' at the
   * deadline, 'nobody' as soon as no node is left that could hold it (the last node of a fleet stopping).
   */
  waitSafe(claimId: string, tag: string, options: { timeoutMs: number, signal?: AbortSignal }): Promise<SafeWait>
  /**
   * The newest snapshot of the claim that counts as safe (highest epoch first, then newest) and is of
   * an epoch no higher than `maxEpoch` (the last one granted before this node's: a host that
   * announces a snapshot of an epoch it never held gains nothing), waiting up to `timeoutMs` for
   * one of at least `minEpoch` (then whatever is newest, or undefined).
   */
  newestSafe(claimId: string, options: { minEpoch: number, maxEpoch: number, timeoutMs: number, signal?: AbortSignal }): Promise<SafeSnapshot | undefined>
  /** Snapshot `tag` of the claim taken by `nodeId`, once the fleet view holds its record (safe or not yet); undefined at the deadline. */
  find(claimId: string, tag: string, nodeId: string, options: { timeoutMs: number, signal?: AbortSignal }): Promise<SafeSnapshot | undefined>
  /** Fetch every blob of the snapshot from its holders (verified by digest) and restore it into the claim's volume. */
  restore(driver: StorageDriver, claim: Claim, tag: string, quotaBytes: number, options: { signal?: AbortSignal }): Promise<void>
}

export interface VolumeManagerInit {
  selfId: string
  dataDir: string
  clock: Clock
  /** Monotonic milliseconds (performance.now): leases never trust the wall clock. */
  monotonicNow?: () => number
  /** The drivers this node offers, best first (zfs before dir). */
  drivers: StorageDriver[]
  register: ClaimRegisterPort
  snapshots: SnapshotPort
  /** The claim's voters: nodes that host the cell's authority and offer storage (core/claims chooseVoters). */
  voters: (spec: SpawnSpec, claimId: string) => string[] | Promise<string[]>
  /** Does `nodeId` run a ready replica of `cell` (fresh heartbeat)? A holder that does not is waited out. */
  isServing: (nodeId: string, cell: string) => boolean
  /** Where the claim's register is as this node's own acceptor holds it (it votes on the claim), if it does. */
  knownVoters?: (claimId: string) => ClaimPlace | undefined
  /** Does the fleet show that the claim exists (snapshot records of it, a replica that holds it)? */
  claimExists?: (claimId: string) => boolean
  /** Stop serving this long before the lease ends (calls in flight, timer lateness). Default 1 s. */
  leaseGuardMs?: number
  /** How long a planned close waits for its final snapshot to be held by two other nodes. Default 30 s. */
  handoverSafeMs?: number
  /** The first snapshot of a newly opened volume, this long after it opened. Default 2 s. */
  firstSnapshotMs?: number
  /** How long a new owner waits for a safe snapshot of the previous epoch to reach its view. Default 5 s. */
  handoverSyncMs?: number
  /** Longest wait for a dead holder's lease to end before giving up on that claim. Default 60 s. */
  maxLeaseWaitMs?: number
  /**
   * Has `nodeId` been a live node in this node's view at any moment since this node started? A
   * claim whose last owner ended unreleased is taken over at once when this node saw that owner
   * (it then saw its snapshots too: a crash loses only what came after the newest safe one); when
   * it did not (the fleet stopped at once, this node is back first), see `formerOwnerWaitMs`.
   * Default: every node counts as seen (no wait).
   */
  seenSinceStart?: (nodeId: string) => boolean
  /**
   * How long a claim is left to its last owner when that owner ended unreleased and has not been
   * seen since this node started (ClaimOwnerAwaitedError meanwhile), counted from this node's first
   * try: after it, the claim starts from the newest safe snapshot. Default 120 s; 0 never waits.
   */
  formerOwnerWaitMs?: number
}

interface Marker { epoch: number, driver: string, voters?: string[], gen?: number, origin?: ClaimOrigin }

/** A claim this node leaves to its former owner: the epoch that owner let run out, since when (monotonic). */
interface OwnerWait { epoch: number, owner: string, fromMs: number, gaveUp?: boolean }

/** What each claim this node held was last written at: decides local volume vs restore. */
class MarkerFile {
  private readonly file: string
  private markers: Record<string, Marker> | undefined
  private writing: Promise<void> = Promise.resolve()

  constructor (dataDir: string) {
    this.file = join(dataDir, 'volumes', 'claims.json')
  }

  async get (claimId: string): Promise<Marker | undefined> {
    await this.load()
    return this.markers?.[claimId]
  }

  async set (claimId: string, marker: Marker): Promise<void> {
    await this.load()
    this.markers![claimId] = marker
    const text = JSON.stringify(this.markers)
    this.writing = this.writing.then(async () => {
      await mkdir(join(this.file, '..'), { recursive: true, mode: 0o700 })
      await writeFile(`${this.file}.tmp`, text, { mode: 0o600 })
      await rename(`${this.file}.tmp`, this.file)
    })
    await this.writing
  }

  private async load (): Promise<void> {
    if (this.markers !== undefined) return
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as unknown
      const ok: Record<string, Marker> = {}
      if (parsed !== null && typeof parsed === 'object') {
        for (const [k, v] of Object.entries(parsed as Record<string, unknown>).slice(0, 4096)) {
          const m = v as Partial<Marker>
          if (typeof m?.epoch !== 'number' || typeof m.driver !== 'string') continue
          const voters = Array.isArray(m.voters) && m.voters.length <= 5 && m.voters.every(v => typeof v === 'string') ? m.voters : undefined
          const o = m.origin
          const origin = o !== null && typeof o === 'object' && typeof o.owner === 'string' && Number.isSafeInteger(o.epoch) && Number.isSafeInteger(o.leaseMs) ? { owner: o.owner, epoch: o.epoch, leaseMs: o.leaseMs } : undefined
          // A generation above 0 only with its voters and the move that made it (else: as if unknown).
          const gen = Number.isSafeInteger(m.gen) && (m.gen as number) > 0 && voters !== undefined && origin !== undefined ? m.gen as number : undefined
          ok[k] = { epoch: m.epoch, driver: m.driver, ...(voters !== undefined ? { voters } : {}), ...(gen !== undefined ? { gen, origin } : {}) }
        }
      }
      this.markers = ok
    } catch {
      // Absent or unreadable: nothing local counts as newer than a snapshot.
      this.markers = {}
    }
  }
}

/** One open claim volume. */
class OpenClaim implements ReplicaVolume {
  readonly path: string
  readonly claimId: string
  readonly restoredFrom?: string
  epoch: number
  private lease: ClaimLease
  private lost = false
  private closed = false
  /** Calls refused while an operator's restore replaces the volume. */
  private paused = false
  private leaseTimer: unknown
  private leaseEnded = false
  private readonly lostListeners: Array<() => void> = []
  /** The claim was released (or abandoned): no more renewals. */
  private released = false
  private renewTimer: unknown
  private snapshotTimer: unknown
  private snapshotting?: Promise<unknown>
  lastSnapshot?: string
  lastSnapshotMs?: number
  lastSnapshotBytes?: number

  private readonly manager: VolumeManager
  readonly spec: SpawnSpec
  readonly claim: Claim
  readonly driver: StorageDriver
  /** The claim's voters now (a move replaces them). */
  voters: string[]

  constructor (manager: VolumeManager, spec: SpawnSpec, claim: Claim, driver: StorageDriver, voters: string[], lease: ClaimLease, path: string, restoredFrom: string | undefined) {
    this.manager = manager
    this.spec = spec
    this.claim = claim
    this.driver = driver
    this.voters = voters
    this.path = path
    this.claimId = `${claim.cell}/${claim.ordinal}`
    this.lease = lease
    this.epoch = lease.epoch
    if (restoredFrom !== undefined) this.restoredFrom = restoredFrom
  }

  private get init (): VolumeManagerInit { return this.manager.init }

  serving (): boolean {
    return !this.closed && !this.paused && this.leaseValid()
  }

  pause (): void { this.paused = true }
  resume (): void { this.paused = false }

  /** Replaces the volume's contents with snapshot `tag` of this claim (the replica is stopped). */
  async restoreFrom (tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.leaseValid()) throw new ClaimLeaseExpiredError(`the lease on claim ${this.claimId} (epoch ${this.epoch}) has ended; not restoring`)
    // What the volume holds now is kept as a snapshot first: a restore to the wrong tag can be undone.
    const kept = await this.snapshot(options)
    if (kept !== undefined) log('claim %s: snapshot %s keeps its contents before the restore', this.claimId, kept)
    await this.init.snapshots.restore(this.driver, this.claim, tag, this.spec.manifest?.storage?.claimBytes ?? 0, options)
    this.manager.counters.restored++
    log('claim %s restored in place from %s by an operator (epoch %d)', this.claimId, tag, this.epoch)
  }

  /** The claim's generation (0 until a move replaced a voter). */
  get gen (): number { return this.lease.gen ?? 0 }

  /** A lease from the register: kept if it is this epoch's, with the voters and generation it names (a move changes both). */
  private take (lease: ClaimLease): void {
    if (lease.epoch !== this.epoch || this.leaseEnded) return
    // A renew sent before a move finishes after it: its lease is older than the move's, keep the move's.
    if ((lease.gen ?? 0) < (this.lease.gen ?? 0)) return
    const moved = (lease.gen ?? 0) !== (this.lease.gen ?? 0)
    this.lease = lease
    this.voters = [...lease.voters]
    if (moved) this.recording = this.manager.remember(this.claimId, this.driver.kind, lease).catch((err: Error) => { log.error('claim %s: recording its generation %d: %s', this.claimId, lease.gen ?? 0, err.message) })
  }

  /** The write of the claim's newest generation to claims.json, while one is under way. */
  private recording?: Promise<void>

  /**
   * Replaces voters gone for good (the owner only, while a majority of the old ones answers): the
   * claim continues in its next generation with `nextVoters`, at the same epoch, serving throughout.
   */
  async replaceVoters (nextVoters: readonly string[], options: { signal?: AbortSignal } = {}): Promise<ClaimLease> {
    if (this.lost || this.released || this.closed || !this.leaseValid()) throw new ClaimLeaseExpiredError(`claim ${this.claimId} (epoch ${this.epoch}) is not served here: its voters stay`)
    const budgetMs = this.manager.roundBudgetMs(this.lease)
    const signal = options.signal !== undefined ? AbortSignal.any([options.signal, AbortSignal.timeout(budgetMs)]) : AbortSignal.timeout(budgetMs)
    const lease = await this.init.register.move(this.claimId, this.voters, this.epoch, nextVoters, { signal, phaseTimeoutMs: budgetMs, ...placeOptions(this.lease) })
    this.take(lease)
    await this.recording
    this.checkLease()
    return lease
  }

  /** The lease is ours and has not ended by this node's monotonic clock (less the guard). */
  leaseValid (): boolean {
    return !this.lost && this.manager.now() < this.lease.leaseStartLocalMs + this.lease.leaseMs - (this.init.leaseGuardMs ?? 1_000)
  }

  /** Called once when the lease ends without a renewal (or the claim is lost): the replica must stop. */
  onLost (fn: () => void): void {
    this.lostListeners.push(fn)
  }

  /** Says once, at the moment it happens, that the lease ended unrenewed: serving stopped. */
  private checkLease (): void {
    this.init.clock.clearTimeout(this.leaseTimer)
    if (this.leaseEnded || this.released || this.closed) return
    if (this.leaseValid()) {
      const leftMs = this.lease.leaseStartLocalMs + this.lease.leaseMs - (this.init.leaseGuardMs ?? 1_000) - this.manager.now()
      this.leaseTimer = this.init.clock.setTimeout(() => { this.checkLease() }, Math.max(10, Math.ceil(leftMs) + 10))
      return
    }
    this.leaseEnded = true
    log.error('claim %s (epoch %d): the lease ended without a renewal; serving stopped', this.claimId, this.epoch)
    for (const fn of this.lostListeners) { try { fn() } catch {} }
  }

  start (): void {
    this.checkLease()
    this.scheduleRenew()
    this.scheduleSnapshot(this.init.firstSnapshotMs ?? 2_000)
  }

  /** Renew at a quarter of the lease; after a failure, again soon (every 250 ms) while the lease lasts. */
  private scheduleRenew (afterFailure = false): void {
    // A lease that ended stays ended here (checkLease never takes a later renewal): asking the
    // voters every 250 ms until the claim is closed would be rounds for nothing.
    if (this.lost || this.released || this.leaseEnded) return
    const delayMs = afterFailure ? 250 : Math.max(100, Math.floor(this.lease.leaseMs / 4))
    this.renewTimer = this.init.clock.setTimeout(() => { void this.renew() }, delayMs)
  }

  private async renew (): Promise<void> {
    if (this.lost || this.released) return
    const remainingMs = this.lease.leaseStartLocalMs + this.lease.leaseMs - this.manager.now()
    try {
      const lease = await this.manager.renewLease(this.claimId, this.voters, this.lease)
      this.take(lease)
      this.checkLease()
      this.scheduleRenew()
    } catch (err) {
      if (err instanceof ClaimLostError) {
        this.lost = true
        log.error('claim %s (epoch %d) is no longer ours: %s', this.claimId, this.epoch, err.message)
        this.checkLease()
        return
      }
      this.checkLease()
      // No quorum in time: try again soon; serving() turns false on its own when the lease runs out.
      this.manager.counters.renewFailures++
      log('renewing claim %s from …%s with voters %s failed (%d ms of lease left): %s: %s', this.claimId, this.init.selfId.slice(-6), this.voters.map(v => `…${v.slice(-6)}`).join(','), Math.round(remainingMs), (err as Error).name, (err as Error).message)
      this.scheduleRenew(true)
    }
  }

  private scheduleSnapshot (delayMs: number): void {
    if (this.closed || this.lost) return
    this.snapshotTimer = this.init.clock.setTimeout(() => {
      this.snapshotting = this.snapshot().catch((err) => { log.error('snapshot of %s failed: %e', this.claimId, err) })
        .finally(() => { this.snapshotting = undefined; this.scheduleSnapshot(this.spec.manifest?.storage?.snapshotEveryMs ?? 86_400_000) })
    }, Math.max(0, Math.min(delayMs, 2_147_000_000)))
  }

  /** Snapshot now, only while this node still holds the lease (a fenced owner's snapshots would be stale). */
  async snapshot (options: { signal?: AbortSignal } = {}): Promise<string | undefined> {
    if (!this.leaseValid()) return undefined
    const { tag, sizeBytes } = await this.init.snapshots.take(this.driver, this.claim, this.epoch, options)
    this.lastSnapshot = tag
    this.lastSnapshotMs = this.init.clock.now()
    this.lastSnapshotBytes = sizeBytes
    this.manager.counters.snapshots++
    log('snapshot %s of claim %s (epoch %d)', tag, this.claimId, this.epoch)
    return tag
  }

  async close (options: { planned: boolean }): Promise<void> {
    if (this.closed) return
    // From now on no call is served; renewals go on until the hand-over is done.
    this.closed = true
    this.init.clock.clearTimeout(this.snapshotTimer)
    await this.snapshotting
    try {
      // Fenced: another node may own the claim; nothing of ours may be snapshotted or handed over.
      if (!this.leaseValid()) {
        log.error('claim %s closed after its lease ended (epoch %d): no final snapshot, no hand-over', this.claimId, this.epoch)
        return
      }
      const tag = await this.snapshot()
      const waitMs = this.manager.handoverSafeMs()
      const waited = tag !== undefined && waitMs > 0 ? await this.init.snapshots.waitSafe(this.claimId, tag, { timeoutMs: waitMs }) : undefined
      if (waited === 'nobody') {
        // This node's copy is the newest and no other node holds it: handing the claim over would
        // send the next owner to a snapshot nobody serves (or an older one). Its lease runs out
        // instead, and nodes that start again before this one leave the claim to it (`admit`).
        this.manager.counters.keptForReturn++
        log.error('claim %s: no other node is left that could hold its final snapshot %s; not handing it over: its lease runs out and nodes started before this one leave the claim to it (cell up --owner-wait)', this.claimId, tag)
        return
      }
      if (tag !== undefined && waited !== 'safe' && waitMs > 0) {
        this.manager.counters.unsafeHandovers++
        log.error('final snapshot %s of claim %s is not held by two other nodes yet; handing over anyway', tag, this.claimId)
      }
      // The release names the final snapshot: the next owner restores exactly it, not an older one
      // that happened to be safe in its view first.
      await this.init.register.release(this.claimId, this.voters, this.epoch, { signal: AbortSignal.timeout(10_000), ...(tag !== undefined ? { final: tag } : {}), ...placeOptions(this.lease) })
      this.manager.counters.handovers++
      log('%s claim %s at epoch %d (%s)', options.planned ? 'handed over' : 'released after the replica ended:', this.claimId, this.epoch, tag !== undefined ? `final snapshot ${tag}` : 'no final snapshot')
    } catch (err) {
      log.error('handing over claim %s: %s: %s (its lease will run out instead)', this.claimId, (err as Error).name, (err as Error).message)
    } finally {
      this.released = true
      this.init.clock.clearTimeout(this.renewTimer)
      this.init.clock.clearTimeout(this.leaseTimer)
      this.manager.forget(this)
    }
  }
}

/**
 * Renews a just-acquired lease while the volume is prepared (a restore may outlast the lease), the
 * way an open claim does: at a quarter of the lease, every 250 ms after a failure, each renew given
 * what is left of half the lease. `stop()` waits for a renew in flight and hands back the newest lease.
 */
class LeaseKeeper {
  lease: ClaimLease
  lost?: Error
  private stopped = false
  private timer: unknown
  private renewing?: Promise<void>
  private readonly manager: VolumeManager
  private readonly claimId: string

  constructor (manager: VolumeManager, claimId: string, lease: ClaimLease) {
    this.manager = manager
    this.claimId = claimId
    this.lease = lease
    this.schedule(false)
  }

  private schedule (afterFailure: boolean): void {
    if (this.stopped || this.lost !== undefined) return
    const delayMs = afterFailure ? 250 : Math.max(100, Math.floor(this.lease.leaseMs / 4))
    this.timer = this.manager.init.clock.setTimeout(() => { this.renewing = this.renew() }, delayMs)
  }

  private async renew (): Promise<void> {
    if (this.stopped) return
    try {
      const lease = await this.manager.renewLease(this.claimId, this.lease.voters, this.lease)
      if (lease.epoch === this.lease.epoch) this.lease = { ...lease, ...(this.lease.handedOver !== undefined ? { handedOver: this.lease.handedOver } : {}) }
      this.schedule(false)
    } catch (err) {
      if (err instanceof ClaimLostError) { this.lost = err; return }
      log('renewing claim %s while its volume is prepared failed: %s: %s', this.claimId, (err as Error).name, (err as Error).message)
      this.schedule(true)
    }
  }

  async stop (): Promise<ClaimLease> {
    this.stopped = true
    this.manager.init.clock.clearTimeout(this.timer)
    await this.renewing
    return this.lease
  }
}

export class VolumeManager implements ReplicaVolumes {
  readonly init: VolumeManagerInit
  private readonly markers: MarkerFile
  private readonly held = new Map<string, OpenClaim>()
  private readonly opening = new Set<string>()
  /**
   * `unsafeHandovers`: hand-overs whose final snapshot no two other nodes held yet; `keptForReturn`:
   * closes that kept the claim because no other node was left to hold the final snapshot (the last
   * node of a fleet stopping); `ownerWaitsGivenUp`: claims taken after `formerOwnerWaitMs` ran out;
   * `voterMoves` / `voterMoveFailures`: voters gone for good replaced (claims moved to their next
   * generation), and tries that failed (tried again later).
   */
  readonly counters = { opened: 0, restored: 0, snapshots: 0, handovers: 0, unsafeHandovers: 0, keptForReturn: 0, renewFailures: 0, ownerWaitsGivenUp: 0, voterMoves: 0, voterMoveFailures: 0 }
  private handoverWaitMs?: number

  constructor (init: VolumeManagerInit) {
    this.init = init
    this.markers = new MarkerFile(init.dataDir)
  }

  /**
   * How long a planned close waits for its final snapshot to be held by two other nodes. A node
   * stopping with its whole fleet (`npm start`'s Ctrl-C) sets 0: nobody is left to pin it.
   */
  handoverSafeMs (): number {
    return this.handoverWaitMs ?? this.init.handoverSafeMs ?? 30_000
  }

  setHandoverSafeMs (ms: number | undefined): void {
    this.handoverWaitMs = ms
  }

  /**
   * One renew of `lease` on the register, as open claims and the lease keeper both do it: the budget
   * is what is left of the lease but at most half of it (at least 1 s), and one round may take all of
   * it — a slow quorum is still a quorum, and a renew that lands after the budget is not waited for,
   * so it never extends a lease already given up.
   */
  async renewLease (claimId: string, voters: readonly string[], lease: ClaimLease): Promise<ClaimLease> {
    const budgetMs = this.roundBudgetMs(lease)
    return await this.init.register.renew(claimId, voters, lease.epoch, { signal: AbortSignal.timeout(budgetMs), phaseTimeoutMs: budgetMs, ...placeOptions(lease) })
  }

  /** What an owner's round on `lease` may take: what is left of the lease, at most half of it, at least 1 s. */
  roundBudgetMs (lease: ClaimLease): number {
    const remainingMs = lease.leaseStartLocalMs + lease.leaseMs - this.now()
    return Math.floor(Math.max(1_000, Math.min(remainingMs, lease.leaseMs / 2)))
  }

  /** Records where the claim's register is now (claims.json), after a move or an acquire in a newer generation. */
  async remember (claimId: string, driver: string, lease: ClaimLease): Promise<void> {
    const marker = await this.markers.get(claimId)
    if ((marker?.gen ?? 0) > (lease.gen ?? 0)) return
    await this.markers.set(claimId, { epoch: marker?.epoch ?? lease.epoch, driver: marker?.driver ?? driver, voters: [...lease.voters], ...placeOptions(lease) })
  }

  now (): number {
    return (this.init.monotonicNow ?? (() => performance.now()))()
  }

  /** The claims open here, for status and tests. */
  claims (): Array<{ claimId: string, epoch: number, gen: number, serving: boolean, voters: string[], restoredFrom?: string, lastSnapshot?: string, lastSnapshotMs?: number, lastSnapshotBytes?: number }> {
    return [...this.held.values()].map(c => ({
      claimId: c.claimId,
      epoch: c.epoch,
      gen: c.gen,
      serving: c.serving(),
      voters: [...c.voters],
      ...(c.restoredFrom !== undefined ? { restoredFrom: c.restoredFrom } : {}),
      ...(c.lastSnapshot !== undefined ? { lastSnapshot: c.lastSnapshot } : {}),
      ...(c.lastSnapshotMs !== undefined ? { lastSnapshotMs: c.lastSnapshotMs } : {}),
      ...(c.lastSnapshotBytes !== undefined ? { lastSnapshotBytes: c.lastSnapshotBytes } : {})
    }))
  }

  /** The open claim volume of a replica's claim, if this node holds it. */
  claim (claimId: string): OpenClaim | undefined {
    return this.held.get(claimId)
  }

  forget (claim: OpenClaim): void {
    if (this.held.get(claim.claimId) === claim) this.held.delete(claim.claimId)
  }

  async open (spec: SpawnSpec, instanceId: string, options: { signal?: AbortSignal } = {}): Promise<ReplicaVolume> {
    // One open per cell at a time: a second would only duel with the first in the register.
    if (this.opening.has(spec.cell)) throw new ClaimsHeldError(`a claim of ${spec.cell} is being opened on this node already; ${instanceId} not started`)
    this.opening.add(spec.cell)
    try {
      return await this.openClaim(spec, instanceId, options)
    } finally {
      this.opening.delete(spec.cell)
    }
  }

  private async openClaim (spec: SpawnSpec, instanceId: string, options: { signal?: AbortSignal }): Promise<ReplicaVolume> {
    const storage = spec.manifest?.storage
    if (storage === undefined) throw new NoStorageClassError('(none)', this.init.drivers.map(d => d.kind))
    const kind = driverForClass(this.init.drivers.map(d => d.kind), storage.class)
    const driver = this.init.drivers.find(d => d.kind === kind)
    if (driver === undefined) throw new NoStorageClassError(storage.class, this.init.drivers.map(d => d.kind))
    const ordinals = Math.max(1, Math.min(spec.manifest?.biology?.maxReplicas ?? 1, 64))
    const waited: Array<{ ordinal: number, holder: string, leaseEndsInMs: number }> = []
    for (let ordinal = 0; ordinal < ordinals; ordinal++) {
      const claim = { cell: spec.cell, ordinal }
      if (this.held.has(`${spec.cell}/${ordinal}`)) continue
      const opened = await this.tryOpen(spec, claim, driver, storage.claimBytes, options)
      if ('volume' in opened) return opened.volume
      waited.push({ ordinal, ...opened.held })
    }
    // Every claim is held. A holder that is gone from the fleet, or serves no ready replica of the
    // cell any more (it is handing the claim over), releases it or sees its lease end: try that claim
    // once more when the lease is over (bounded). Not sooner: every attempt is a register round that
    // would duel with the holder's own renew and release rounds.
    const idle = waited.filter(w => !this.init.isServing(w.holder, spec.cell)).sort((a, b) => a.leaseEndsInMs - b.leaseEndsInMs)[0]
    if (idle !== undefined && idle.leaseEndsInMs <= (this.init.maxLeaseWaitMs ?? 60_000)) {
      log('claim %s/%d is held by …%s, which serves no replica of it: trying again in %d ms, when its lease ends', spec.cell, idle.ordinal, idle.holder.slice(-6), idle.leaseEndsInMs)
      // Checked every second meanwhile: a holder judged idle on a view a moment old (its replica's
      // ready heartbeat still on its way) is seen serving soon after; this spawn then ends at once
      // instead of holding a replica slot until the lease would have ended.
      for (let left = Math.ceil(idle.leaseEndsInMs) + 100; left > 0; left -= HOLDER_RECHECK_MS) {
        await abortableDelay(this.init.clock, Math.min(left, HOLDER_RECHECK_MS), options.signal)
        if (this.init.isServing(idle.holder, spec.cell)) {
          throw new ClaimsHeldError(`${spec.cell}/${idle.ordinal} is held by …${idle.holder.slice(-6)}, which serves a replica of it after all; ${instanceId} not started`)
        }
      }
      const opened = await this.tryOpen(spec, { cell: spec.cell, ordinal: idle.ordinal }, driver, storage.claimBytes, options)
      if ('volume' in opened) return opened.volume
    }
    throw new ClaimsHeldError(`every claim of ${spec.cell} (${waited.map(w => `${spec.cell}/${w.ordinal} by …${w.holder.slice(-6)}`).join(', ')}) is held; ${instanceId} not started`)
  }

  private async tryOpen (spec: SpawnSpec, claim: Claim, driver: StorageDriver, quotaBytes: number, options: { signal?: AbortSignal }): Promise<{ volume: OpenClaim } | { held: { holder: string, leaseEndsInMs: number } }> {
    const claimId = `${claim.cell}/${claim.ordinal}`
    // A claim that exists has voters fixed at its creation: only those may be asked. Computing a set
    // from this node's view of the moment (cut off from the fleet, it may see just itself) would
    // create the claim a second time, with a second owner of its epochs. The set is known from this
    // node's last hold of the claim or from its own vote on it; a node that knows neither, while the
    // fleet shows the claim exists (snapshot records, a replica's instance record), leaves it to one
    // that does.
    const marker = await this.markers.get(claimId)
    const mine = marker?.voters !== undefined ? { gen: marker.gen ?? 0, voters: marker.voters, ...(marker.origin !== undefined ? { origin: marker.origin } : {}) } : undefined
    const voted = this.init.knownVoters?.(claimId)
    // The newer of this node's last hold and its own vote (a move since may have made it a voter).
    const known = mine !== undefined && (voted === undefined || mine.gen >= voted.gen) ? mine : voted
    if (known === undefined && this.init.claimExists?.(claimId) === true) {
      throw new ClaimVotersUnknownError(`${claimId} exists (the fleet holds snapshots of it, or a replica of it holds it) but this node neither held it nor votes on it, so it does not know its voters; a node that does will take it`)
    }
    // While this node leaves the claim to its former owner the answer stays the same until the wait
    // ends: no register round meanwhile (a prepare is a disk write on every voter, and the loop
    // asks again every tick).
    const waiting = this.awaiting.get(claimId)
    if (waiting !== undefined && waiting.gaveUp !== true && this.now() - waiting.fromMs < this.ownerWaitMs()) throw this.ownerAwaited(claimId, waiting)
    let voters = known?.voters ?? await this.init.voters(spec, claimId)
    let lease: ClaimLease
    const acquireOptions = { ...options, admit: (previous: PreviousClaim | null) => { this.admit(claimId, previous) }, ...(known !== undefined ? placeOptions(known) : {}) }
    try {
      try {
        lease = await this.init.register.acquire(claimId, voters, acquireOptions)
      } catch (err) {
        // The claim's voters were fixed when it was created; the register names them.
        if (!(err instanceof ClaimVotersMismatchError)) throw err
        voters = err.voters
        lease = await this.init.register.acquire(claimId, voters, acquireOptions)
      }
    } catch (err) {
      if (!(err instanceof ClaimHeldError)) throw err
      if (err.holder !== this.init.selfId) return { held: { holder: err.holder, leaseEndsInMs: err.leaseEndsInMs } }
      // This node held the claim before it restarted (same peer key, same data dir): its lease is
      // renewed at the same epoch and its volume, written last at that epoch, is used as it is.
      lease = await this.init.register.renew(claimId, voters, err.epoch, { ...options, ...(known !== undefined ? placeOptions(known) : {}) })
    }
    voters = lease.voters
    this.awaiting.delete(claimId)
    // A restore can take longer than a lease (a big claim, a busy disk): the lease is renewed while
    // the volume is prepared, or another node would take the claim meanwhile and the two would
    // take it from each other for ever.
    const keeper = new LeaseKeeper(this, claimId, lease)
    let prepared: { path: string, restoredFrom: string | undefined, localIsNewest: boolean }
    try {
      prepared = await this.prepareVolume(claim, driver, quotaBytes, lease, options)
    } finally {
      lease = await keeper.stop()
      voters = lease.voters
    }
    if (keeper.lost !== undefined) throw new ClaimLeaseExpiredError(`claim ${claimId} (epoch ${lease.epoch}) was lost while its volume was prepared: ${keeper.lost.message}`, { cause: keeper.lost })
    const { path, restoredFrom, localIsNewest } = prepared
    await this.markers.set(claimId, { epoch: lease.epoch, driver: driver.kind, voters, ...placeOptions(lease) })
    // A slow acquire or restore may have used up most of the lease: renew before serving, and
    // never hand out a volume whose lease is already over.
    if (lease.leaseStartLocalMs + lease.leaseMs - this.now() < lease.leaseMs / 2) {
      try {
        lease = await this.init.register.renew(claimId, voters, lease.epoch, { ...options, ...placeOptions(lease) })
        voters = lease.voters
      } catch (err) {
        if (!(err instanceof ClaimLostError) && lease.leaseStartLocalMs + lease.leaseMs - this.now() > (this.init.leaseGuardMs ?? 1_000)) log('renewing claim %s right after it opened failed: %s', claimId, (err as Error).message)
        else throw new ClaimLeaseExpiredError(`the lease on claim ${claimId} (epoch ${lease.epoch}) ended before its replica could start: ${(err as Error).message}`, { cause: err })
      }
    }
    const open = new OpenClaim(this, spec, claim, driver, voters, lease, path, restoredFrom)
    this.held.set(claimId, open)
    this.counters.opened++
    open.start()
    log('claim %s opened by …%s with voters %s at epoch %d on %s%s', claimId, this.init.selfId.slice(-6), voters.map(v => `…${v.slice(-6)}`).join(','), lease.epoch, driver.kind, restoredFrom !== undefined ? ` (restored from ${restoredFrom})` : localIsNewest ? ' (this node\'s copy is the newest)' : '')
    return { volume: open }
  }

  /**
   * May this node take the claim from `previous` (the register's value)? Not while its last owner,
   * which let the lease run out without a hand-over, had not been seen since this node started
   * when this node first tried the claim at that epoch, and `formerOwnerWaitMs` (from that first
   * try) has not passed: that owner may hold writes no snapshot has, and takes its claim back with
   * its own copy when it returns. Its return does not end the wait here (the owner takes the claim,
   * which ends it; taking it in the moment the owner is back would race it): only the bound does.
   */
  private admit (claimId: string, previous: PreviousClaim | null): void {
    if (previous === null || previous.owner === this.init.selfId || previous.state === 'released') return
    let since = this.awaiting.get(claimId)
    if (since?.epoch !== previous.epoch && (this.init.seenSinceStart?.(previous.owner) ?? true)) return
    const boundMs = this.ownerWaitMs()
    if (boundMs <= 0) return
    const now = this.now()
    if (since === undefined || since.epoch !== previous.epoch) {
      since = { epoch: previous.epoch, owner: previous.owner, fromMs: now }
      this.awaiting.set(claimId, since)
      if (this.awaiting.size > 4096) this.awaiting.delete(this.awaiting.keys().next().value as string)
      log.error('claim %s: its last owner …%s (epoch %d) ended without a hand-over and has not been seen since this node started; leaving the claim to it for up to %d s (cell up --owner-wait), then starting from the newest safe snapshot', claimId, previous.owner.slice(-6), previous.epoch, Math.round(boundMs / 1000))
    }
    const waitedMs = now - since.fromMs
    if (waitedMs >= boundMs) {
      if (!since.gaveUp) {
        since.gaveUp = true
        this.counters.ownerWaitsGivenUp++
        log.error('claim %s: its last owner …%s (epoch %d) has not come back in %d s; taking the claim: what it wrote after its newest safe snapshot is lost', claimId, previous.owner.slice(-6), previous.epoch, Math.round(waitedMs / 1000))
      }
      return
    }
    throw this.ownerAwaited(claimId, since)
  }

  private ownerWaitMs (): number {
    return this.init.formerOwnerWaitMs ?? 120_000
  }

  private ownerAwaited (claimId: string, since: OwnerWait): ClaimOwnerAwaitedError {
    const boundMs = this.ownerWaitMs()
    const leftMs = boundMs - (this.now() - since.fromMs)
    return new ClaimOwnerAwaitedError(`${claimId} was last owned by …${since.owner.slice(-6)} (epoch ${since.epoch}), whose lease ran out without a hand-over, and that node has not been seen since this node started: it may hold writes no snapshot has. Left to it for ${Math.ceil(leftMs / 1000)} s more (the wait is ${Math.round(boundMs / 1000)} s: cell up --owner-wait)`)
  }

  /** Claims whose former owner this node waits for: since when (monotonic), per epoch. */
  private readonly awaiting = new Map<string, OwnerWait>()

  /** Local copy or restore, then the mounted volume: what `tryOpen` serves from. */
  private async prepareVolume (claim: Claim, driver: StorageDriver, quotaBytes: number, lease: ClaimLease, options: { signal?: AbortSignal }): Promise<{ path: string, restoredFrom: string | undefined, localIsNewest: boolean }> {
    const claimId = `${claim.cell}/${claim.ordinal}`
    const marker = await this.markers.get(claimId)
    const exists = await driver.exists(claim, options)
    // An epoch is granted to one owner only: a marker at the epoch just replaced (or at this very
    // epoch, renewed after a restart) means this node wrote the claim last, so its volume is the
    // newest copy. (Epoch 1 is a new claim.)
    const localIsNewest = exists && marker !== undefined && marker.driver === driver.kind && (lease.epoch === 1 || marker.epoch === lease.epoch - 1 || marker.epoch === lease.epoch)
    let restoredFrom: string | undefined
    if (!localIsNewest && lease.epoch > 1) {
      // A planned hand-over named its final snapshot: that one (its holder is alive and serves it,
      // safe or not yet); else the last owner's newest safe snapshot, which may still be on its way.
      const safe = await this.handedOverSnapshot(claimId, lease, options) ?? await this.waitForSafe(claimId, lease.epoch - 1, options)
      if (safe !== undefined && (marker === undefined || !exists || safe.epoch >= marker.epoch)) {
        const started = this.now()
        await this.init.snapshots.restore(driver, claim, safe.tag, quotaBytes, options)
        restoredFrom = safe.tag
        this.counters.restored++
        log('claim %s restored from %s (epoch %d, by …%s) in %d ms', claimId, safe.tag, safe.epoch, safe.nodeId.slice(-6), Math.round(this.now() - started))
      } else {
        log.error('claim %s had owners before (epoch %d) but no safe snapshot is known: starting from %s', claimId, lease.epoch - 1, exists ? 'this node\'s older copy' : 'an empty volume')
      }
    }
    const path = await driver.create(claim, quotaBytes, options)
    return { path, restoredFrom, localIsNewest }
  }

  /** The final snapshot the previous owner's release named, once this node's view holds it (up to `handoverSafeMs`). */
  private async handedOverSnapshot (claimId: string, lease: ClaimLease, options: { signal?: AbortSignal }): Promise<SafeSnapshot | undefined> {
    const handed = lease.handedOver
    if (handed === undefined || handed.epoch !== lease.epoch - 1) return undefined
    const found = await this.init.snapshots.find(claimId, handed.tag, handed.owner, { timeoutMs: this.init.handoverSafeMs ?? 30_000, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
    if (found === undefined || found.epoch !== handed.epoch) {
      log.error('claim %s: the final snapshot %s handed over at epoch %d did not reach this node\'s view; restoring the newest safe one instead', claimId, handed.tag, handed.epoch)
      return undefined
    }
    return found
  }

  /**
   * The snapshot to restore: the newest safe one, waiting up to `handoverSyncMs` for one of the
   * previous epoch (a planned hand-over's final snapshot may reach this node's view just after the
   * release did); an older safe one after that.
   */
  private async waitForSafe (claimId: string, previousEpoch: number, options: { signal?: AbortSignal }): Promise<SafeSnapshot | undefined> {
    return await this.init.snapshots.newestSafe(claimId, { minEpoch: previousEpoch, maxEpoch: previousEpoch, timeoutMs: this.init.handoverSyncMs ?? 5_000, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  }

  /** Snapshot every open claim now (e.g. `cell snapshot`), returning the tags taken. */
  async snapshotAll (options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const tags: string[] = []
    for (const c of this.held.values()) {
      const tag = await c.snapshot(options)
      if (tag !== undefined) tags.push(tag)
    }
    return tags
  }
}

/** How often a spawn waiting for an idle holder's lease to end looks whether the holder serves again. */
const HOLDER_RECHECK_MS = 1000

async function abortableDelay (clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clock.clearTimeout(timer); reject(signal?.reason) }
    const timer = clock.setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
