// `cell grant`: the authority signs a grant for one libp2p peer id (a node for `host`, a client for
// `caller`, an admin for `operator`) and prints it as a one-line token to hand to that peer
// (`cell up --grant <token>`, or paste into the browser page). Only the authority key holder can
// run this; the token itself is not secret (it is useless without the peer's private key).
import { resolve } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { CellError } from '../../core/errors.ts'
import { MAX_SCOPE_CELLS, ROLES, issueGrant, type Role } from '../../core/identity/index.ts'
import { InvalidDurationError, isCellName, parseDuration } from '../../core/manifest/index.ts'
import { KeyFileNotFoundError, readAuthorityKey } from '../keys/index.ts'
import { encodeGrantToken } from './grant-token.ts'
import { defaultAuthorityKeyPath, parseCommand, usageFailure } from './usage.ts'

/** The subject is not a libp2p peer id (or is one that names no key, such as a URL peer id). */
export class InvalidPeerIdError extends CellError { static override readonly errorName = 'InvalidPeerIdError' }

const DEFAULT_TTL = '7d'
/** Grants are meant to be renewed: a key that leaks with a year-long grant stays useful too long. */
export const MAX_GRANT_TTL_MS = 366 * 86_400_000

const HELP = `usage: cell grant <host|caller|operator>[,role...] <peer-id> [--ttl ${DEFAULT_TTL}] [--key PATH] [--cell NAME]...

Signs a grant of the given roles to a libp2p peer id with the authority key and prints it as a
one-line token (cell-grant-v1:...). Hand it to the peer: \`cell up --grant <token>\`.

roles:
  host       may run replicas of the authority's cells and answer for them
  caller     may call the authority's cells
  operator   may administer the authority's cells on the fleet

options:
  --ttl DURATION  how long the grant is valid from now (default ${DEFAULT_TTL}, at most 366d), e.g. 12h, 30d
  --key PATH      authority private key (default $CELL_HOME/authority.key, CELL_HOME=~/.cell)
  --cell NAME     limit the grant to this cell; repeat for several (at most ${MAX_SCOPE_CELLS}); default all cells
  -h, --help      show this help`

const OPTIONS = {
  ttl: { type: 'string' },
  key: { type: 'string' },
  cell: { type: 'string', multiple: true }
} as const

/** Canonical peer id string; InvalidPeerIdError when `text` is not one. */
export function parsePeerId (text: string): string {
  let id
  try {
    id = peerIdFromString(text)
  } catch (err) {
    throw new InvalidPeerIdError(`"${text.slice(0, 100)}" is not a libp2p peer id (expected e.g. 12D3KooW...)`, { cause: err })
  }
  if (id.type === 'url') throw new InvalidPeerIdError(`"${text.slice(0, 100)}" is a URL peer id; a grant needs a key-backed peer id`)
  return id.toString()
}

/** Roles as written (`host,caller`), deduplicated; a string naming the first bad role on error. */
function parseRoles (text: string): Role[] | string {
  const roles = text.split(',').map(r => r.trim())
  for (const r of roles) {
    if (!ROLES.includes(r as Role)) return `unknown role "${r}"; roles are ${ROLES.join(', ')} (comma-separated)`
  }
  return ROLES.filter(r => roles.includes(r))
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 2, max: 2 })
  if (typeof parsed === 'number') return parsed
  const [roleText, peerText] = parsed.positionals
  const roles = parseRoles(roleText)
  if (typeof roles === 'string') return usageFailure(roles, HELP)

  let ttlMs: number
  try {
    ttlMs = parseDuration(parsed.values.ttl ?? DEFAULT_TTL)
  } catch (err) {
    if (err instanceof InvalidDurationError) return usageFailure(`--ttl: ${err.message}`, HELP)
    throw err
  }
  if (ttlMs > MAX_GRANT_TTL_MS) return usageFailure(`--ttl: at most 366d; issue a new grant when it runs out`, HELP)

  const cells = [...new Set(parsed.values.cell ?? [])]
  const badCell = cells.find(c => !isCellName(c))
  if (badCell != null) return usageFailure(`--cell: "${badCell}" is not a cell name`, HELP)
  if (cells.length > MAX_SCOPE_CELLS) return usageFailure(`--cell: at most ${MAX_SCOPE_CELLS} cells per grant`, HELP)

  const subject = parsePeerId(peerText)
  const keyPath = resolve(parsed.values.key ?? defaultAuthorityKeyPath())
  let authority
  try {
    authority = await readAuthorityKey(keyPath)
  } catch (err) {
    if (err instanceof KeyFileNotFoundError) {
      throw new KeyFileNotFoundError(`no authority key at ${keyPath}; run \`cell keygen\` or pass --key`, { cause: err })
    }
    throw err
  }

  const notBeforeMs = Date.now()
  const cert = await issueGrant(authority, { subject, roles, notBeforeMs, notAfterMs: notBeforeMs + ttlMs, cells })
  process.stdout.write(encodeGrantToken(cert) + '\n')
  const scope = cert.cells.length === 0 ? 'all cells' : `cells ${cert.cells.join(', ')}`
  process.stderr.write(`granted ${cert.roles.join(', ')} on ${scope} to ${subject} until ${new Date(cert.notAfterMs).toISOString()} (authority ${authority.id})\n`)
  if (cert.roles.includes('host')) process.stderr.write('on that node: pass it to `cell up --grant`, or save it as <data>/grants/<name>.grant, which a running node reads within a minute (no restart, for a renewal or a first grant)\n')
  return 0
}
