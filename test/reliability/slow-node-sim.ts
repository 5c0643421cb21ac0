// SLOW-NODE in simulation: the fleet view's own liveness decision (core/fleet FleetView: a node is
// gone when its last record was received more than nodeTtlMs ago, swept by `expire` on every
// heartbeat tick, as FleetGossip does) under simulated time. A victim heartbeats every HEARTBEAT_MS
// (real signed node records, real FleetView.apply), each record reaching the observer after a
// random gossip delay or lost; the observer sweeps on its own tick with a random phase. The victim
// is paused (a SIGSTOP: it sends nothing, then its overdue heartbeat fires at once on resume) or
// killed (sends nothing ever again). Measured: false deaths (the victim expired while only paused)
// and the time from a kill to the observer's expiry of the victim.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { FleetView, type FleetChange } from '../../core/fleet/view.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { ManualClock, makeNodeRecord } from '../../core/fleet/testing.ts'
import { SeededRandom } from '../sim/prng.ts'

export const HEARTBEAT_MS = 1_000
/** Gossip delay of one record, ms (uniform), and the chance a record is lost. */
export const DELAY_MS: readonly [number, number] = [20, 250]
export const LOSS = 0.05
const STEP_MS = 5

export interface SlowNodeRun {
  /** Pauses of the victim: [start, length] ms after the run began; with `killAtMs` it dies then. */
  pauses: Array<[number, number]>
  killAtMs?: number
  durationMs: number
}

export interface SlowNodeOutcome {
  /** Times the observer expired the victim while it was alive (paused or not). */
  falseDeaths: number
  /** ms from the kill to the observer's expiry of the victim (undefined: no kill, or not noticed). */
  detectMs?: number
}

let victimKey: PrivateKey | undefined

export async function simulateSlowNode (seed: number, run: SlowNodeRun): Promise<SlowNodeOutcome> {
  victimKey ??= await generateKeyPair('Ed25519')
  const key = victimKey
  const victim = peerIdFromPrivateKey(key).toString()
  const rng = new SeededRandom(seed)
  const clock = new ManualClock(1_700_000_000_000 + seed)
  const view = new FleetView({ clock, heartbeatMs: HEARTBEAT_MS })
  const start = clock.now()
  const pending = new Set<Promise<unknown>>()
  let seq = 0
  let dead = false
  let falseDeaths = 0
  let detectMs: number | undefined
  const killAt = run.killAtMs !== undefined ? start + run.killAtMs : Infinity
  view.addEventListener('change', (e) => {
    const c = (e as CustomEvent<FleetChange>).detail
    if (c.kind !== 'node' || c.op !== 'expire' || c.nodeId !== victim) return
    if (clock.now() >= killAt) detectMs ??= clock.now() - killAt
    else falseDeaths++
  })
  const paused = (t: number): boolean => run.pauses.some(([at, len]) => t >= start + at && t < start + at + len)
  const resumeOf = (t: number): number => {
    for (const [at, len] of run.pauses) if (t >= start + at && t < start + at + len) return start + at + len
    return t
  }
  const heartbeat = (): void => {
    if (dead || clock.now() >= killAt) { dead = true; return }
    if (paused(clock.now())) {
      // A stopped process runs no timer: its overdue heartbeat fires the moment it resumes.
      clock.setTimeout(heartbeat, resumeOf(clock.now()) - clock.now())
      return
    }
    const sentMs = clock.now()
    seq++
    const p = signRecord(key, 'node', makeNodeRecord(victim, { seq, sentMs, startedMs: start })).then((env) => {
      if (rng.next() < LOSS) return
      clock.setTimeout(() => {
        const applied = view.apply(env, { from: victim })
        pending.add(applied)
        void applied.finally(() => pending.delete(applied))
      }, Math.round(rng.between(DELAY_MS[0], DELAY_MS[1])))
    })
    pending.add(p)
    void p.finally(() => pending.delete(p))
    clock.setTimeout(heartbeat, HEARTBEAT_MS)
  }
  const sweep = (): void => {
    view.expire(clock.now())
    clock.setTimeout(sweep, HEARTBEAT_MS)
  }
  clock.setTimeout(heartbeat, Math.round(rng.between(0, HEARTBEAT_MS)))
  clock.setTimeout(sweep, Math.round(rng.between(0, HEARTBEAT_MS)))
  for (let t = 0; t < run.durationMs; t += STEP_MS) {
    clock.advance(STEP_MS)
    while (pending.size > 0) await Promise.all([...pending])
    if (detectMs !== undefined) break
  }
  return { falseDeaths, ...(detectMs !== undefined ? { detectMs } : {}) }
}

/** p-th percentile (0..100) of `values` by nearest rank. */
export function percentile (values: readonly number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}
