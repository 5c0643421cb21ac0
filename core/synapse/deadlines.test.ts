import { describe, expect, it } from 'vitest'
import type { Clock } from '../ports.ts'
import { DeadlineWheel } from './deadlines.ts'
import { LatencyHistogram } from './stats.ts'
import { RemoteError, UnknownMethodError, WireErrorRegistry, type WireErrorClass } from './index.ts'
import { CellError } from '../errors.ts'

function fakeClock (): Clock & { advance(ms: number): void, pending(): number } {
  let now = 1_000_000
  let timers: Array<{ at: number, fn: () => void, id: number }> = []
  let next = 1
  return {
    now: () => now,
    setTimeout: (fn, ms) => { const id = next++; timers.push({ at: now + ms, fn, id }); return id },
    clearTimeout: (id) => { timers = timers.filter(t => t.id !== id) },
    advance (ms) {
      now += ms
      const due = timers.filter(t => t.at <= now).sort((a, b) => a.at - b.at)
      timers = timers.filter(t => t.at > now)
      for (const t of due) t.fn()
    },
    pending: () => timers.length
  }
}

describe('deadline wheel', () => {
  /** An owner as the session, channel and capsid are: the key each id in flight holds. */
  function owner (granularityMs = 10): { clock: ReturnType<typeof fakeClock>, wheel: DeadlineWheel, held: Map<number, number>, expired: number[], add: (id: number, deadlineMs: number) => void, remove: (id: number) => void } {
    const clock = fakeClock()
    const held = new Map<number, number>()
    const expired: number[] = []
    const wheel = new DeadlineWheel(clock, (id, key) => {
      if (held.get(id) !== key) return
      held.delete(id)
      expired.push(id)
    }, granularityMs)
    return {
      clock,
      wheel,
      held,
      expired,
      add: (id, deadlineMs) => { held.set(id, wheel.add(id, deadlineMs)) },
      remove: (id) => { const key = held.get(id); if (key === undefined) return; held.delete(id); wheel.remove(id, key) }
    }
  }

  it('shares one timer per slot and expires each id once, within the granularity', () => {
    const o = owner()
    const t0 = o.clock.now()
    for (let i = 0; i < 100; i++) o.add(i, t0 + 101 + (i % 5))
    expect(o.clock.pending()).toBe(1)
    o.remove(7)
    o.clock.advance(99)
    expect(o.expired).toEqual([])
    o.clock.advance(11)
    expect(o.expired).toHaveLength(99)
    expect(o.expired).not.toContain(7)
    expect(o.wheel.size).toBe(0)
  })

  it('clears a slot timer when its last id is removed', () => {
    const clock = fakeClock()
    const wheel = new DeadlineWheel(clock, () => { throw new Error('must not fire') }, 10)
    const key = wheel.add(1, clock.now() + 50)
    wheel.remove(1, key)
    expect(clock.pending()).toBe(0)
    clock.advance(100)
  })

  it('reuses an emptied slot, batch after batch, with a fresh timer and none of the earlier ids', () => {
    const o = owner()
    const t0 = o.clock.now()
    for (let batch = 0; batch < 5; batch++) {
      for (let i = 0; i < 64; i++) o.add(batch * 64 + i, t0 + 1_000)
      expect(o.clock.pending()).toBe(1)
      for (let i = 0; i < 64; i++) o.remove(batch * 64 + i)
      expect(o.clock.pending()).toBe(0)
      expect(o.wheel.size).toBe(0)
    }
    // A slot armed again after reuse expires only what it holds now.
    o.add(1_000, t0 + 1_000)
    o.add(1_001, t0 + 2_000)
    o.clock.advance(1_000)
    expect(o.expired).toEqual([1_000])
    o.clock.advance(1_000)
    expect(o.expired).toEqual([1_000, 1_001])
    expect(o.wheel.size).toBe(0)
  })

  it('tells the key with each id: an id that ended and came back with another deadline is not expired by the old slot', () => {
    const o = owner()
    const t0 = o.clock.now()
    o.add(1, t0 + 100)
    o.add(2, t0 + 100)
    o.remove(1)
    // Id 1 again (a client may reuse ids once they ended), with a later deadline.
    o.add(1, t0 + 500)
    o.clock.advance(110)
    expect(o.expired).toEqual([2])
    o.clock.advance(400)
    expect(o.expired).toEqual([2, 1])
    // The same id reused within the same slot is expired once.
    o.add(3, t0 + 800)
    o.remove(3)
    o.add(3, t0 + 800)
    o.add(4, t0 + 800)
    o.clock.advance(300)
    expect(o.expired).toEqual([2, 1, 3, 4])
  })
})

describe('latency histogram', () => {
  it('reports bucket upper bounds for quantiles', () => {
    const h = new LatencyHistogram()
    for (let i = 0; i < 98; i++) h.record(0.3)
    h.record(40)
    h.record(40)
    expect(h.quantile(0.5)).toBe(0.5)
    expect(h.quantile(0.99)).toBe(50)
    expect(new LatencyHistogram().quantile(0.99)).toBe(0)
  })
})

describe('wire error registry', () => {
  class LedgerLockedError extends CellError { static override readonly errorName = 'LedgerLockedError' }
  class NeedsMoreArgsError extends CellError {
    static override readonly errorName = 'NeedsMoreArgsError'
    constructor (message: string, detail: { code: number }) { super(`${message} (${detail.code})`) }
  }

  it('rebuilds registered classes by name and keeps the peer message', () => {
    const r = new WireErrorRegistry([UnknownMethodError])
    r.register(LedgerLockedError)
    const err = r.fromWire('LedgerLockedError', 'ledger 7 is locked')
    expect(err).toBeInstanceOf(LedgerLockedError)
    expect(err.message).toBe('ledger 7 is locked')
    expect(r.toWire(err)).toEqual({ name: 'LedgerLockedError', message: 'ledger 7 is locked' })
  })

  it('falls back to RemoteError for unknown names and unbuildable classes', () => {
    const r = new WireErrorRegistry()
    r.register(NeedsMoreArgsError as unknown as WireErrorClass)
    const unknown = r.fromWire('MysteryError', 'what')
    expect(unknown).toBeInstanceOf(RemoteError)
    expect((unknown as RemoteError).remoteName).toBe('MysteryError')
    expect(r.toWire(unknown).name).toBe('MysteryError')
    const unbuildable = r.fromWire('NeedsMoreArgsError', 'x')
    expect(unbuildable).toBeInstanceOf(RemoteError)
  })
})
