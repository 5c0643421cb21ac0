// `cell restore <cell> <snapshot>`: the owner of the snapshot's claim restores it in place (operator role).
import { peerIdFromString } from '@libp2p/peer-id'
import { parseCommand, usageFailure, UsageError } from './usage.ts'
import { FLEET_OPTIONS } from './fleet-options.ts'
import { OPERATOR_OPTIONS, OPERATOR_HELP, joinAsOperator, requireKnownCell, outputOf, shortNode } from './operator-session.ts'
import { requestRestore, RestoreRefusedError } from '../volumes/restore-protocol.ts'
import { CellError } from '../../core/errors.ts'
import type { SnapshotRecord } from '../../core/fleet/index.ts'
import { snapshotName, snapshotsNamed } from './snapshots.ts'

const HELP = `usage: cell restore <cell> <snapshot> [--claim ID] [--output text|json]

Restores one of a stateful cell's snapshots, named as \`cell snapshots <cell>\` lists it (its name,
<cell>@snapshot-<time>, or its tag, snapshot-e<epoch>-<UTC>), on the node that owns its claim:
calls to the replica are refused for a moment (callers retry), the replica stops, what its volume
holds is kept as a new snapshot (so the restore can be undone), the snapshot is restored and a new
replica starts on it. The claim keeps its owner and epoch. Needs the operator role of the cell's
authority.

options:
  --claim ID         the claim (<cell>/<ordinal>) when the name matches snapshots of several claims
  --output FORMAT    text (default) or json
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE      authority key that signs this operator's grant (default $CELL_HOME/authority.key)
${OPERATOR_HELP}
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, ...OPERATOR_OPTIONS, claim: { type: 'string' }, output: { type: 'string', short: 'o' } } as const

/** No node answered that it owns the snapshot's claim and restored it. */
export class RestoreFailedError extends CellError { static override readonly errorName = 'RestoreFailedError' }

/**
 * The one snapshot `given` names (see snapshotsNamed), within `claim` when given: else
 * RestoreRefusedError naming what the fleet has, or, when the name matches snapshots of several
 * claims, which claims (pass --claim).
 */
export function chooseSnapshot (cell: string, given: string, records: SnapshotRecord[], claim?: string): SnapshotRecord {
  if (claim !== undefined && !records.some(s => s.claimId === claim)) {
    const claims = [...new Set(records.map(s => s.claimId))]
    throw new RestoreRefusedError(`the fleet knows no snapshot of claim ${claim}${claims.length > 0 ? ` (claims with snapshots: ${claims.join(', ')})` : ''}`)
  }
  const named = snapshotsNamed(cell, given, records).filter(s => claim === undefined || s.claimId === claim)
  if (named.length === 1) return named[0]
  if (named.length === 0) {
    const newest = records.filter(s => claim === undefined || s.claimId === claim).sort((a, b) => b.takenMs - a.takenMs).slice(0, 3)
    throw new RestoreRefusedError(`the fleet knows no snapshot "${given}" of ${cell}${claim !== undefined ? ` in claim ${claim}` : ''}${newest.length > 0 ? ` (newest: ${newest.map(s => `${snapshotName(cell, s.takenMs)} of ${s.claimId}`).join(', ')}; \`cell snapshots ${cell}\` lists them all)` : ''}`)
  }
  const claims = [...new Set(named.map(s => s.claimId))]
  if (claims.length > 1) throw new RestoreRefusedError(`"${given}" names snapshots of ${claims.length} claims (${claims.join(', ')}): pass --claim`)
  throw new RestoreRefusedError(`"${given}" names ${named.length} snapshots of ${claims[0]} (${named.map(s => s.tag).join(', ')}): pass the tag`)
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 2, max: 2 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell, given] = parsed.positionals
  let format: 'text' | 'json'
  try {
    format = outputOf(v.output)
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, HELP)
    throw err
  }
  const mesh = await joinAsOperator(v)
  try {
    requireKnownCell(mesh, cell)
    const record = chooseSnapshot(cell, given, mesh.view.snapshotClaims(cell).flatMap(id => mesh.view.snapshots(id)), v.claim)
    // Ask the nodes that run a ready replica of the cell; the one holding the claim restores.
    const nodes = [...new Set(mesh.view.liveInstances(cell).filter(i => i.state === 'ready').map(i => i.nodeId))]
    const chain = mesh.credentialsFor(cell)
    const answers: string[] = []
    for (const nodeId of nodes) {
      const answer = await requestRestore(mesh.libp2p, peerIdFromString(nodeId), chain, { cell, tag: record.tag }, { signal: AbortSignal.timeout(120_000) })
      if (answer.t === 'not-owner') { answers.push(`${shortNode(nodeId)}: not the owner of ${record.claimId}`); continue }
      if (answer.t === 'restored') {
        if (format === 'json') process.stdout.write(JSON.stringify({ ...answer, node: nodeId }) + '\n')
        else process.stdout.write(`restored ${snapshotName(cell, record.takenMs)} (${record.tag}) into claim ${String(answer.claimId)} at epoch ${String(answer.epoch)} on node ${shortNode(nodeId)} in ${String(answer.ms)} ms; replica ${String(answer.replica)} runs on it; what the volume held before is snapshot ${String(answer.before)}\n`)
        return 0
      }
      throw new RestoreFailedError(`node ${shortNode(nodeId)}: ${String(answer.name)}: ${String(answer.message)}`)
    }
    throw new RestoreFailedError(`no node running ${cell} owns claim ${record.claimId}${answers.length > 0 ? ` (${answers.join('; ')})` : ' (no ready replica of the cell)'}`)
  } finally {
    await mesh.stop()
  }
}
