// The clocks of the claim register. Only durations on one node's own clock are ever compared, so
// offsets between nodes do not matter; what must hold is that the owner never under-counts the
// time since it sent a renew, and a voter never over-counts the time since it accepted one.
//
// A monotonic clock alone (performance.now(), CLOCK_MONOTONIC on Linux) stands still while the
// machine is suspended, so an owner on a laptop that slept for a minute would wake up believing its
// lease still runs. The wall clock counts the sleep but may be stepped by NTP. So:
//   - the owner counts the LARGER of the two elapsed times (a suspend or a forward step ends its
//     lease early: safe);
//   - a voter counts the SMALLER (a backward step or a suspend of its own makes it wait longer: safe).
// Both are non-decreasing.
import { systemClock, type Clock } from '../ports.ts'

/** Milliseconds that only move forward; only differences are meaningful. */
export interface MonotonicClock { nowMs: () => number }

/** performance.now(): monotonic, but not counting a system suspend. */
export const performanceClock: MonotonicClock = { nowMs: () => performance.now() }

function combined (pick: (a: number, b: number) => number, wall: Pick<Clock, 'now'>, mono: MonotonicClock): MonotonicClock {
  const wall0 = wall.now()
  const mono0 = mono.nowMs()
  let last = 0
  return {
    nowMs: () => {
      last = Math.max(last, pick(mono.nowMs() - mono0, wall.now() - wall0))
      return last
    }
  }
}

/** The clock an owner counts its lease on: the larger of monotonic and wall-clock elapsed time. */
export function ownerClock (wall: Pick<Clock, 'now'> = systemClock, mono: MonotonicClock = performanceClock): MonotonicClock {
  return combined(Math.max, wall, mono)
}

/** The clock a voter counts leases on: the smaller of monotonic and wall-clock elapsed time. */
export function voterClock (wall: Pick<Clock, 'now'> = systemClock, mono: MonotonicClock = performanceClock): MonotonicClock {
  return combined(Math.min, wall, mono)
}
