import { describe, expect, it } from 'vitest'
import { MAX_TIMER_MS, Repeater } from './ports.ts'
import { ManualClock } from './testing/manual-clock.ts'

const turns = async (n = 5): Promise<void> => { for (let i = 0; i < n; i++) await Promise.resolve() }

describe('Repeater', () => {
  it('runs its work every period from start to stop, one run at a time, through failures', async () => {
    const clock = new ManualClock(0)
    const runs: number[] = []
    const errors: unknown[] = []
    let release: (() => void) | undefined
    const r = new Repeater({
      clock,
      everyMs: 1000,
      work: async () => {
        runs.push(clock.now())
        if (runs.length === 2) throw new Error('boom')
        if (runs.length === 3) await new Promise<void>(resolve => { release = resolve })
      },
      onError: (err) => { errors.push(err) }
    })
    r.start()
    r.start()
    clock.advance(999); await turns()
    expect(runs).toEqual([])
    clock.advance(1); await turns()
    clock.advance(1000); await turns()
    expect(runs).toEqual([1000, 2000])
    expect(errors).toHaveLength(1)
    // The third run hangs: no fourth starts beside it, however long it takes.
    clock.advance(1000); await turns()
    clock.advance(5000); await turns()
    expect(runs).toEqual([1000, 2000, 3000])
    release?.(); await turns()
    clock.advance(1000); await turns()
    expect(runs).toEqual([1000, 2000, 3000, 9000])
    r.stop()
    expect(r.running).toBe(false)
    clock.advance(10_000); await turns()
    expect(runs).toHaveLength(4)
  })

  it('waits at most MAX_TIMER_MS: a longer period would make a JS timer fire at once, in a loop', async () => {
    const clock = new ManualClock(0)
    const runs: number[] = []
    const r = new Repeater({ clock, everyMs: 100 * 86_400_000, work: async () => { runs.push(clock.now()) }, onError: () => {} })
    r.start()
    clock.advance(MAX_TIMER_MS - 1); await turns()
    expect(runs).toEqual([])
    clock.advance(1); await turns()
    expect(runs).toEqual([MAX_TIMER_MS])
    r.stop()
  })
})
