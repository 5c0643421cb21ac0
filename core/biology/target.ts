// Which release a cell should run: the "target". Rollback and roll-forward are the same thing here:
// the target changes, and the rollout logic displaces whatever else runs.
//
// Rule: the highest-seq desired-version record wins, unless a release was published after it
// (a higher seq), in which case the newest such release wins - publishing after a rollback rolls
// forward again. Without a desired record the newest release (semver, then seq) wins. A halted
// target falls back to the newest non-halted release older than it in that order ("the previous
// release"; the same version published earlier as another artifact counts).

import { compareVersions } from '../manifest/version.ts'
import type { DesiredVersionRecord, HaltRecord, ReleaseRecord, ReleaseRef, RetireRecord } from './types.ts'

export interface TargetRelease extends ReleaseRef {
  seq: number
  /** Authority that signed the release; undefined when only a desired record names it so far. */
  authority?: string
}

/** Semver order that never throws on a malformed gossiped version: those sort lowest. */
export function compareReleaseVersions (a: string, b: string): number {
  let x: number | undefined
  try {
    x = compareVersions(a, b)
  } catch {
    x = undefined
  }
  if (x !== undefined) return x
  const okA = safeValid(a)
  const okB = safeValid(b)
  if (okA !== okB) return okA ? 1 : -1
  return a < b ? -1 : a > b ? 1 : 0
}

function safeValid (v: string): boolean {
  try {
    compareVersions(v, v)
    return true
  } catch {
    return false
  }
}

function newer (a: ReleaseRecord, b: ReleaseRecord): boolean {
  const c = compareReleaseVersions(a.version, b.version)
  return c > 0 || (c === 0 && a.seq > b.seq)
}

export function newestRelease (releases: readonly ReleaseRecord[]): ReleaseRecord | undefined {
  let best: ReleaseRecord | undefined
  for (const r of releases) if (best === undefined || newer(r, best)) best = r
  return best
}

export interface MergedDesired {
  record?: DesiredVersionRecord
  /** Records seen in the view with a lower seq than the one kept: replays, ignored. */
  ignored: DesiredVersionRecord[]
}

/** Keep the highest-seq desired record of `cell` among what the node knew and what the view holds. */
export function mergeDesired (cell: string, known: DesiredVersionRecord | undefined, records: readonly DesiredVersionRecord[]): MergedDesired {
  let record = known
  const ignored: DesiredVersionRecord[] = []
  for (const r of records) {
    if (r.cell !== cell) continue
    if (record === undefined || r.seq > record.seq) {
      record = r
    } else if (r.seq < record.seq) {
      ignored.push(r)
    }
  }
  return { record, ignored }
}

/** What `haltRecordsOf` reads of a node record: its id and the halts it gossips. */
export interface HaltsHolder { nodeId: string, halts?: readonly Omit<HaltRecord, 'nodeId'>[] }

/** The halts of `cell` that `nodes` gossip, each marked with the node that decided it. */
export function haltRecordsOf (nodes: Iterable<HaltsHolder>, cell: string): HaltRecord[] {
  const out: HaltRecord[] = []
  for (const n of nodes) for (const h of n.halts ?? []) if (h.cell === cell) out.push({ ...h, nodeId: n.nodeId })
  return out
}

export interface TargetInput {
  cell: string
  releases: readonly ReleaseRecord[]
  desired?: DesiredVersionRecord
  halts: readonly HaltRecord[]
}

export interface TargetResult {
  target?: TargetRelease
  reason: string
  /** The release the rules chose first, when it is halted and `target` is the fallback (or nothing is left). */
  halted?: TargetRelease
}

export function resolveTarget (input: TargetInput): TargetResult {
  const releases = input.releases.filter(r => r.cell === input.cell)
  const halted = new Set(input.halts.filter(h => h.cell === input.cell).map(h => h.digest))
  const byDigest = new Map(releases.map(r => [r.digest, r]))
  const withAuthority = (ref: ReleaseRef & { seq: number }): TargetRelease =>
    ({ cell: ref.cell, version: ref.version, digest: ref.digest, seq: ref.seq, authority: byDigest.get(ref.digest)?.authority })

  let candidate: TargetRelease | undefined
  let why: string
  const d = input.desired
  const later = d === undefined ? releases : releases.filter(r => r.seq > d.seq)
  if (d !== undefined && later.length === 0) {
    candidate = withAuthority(d)
    why = `desired record seq ${d.seq}`
  } else {
    const n = newestRelease(later)
    candidate = n === undefined ? undefined : withAuthority(n)
    why = d === undefined ? 'newest release' : `release published after desired record seq ${d.seq}`
  }
  if (candidate === undefined) return { reason: `no release of ${input.cell} known` }
  if (!halted.has(candidate.digest)) return { target: candidate, reason: `target ${candidate.version} (${why})` }

  const haltedVersion = candidate.version
  // Older in the same order that chose it (semver, then seq): the same version published earlier
  // as another artifact is "the previous release" when it ran before this one replaced it.
  const chosen = candidate
  const older = (r: ReleaseRecord): boolean => {
    const c = compareReleaseVersions(r.version, haltedVersion)
    return c < 0 || (c === 0 && r.seq < chosen.seq)
  }
  const previous = newestRelease(releases.filter(r => !halted.has(r.digest) && older(r)))
  if (previous === undefined) return { reason: `target ${haltedVersion} is halted and no earlier release is known`, halted: candidate }
  // The same version on both sides: the artifacts tell them apart.
  const [was, now] = previous.version === haltedVersion ? [` (${candidate.digest.slice(0, 12)}…)`, ` (${previous.digest.slice(0, 12)}…)`] : ['', '']
  return { target: withAuthority(previous), reason: `target ${previous.version}${now}: ${haltedVersion}${was} is halted, back to the previous release`, halted: candidate }
}

/**
 * The retire record in force for `cell`: the highest-seq one, when no release or desired record has
 * a higher seq (publish and rollback sign at or above the clock, so a later one brings the cell
 * back, and a replayed older retire record cannot stop it again).
 */
export function retiredBy (cell: string, retired: readonly RetireRecord[] | undefined, releases: readonly ReleaseRecord[], desired: DesiredVersionRecord | undefined): RetireRecord | undefined {
  let best: RetireRecord | undefined
  for (const r of retired ?? []) if (r.cell === cell && (best === undefined || r.seq > best.seq)) best = r
  if (best === undefined) return undefined
  let latest = desired?.cell === cell ? desired.seq : 0
  for (const r of releases) if (r.cell === cell && r.seq > latest) latest = r.seq
  return best.seq > latest ? best : undefined
}
