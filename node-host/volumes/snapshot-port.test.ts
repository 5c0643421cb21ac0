// waitSafe: how long a node closing a claim waits for two other nodes to pin its final snapshot.
// It waits while pins can still come (holders so far plus connected full nodes reach two) and gives
// up once they cannot for `hopelessMs`, long before its timeout: the last node of a fleet being
// stopped. The mesh is a stand-in here (a view of the few methods waitSafe reads, a connection
// list this test sets); stateful-handover.test.ts runs it on real nodes.
// restoreRecords: the snapshot records a node kept on disk go back into a real fleet view at start
// (test/integration/fleet-restart-stateful.test.ts runs it on real processes).
import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ManualClock } from '../../core/testing/manual-clock.ts'
import { SnapshotService } from './snapshot-port.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import type { Credentials } from '../../core/identity/index.ts'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FleetView, encodeEnvelope, signRecord, type SnapshotRecord } from '../../core/fleet/index.ts'
import { makeSnapshotRecord } from '../../core/fleet/testing.ts'
import { OciLayout, MEDIA } from '../storage/oci-layout.ts'
import { layoutDirFor } from '../storage/snapshots.ts'

const T_START = 1_800_000_000_000

const CLAIM = 'ledger/0'
const TAG = 'snapshot-e3-20261202T000000Z'

async function setup (): Promise<{ service: SnapshotService, clock: ManualClock, connect: (...ids: string[]) => void, pin: (...ids: string[]) => void }> {
  const privateKey = await generateKeyPair('Ed25519')
  const self = peerIdFromPrivateKey(privateKey)
  const clock = new ManualClock()
  const holders: string[] = []
  let connected: string[] = []
  const fullNodes = new Set(['n1', 'n2', 'n3'])
  const record = { claimId: CLAIM, tag: TAG, nodeId: self.toString(), epoch: 3, takenMs: clock.now() }
  const view = Object.assign(new EventTarget(), {
    safeHolders: 2,
    snapshots: () => [record],
    snapshotHolders: () => [...holders],
    isSafeSnapshot: () => holders.length >= 2,
    node: (id: string) => fullNodes.has(id) ? { nodeId: id } : undefined
  })
  const mesh = {
    peerId: self,
    view,
    gossip: { dissemination: 'fleet' },
    credentialsFor: () => new Uint8Array(),
    libp2p: {
      services: { pubsub: {} },
      getConnections: () => connected.map(id => ({ remotePeer: { toString: () => id } }))
    }
  } as unknown as Mesh
  const service = new SnapshotService({ mesh, credentials: {} as unknown as Credentials, privateKey, dataDir: '/nonexistent', trusted: new Set(), clock })
  const changed = (): void => { view.dispatchEvent(new CustomEvent('change', { detail: { kind: 'pin', key: CLAIM } })) }
  return {
    service,
    clock,
    connect: (...ids) => { connected = ids },
    pin: (...ids) => { holders.push(...ids); changed() }
  }
}

/** Settles the promise's state without waiting: 'pending', or what it resolved to. */
async function state<T> (p: Promise<T>): Promise<T | 'pending'> {
  return await Promise.race([p, new Promise<'pending'>((resolve) => { setTimeout(() => { resolve('pending') }, 0) })])
}

describe('waitSafe', () => {
  it('gives up once no node is left that could pin the snapshot, long before its timeout', async () => {
    const { service, clock, connect } = await setup()
    connect('light-peer')
    const waiting = service.waitSafe(CLAIM, TAG, { timeoutMs: 30_000, hopelessMs: 2_000 })
    clock.advance(1_900)
    expect(await state(waiting)).toBe('pending')
    clock.advance(200)
    expect(await state(waiting)).toBe('nobody')
  })

  it('waits while two connected nodes can still pin it, and resolves when they have', async () => {
    const { service, clock, connect, pin } = await setup()
    connect('n1', 'n2')
    const waiting = service.waitSafe(CLAIM, TAG, { timeoutMs: 30_000, hopelessMs: 2_000 })
    clock.advance(10_000)
    expect(await state(waiting)).toBe('pending')
    pin('n1')
    // A holder that disconnects after pinning still counts: one pinned plus one connected is enough.
    connect('n2')
    clock.advance(10_000)
    expect(await state(waiting)).toBe('pending')
    pin('n2')
    expect(await state(waiting)).toBe('safe')
  })

  it('rides out a reconnect shorter than hopelessMs', async () => {
    const { service, clock, connect, pin } = await setup()
    connect('n1', 'n2')
    const waiting = service.waitSafe(CLAIM, TAG, { timeoutMs: 30_000, hopelessMs: 2_000 })
    connect()
    clock.advance(1_500)
    connect('n1', 'n2')
    clock.advance(5_000)
    expect(await state(waiting)).toBe('pending')
    pin('n1', 'n3')
    expect(await state(waiting)).toBe('safe')
  })

  it('still ends at its timeout when pins could come but do not', async () => {
    const { service, clock, connect } = await setup()
    connect('n1', 'n2', 'n3')
    const waiting = service.waitSafe(CLAIM, TAG, { timeoutMs: 30_000, hopelessMs: 2_000 })
    clock.advance(29_000)
    expect(await state(waiting)).toBe('pending')
    clock.advance(1_000)
    expect(await state(waiting)).toBe('timeout')
  })
})

describe('restoreRecords', () => {
  it('gives the kept records back to a real fleet view: its own signed afresh, others as signed, repinned; edited, expired and pruned ones dropped', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'cell-restore-records-'))
    try {
      const clock = new ManualClock(T_START)
      const selfKey = await generateKeyPair('Ed25519')
      const self = peerIdFromPrivateKey(selfKey)
      const otherKey = await generateKeyPair('Ed25519')
      const other = peerIdFromPrivateKey(otherKey).toString()
      const view = new FleetView({ clock })
      const published: string[] = []
      const mesh = {
        peerId: self,
        view,
        gossip: { dissemination: 'fleet' },
        credentialsFor: () => new Uint8Array(),
        libp2p: { services: { pubsub: { publish: async (topic: string) => { published.push(topic) } } }, getConnections: () => [] }
      } as unknown as Mesh
      // What the last run kept: this node's own snapshot, one it pinned, one it pinned and pruned
      // since, one edited on disk, one older than the snapshot ttl (7 days).
      const sign = async (key: typeof selfKey, over: Partial<SnapshotRecord>): Promise<Uint8Array> =>
        encodeEnvelope(await signRecord(key, 'snapshot', makeSnapshotRecord(peerIdFromPrivateKey(key).toString(), { sentMs: clock.now() - 60_000, takenMs: clock.now() - 60_000, ...over })))
      const own = await sign(selfKey, { epoch: 2, tag: 'snapshot-e2-20261202T000000Z' })
      const held = await sign(otherKey, { epoch: 3, tag: 'snapshot-e3-20261202T000000Z' })
      const pruned = await sign(otherKey, { epoch: 3, tag: 'snapshot-e3-20261202T000100Z' })
      const edited = Uint8Array.from(await sign(otherKey, { epoch: 3, tag: 'snapshot-e3-20261202T000200Z' }))
      edited[edited.length - 70] ^= 0x01
      const old = await sign(otherKey, { epoch: 1, tag: 'snapshot-e1-20261130T000000Z', sentMs: clock.now() - 8 * 24 * 3_600_000 })
      await mkdir(join(dataDir, 'snapshots'), { recursive: true })
      await writeFile(join(dataDir, 'snapshots', 'records.json'), JSON.stringify({ version: 1, records: [own, held, pruned, edited, old].map(b => Buffer.from(b).toString('base64')) }))
      const layout = OciLayout.open(layoutDirFor(dataDir, { cell: 'ledger', ordinal: 0 }))
      const manifest = await layout.putJson({}, MEDIA.manifest)
      layout.setTags(['snapshot-e2-20261202T000000Z', 'snapshot-e3-20261202T000000Z', 'snapshot-e3-20261202T000200Z', 'snapshot-e1-20261130T000000Z'].map(tag => ({ tag, descriptor: manifest })))

      const service = new SnapshotService({ mesh, credentials: { grantFor: () => undefined } as unknown as Credentials, privateKey: selfKey, dataDir, trusted: new Set(), clock })
      const repinned: string[] = []
      service.pinner.repin = async (r) => { repinned.push(r.tag) }
      await service.restoreRecords()
      await new Promise(resolve => setImmediate(resolve))

      expect(service.restored).toEqual({ own: 1, held: 1, dropped: 3 })
      const known = view.snapshots('ledger/0')
      expect(known.map(s => `${s.nodeId === other ? 'other' : 'self'} ${s.tag}`).sort()).toEqual(['other snapshot-e3-20261202T000000Z', 'self snapshot-e2-20261202T000000Z'])
      // Its own record was signed again now; the other's is the owner's, as it was.
      expect(known.find(s => s.nodeId === self.toString())?.sentMs).toBe(clock.now())
      expect(known.find(s => s.nodeId === other)?.sentMs).toBe(T_START - 60_000)
      expect(repinned).toEqual(['snapshot-e3-20261202T000000Z'])
      expect(published).toHaveLength(1)
      const kept = JSON.parse(await readFile(join(dataDir, 'snapshots', 'records.json'), 'utf8')) as { records: string[] }
      expect(kept.records).toHaveLength(2)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
