// "Did you mean …?" for an unknown `cell` command: the words other tools use for the same job
// (kubectl, docker, wrangler, nats), then a near miss in spelling. A hint only: the command still
// fails with exit 2 and the usage.
import { editDistance } from '../../core/manifest/schema.ts'

/** Words from other tools' CLIs, and what `cell` calls that job. */
const ALIASES: Record<string, string> = {
  ls: 'status',
  list: 'status',
  ps: 'status',
  get: 'status',
  describe: 'status',
  inspect: 'status',
  info: 'status',
  log: 'logs',
  tail: 'logs',
  deploy: 'publish',
  apply: 'publish',
  push: 'publish',
  release: 'publish',
  run: 'up',
  start: 'up',
  serve: 'up',
  agent: 'up',
  invoke: 'call',
  exec: 'call',
  request: 'call',
  req: 'call',
  undo: 'rollback',
  revert: 'rollback',
  delete: 'retire',
  rm: 'retire',
  remove: 'retire',
  stop: 'retire',
  init: 'keygen',
  key: 'keygen',
  snapshot: 'snapshots',
  backup: 'snapshots',
  backups: 'snapshots',
  token: 'grant',
  auth: 'grant'
}

/** The command `name` most likely meant, among `commands`, or undefined. */
export function suggestCommand (name: string, commands: readonly string[]): string | undefined {
  const word = name.toLowerCase().slice(0, 64)
  const alias = Object.hasOwn(ALIASES, word) ? ALIASES[word] : undefined
  if (alias !== undefined && commands.includes(alias)) return alias
  // The start of exactly one command's name.
  const prefixed = word.length >= 2 ? commands.filter(c => c.startsWith(word)) : []
  if (prefixed.length === 1) return prefixed[0]
  let best: string | undefined
  let bestDistance = Infinity
  for (const c of commands) {
    const d = editDistance(word, c)
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  // One slip in a short word, two in a longer one; anything further is a different word.
  return best !== undefined && bestDistance <= (word.length <= 4 ? 1 : 2) ? best : undefined
}
