// `cell status [<cell>]`: the screen a person reads when something looks wrong. For one cell: what
// it should run and why (newest release, a rollback's desired record, a halt falling back, a
// retire), the releases known with their sequence numbers and signers, each replica and its state,
// recent crashes with their reasons, and each node's autonomic loop in its own words. Without a
// cell: one line per cell. Operator role only.
import type { Mesh } from '../../core/mesh/index.ts'
import { crashReports } from '../crash-report.ts'
import { parseCommand, usageFailure, UsageError } from './usage.ts'
import { FLEET_OPTIONS } from './fleet-options.ts'
import { OPERATOR_OPTIONS, OPERATOR_HELP, joinAsOperator, requireKnownCell, outputOf, formatAge, formatBytes, shortNode, shortReplica } from './operator-session.ts'
import { fetchReports, fleetPicture, cellPicture, type CellPicture, type Reports } from './fleet-picture.ts'
import { MAX_MISMATCHES, type NodeStatusReport } from '../introspect/status-protocol.ts'
import { claimNotes, type ClaimNote } from '../../core/fleet/claim-notes.ts'
import { describeClaimVoters, voterVerdict } from '../volumes/voter-health.ts'

const HELP = `usage: cell status [<cell>] [--output text|json]

Explains a cell: the release it should run and why (newest release, a rollback, a halted release
and the fallback, a retire), the releases known (sequence number, signer), every replica and its
state, recent crashes and why, and what each node's autonomic loop last decided and why. Without
<cell>: one line per cell of the fleet. Needs the operator role of the cell's authority.

options:
  --output FORMAT    text (default) or json
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE      authority key that signs this operator's grant (default $CELL_HOME/authority.key)
${OPERATOR_HELP}
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, ...OPERATOR_OPTIONS, output: { type: 'string', short: 'o' } } as const

const short = (hex: string): string => `${hex.slice(0, 8)}…`

/** One sentence: what is wrong (or that nothing is), and why. */
export function headline (c: CellPicture): string {
  const running = c.versions.filter(v => v.ready > 0).map(v => `${v.version} ×${v.ready}`).join(', ')
  // More ready than desired (a rollout's surge, replicas about to drain): "3 of 2" would read as a typo.
  // No node said how many it aims for (a retired cell, reports missing): the count alone.
  const counted = c.desired === undefined ? `${c.ready} replica(s) ready` : c.ready > c.desired ? `${c.ready} replica(s) ready, ${c.desired} desired` : `${c.ready} of ${c.desired} replica(s) ready`
  const count = `${counted}${running !== '' ? ` (${running})` : ''}`
  if (c.claimants.length > 1) return `${c.cell}: NOT RUNNING — ${c.claimants.length} trusted authorities sign releases named "${c.cell}" (${c.claimants.map(short).join(', ')}); no node starts a conflicted name until one is no longer trusted`
  if (c.retired !== undefined) return `${c.cell}: retired by ${short(c.retired.authority)} (seq ${c.retired.seq}) — it runs nowhere until a later \`cell publish\` or \`cell rollback\`; ${count}`
  // The halt that explains the target: of the release the rules chose first (the newest, or a
  // rollback's), now skipped. Halts of releases the fleet has moved past (a later publish, a rollback)
  // explain nothing here; the release list marks them.
  // One digest, so one halt (the last node's, as before), or none.
  const halt = c.haltedChoice === undefined ? undefined : c.halts.findLast(h => h.digest === c.haltedChoice)
  // A version published again as another artifact: "running 1.1.0 because 1.1.0 is halted" needs the digests.
  const sameVersion = halt !== undefined && c.target !== undefined && halt.version === c.target.version && halt.digest !== c.target.digest
  const haltText = halt === undefined ? '' : `${halt.version}${sameVersion ? ` (sha256 ${halt.digest.slice(0, 12)}…)` : ''} is ${halt.crashLooping ? 'crash-looping' : 'halted'} (node ${shortNode(halt.node)}: ${halt.reason})`
  if (c.target === undefined) return `${c.cell}: NOTHING TO RUN — ${c.targetReason}${haltText !== '' ? `; ${haltText}` : ''}`
  if (c.rollout !== undefined) return `${c.cell}: rolling out ${c.rollout.to}, ${c.rollout.ready} of ${c.rollout.of} ready — ${c.targetReason}; ${count}${haltText !== '' ? `; ${haltText}` : ''}`
  if (halt !== undefined) return `${c.cell}: running ${c.target.version}${sameVersion ? ` (sha256 ${c.target.digest.slice(0, 12)}…)` : ''} because ${haltText}; ${count}`
  if (c.desired !== undefined && c.ready < c.desired) return `${c.cell}: SHORT — ${count}; see the crashes and the nodes' reasons below`
  return `${c.cell}: healthy — ${count}, ${c.targetReason}`
}

/**
 * Nodes connected to peers of the other dissemination mode (a mixed fleet, docs/biology.md
 * "Scale"): one line per such node, naming the peers and what to do. Reports come from the nodes:
 * read defensively, at most MAX_MISMATCHES peers each.
 */
export function mismatchLines (reports: readonly NodeStatusReport[]): string[] {
  const lines: string[] = []
  for (const r of reports) {
    const peers = (Array.isArray(r.mismatches) ? r.mismatches : [])
      .filter(m => typeof m?.peerId === 'string' && (m.theirs === 'fleet' || m.theirs === 'per-cell')).slice(0, MAX_MISMATCHES)
    if (peers.length === 0) continue
    const theirs = peers[0].theirs === 'fleet' ? 'per fleet' : 'per cell'
    lines.push(`  node ${shortNode(r.node)} is connected to ${peers.length} node(s) that disseminate ${theirs}, unlike itself (${peers.map(m => shortNode(m.peerId)).join(', ')}): ` +
      'they do not see each other\'s replicas; start every node and client of a fleet with the same --dissemination')
  }
  return lines
}

/**
 * The fleet overview's warnings about claims: every claim an owner reports with only a majority of
 * its voters live (one more loss stops it) or fewer (stopped), one line each.
 */
export function claimRiskLines (reports: readonly NodeStatusReport[]): string[] {
  const lines: string[] = []
  for (const r of reports) {
    for (const c of r.cells) {
      for (const claim of c.claims ?? []) {
        const verdict = voterVerdict(claim.voters)
        if (verdict !== 'at-risk' && verdict !== 'stuck') continue
        lines.push(`  WARNING ${describeClaimVoters(claim, shortNode, formatAge)} (owner ${shortNode(r.node)})`)
      }
    }
  }
  return lines
}

/** A stateful cell's claims: where each is written, at which epoch, and whether a snapshot would survive its owner (none for a stateless cell). */
export function storageLines (notes: readonly ClaimNote[]): string[] {
  if (notes.length === 0) return []
  return ['', 'storage (claims):', ...notes.map(n => `  ${n.claimId.padEnd(16)} epoch ${String(n.epoch).padEnd(5)} ${n.ownerNodeId !== undefined ? `on ${shortNode(n.ownerNodeId)}` : 'no replica serves it'}  ` +
    (n.safeAgeMs !== undefined
      ? `newest safe snapshot ${formatAge(n.safeAgeMs)} ago, held by ${n.safeHolders ?? 0} other node(s)`
      : `NO SAFE SNAPSHOT yet${n.newestAgeMs !== undefined ? ` (newest ${formatAge(n.newestAgeMs)} ago, not held by two other nodes)` : ''}: the claim's data lives on its owner alone`))]
}

/** The cell's bounds and canary weight, and how callers split calls while two releases have ready replicas. */
export function policyLines (c: CellPicture): string[] {
  const weight = c.canaryWeight !== undefined ? `, canary_weight ${c.canaryWeight} %` : ''
  const lines = [`policy     min ${c.min ?? '?'}, max ${c.max ?? '?'}${weight}; the nodes aim for ${c.desired ?? '?'} replica(s)`]
  if (c.split !== undefined) {
    const share = c.canaryWeight !== undefined ? `${c.canaryWeight} %` : 'canary_weight %'
    lines.push(`  split    ${share} of each caller's calls go to ${c.split.canary} (the newest release ready), the rest to ${c.split.others.join(', ')}`)
  }
  return lines
}

function describeCell (mesh: Mesh, c: CellPicture, reports: Reports, nowMs: number): string[] {
  const lines = [headline(c), '']
  lines.push(`target     ${c.target !== undefined ? `${c.target.version} (seq ${c.target.seq}, sha256 ${c.target.digest.slice(0, 12)}…)` : 'none'}`)
  lines.push(`  why      ${c.targetReason}`)
  if (c.desiredRecord !== undefined) lines.push(`  desired  a desired record (cell rollback) of seq ${c.desiredRecord.seq} names ${c.desiredRecord.version}; a release of a higher seq (a later publish) rolls forward past it`)
  lines.push(...policyLines(c))
  lines.push('', 'releases known (newest first):')
  const halted = new Map(c.halts.map(h => [h.digest, h]))
  for (const r of c.releases.slice(0, 12)) {
    const h = halted.get(r.digest)
    const marks = [r.digest === c.target?.digest ? '← target' : '', h !== undefined ? `${h.crashLooping ? 'CRASH-LOOPING' : 'HALTED'} (${h.reason})` : ''].filter(Boolean).join(' ')
    lines.push(`  ${r.version.padEnd(12)} seq ${String(r.seq).padEnd(14)} sha256 ${r.digest.slice(0, 12)}…  signed by ${short(r.authority)}  ${marks}`.trimEnd())
  }
  if (c.releases.length === 0) lines.push('  (none: no release of this cell reached the fleet or any node)')
  lines.push('', 'replicas:')
  const instances = mesh.view.instances(c.cell).sort((a, b) => a.nodeId.localeCompare(b.nodeId) || a.startedMs - b.startedMs)
  for (const i of instances) {
    const age = i.state === 'crashed' || i.state === 'stopped' ? `${formatAge(nowMs - (i.endedMs ?? i.sentMs))} ago` : `up ${formatAge(nowMs - i.startedMs)}`
    const load = i.state === 'ready' ? `  cpu ${i.cpuPercent.toFixed(1)}%  mem ${formatBytes(i.memoryBytes)}  qps ${i.qps.toFixed(1)}  p99 ${Math.round(i.p99Ms)} ms` : ''
    const why = i.state === 'crashed' ? `  ${i.exitReason ?? 'crashed'}${i.stderrTail !== undefined && i.stderrTail.length > 0 ? ` — ${i.stderrTail[i.stderrTail.length - 1]}` : ''}` : ''
    lines.push(`  ${shortReplica(c.cell, i.instanceId).padEnd(24)} on ${shortNode(i.nodeId)}  ${i.state.padEnd(9)} ${age}${load}${why}`)
  }
  if (instances.length === 0) lines.push('  (none in the fleet view)')
  lines.push(...storageLines(claimNotes(mesh.view, c.cell, instances, nowMs)))
  const crashes = crashReports(mesh.view, c.cell, undefined, 8)
  const nodeCrashes = reports.reports.flatMap(r => r.cells.filter(x => x.cell === c.cell).flatMap(x => x.replicas.filter(rep => rep.state === 'crashed').map(rep => ({ node: r.node, ...rep }))))
  const seen = new Set(crashes.map(x => x.instanceId))
  if (crashes.length > 0 || nodeCrashes.some(x => !seen.has(x.replica))) {
    lines.push('', 'recent crashes (newest first; the same crash again is counted, not repeated):')
    const shown = new Map<string, number>()
    const order: string[] = []
    const text = new Map<string, string>()
    for (const x of crashes) {
      const key = `${x.version}|${x.exitReason ?? ''}|${(x.stderrTail ?? []).join('\n')}`
      if (!shown.has(key)) {
        order.push(key)
        text.set(key, `  ${shortReplica(c.cell, x.instanceId)} on ${shortNode(x.nodeId)} ${x.endedMs !== undefined ? `${formatAge(nowMs - x.endedMs)} ago` : ''}: ${x.exitReason ?? 'crashed'}${(x.stderrTail ?? []).map(l => `\n      stderr: ${l}`).join('')}`)
      }
      shown.set(key, (shown.get(key) ?? 0) + 1)
    }
    for (const key of order) lines.push(text.get(key)! + (shown.get(key)! > 1 ? `\n      (and ${shown.get(key)! - 1} more crash(es) of ${key.split('|')[0]} just like it)` : ''))
    for (const x of nodeCrashes) if (!seen.has(x.replica)) lines.push(`  ${shortReplica(c.cell, x.replica)} on ${shortNode(x.node)}: ${x.exitReason ?? 'crashed'}${(x.stderrTail ?? []).map(l => `\n      stderr: ${l}`).join('')}`)
  }
  lines.push('', 'each node, in its own words (the autonomic loop\'s last decision):')
  for (const r of reports.reports.sort((a, b) => a.node < b.node ? -1 : 1)) lines.push(...describeNode(r, c.cell, nowMs))
  for (const f of reports.failures) lines.push(`  node ${shortNode(f.node)} did not answer: ${f.error}`)
  return lines
}

/** One node's lines in `cell status <cell>`: what it prepared and runs, why, and its errors (the cell's own and the loop's). */
export function describeNode (r: NodeStatusReport, cell: string, nowMs: number): string[] {
  const c = r.cells.find(x => x.cell === cell)
  const head = `  node ${shortNode(r.node)}`
  if (c === undefined) return [`${head}: knows nothing of ${cell}`]
  const facts = [
    c.prepared.length > 0 ? `prepared ${c.prepared.map(p => p.version).join(', ')}` : 'prepared nothing',
    c.replicas.filter(x => x.state === 'ready' || x.state === 'starting').length > 0 ? `runs ${c.replicas.filter(x => x.state === 'ready' || x.state === 'starting').map(x => `${x.version} (${x.state})`).join(', ')}` : 'runs no replica of it'
  ]
  const out = [`${head}: ${facts.join('; ')}`]
  for (const u of c.unprepared) out.push(`      could not prepare ${u.version} after ${u.attempts} attempt(s): ${u.error}`)
  for (const h of c.halted) out.push(`      halted ${h.version} here (${h.metric}): ${h.reason}`)
  if (c.retired !== undefined) out.push(`      treats it as retired by ${short(c.retired.authority)} (seq ${c.retired.seq})`)
  for (const reason of c.reasons) out.push(`      ${reason}`)
  if (c.reasons.length === 0) out.push('      (no decision yet: the loop decides only for cells whose release it prepared)')
  for (const claim of c.claims ?? []) {
    const holds = claim.serving === false ? `holds ${claim.claimId} at epoch ${claim.epoch} but does not serve it (its lease ran out here)` : `owns ${claim.claimId} at epoch ${claim.epoch}`
    const gen = (claim.gen ?? 0) > 0 ? ` (generation ${claim.gen}: voters replaced)` : ''
    out.push(`      ${holds}${gen}; voters ${claim.voters.map(v => shortNode(v.peerId)).join(', ')}`)
    const voters = describeClaimVoters(claim, shortNode, formatAge)
    if (voters !== undefined) out.push(`      ${voterVerdict(claim.voters) === 'degraded' ? '' : 'WARNING '}${voters}`)
  }
  if (c.lastDecline !== undefined) out.push(`      declined to start ${cell} (its claims said no, not a failure) ${formatAge(nowMs - c.lastDecline.atMs)} ago: ${c.lastDecline.message.split('\n')[0]}`)
  if (c.lastError !== undefined) out.push(`      last error starting ${cell} ${formatAge(nowMs - c.lastError.atMs)} ago: ${c.lastError.message.split('\n')[0]}`)
  if (r.lastError !== undefined) out.push(`      last loop error ${formatAge(nowMs - r.lastError.atMs)} ago: ${r.lastError.message.split('\n')[0]}`)
  return out
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 1 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell] = parsed.positionals
  let format: 'text' | 'json'
  try {
    format = outputOf(v.output)
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, HELP)
    throw err
  }
  const mesh = await joinAsOperator(v)
  try {
    const nowMs = Date.now()
    if (cell !== undefined) {
      requireKnownCell(mesh, cell)
      const reports = await fetchReports(mesh, cell)
      const picture = cellPicture(mesh.view, cell, reports.reports)
      if (format === 'json') {
        process.stdout.write(JSON.stringify({ ...picture, instances: mesh.view.instances(cell), storage: claimNotes(mesh.view, cell, mesh.view.instances(cell), nowMs), crashes: crashReports(mesh.view, cell), nodes: reports.reports, unreachable: reports.failures }, null, 2) + '\n')
      } else {
        process.stdout.write(describeCell(mesh, picture, reports, nowMs).join('\n') + '\n')
      }
      return 0
    }
    const reports = await fetchReports(mesh, undefined)
    const picture = fleetPicture(mesh.view, reports.reports, nowMs)
    if (format === 'json') {
      const claims = reports.reports.flatMap(r => r.cells.flatMap(c => (c.claims ?? []).map(claim => ({ ...claim, owner: r.node, voterState: voterVerdict(claim.voters) }))))
      process.stdout.write(JSON.stringify({ ...picture, claims, unreachable: reports.failures }, null, 2) + '\n')
      return 0
    }
    const lines = [`fleet: ${picture.nodes.length} node(s), ${picture.cells.length} cell(s)`, '']
    for (const c of picture.cells) lines.push(`  ${headline(c)}`)
    if (picture.cells.length === 0) lines.push('  (no cell known yet: `cell publish` one)')
    lines.push(...claimRiskLines(reports.reports))
    for (const f of reports.failures) lines.push(`  node ${shortNode(f.node)} did not answer: ${f.error}`)
    lines.push(...mismatchLines(reports.reports))
    lines.push('', 'Run `cell status <cell>` for one cell in detail.')
    process.stdout.write(lines.join('\n') + '\n')
    return 0
  } finally {
    await mesh.stop()
  }
}
