// `cell logs <cell> [-f]`: the stdout/stderr of every replica of a cell across the fleet, each line
// prefixed `[cell/replica@node]` in a colour of its own; following, `+` and `-` lines say when
// replicas come and go (a rollout, a node death). Operator role required.
import type { Mesh } from '../../core/mesh/index.ts'
import { readLogs, followLogs, type LogEntry } from '../logs/log-follower.ts'
import { parseCommand, usageFailure, UsageError } from './usage.ts'
import { FLEET_OPTIONS } from './fleet-options.ts'
import { OPERATOR_OPTIONS, OPERATOR_HELP, joinAsOperator, requireKnownCell, outputOf, parseDurationMs, shortNode, shortReplica, useColour, colourOf, paint } from './operator-session.ts'

const HELP = `usage: cell logs <cell> [-f] [--since 10m] [--tail N] [--replica ID] [--output text|json]

Prints what every replica of <cell> wrote to stdout and stderr, on every node, each line prefixed
[cell/replica@node] (replica = version and id suffix, node = end of its peer id) in a colour of its
own on a terminal (none with NO_COLOR). Needs the operator role: a grant with role operator from the
cell's authority, or that authority's key (the default, $CELL_HOME/authority.key).

options:
  -f, --follow        keep printing new lines; "+" and "-" lines say when a replica starts or ends
                      (through a rollout or a node death); a broken stream resumes where it stopped
  --since DURATION    only lines of the last DURATION (30s, 10m, 2h, 1d)
  --tail N            only the last N lines of each replica (then, with -f, everything new)
  --replica ID        only this replica (its full instance id or its id suffix)
  --output FORMAT     text (default) or json: one object per line
                      {ts, cell, version, replica, node, stream, msg}; with -f, replicas starting and
                      ending are {ts, cell, version, replica, node, event: "started"|"ended", msg}
  --bootstrap ADDR    a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE       authority key that signs this operator's grant (default $CELL_HOME/authority.key)
  --timeout SECONDS   without -f: how long to wait for the nodes' answers (default 15)
${OPERATOR_HELP}
  -h, --help          show this help`

const OPTIONS = {
  ...FLEET_OPTIONS, ...OPERATOR_OPTIONS,
  follow: { type: 'boolean', short: 'f' },
  since: { type: 'string' },
  tail: { type: 'string' },
  replica: { type: 'string' },
  output: { type: 'string', short: 'o' },
  timeout: { type: 'string' }
} as const

export interface LogPrinter { (entry: LogEntry): string | undefined }

/** How one entry prints: text with a coloured prefix, or one JSON object. */
export function logPrinter (format: 'text' | 'json', colour: boolean): LogPrinter {
  return (e) => {
    if (format === 'json') {
      const base = { ts: new Date(e.ts).toISOString(), cell: e.cell, version: e.version, replica: e.replica, node: e.node }
      if (e.kind === 'line') return JSON.stringify({ ...base, stream: e.stream, msg: e.msg })
      if (e.kind === 'gap') return JSON.stringify({ ...base, event: 'gap', msg: `${e.missed} line(s) dropped by the node's ring before they were read` })
      return JSON.stringify({ ...base, event: e.kind, msg: e.reason ?? e.kind })
    }
    const prefix = paint(`[${e.cell}/${shortReplica(e.cell, e.replica)}@${shortNode(e.node)}]`, colourOf(e.replica), colour)
    switch (e.kind) {
      case 'line': return `${prefix} ${e.msg}`
      case 'started': return `+ ${prefix} started (${e.version}${e.reason !== undefined && e.reason !== 'ready' ? `, ${e.reason}` : ''})`
      case 'ended': return `- ${prefix} ended: ${e.reason ?? 'gone'}`
      case 'gap': return `! ${prefix} ${e.missed} line(s) dropped by the node's ring before they were read`
    }
  }
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 1, max: 1 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell] = parsed.positionals
  let format: 'text' | 'json'
  let sinceMs: number | undefined
  let tail: number | undefined
  try {
    format = outputOf(v.output)
    if (v.since !== undefined) sinceMs = Date.now() - parseDurationMs(v.since)
    if (v.tail !== undefined) {
      tail = Number(v.tail)
      if (!Number.isInteger(tail) || tail < 0) throw new UsageError(`--tail must be a whole number of lines, got "${v.tail}"`)
    }
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, HELP)
    throw err
  }
  const timeoutMs = Number(v.timeout ?? 15) * 1000
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) return usageFailure(`--timeout must be a positive number of seconds, got "${v.timeout ?? ''}"`, HELP)
  const print = logPrinter(format, format === 'text' && useColour())
  const write = (e: LogEntry): void => {
    const text = print(e)
    if (text !== undefined) process.stdout.write(text + '\n')
  }
  const warn = (text: string): void => { process.stderr.write(`warning: ${text}\n`) }
  const query = { cell, follow: v.follow === true, ...(v.replica !== undefined ? { replica: v.replica } : {}), ...(sinceMs !== undefined ? { sinceMs } : {}), ...(tail !== undefined ? { tail } : {}) }
  const mesh: Mesh = await joinAsOperator(v, timeoutMs)
  try {
    requireKnownCell(mesh, cell)
    if (!query.follow) {
      const entries = await readLogs(mesh, query, { timeoutMs, onWarning: warn })
      const instances = mesh.view.instances(cell)
      if (instances.length === 0) warn(`no replica of ${cell} runs in the fleet now`)
      for (const e of entries) write(e)
      // Silence and exit 0 read like a command that did nothing: say what was asked and of whom.
      if (entries.length === 0 && instances.length > 0) {
        const which = [v.replica !== undefined ? `replica ${v.replica}` : '', v.since !== undefined ? `in the last ${v.since}` : ''].filter(Boolean).join(' ')
        process.stderr.write(`no log lines from ${cell}${which !== '' ? ` (${which})` : ''}: ${instances.length} replica(s) on ${new Set(instances.map(i => i.nodeId)).size} node(s) in the view, and a replica's lines are what it writes to stdout and stderr\n`)
      }
      return 0
    }
    // Following: until Ctrl-C (or SIGTERM), which ends the streams and exits 0.
    const controller = new AbortController()
    const stop = (): void => { controller.abort() }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      if (mesh.view.instances(cell).length === 0 && format === 'text') warn(`no replica of ${cell} runs now; waiting for one`)
      await followLogs(mesh, query, write, { signal: controller.signal, onWarning: warn })
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }
    return 0
  } finally {
    await mesh.stop()
  }
}
