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
  it('shares one timer per slot and expires each id once, within the granularity', () => {
    const clock = fakeClock()
    const expired: number[] = []
    const wheel = new DeadlineWheel(clock, (id) => expired.push(id), 10)
    const t0 = clock.now()
    const keys = Array.from({ length: 100 }, (_, i) => wheel.add(i, t0 + 101 + (i % 5)))
    expect(clock.pending()).toBe(1)
    wheel.remove(7, keys[7])
    clock.advance(99)
    expect(expired).toEqual([])
    clock.advance(11)
    expect(expired).toHaveLength(99)
    expect(expired).not.toContain(7)
    expect(wheel.size).toBe(0)
  })

  it('clears a slot timer when its last id is removed', () => {
    const clock = fakeClock()
    const wheel = new DeadlineWheel(clock, () => { throw new Error('must not fire') }, 10)
    const key = wheel.add(1, clock.now() + 50)
    wheel.remove(1, key)
    expect(clock.pending()).toBe(0)
    clock.advance(100)
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
