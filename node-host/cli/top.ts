// `cell top`: the fleet at a glance, refreshed in place on a terminal — nodes (CPU, memory, slots,
// uptime) and cells (versions, replicas ready/desired and min–max, CPU, memory, QPS, p99, rollout
// progress, halts). `--once --output json` prints one picture for scripts. Operator role only.
import type { Mesh } from '../../core/mesh/index.ts'
import { parseCommand, usageFailure, UsageError } from './usage.ts'
import { FLEET_OPTIONS } from './fleet-options.ts'
import { OPERATOR_OPTIONS, OPERATOR_HELP, joinAsOperator, outputOf, parseDurationMs, formatAge, formatBytes, shortNode, useColour, paint } from './operator-session.ts'
import { fetchReports, fleetPicture, type FleetPicture, type CellPicture } from './fleet-picture.ts'

const HELP = `usage: cell top [--once] [--output text|json] [--interval 2s]

Shows every node of the fleet (CPU its replicas use, memory, free replica slots, uptime) and every
cell (versions running, replicas ready/desired and min-max, CPU, memory, calls per second, p99
latency, a rollout under way, halted releases), refreshed in place until q or Ctrl-C. The numbers
come from the gossiped fleet view; desired and min-max from each node's status (operator role).

options:
  --once              print one picture and exit (the default when stdout is not a terminal)
  --output FORMAT     text (default) or json (one document with --once, else one per line)
  --interval DURATION time between refreshes (default 2s)
  --bootstrap ADDR    a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE       authority key that signs this operator's grant (default $CELL_HOME/authority.key)
${OPERATOR_HELP}
  -h, --help          show this help`

const OPTIONS = { ...FLEET_OPTIONS, ...OPERATOR_OPTIONS, once: { type: 'boolean' }, output: { type: 'string', short: 'o' }, interval: { type: 'string' } } as const

function pad (text: string, width: number): string {
  return text.length >= width ? text.slice(0, width - 1) + ' ' : text + ' '.repeat(width - text.length)
}

function table (rows: string[][], widths: number[]): string[] {
  return rows.map(r => r.map((c, i) => i === r.length - 1 ? c : pad(c, widths[i])).join(''))
}

const pct = (n: number): string => `${n >= 10 ? Math.round(n) : n.toFixed(1)}%`

function versionsText (c: CellPicture): string {
  const parts = c.versions.filter(v => v.ready + v.starting + v.draining > 0).map(v => `${v.version}×${v.ready + v.starting}${v.draining > 0 ? `(+${v.draining} draining)` : ''}`)
  return parts.length > 0 ? parts.join(' ') : '-'
}

function stateText (c: CellPicture): string {
  const out: string[] = []
  if (c.retired !== undefined) out.push('retired')
  if (c.claimants.length > 1) out.push(`name claimed by ${c.claimants.length} authorities`)
  if (c.rollout !== undefined) out.push(`rollout → ${c.rollout.to} ${c.rollout.ready}/${c.rollout.of}`)
  const halted = [...new Set(c.halts.map(h => `${h.version}${h.crashLooping ? ' crash-looping' : ' halted'}`))]
  out.push(...halted)
  return out.length > 0 ? out.join(', ') : 'steady'
}

/** The text picture, at most `columns` wide. */
export function renderTop (p: FleetPicture, options: { columns?: number, colour?: boolean, notes?: string[] } = {}): string {
  const columns = options.columns ?? 120
  const colour = options.colour === true
  const head = `cell top — ${p.nodes.length} node(s), ${p.cells.length} cell(s) · ${new Date(p.atMs).toISOString().slice(11, 19)} UTC`
  const nodeRows = [['NODE', 'CPU', 'MEMORY', 'SLOTS FREE', 'REPLICAS', 'UPTIME'], ...p.nodes.map(n => [
    shortNode(n.node), pct(n.cpuPercent), `${formatBytes(n.memoryUsedBytes)}/${formatBytes(n.memoryBytes)} ${pct(n.memoryPercent)}`,
    `${n.freeSlots}/${n.slots}`, String(n.replicas), formatAge(n.uptimeMs)
  ])]
  const cellRows = [['CELL', 'VERSIONS', 'READY/DESIRED', 'MIN-MAX', 'CPU', 'MEMORY', 'QPS', 'P99', 'STATE'], ...p.cells.map(c => [
    c.cell, versionsText(c), `${c.ready}/${c.desired ?? '?'}`, c.min !== undefined ? `${c.min}-${c.max ?? '?'}` : '?',
    pct(c.cpuPercent), formatBytes(c.memoryBytes), c.qps.toFixed(1), `${Math.round(c.p99Ms)} ms`, stateText(c)
  ])]
  const lines = [
    head, '',
    ...table(nodeRows, [12, 8, 28, 12, 10, 10]).map((l, i) => i === 0 ? paint(l, 1, colour) : l), '',
    ...table(cellRows, [16, 24, 15, 9, 8, 11, 8, 9, 30]).map((l, i) => {
      if (i === 0) return paint(l, 1, colour)
      const c = p.cells[i - 1]
      return c.halts.length > 0 || (c.desired !== undefined && c.ready < (c.min ?? 1)) ? paint(l, 33, colour) : l
    })
  ]
  if (p.cells.length === 0) lines.push('(no cell known to the fleet yet)')
  for (const n of options.notes ?? []) lines.push(n)
  return lines.map(l => l.length > columns ? l.slice(0, columns) : l).join('\n')
}

async function picture (mesh: Mesh, timeoutMs: number): Promise<{ picture: FleetPicture, notes: string[] }> {
  const { reports, failures } = await fetchReports(mesh, undefined, timeoutMs)
  const notes = failures.map(f => `node ${shortNode(f.node)} did not report: ${f.error}`)
  return { picture: fleetPicture(mesh.view, reports), notes }
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 0 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  let format: 'text' | 'json'
  let intervalMs: number
  try {
    format = outputOf(v.output)
    intervalMs = parseDurationMs(v.interval ?? '2s')
    if (intervalMs < 200) throw new UsageError('--interval must be at least 200ms')
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, HELP)
    throw err
  }
  const tty = process.stdout.isTTY === true
  const once = v.once === true || !tty
  const mesh = await joinAsOperator(v)
  try {
    if (once) {
      const { picture: p, notes } = await picture(mesh, 5_000)
      process.stdout.write(format === 'json' ? JSON.stringify(p, null, 2) + '\n' : renderTop(p, { columns: process.stdout.columns ?? 160, notes }) + '\n')
      for (const n of format === 'json' ? notes : []) process.stderr.write(`warning: ${n}\n`)
      return 0
    }
    return await live(mesh, format, intervalMs)
  } finally {
    await mesh.stop()
  }
}

/** Refreshes in place on the terminal's alternate screen until q, Ctrl-C or SIGTERM. */
async function live (mesh: Mesh, format: 'text' | 'json', intervalMs: number): Promise<number> {
  const out = process.stdout
  const colour = useColour()
  let stopped = false
  let wake: (() => void) | undefined
  const stop = (): void => { stopped = true; wake?.() }
  const onKey = (data: Buffer): void => {
    const key = data.toString()
    if (key === 'q' || key === 'Q' || key === '\x03' || key === '\x1b') stop()
    else wake?.()
  }
  const stdin = process.stdin
  const raw = stdin.isTTY === true
  if (raw) { stdin.setRawMode(true); stdin.resume(); stdin.on('data', onKey) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  if (format === 'text') out.write('\x1b[?1049h\x1b[?25l')
  try {
    while (!stopped) {
      const { picture: p, notes } = await picture(mesh, Math.max(1_000, intervalMs))
      if (stopped) break
      if (format === 'json') out.write(JSON.stringify(p) + '\n')
      else {
        const text = renderTop(p, { columns: out.columns ?? 120, colour, notes: [...notes, '', 'q quits · any other key refreshes'] })
        out.write('\x1b[H' + text.split('\n').map(l => l + '\x1b[K').join('\n') + '\x1b[J')
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { wake = undefined; resolve() }, intervalMs)
        wake = () => { clearTimeout(timer); wake = undefined; resolve() }
      })
    }
  } finally {
    if (format === 'text') out.write('\x1b[?25h\x1b[?1049l')
    if (raw) { stdin.off('data', onKey); stdin.setRawMode(false); stdin.pause() }
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
  return 0
}
