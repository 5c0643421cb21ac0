// PeerKeeper against an in-memory libp2p double and a manual clock: which peers it dials, how it
// backs off, when it announces joins and leaves, and that kept peers are tagged KEEP_ALIVE.
// The real thing (five `cell up` processes, connections killed with `ss -K`) is
// test/integration/fleet-stays-whole.test.ts. Before the keeper existed nothing re-dialed a lost
// full node at all (the browser Reconnector kept one peer, tabs only), so the re-dial cases fail there.
import { describe, it, expect } from 'vitest'
import { ManualClock } from '../testing/manual-clock.ts'
import { PeerKeeper, KEEP_TAG, keepTarget, peerIdOfAddr, type KeeperLibp2p } from './peer-keeper.ts'

const ids = ['12D3KooWAaaa', '12D3KooWBbbb', '12D3KooWCccc', '12D3KooWDddd']
const addr = (id: string): string => `/ip4/127.0.0.1/tcp/1/p2p/${id}`

class FakeLibp2p extends EventTarget {
  readonly peerId = { toString: () => 'self' }
  readonly open = new Set<string>()
  readonly down = new Set<string>()
  readonly dials: string[] = []
  readonly tags = new Map<string, unknown>()
  readonly peerStore = {
    merge: async (peerId: { toString: () => string }, data: { tags: Record<string, unknown> }) => { this.tags.set(peerId.toString(), data.tags) }
  }

  getConnections (): any[] {
    return [...this.open].map(id => ({ remotePeer: { toString: () => id }, status: 'open', limits: undefined }))
  }

  async dial (ma: { toString: () => string }): Promise<any> {
    const id = peerIdOfAddr(ma.toString())!
    this.dials.push(id)
    if (this.down.has(id)) throw new Error('connection refused')
    this.connect(id)
    return { remotePeer: { toString: () => id } }
  }

  connect (id: string): void {
    this.open.add(id)
    this.dispatchEvent(new CustomEvent('peer:connect', { detail: id }))
  }

  drop (id: string): void {
    this.open.delete(id)
    this.dispatchEvent(new CustomEvent('peer:disconnect', { detail: id }))
  }
}

const random = { next: () => 0.5, bytes: (n: number) => new Uint8Array(n) }
const settle = async (): Promise<void> => { for (let i = 0; i < 10; i++) await Promise.resolve() }

function keeper (fake: FakeLibp2p, clock: ManualClock, keep: number, candidates = ids): { k: PeerKeeper, events: string[] } {
  const k = new PeerKeeper({ libp2p: fake as unknown as KeeperLibp2p, clock, random, keep, checkMs: 5_000, minBackoffMs: 250, maxBackoffMs: 4_000, candidates: () => candidates.map(addr), isFleetPeer: (id) => ids.includes(id) })
  const events: string[] = []
  k.addEventListener('join', (e) => events.push(`+${(e as CustomEvent).detail.peerId as string}`))
  k.addEventListener('leave', (e) => events.push(`-${(e as CustomEvent).detail.peerId as string}`))
  return { k, events }
}

describe('PeerKeeper', () => {
  it('aims for min(keep, known fleet peers)', () => {
    expect(keepTarget(8, 4)).toBe(4)
    expect(keepTarget(8, 20)).toBe(8)
    expect(keepTarget(1, 0)).toBe(0)
    expect(peerIdOfAddr('/ip4/1.2.3.4/tcp/5/p2p/12D3KooWX')).toBe('12D3KooWX')
    expect(peerIdOfAddr('/ip4/1.2.3.4/tcp/5')).toBeUndefined()
  })

  it('dials up to its target, tags kept peers, re-dials a lost one, and backs off a dead one', async () => {
    const clock = new ManualClock()
    const fake = new FakeLibp2p()
    fake.down.add(ids[2])
    const { k, events } = keeper(fake, clock, 3)
    k.start()
    clock.advance(0)
    await settle()
    // Three wanted: A and B connect, C is down.
    expect(new Set(fake.dials)).toEqual(new Set(ids.slice(0, 3)))
    expect(k.connectedFleetPeers().sort()).toEqual([ids[0], ids[1]])
    expect(events.sort()).toEqual([`+${ids[0]}`, `+${ids[1]}`])
    expect(fake.tags.get(ids[0])).toEqual({ [KEEP_TAG]: { value: 100 } })
    // Next round dials D (untried) at once, not C (backing off).
    fake.dials.length = 0
    clock.advance(250)
    await settle()
    expect(fake.dials).toEqual([ids[3]])
    expect(k.connectedFleetPeers()).toHaveLength(3)

    // A drops: it is announced and re-dialed at once.
    fake.dials.length = 0
    fake.drop(ids[0])
    expect(events).toContain(`-${ids[0]}`)
    clock.advance(0)
    await settle()
    expect(fake.dials).toEqual([ids[0]])
    expect(k.connectedFleetPeers()).toHaveLength(3)
    k.stop()
    expect(clock.pending).toBe(0)
  })

  it('a peer that connects before it counts as a fleet peer is announced on refresh', () => {
    const clock = new ManualClock()
    const fake = new FakeLibp2p()
    let known = false
    const k = new PeerKeeper({ libp2p: fake as unknown as KeeperLibp2p, clock, random, keep: 0, candidates: () => [], isFleetPeer: () => known })
    const joins: string[] = []
    k.addEventListener('join', (e) => joins.push((e as CustomEvent).detail.peerId))
    k.start()
    fake.connect('12D3KooWNew')
    expect(joins).toEqual([])
    known = true
    k.refresh()
    expect(joins).toEqual(['12D3KooWNew'])
    k.stop()
  })

  it('peers found together are counted one by one (cell up printed "2 fleet peers" for both)', () => {
    const clock = new ManualClock()
    const fake = new FakeLibp2p()
    let known = false
    const k = new PeerKeeper({ libp2p: fake as unknown as KeeperLibp2p, clock, random, keep: 0, candidates: () => [], isFleetPeer: () => known })
    const said: string[] = []
    k.addEventListener('join', (e) => said.push(`+${String((e as CustomEvent).detail.connected)}`))
    k.addEventListener('leave', (e) => said.push(`-${String((e as CustomEvent).detail.connected)}`))
    k.start()
    fake.connect(ids[0])
    fake.connect(ids[1])
    fake.connect(ids[2])
    known = true
    k.refresh()
    expect(said).toEqual(['+1', '+2', '+3'])
    // One leaves while another joins: the leave counts the ones still there, the join the ones after.
    said.length = 0
    fake.open.delete(ids[0])
    fake.connect(ids[3])
    k.refresh()
    expect(said).toEqual(['-2', '+3'])
    k.stop()
  })
})

describe('PeerKeeper topic groups (per-cell dissemination)', () => {
  it('besides keep, stays connected to topicDials followers of each followed cell (all of a smaller group)', async () => {
    const clock = new ManualClock()
    const fake = new FakeLibp2p()
    const many = Array.from({ length: 10 }, (_, i) => `12D3KooWT${i}`)
    const groups = [many.slice(0, 6), many.slice(6, 8)]
    const k = new PeerKeeper({
      libp2p: fake as unknown as KeeperLibp2p, clock, random, keep: 1, checkMs: 5_000, candidates: () => [addr(ids[0])], isFleetPeer: () => true,
      topicGroups: () => groups.map(g => g.map(addr)), topicDials: 4
    })
    k.start()
    clock.advance(0)
    await settle()
    // keep 1 (A), 4 of the first cell's 6 followers, both of the second cell's 2.
    expect(new Set(fake.dials)).toEqual(new Set([ids[0], ...many.slice(0, 4), ...many.slice(6, 8)]))
    // One of them drops: the next round dials another follower of that cell.
    fake.dials.length = 0
    fake.drop(many[1])
    clock.advance(5_000)
    await settle()
    expect(fake.dials).toHaveLength(1)
    expect(many.slice(0, 6)).toContain(fake.dials[0])
    expect(groups[0].filter(id => fake.open.has(id))).toHaveLength(4)
    // Nothing missing: a round dials nothing.
    fake.dials.length = 0
    clock.advance(5_000)
    await settle()
    expect(fake.dials).toEqual([])
    k.stop()
    expect(clock.pending).toBe(0)
  })
})
