// What a dashboard page needs to join a fleet: bootstrap multiaddrs, optionally authorities to
// trust, a grant token for this tab, or a URL where the local host issues one for the tab's peer
// id. It comes from the URL query (`?bootstrap=...&grant=...&trust=...`) or from the host's
// `cell-config.json`; both are parsed strictly and bounded here.
import { CellError } from '../core/errors.ts'

/** The config document or query is not what a page can join with. */
export class BadPageConfigError extends CellError {}

export const PAGE_CONFIG_LIMITS = {
  bootstrap: 32,
  trust: 32,
  addrChars: 512,
  tokenChars: 8192,
  urlChars: 512,
  /** Bytes of cell-config.json a page reads at most. */
  documentBytes: 64 * 1024
} as const

export interface PageConfig {
  bootstrap: string[]
  trust: string[]
  /** A `cell-grant-v1:` token for this tab's (already known) peer id. */
  grantToken?: string
  /** Relative or absolute URL: POST `{ "peerId": ... }` → `{ "token": ... }` (local demo hosts only). */
  grantUrl?: string
}

function strings (value: unknown, max: number, maxChars: number, what: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > max) throw new BadPageConfigError(`${what} must be an array of at most ${max} strings`)
  return value.map((v) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > maxChars) throw new BadPageConfigError(`${what} holds an entry that is not a string of 1-${maxChars} characters`)
    return v
  })
}

function optionalString (value: unknown, maxChars: number, what: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string' || value.length > maxChars) throw new BadPageConfigError(`${what} must be a string of at most ${maxChars} characters`)
  return value
}

/** Validates a parsed cell-config.json. */
export function parsePageConfig (doc: unknown): PageConfig {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new BadPageConfigError('cell-config.json must be a JSON object')
  const d = doc as Record<string, unknown>
  const config: PageConfig = {
    bootstrap: strings(d.bootstrap, PAGE_CONFIG_LIMITS.bootstrap, PAGE_CONFIG_LIMITS.addrChars, 'bootstrap'),
    trust: strings(d.trust, PAGE_CONFIG_LIMITS.trust, 128, 'trust')
  }
  if (config.bootstrap.length === 0) throw new BadPageConfigError('bootstrap lists no full node address')
  const grantToken = optionalString(d.grantToken, PAGE_CONFIG_LIMITS.tokenChars, 'grantToken')
  const grantUrl = optionalString(d.grantUrl, PAGE_CONFIG_LIMITS.urlChars, 'grantUrl')
  if (grantToken !== undefined) config.grantToken = grantToken
  if (grantUrl !== undefined) config.grantUrl = grantUrl
  return config
}

/** Reads `?bootstrap=a,b&bootstrap=c&trust=...&grant=...`; undefined when no bootstrap is given. */
export function pageConfigFromQuery (search: string): PageConfig | undefined {
  const q = new URLSearchParams(search)
  const list = (key: string): string[] => q.getAll(key).flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
  const bootstrap = list('bootstrap')
  if (bootstrap.length === 0) return undefined
  return parsePageConfig({ bootstrap, trust: list('trust'), grantToken: q.get('grant') ?? undefined })
}

/**
 * The page's config: the query wins; else `cell-config.json` beside the page. Undefined when the
 * host serves none (a plain static copy of the dashboard): the page then shows "not connected".
 */
export async function loadPageConfig (location: { search: string, href: string }, options: { signal?: AbortSignal, fetch?: typeof fetch } = {}): Promise<PageConfig | undefined> {
  const fromQuery = pageConfigFromQuery(location.search)
  if (fromQuery !== undefined) return fromQuery
  const res = await (options.fetch ?? fetch)(new URL('cell-config.json', location.href), { signal: options.signal, cache: 'no-store' })
  if (res.status === 404) return undefined
  if (!res.ok) throw new BadPageConfigError(`cell-config.json: HTTP ${res.status}`)
  const text = await res.text()
  if (text.length > PAGE_CONFIG_LIMITS.documentBytes) throw new BadPageConfigError('cell-config.json is too large')
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new BadPageConfigError('cell-config.json is not JSON', { cause: err })
  }
  return parsePageConfig(doc)
}

/** Asks the local host to issue a caller grant for this tab's peer id (demo hosts only). */
export async function requestGrant (grantUrl: string, peerId: string, base: string, options: { signal?: AbortSignal, fetch?: typeof fetch } = {}): Promise<string> {
  const res = await (options.fetch ?? fetch)(new URL(grantUrl, base), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ peerId }),
    signal: options.signal
  })
  if (!res.ok) throw new BadPageConfigError(`the host refused a grant for ${peerId}: HTTP ${res.status}`)
  const text = await res.text()
  if (text.length > PAGE_CONFIG_LIMITS.tokenChars + 64) throw new BadPageConfigError('grant answer is too large')
  const body = JSON.parse(text) as { token?: unknown }
  if (typeof body.token !== 'string') throw new BadPageConfigError('grant answer carries no token')
  return body.token
}
