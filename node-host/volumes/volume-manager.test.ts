// The node's claim volumes with the real claim register (acceptors and clients over an in-memory
// transport), the dir driver on real directories and a snapshot port that copies snapshot trees
// through a shared folder standing in for the fleet's holders. Multi-process runs with ZFS and real
// snapshot distribution are in test/integration/stateful-*.test.ts.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClaimAcceptor, MemoryAcceptorStore, ClaimRegisterClient, ClaimHeldError } from '../../core/claims/index.ts'
import { openClaimGateForTests } from '../../core/claims/testing.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import { DirDriver } from '../storage/dir.ts'
import type { Claim, StorageDriver } from '../storage/driver.ts'
import { NoStorageClassError } from '../storage/errors.ts'
import { VolumeManager, ClaimsHeldError, ClaimOwnerAwaitedError, type SafeSnapshot, type SnapshotPort, type SafeWait, type VolumeManagerInit } from './volume-manager.ts'
import { ReplicaSet, type ReplicaVolume, type SpawnSpec } from '../replica-set.ts'
import { CapsidStoppedError } from '../capsid/index.ts'
import { systemRandom } from '../../core/ports.ts'

const NODES = ['12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB', '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC']

const spec: SpawnSpec = {
  cell: 'ledger', version: '1.0.0', digest: 'd'.repeat(64), codePath: '/nonexistent',
  manifest: { storage: { claimBytes: 64 * 1024 * 1024, class: 'default', snapshotEveryMs: 3_600_000 }, biology: { maxReplicas: 1 } }
}

/** Snapshots as the fleet would hold them: tag → copied tree, safe at once (two holders assumed). */
class SharedSnapshots implements SnapshotPort {
  readonly safe = new Map<string, SafeSnapshot[]>()
  readonly root: string
  taken = 0
  /** Snapshots taken while set are held (findable by tag) but not safe yet: their pins lag. */
  holdBack = false
  readonly held: SafeSnapshot[] = []
  /** Runs inside every restore, before the copy (a slow restore in a test). */
  duringRestore?: () => Promise<void>
  private readonly owner: () => string
  constructor (root: string, owner: () => string) { this.root = root; this.owner = owner }
  async take (driver: StorageDriver, claim: Claim, epoch: number): Promise<{ tag: string }> {
    const tag = `snapshot-e${epoch}-${++this.taken}`
    await cp(driver.mountpoint(claim), join(this.root, tag), { recursive: true })
    const id = `${claim.cell}/${claim.ordinal}`
    const s = { tag, epoch, nodeId: this.owner(), takenMs: Date.now() }
    if (this.holdBack) this.held.push(s)
    else this.safe.set(id, [...(this.safe.get(id) ?? []), s])
    return { tag }
  }

  async find (claimId: string, tag: string, nodeId: string): Promise<SafeSnapshot | undefined> {
    return [...(this.safe.get(claimId) ?? []), ...this.held].find(s => s.tag === tag && s.nodeId === nodeId)
  }

  async waitSafe (): Promise<SafeWait> { return this.nobody ? 'nobody' : 'safe' }
  /** waitSafe answers that no node is left that could hold a snapshot (the last node of a fleet stopping). */
  nobody = false
  async newestSafe (claimId: string, options: { maxEpoch: number }): Promise<SafeSnapshot | undefined> {
    return [...(this.safe.get(claimId) ?? [])].filter(s => s.epoch <= options.maxEpoch).sort((a, b) => b.epoch - a.epoch || b.takenMs - a.takenMs)[0]
  }

  async restore (driver: StorageDriver, claim: Claim, tag: string, quotaBytes: number): Promise<void> {
    await this.duringRestore?.()
    await driver.replace(claim, quotaBytes, async (dir) => { await cp(join(this.root, tag), dir, { recursive: true }) })
  }
}

describe('claim volumes', () => {
  let dir: string
  let now = 0
  const monotonicNow = (): number => now
  const acceptors = new Map<string, ClaimAcceptor>()
  const down = new Set<string>()
  /** Reachable holders that serve no replica of the cell (handing the claim over, as the fleet sees it). */
  const idle = new Set<string>()
  const managers: VolumeManager[] = []

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-volumes-'))
    now = 1_000
    down.clear()
    idle.clear()
    for (const id of NODES) acceptors.set(id, new ClaimAcceptor({ selfId: id, store: new MemoryAcceptorStore(), clock: { nowMs: monotonicNow }, gate: openClaimGateForTests }))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
    managers.length = 0
  })

  /** Acquire rounds each node started (test hook). */
  const acquires = new Map<string, number>()
  /** Called after every renew of the claim register a manager made here (test hook). */
  let onRenew: (selfId: string) => void = () => {}

  function manager (selfId: string, snapshots: SharedSnapshots, options: { driver?: StorageDriver, clock?: Clock, extra?: Partial<VolumeManagerInit> } = {}): VolumeManager {
    const client = new ClaimRegisterClient({
      selfId,
      clock: { nowMs: monotonicNow },
      timers: systemClock,
      gate: openClaimGateForTests,
      leaseMs: 5_000,
      transport: {
        send: async (peer, frame, opts) => {
          if (down.has(peer) || down.has(selfId)) throw new Error(`${peer} unreachable`)
          return await acceptors.get(peer)!.handle(selfId, frame, opts)
        }
      }
    })
    const m = new VolumeManager({
      selfId,
      dataDir: join(dir, selfId.slice(-4)),
      clock: options.clock ?? systemClock,
      monotonicNow,
      drivers: [options.driver ?? new DirDriver(join(dir, selfId.slice(-4), 'storage'))],
      register: {
        acquire: async (...args) => { acquires.set(selfId, (acquires.get(selfId) ?? 0) + 1); return await client.acquire(...args) },
        release: async (...args) => await client.release(...args),
        renew: async (...args) => { const lease = await client.renew(...args); onRenew(selfId); return lease },
        move: async (...args) => await client.move(...args)
      },
      snapshots,
      voters: () => NODES,
      isServing: (id) => !down.has(id) && !idle.has(id),
      firstSnapshotMs: 3_600_000,
      handoverSyncMs: 0,
      ...options.extra
    })
    managers.push(m)
    return m
  }

  /** The fleet's snapshots as a shared folder, NODES[0] their owner. */
  async function sharedSnapshots (): Promise<SharedSnapshots> {
    const shared = new SharedSnapshots(join(dir, 'shared'), () => NODES[0])
    await mkdir(shared.root, { recursive: true })
    return shared
  }

  /** NODES[0] opens ledger/0, writes `snapshotted`, snapshots it (safe), then writes `after`: a write no snapshot has. */
  async function ownerWithSnapshot (snapshotted: string, after: string): Promise<{ shared: SharedSnapshots, a: VolumeManager, va: ReplicaVolume }> {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    await writeFile(join(va.path, 'ledger.jsonl'), snapshotted)
    await (va as unknown as { snapshot: () => Promise<string> }).snapshot()
    await writeFile(join(va.path, 'ledger.jsonl'), after)
    return { shared, a, va }
  }

  it('a planned hand-over moves the claim with every write, and the new owner restores the final snapshot', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    expect(va.claimId).toBe('ledger/0')
    expect(va.epoch).toBe(1)
    expect(va.serving()).toBe(true)
    await writeFile(join(va.path, 'ledger.jsonl'), 'one\ntwo\n')
    await va.close({ planned: true })
    expect(a.counters.handovers).toBe(1)

    const b = manager(NODES[1], shared)
    const vb = await b.open(spec, 'ledger-b', {})
    expect(vb.epoch).toBe(2)
    expect(vb.restoredFrom).toMatch(/^snapshot-e1-/)
    expect(await readFile(join(vb.path, 'ledger.jsonl'), 'utf8')).toBe('one\ntwo\n')
    await vb.close({ planned: true })
  })

  it('the next owner restores the final snapshot the release named, even before it is safe, not an older safe one', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    await writeFile(join(va.path, 'ledger.jsonl'), 'one\n')
    const older = await (va as unknown as { snapshot: () => Promise<string> }).snapshot()
    await writeFile(join(va.path, 'ledger.jsonl'), 'one\ntwo\n')
    // The final snapshot's pins lag behind the release (a busy fleet): only the older one is safe.
    shared.holdBack = true
    await va.close({ planned: true })
    expect(shared.held).toHaveLength(1)
    const b = manager(NODES[1], shared)
    const vb = await b.open(spec, 'ledger-b', {})
    expect(vb.epoch).toBe(2)
    expect(vb.restoredFrom).toBe(shared.held[0].tag)
    expect(vb.restoredFrom).not.toBe(older)
    expect(await readFile(join(vb.path, 'ledger.jsonl'), 'utf8')).toBe('one\ntwo\n')
    await vb.close({ planned: true })
  })

  it('keeps renewing the lease while a restore outlasts it: nobody else takes the claim meanwhile', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    await writeFile(join(va.path, 'ledger.jsonl'), 'one\n')
    await va.close({ planned: true })
    const b = manager(NODES[1], shared)
    const c = manager(NODES[2], shared)
    let rival: unknown
    shared.duringRestore = async () => {
      // Twice, most of a lease (5 s) passes on every clock; B's keeper renews each time.
      for (let i = 0; i < 2; i++) {
        const renewed = new Promise<void>(resolve => { onRenew = (id) => { if (id === NODES[1]) resolve() } })
        now += 4_000
        await renewed
      }
      // 8 s after B acquired, a lease of 5 s would be long over: C may take the claim only if B
      // stopped renewing.
      rival = await c.init.register.acquire('ledger/0', NODES, {}).catch((err: unknown) => err)
    }
    const vb = await b.open(spec, 'ledger-b', {})
    expect(rival).toBeInstanceOf(ClaimHeldError)
    expect(vb.epoch).toBe(2)
    expect(vb.serving()).toBe(true)
    expect(await readFile(join(vb.path, 'ledger.jsonl'), 'utf8')).toBe('one\n')
    onRenew = () => {}
    await vb.close({ planned: true })
  })

  it('a node that wrote the claim last keeps its own copy, newer than any snapshot, after a replica crash or its own restart', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const v1 = await a.open(spec, 'ledger-a', {})
    await writeFile(join(v1.path, 'ledger.jsonl'), 'one\n')
    await (v1 as unknown as { snapshot: () => Promise<string> }).snapshot()
    await writeFile(join(v1.path, 'ledger.jsonl'), 'one\ntwo\n')
    // The node dies (kill -9) with the claim held, and comes back on the same data dir within the
    // lease: it renews at the same epoch and keeps the writes made after the last snapshot.
    const a2 = manager(NODES[0], shared)
    const v2 = await a2.open(spec, 'ledger-a2', {})
    expect(v2.epoch).toBe(1)
    expect(v2.restoredFrom).toBeUndefined()
    expect(await readFile(join(v2.path, 'ledger.jsonl'), 'utf8')).toBe('one\ntwo\n')
    await writeFile(join(v2.path, 'ledger.jsonl'), 'one\ntwo\nthree\n')
    // The replica crashes: the claim is released with a final snapshot, and reopened here at epoch 2
    // from this node's own copy.
    await v2.close({ planned: false })
    const v3 = await a2.open(spec, 'ledger-a3', {})
    expect(v3.epoch).toBe(2)
    expect(v3.restoredFrom).toBeUndefined()
    expect(await readFile(join(v3.path, 'ledger.jsonl'), 'utf8')).toBe('one\ntwo\nthree\n')
    await v3.close({ planned: true })
  })

  it('a claim whose owner ran out unreleased and was not seen since this node started is left to it: it comes back with its newer copy; after formerOwnerWaitMs another node takes the newest safe snapshot', async () => {
    const { shared, va } = await ownerWithSnapshot('one\n', 'one\ntwo\n')
    // The whole fleet stops at once: the owner's lease runs out, nothing is handed over.
    down.add(NODES[0])
    now += 6_000
    expect(va.serving()).toBe(false)
    await va.close({ planned: false })
    // A node back first, which has not seen the owner since it started, leaves the claim to it and
    // spends no epoch doing so.
    const back = new Set<string>()
    const unseen = { seenSinceStart: (id: string) => id !== NODES[0] || back.has(id), formerOwnerWaitMs: 10_000 }
    const b = manager(NODES[1], shared, { extra: unseen })
    const refused = await b.open(spec, 'ledger-b', {}).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(ClaimOwnerAwaitedError)
    expect((refused as Error).message).toMatch(/last owned by …A{6} \(epoch 1\).*Left to it for 10 s more/)
    expect(acceptors.get(NODES[1])!.slot('ledger/0')?.accepted?.value).toMatchObject({ owner: NODES[0], epoch: 1 })
    // The owner comes back on its data dir. Seeing it does not end the wait (taking the claim the
    // moment it is back would race it): it takes its claim with its own copy, the writes after its
    // last snapshot included.
    down.delete(NODES[0])
    back.add(NODES[0])
    now += 1_000
    // Nor does asking again cost the voters a register round: the answer stands until the bound.
    const rounds = acquires.get(NODES[1])
    await expect(b.open(spec, 'ledger-b', {})).rejects.toThrow(/Left to it for 9 s more/)
    expect(acquires.get(NODES[1])).toBe(rounds)
    const a2 = manager(NODES[0], shared)
    const v2 = await a2.open(spec, 'ledger-a2', {})
    expect(v2.epoch).toBe(2)
    expect(v2.restoredFrom).toBeUndefined()
    expect(await readFile(join(v2.path, 'ledger.jsonl'), 'utf8')).toBe('one\ntwo\n')
    // It stops again, unreleased, and this time never returns: a node that has not seen it waits
    // `formerOwnerWaitMs` from its first try, then takes the claim from the newest safe snapshot.
    down.add(NODES[0])
    back.clear()
    now += 6_000
    await v2.close({ planned: false })
    const c = manager(NODES[2], shared, { extra: unseen })
    await expect(c.open(spec, 'ledger-c', {})).rejects.toBeInstanceOf(ClaimOwnerAwaitedError)
    now += 9_000
    await expect(c.open(spec, 'ledger-c', {})).rejects.toThrow(/Left to it for 1 s more/)
    now += 1_000
    const vc = await c.open(spec, 'ledger-c', {})
    expect(vc.epoch).toBe(3)
    expect(vc.restoredFrom).toMatch(/^snapshot-e1-/)
    expect(await readFile(join(vc.path, 'ledger.jsonl'), 'utf8')).toBe('one\n')
    expect(c.counters.ownerWaitsGivenUp).toBe(1)
    // A node that saw the owner leave (a crash while it ran) takes such a claim at once: the
    // default, which every other case here runs with.
    down.add(NODES[2])
    down.delete(NODES[0])
    now += 6_000
    await vc.close({ planned: false })
    const d = manager(NODES[1], shared, { extra: { seenSinceStart: () => true, formerOwnerWaitMs: 10_000 } })
    const vd = await d.open(spec, 'ledger-d', {})
    expect(vd.epoch).toBe(4)
    // And with --owner-wait 0, a node that did not see it takes it at once too.
    down.add(NODES[1])
    down.delete(NODES[2])
    now += 6_000
    await vd.close({ planned: false })
    const e = manager(NODES[2], shared, { extra: { seenSinceStart: () => false, formerOwnerWaitMs: 0 } })
    const ve = await e.open(spec, 'ledger-e', {})
    expect(ve.epoch).toBe(5)
    expect(e.counters.ownerWaitsGivenUp).toBe(0)
    await ve.close({ planned: true })
  })

  it('the last node of a fleet stopping keeps its claim (no node could hold the final snapshot): no hand-over, and back, it serves its own copy', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    await writeFile(join(va.path, 'ledger.jsonl'), 'one\ntwo\n')
    shared.nobody = true
    await va.close({ planned: true })
    expect(a.counters).toMatchObject({ keptForReturn: 1, handovers: 0, unsafeHandovers: 0 })
    // Not released: the register still names this node at epoch 1, held (its lease runs out).
    expect(acceptors.get(NODES[1])!.slot('ledger/0')?.accepted?.value).toMatchObject({ owner: NODES[0], epoch: 1, state: 'held' })
    now += 6_000
    const b = manager(NODES[1], shared, { extra: { seenSinceStart: () => false } })
    await expect(b.open(spec, 'ledger-b', {})).rejects.toBeInstanceOf(ClaimOwnerAwaitedError)
    const a2 = manager(NODES[0], shared)
    const v2 = await a2.open(spec, 'ledger-a2', {})
    expect(v2.epoch).toBe(2)
    expect(v2.restoredFrom).toBeUndefined()
    expect(await readFile(join(v2.path, 'ledger.jsonl'), 'utf8')).toBe('one\ntwo\n')
    shared.nobody = false
    await v2.close({ planned: true })
  })

  it('an owner that cannot renew stops serving when its lease ends, hands nothing over, and a new owner waits out the lease', async () => {
    const { shared, va } = await ownerWithSnapshot('one\n', 'one\nlost\n')
    // The owner is cut off (SIGSTOP, partition): its lease runs out on its own clock.
    down.add(NODES[0])
    const b = manager(NODES[1], shared)
    await expect(b.open(spec, 'ledger-b', { signal: AbortSignal.timeout(2_000) })).rejects.toThrow()
    now += 5_000
    expect(va.serving()).toBe(false)
    // Past the lease and the voters' margin the claim moves, restored from the last safe snapshot.
    now += 1_000
    const vb = await b.open(spec, 'ledger-b', {})
    expect(vb.epoch).toBe(2)
    expect(await readFile(join(vb.path, 'ledger.jsonl'), 'utf8')).toBe('one\n')
    // The fenced owner's close takes no snapshot and releases nothing.
    const before = shared.taken
    await va.close({ planned: true })
    expect(shared.taken).toBe(before)
    expect(vb.serving()).toBe(true)
    await vb.close({ planned: true })
  })

  it('an owner whose lease ended stops asking the voters to renew it (its renewals could never be taken)', async () => {
    const shared = await sharedSnapshots()
    // Renew retries are the 250 ms timers; count those armed once the lease is over.
    let lost = false
    let retriesAfterLost = 0
    const clock: Clock = { ...systemClock, setTimeout: (fn, ms) => { if (lost && ms === 250) retriesAfterLost++; return systemClock.setTimeout(fn, ms) } }
    const a = manager(NODES[0], shared, { clock })
    const va = await a.open(spec, 'ledger-a', {})
    const ended = new Promise<void>((resolve) => { va.onLost!(() => { lost = true; resolve() }) })
    down.add(NODES[0])
    now += 6_000
    await Promise.race([ended, new Promise((_resolve, reject) => setTimeout(() => { reject(new Error('the lease did not end within 5 s')) }, 5_000))])
    // The renew that noticed the end (or one already due) finishes on this turn.
    await new Promise<void>((resolve) => { setImmediate(resolve) })
    expect(va.serving()).toBe(false)
    expect(retriesAfterLost).toBe(0)
    await va.close({ planned: true })
  })

  it('every claim held by a live owner: ClaimsHeldError by name; a class the node does not offer: NoStorageClassError', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    const b = manager(NODES[1], shared)
    await expect(b.open(spec, 'ledger-b', {})).rejects.toBeInstanceOf(ClaimsHeldError)
    await expect(b.open({ ...spec, manifest: { ...spec.manifest, storage: { ...spec.manifest!.storage!, class: 'zfs' } } }, 'ledger-c', {})).rejects.toBeInstanceOf(NoStorageClassError)
    await va.close({ planned: true })
  })

  it('a node that stops gives up a spawn waiting for a claim\'s lease to end: no claim opened while leaving, no stop held for the lease', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    // B sees A holding the claim but serving no replica of it: B waits for A's lease to end (5 s here,
    // up to a minute in a fleet) and would then take the claim over.
    idle.add(NODES[0])
    const b = manager(NODES[1], shared)
    const replicas = new ReplicaSet({ dataDir: join(dir, 'b-node'), runDir: join(dir, 'b-run'), sandbox: 'process', clock: systemClock, random: systemRandom, maxReplicas: 2, volumes: b })
    const spawning = replicas.spawn({ ...spec, manifest: { ...spec.manifest, sandbox: { require: 'process' } } })
    const outcome = spawning.then(() => 'started', (err: unknown) => err)
    expect(replicas.list().map(r => r.state)).toEqual(['starting'])
    // The node stops (Ctrl-C) meanwhile: the waiting spawn ends at once with a named error instead
    // of taking the claim after the lease (ClaimsHeldError or a claim opened by a leaving node).
    await replicas.stopAll()
    expect(await outcome).toBeInstanceOf(CapsidStoppedError)
    expect(replicas.list()).toEqual([])
    expect(va.serving()).toBe(true)
    await va.close({ planned: true })
  })

  it('a spawn waiting out an idle holder\'s lease ends with ClaimsHeldError as soon as the holder is seen serving (its ready heartbeat was on its way)', async () => {
    const shared = await sharedSnapshots()
    const a = manager(NODES[0], shared)
    const va = await a.open(spec, 'ledger-a', {})
    idle.add(NODES[0])
    // B's timers, to see when it starts waiting.
    let waiting: () => void = () => {}
    const waits = new Promise<void>((resolve) => { waiting = resolve })
    const clock: Clock = { ...systemClock, setTimeout: (fn, ms) => { waiting(); return systemClock.setTimeout(fn, ms) } }
    const b = manager(NODES[1], shared, { clock })
    const opening = b.open(spec, 'ledger-b', {}).then(() => 'opened', (err: unknown) => err)
    await waits
    // Then the holder's replica shows up ready in B's view.
    idle.delete(NODES[0])
    const err = await opening
    expect(err).toBeInstanceOf(ClaimsHeldError)
    expect((err as Error).message).toMatch(/serves a replica of it after all/)
    await va.close({ planned: true })
  })
})
