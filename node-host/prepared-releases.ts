// What a full node reports in its node record about the releases it was asked to run: for the newest
// release and desired record of each trusted cell, whether it is prepared (fetched, verified and
// unpacked), still preparing, or failed and why. `cell publish` and `cell rollback` read it.
import { LIMITS, type FleetView, type NodePrepared, type ReleaseFields } from '../core/fleet/index.ts'

export interface PreparedSources {
  view: Pick<FleetView, 'cells' | 'release' | 'desired'>
  /** Authorities this node hosts for: other records are not its business. */
  trusted: ReadonlySet<string>
  isPrepared: (cell: string, digest: string) => boolean
  /** The last failure to prepare `digest` ("Name: message") and how many attempts failed, while it waits to retry. */
  failure: (digest: string) => { error: string, failures: number } | undefined
}

/**
 * Attempts that must fail before a release counts as `failed`: the first fetch often races the
 * publisher's provide (or asks a peer that is itself still fetching), and the retry a second later
 * succeeds. Until then it is `preparing`, with the last error as the reason.
 */
export const FAILED_AFTER_ATTEMPTS = 3

/** At most LIMITS.prepared entries, newest seq first, one per digest. */
export function preparedReleases (src: PreparedSources): NodePrepared[] {
  const records: ReleaseFields[] = []
  for (const cell of src.view.cells()) {
    for (const r of [src.view.release(cell), src.view.desired(cell)]) if (r != null && src.trusted.has(r.authority)) records.push(r)
  }
  records.sort((a, b) => b.seq - a.seq)
  const out: NodePrepared[] = []
  const seen = new Set<string>()
  for (const r of records) {
    if (out.length >= LIMITS.prepared) break
    if (seen.has(r.digest)) continue
    seen.add(r.digest)
    const entry: NodePrepared = { cell: r.cell, version: r.version, digest: r.digest, state: 'preparing' }
    if (src.isPrepared(r.cell, r.digest)) entry.state = 'prepared'
    else {
      const failure = src.failure(r.digest)
      if (failure !== undefined) {
        if (failure.failures >= FAILED_AFTER_ATTEMPTS) entry.state = 'failed'
        entry.reason = shortReason(`${failure.failures} attempt${failure.failures === 1 ? '' : 's'} failed, last: ${failure.error}`)
      }
    }
    out.push(entry)
  }
  return out
}

/** One line, printable, within the record's bound. */
export function shortReason (text: string): string {
  const clean = text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim() || 'failed'
  return clean.length > LIMITS.preparedReasonChars ? clean.slice(0, LIMITS.preparedReasonChars - 1) + '…' : clean
}
