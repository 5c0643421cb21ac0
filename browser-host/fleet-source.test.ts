import { describe, expect, it } from 'vitest'
import { LightPeerSource, type LightPeerLike } from './fleet-source.ts'
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

function fakePeer () {
  const state = { stale: true, cachedNodes: 0, fullNodes: [] as string[], calls: [] as unknown[] }
  const target = new EventTarget()
  const view = new EventTarget()
  const peer = Object.assign(target, {
    peerId: '12D3KooWtab',
    mesh: { view },
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
})
