import { describe, expect, it } from 'vitest'
import { LightPeerSource, MAX_LISTED_MISMATCHES, type LightPeerLike } from './fleet-source.ts'
import { DisseminationMismatchError } from '../core/fleet/errors.ts'
import type { MismatchPeer } from '../core/fleet/dissemination-watch.ts'
import type { FleetSummary } from './fleet-cache.ts'
import type { Clock } from '../core/ports.ts'

class FakeClock implements Clock {
  t = 0
  timers = new Map<number, { at: number, fn: () => void }>()
  private next = 1
  now (): number { return this.t }
  setTimeout (fn: () => void, ms: number): unknown { const id = this.next++; this.timers.set(id, { at: this.t + ms, fn }); return id }
  clearTimeout (h: unknown): void { this.timers.delete(h as number) }
  advance (ms: number): void {
    this.t += ms
    for (const [id, timer] of [...this.timers]) if (timer.at <= this.t) { this.timers.delete(id); timer.fn() }
  }
}

/** The tab's FleetGossip as the warnings read it: its mode, the watch's peers, its events. */
class FakeGossip extends EventTarget {
  readonly dissemination = 'fleet' as const
  peers: MismatchPeer[] = []
  mismatches (): MismatchPeer[] { return this.peers.map(p => ({ ...p })) }
  /** A heartbeat of the real gossip: the watch re-read the subscribers, reported new peers, then 'heartbeat'. */
  heartbeat (peerIds: string[], report: string[] = peerIds.filter(id => !this.peers.some(p => p.peerId === id))): void {
    this.peers = peerIds.map(peerId => ({ peerId, theirs: 'per-cell', sinceMs: 0, reported: report.includes(peerId) || this.peers.some(p => p.peerId === peerId) }))
    for (const id of report) this.dispatchEvent(new CustomEvent('dissemination-mismatch', { detail: new DisseminationMismatchError(id, 'per-cell', 'fleet') }))
    this.dispatchEvent(new CustomEvent('heartbeat', { detail: { ok: true, tick: 1 } }))
  }
}

const HINT = 'This tab\'s mode comes from its page: set "dissemination": "per-cell" in cell-config.json, or add ?dissemination=per-cell to the link, if that is the fleet\'s mode.'

function fakePeer (gossip?: FakeGossip) {
  const state = { stale: true, cachedNodes: 0, fullNodes: [] as string[], calls: [] as unknown[] }
  const target = new EventTarget()
  const view = new EventTarget()
  const peer = Object.assign(target, {
    peerId: '12D3KooWtab',
    mesh: { view, ...(gossip !== undefined ? { gossip } : {}) },
    fleet: (): FleetSummary => ({ stale: state.stale, asOfMs: 0, nodes: Array.from({ length: state.cachedNodes }, () => ({}) as any), instances: [], cells: [] }),
    fullNodes: () => state.fullNodes,
    call: async (cell: string, method: string, request: unknown, options?: unknown) => { state.calls.push([cell, method, request, options]); return { ok: cell } }
  }) as unknown as LightPeerLike & EventTarget
  return { peer, state, view }
}

describe('LightPeerSource', () => {
  it('goes connecting → live on the first live record, stale when no full node is connected, live again', () => {
    const clock = new FakeClock()
    const { peer, state, view } = fakePeer()
    const source = new LightPeerSource(peer, { clock, checkMs: 500 })
    const seen: string[] = []
    source.addEventListener('status', () => seen.push(source.status))
    expect(source.view).toBe(view)
    expect(source.peerId).toBe('12D3KooWtab')
    expect(source.status).toBe('connecting')

    state.stale = false
    state.fullNodes = ['n1']
    peer.dispatchEvent(new Event('fleet'))
    expect(source.status).toBe('live')

    state.fullNodes = [] // the connection dropped: no fleet event, the periodic check notices
    clock.advance(500)
    expect(source.status).toBe('stale')
    expect(source.statusReason).toMatch(/no full node/)

    state.fullNodes = ['n2']
    peer.dispatchEvent(new Event('reconnect'))
    expect(source.status).toBe('live')
    expect(seen).toEqual(['live', 'stale', 'live'])
    source.close()
    expect(clock.timers.size).toBe(0)
  })

  it('is stale while showing a cached fleet, error once failed, and calls through the peer', async () => {
    const clock = new FakeClock()
    const { peer, state } = fakePeer()
    state.cachedNodes = 2
    const source = new LightPeerSource(peer, { clock })
    expect(source.status).toBe('stale')
    expect(source.statusReason).toMatch(/previous visit/)
    expect(await source.call('billing', 'charge', { amount: 1 }, { timeoutMs: 900 })).toEqual({ ok: 'billing' })
    expect(state.calls).toEqual([['billing', 'charge', { amount: 1 }, { signal: undefined, timeoutMs: 900 }]])
    source.fail(Object.assign(new Error('x'), { name: 'NoBootstrapError' }))
    expect(source.status).toBe('error')
    expect(source.statusReason).toContain('NoBootstrapError')
    state.stale = false
    state.fullNodes = ['n1']
    clock.advance(5_000)
    expect(source.status).toBe('error') // a failed peer stays failed
    source.close()
  })

  it('warns of connected full nodes of the other dissemination mode, bounded, and clears when they leave', () => {
    const clock = new FakeClock()
    const gossip = new FakeGossip()
    const { peer } = fakePeer(gossip)
    const source = new LightPeerSource(peer, { clock })
    let events = 0
    source.addEventListener('warnings', () => { events++ })
    expect(source.warnings()).toEqual([])

    const a = '12D3KooWnodeAAAAAA'
    gossip.heartbeat([a])
    expect(source.warnings()).toEqual([new DisseminationMismatchError(a, 'per-cell', 'fleet', { self: 'this tab' }).message, HINT])
    expect(source.warnings()[0]).toMatch(/node …AAAAAA disseminates per cell, this tab per fleet: .*same --dissemination/)
    expect(events).toBe(1)
    gossip.heartbeat([a]) // nothing changed: no event
    clock.advance(5_000)
    expect(events).toBe(1)

    // Many at once: the first three in words, the rest counted; a peer not reported yet (the
    // gossip's report budget) is shown with the same words its report will carry.
    const ids = Array.from({ length: 7 }, (_, i) => `12D3KooWnode${i}${i}${i}${i}${i}${i}`)
    gossip.heartbeat([a, ...ids], ids.slice(0, 1))
    const shown = source.warnings()
    expect(shown).toHaveLength(MAX_LISTED_MISMATCHES + 2)
    expect(shown[1]).toContain('…000000')
    expect(shown[2]).toContain('…111111')
    expect(shown[3]).toBe('and 5 more connected nodes of the other dissemination mode')
    expect(shown[4]).toBe(HINT)

    // They leave (unsubscribed or disconnected): the next heartbeat clears the warning.
    gossip.heartbeat([ids[6]], [])
    expect(source.warnings()).toEqual([new DisseminationMismatchError(ids[6], 'per-cell', 'fleet', { self: 'this tab' }).message, HINT])
    gossip.heartbeat([])
    expect(source.warnings()).toEqual([])
    expect(events).toBe(4)

    source.close()
    gossip.heartbeat([a])
    expect(source.warnings()).toEqual([])
  })

  it('has no warnings without a gossip to read', () => {
    const source = new LightPeerSource(fakePeer().peer, { clock: new FakeClock() })
    expect(source.warnings()).toEqual([])
    source.close()
  })
})
