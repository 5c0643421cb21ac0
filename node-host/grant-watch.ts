// Grants handed to a node (`--grant`, node.toml `grants`, `<data>/grants/*.grant`) end: `cell grant`
// issues them for 7 days by default. A node whose host grant ended is refused by every peer (its
// records, its replicas, its claims), so a fleet that lives longer than its grants needs them
// renewed without a restart and said before they end. The node re-reads `<data>/grants/` every
// minute: a grant there that verifies and ends later than the one held replaces it (the session
// chain follows, core/identity Credentials), and one from an authority the node does not trust yet
// makes it trust that authority from then on, as a start would; a grant of its own operator's keys is renewed by
// SelfGrants instead. Each held grant from another authority is watched: once a day left (or a fifth
// of its lifetime, if shorter) it is said on stderr every hour with what to do, once ended it is
// said once, and `cell_node_grant_expiry_timestamp_seconds` carries its end for alerts.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { verifyCertificates, type Certificate, type Credentials } from '../core/identity/index.ts'
import { decodeGrantToken } from '../core/identity/grant-token.ts'
import { CellError } from '../core/errors.ts'
import { Repeater, type Clock } from '../core/ports.ts'

const log = logger('cell:node:grants')

/**
 * A grant handed to the node (`--grant`, node.toml, `<data>/grants/*.grant`) does not verify: a bad
 * signature, issued to another peer id, or malformed. Its issuer is not trusted because of it.
 */
export class GrantRejectedError extends CellError { static override readonly errorName = 'GrantRejectedError' }

/** Grant files read per look (`<data>/grants/*.grant`), and bytes per file. */
export const MAX_GRANT_FILES = 64
export const MAX_GRANT_FILE_BYTES = 16 * 1024
const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS

/** Verifies a grant handed to the node: a grant certificate, signed by its issuer, naming `peerId`, valid at `nowMs`. */
export async function verifyGivenGrant (grant: string | Certificate, source: string, peerId: string, nowMs: number): Promise<Certificate> {
  let cert: Certificate
  try {
    cert = typeof grant === 'string' ? decodeGrantToken(grant) : grant
  } catch (err) {
    throw new GrantRejectedError(`${source} does not verify: ${(err as Error).name}: ${(err as Error).message}`, { cause: err })
  }
  if (cert.kind !== 'grant') throw new GrantRejectedError(`${source} is a ${cert.kind} certificate, not a grant`)
  try {
    await verifyCertificates([cert], { remotePeerId: peerId, trusted: new Set([cert.issuer]), requiredRole: cert.roles[0] ?? 'host', nowMs })
  } catch (err) {
    if ((err as Error).name === 'CertificateExpiredError') throw err
    throw new GrantRejectedError(`${source} does not verify: ${(err as Error).name}: ${(err as Error).message}`, { cause: err })
  }
  return cert
}

/** The grant files of `dir` (`*.grant`, at most MAX_GRANT_FILES, each at most MAX_GRANT_FILE_BYTES), with their paths. */
export async function readGrantFiles (dir: string): Promise<Array<{ grant: string, source: string }>> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter(n => n.endsWith('.grant')).sort()
  const out: Array<{ grant: string, source: string }> = []
  for (const name of names.slice(0, MAX_GRANT_FILES)) {
    const path = join(dir, name)
    const info = await stat(path).catch(() => undefined)
    if (info === undefined || !info.isFile()) continue
    if (info.size > MAX_GRANT_FILE_BYTES) { out.push({ grant: '', source: `${path} (${info.size} bytes, more than a grant)` }); continue }
    out.push({ grant: (await readFile(path, 'utf8').catch(() => '')).trim(), source: path })
  }
  return out
}

export interface GrantWatchInit {
  /** `<data>/grants`. */
  dir: string
  credentials: Pick<Credentials, 'peerId' | 'authorities' | 'grantFor' | 'addGrant'>
  /**
   * Authorities this node trusts. A grant file from another one that verifies makes the node trust
   * its issuer from then on, as it would at a start with the file there (the same directory is read
   * then): whoever can write `<data>/grants/` holds the node's key anyway.
   */
  trusted: Set<string>
  /** Authorities whose keys this node holds (SelfGrants renews those). */
  selfIssued: ReadonlySet<string>
  clock: Clock
  /** How often the directory is read and the grants looked at (default 60 s). */
  checkMs?: number
  /** How often a grant about to end is said again (default 1 h). */
  repeatMs?: number
  /** Where warnings go (default: this module's log at error level, on stderr at the default level). */
  warn?: (text: string) => void
}

export interface GrantExpiry { authority: string, notAfterMs: number, selfIssued: boolean }

export class GrantWatch {
  private readonly init: GrantWatchInit
  private repeater?: Repeater
  /** When each authority's ending grant was last said (by notAfterMs, so a renewal says it afresh). */
  private readonly said = new Map<string, { notAfterMs: number, atMs: number, ended: boolean }>()
  /** Problems with grant files already said (path + what), so each is said once. */
  private readonly fileProblems = new Set<string>()
  /** Grants taken from `<data>/grants/` while the node ran (renewals and grants of newly trusted authorities). */
  renewed = 0
  /** Authorities the node came to trust while it ran, through a grant file. */
  newlyTrusted = 0
  /** Told when a grant file made the node trust a new authority (the node then pulls the fleet's records of it). */
  onTrusted?: (authority: string) => void

  constructor (init: GrantWatchInit) {
    this.init = init
  }

  /** Every held grant's end, for the metrics. */
  expiries (): GrantExpiry[] {
    return this.init.credentials.authorities().slice(0, MAX_GRANT_FILES).flatMap(authority => {
      const g = this.init.credentials.grantFor(authority)
      return g === undefined ? [] : [{ authority, notAfterMs: g.notAfterMs, selfIssued: this.init.selfIssued.has(authority) }]
    })
  }

  /** One look: take renewed grants from the directory, then say what is about to end or ended. */
  async check (): Promise<void> {
    await this.readDirectory()
    this.sayEndings()
  }

  start (): void {
    this.repeater ??= new Repeater({ clock: this.init.clock, everyMs: this.init.checkMs ?? 60_000, work: async () => { await this.check() }, onError: (err) => { this.warn(`looking at the node's grants failed: ${(err as Error).name}: ${(err as Error).message}`) }, unref: true })
    if (this.repeater.running) return
    this.sayEndings()
    this.repeater.start()
  }

  stop (): void {
    this.repeater?.stop()
  }

  private warn (text: string): void {
    if (this.init.warn !== undefined) this.init.warn(text)
    else log.error('%s', text)
  }

  private fileProblem (key: string, text: string): void {
    if (this.fileProblems.has(key)) return
    if (this.fileProblems.size >= 4 * MAX_GRANT_FILES) this.fileProblems.clear()
    this.fileProblems.add(key)
    this.warn(text)
  }

  private async readDirectory (): Promise<void> {
    const { credentials, trusted, clock } = this.init
    for (const { grant, source } of await readGrantFiles(this.init.dir)) {
      let cert: Certificate
      try {
        cert = await verifyGivenGrant(grant, source, credentials.peerId, clock.now())
      } catch (err) {
        // An ended grant left beside its renewal is no news; anything else is said once per content.
        if ((err as Error).name !== 'CertificateExpiredError') this.fileProblem(`${source} ${grant.slice(-32)}`, `ignoring ${source}: ${(err as Error).message}`)
        continue
      }
      const held = credentials.grantFor(cert.issuer)
      const fresh = !trusted.has(cert.issuer)
      if (!fresh && held !== undefined && held.notAfterMs >= cert.notAfterMs) continue
      if (fresh && trusted.size >= MAX_GRANT_FILES) {
        this.fileProblem(`${source} too many ${cert.issuer}`, `${source} is a grant from ${cert.issuer.slice(0, 16)}…, but this node already trusts ${trusted.size} authorities: not taken`)
        continue
      }
      credentials.addGrant(cert)
      this.renewed++
      const until = `valid until ${new Date(cert.notAfterMs).toISOString()}`
      if (!fresh) {
        this.warn(`took the ${cert.roles.join(', ')} grant from ${cert.issuer.slice(0, 16)}… in ${source}: ${until}${held !== undefined ? ` (the one held ended ${new Date(held.notAfterMs).toISOString()})` : ''}`)
        continue
      }
      trusted.add(cert.issuer)
      this.newlyTrusted++
      this.warn(`took the ${cert.roles.join(', ')} grant from ${cert.issuer.slice(0, 16)}… in ${source}: ${until}; this node trusts ${cert.issuer.slice(0, 16)}… from now on (no restart)`)
      this.onTrusted?.(cert.issuer)
    }
  }

  private sayEndings (): void {
    const now = this.init.clock.now()
    const repeatMs = this.init.repeatMs ?? HOUR_MS
    for (const authority of this.init.credentials.authorities().slice(0, MAX_GRANT_FILES)) {
      const grant = this.init.credentials.grantFor(authority)
      if (grant === undefined || this.init.selfIssued.has(authority)) continue
      const { notAfterMs } = grant
      const lifetimeMs = Math.max(0, grant.notAfterMs - grant.notBeforeMs)
      const warnMs = Math.min(DAY_MS, lifetimeMs / 5)
      const leftMs = notAfterMs - now
      const last = this.said.get(authority)
      const fresh = last === undefined || last.notAfterMs !== notAfterMs
      const what = `${grant.roles.join(', ')} grant from ${authority.slice(0, 16)}…`
      const todo = `issue another with \`cell grant ${grant.roles.join(',')} ${this.init.credentials.peerId}\` and save it as ${join(this.init.dir, '<name>.grant')}: the node takes it within a minute, no restart`
      if (leftMs <= 0) {
        if (!fresh && last.ended) continue
        this.said.set(authority, { notAfterMs, atMs: now, ended: true })
        this.warn(`the ${what} ENDED at ${new Date(notAfterMs).toISOString()}: peers refuse this node's records for that authority's cells; ${todo}`)
      } else if (leftMs <= warnMs && (fresh || now - last.atMs >= repeatMs)) {
        this.said.set(authority, { notAfterMs, atMs: now, ended: false })
        this.warn(`the ${what} ends in ${formatLeft(leftMs)} (${new Date(notAfterMs).toISOString()}); ${todo}`)
      }
    }
  }
}

function formatLeft (ms: number): string {
  if (ms >= HOUR_MS) return `${Math.floor(ms / HOUR_MS)} h ${Math.round((ms % HOUR_MS) / 60_000)} min`
  if (ms >= 60_000) return `${Math.round(ms / 60_000)} min`
  return `${Math.ceil(ms / 1000)} s`
}
