// waitSafe: how long a node closing a claim waits for two other nodes to pin its final snapshot.
// It waits while pins can still come (holders so far plus connected full nodes reach two) and gives
// up once they cannot for `hopelessMs`, long before its timeout: the last node of a fleet being
// stopped. The mesh is a stand-in here (a view of the few methods waitSafe reads, a connection
// list this test sets); stateful-handover.test.ts runs it on real nodes.
import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ManualClock } from '../../core/testing/manual-clock.ts'
import { SnapshotService } from './snapshot-port.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import type { Credentials } from '../../core/identity/index.ts'

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
    expect(await state(waiting)).toBe(false)
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
    expect(await state(waiting)).toBe(true)
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
    expect(await state(waiting)).toBe(true)
  })

  it('still ends at its timeout when pins could come but do not', async () => {
    const { service, clock, connect } = await setup()
    connect('n1', 'n2', 'n3')
    const waiting = service.waitSafe(CLAIM, TAG, { timeoutMs: 30_000, hopelessMs: 2_000 })
    clock.advance(29_000)
    expect(await state(waiting)).toBe('pending')
    clock.advance(1_000)
    expect(await state(waiting)).toBe(false)
  })
})
