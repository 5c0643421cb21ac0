// `cell snapshots <cell>`: the snapshots of a stateful cell's claims the fleet knows, newest first,
// with time (UTC), epoch, size, whether it is safe (pinned by two nodes other than its owner) and
// which nodes hold it. Tags are registry-valid (`snapshot-e<epoch>-<UTC>`); people see them as
// `ledger@snapshot-<time>`.
import type { FleetView, SnapshotRecord } from '../../core/fleet/index.ts'
import { parseCommand, usageFailure, UsageError } from './usage.ts'
import { FLEET_OPTIONS } from './fleet-options.ts'
import { joinAsOperator, outputOf, formatBytes, requireKnownCell, shortNode } from './operator-session.ts'

const HELP = `usage: cell snapshots <cell> [--output text|json] [--bootstrap ADDR]... [--key KEYFILE]

Lists the snapshots of <cell>'s claims (ledger/0, ledger/1, ...) that the fleet knows, newest first:
when each was taken (UTC), its epoch, its size, whether it is safe (every blob held and verified by
at least two nodes other than its owner, so it survives the owner) and which nodes hold it. A
snapshot of a higher epoch is newer than any of a lower one, whatever the clocks say. The newest
safe snapshot of a claim is the one a new owner restores.

options:
  --output FORMAT    text (default) or json
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE      authority key that signs this operator's grant (default $CELL_HOME/authority.key)
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, output: { type: 'string', short: 'o' } } as const

export interface SnapshotRow {
  claim: string
  /** What people call it: `ledger@snapshot-2026-11-30T12:00:00Z`. */
  name: string
  tag: string
  epoch: number
  takenMs: number
  /** ISO 8601 UTC. */
  time: string
  sizeBytes: number
  owner: string
  /** Nodes other than the owner with a fresh pin of it. */
  holders: string[]
  safe: boolean
  zfs: boolean
  manifestDigest: string
}

export interface CellSnapshots {
  cell: string
  claims: Array<{ claim: string, newestSafe?: string, snapshots: SnapshotRow[] }>
}

/** `ledger@snapshot-2026-11-30T12:00:00Z`. */
export function snapshotName (cell: string, takenMs: number): string {
  return `${cell}@snapshot-${new Date(takenMs).toISOString().slice(0, 19)}Z`
}

/**
 * The snapshots of `cell` that `given` names, as a person copies it from `cell snapshots`: the name
 * (`ledger@snapshot-2026-11-30T12:00:00Z`, with or without `ledger@`), the tag
 * (`snapshot-e3-20261130T120000Z`, with or without `ledger@`) or the tag's time without the epoch
 * (`snapshot-20261130T120000Z`). A name or time can match one snapshot in each of several claims.
 */
export function snapshotsNamed (cell: string, given: string, records: SnapshotRecord[]): SnapshotRecord[] {
  const bare = given.startsWith(`${cell}@`) ? given.slice(cell.length + 1) : given
  return records.filter(s => s.cell === cell && (
    s.tag === bare ||
    snapshotName(cell, s.takenMs) === `${cell}@${bare}` ||
    s.tag.replace(/^snapshot-e\d+-/, 'snapshot-') === bare
  ))
}

function row (view: FleetView, s: SnapshotRecord): SnapshotRow {
  return {
    claim: s.claimId,
    name: snapshotName(s.cell, s.takenMs),
    tag: s.tag,
    epoch: s.epoch,
    takenMs: s.takenMs,
    time: new Date(s.takenMs).toISOString(),
    sizeBytes: s.sizeBytes,
    owner: s.nodeId,
    holders: view.snapshotHolders(s),
    safe: view.isSafeSnapshot(s),
    zfs: s.zfsManifestDigest !== undefined,
    manifestDigest: s.plainManifestDigest
  }
}

/** What the view knows of `cell`'s snapshots, claim by claim, newest first. */
export function cellSnapshots (view: FleetView, cell: string): CellSnapshots {
  return {
    cell,
    claims: view.snapshotClaims(cell).map(claim => {
      const newest = view.newestSafe(claim)
      return { claim, ...(newest !== undefined ? { newestSafe: newest.tag } : {}), snapshots: view.snapshots(claim).map(s => row(view, s)) }
    })
  }
}

/** The text report. */
export function formatSnapshots (report: CellSnapshots): string[] {
  const count = report.claims.reduce((n, c) => n + c.snapshots.length, 0)
  if (count === 0) return [`${report.cell}: no snapshots in the fleet (none taken yet, or the cell keeps no state)`]
  const lines = [`${report.cell}: ${count} snapshot(s) of ${report.claims.length} claim(s)`]
  for (const c of report.claims) {
    const newest = c.snapshots.find(s => s.tag === c.newestSafe)
    lines.push('', `claim ${c.claim}: ${newest !== undefined ? `newest safe ${newest.name} (epoch ${newest.epoch})` : 'NO SAFE SNAPSHOT yet (fewer than two nodes other than the owner hold one)'}`)
    lines.push(`  ${'TIME (UTC)'.padEnd(20)} ${'EPOCH'.padEnd(6)} ${'SIZE'.padEnd(10)} ${'SAFE'.padEnd(5)} ${'SNAPSHOT'.padEnd(36)} HELD BY`)
    for (const s of c.snapshots) {
      const held = [`owner ${shortNode(s.owner)}`, ...s.holders.map(shortNode)].join(', ')
      lines.push(`  ${s.time.slice(0, 19).replace('T', ' ').padEnd(20)} ${String(s.epoch).padEnd(6)} ${formatBytes(s.sizeBytes).padEnd(10)} ${(s.safe ? 'yes' : 'no').padEnd(5)} ${s.name.padEnd(36)} ${held}`)
      lines.push(`  ${''.padEnd(20)} ${''.padEnd(6)} ${''.padEnd(10)} ${''.padEnd(5)} tag ${s.tag}${s.zfs ? ' (+ ZFS stream)' : ''}`)
    }
  }
  return lines
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 1, max: 1 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell] = parsed.positionals
  let output: 'text' | 'json'
  try {
    output = outputOf(v.output)
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, HELP)
    throw err
  }
  const mesh = await joinAsOperator(v)
  try {
    const report = cellSnapshots(mesh.view, cell)
    // A cell the fleet knows nothing of is an error by name; a known cell without snapshots is an answer.
    if (report.claims.length === 0) requireKnownCell(mesh, cell)
    if (output === 'json') process.stdout.write(`${JSON.stringify(report)}\n`)
    else process.stdout.write(formatSnapshots(report).join('\n') + '\n')
    return 0
  } finally {
    await mesh.stop()
  }
}
