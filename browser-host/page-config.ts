// What a dashboard page needs to join a fleet: bootstrap multiaddrs, optionally authorities to
// trust, a grant token for this tab, or a URL where the local host issues one for the tab's peer
// id. It comes from the URL query (`?bootstrap=...&grant=...&trust=...`) or from the host's
// `cell-config.json`; both are parsed strictly and bounded here. Both may name the fleet's
// dissemination mode (`dissemination`, 'fleet' or 'per-cell', docs/biology.md "Scale"): the tab's
// light peer must use its fleet's mode; absent means 'fleet'.
//
// Whose word an authority is. `cell-config.json` is the operator's: the page fetches it from its
// own origin and the host serves it only to requests naming the host itself (static-server.ts
// checks Host, so a rebound DNS name cannot read it), so its `trust` is used as given. A URL is
// anyone's: a link can carry any `?trust=`, so the query's authorities come back as `linkTrust`,
// which the page shows the person and stores only after they accept (dashboard/src/fleet-main.ts).
import { CellError } from '../core/errors.ts'
import type { Dissemination } from '../core/fleet/index.ts'

/** The config document or query is not what a page can join with. */
export class BadPageConfigError extends CellError { static override readonly errorName = 'BadPageConfigError' }

export const PAGE_CONFIG_LIMITS = {
  bootstrap: 32,
  trust: 32,
  addrChars: 512,
  tokenChars: 8192,
  urlChars: 512,
  secretChars: 128,
  /** Bytes of cell-config.json a page reads at most. */
  documentBytes: 64 * 1024
} as const

export interface PageConfig {
  bootstrap: string[]
  /** Authorities the host's operator trusts (from cell-config.json only): used without asking. */
  trust: string[]
  /**
   * Authorities a link asks the tab to trust (`?trust=`, the query only): not used or stored until
   * the person accepts them. Absent for cell-config.json.
   */
  linkTrust?: string[]
  /**
   * A `cell-grant-v1:` token for this tab's (already known) peer id. From a link, its issuer is an
   * authority the link asks the tab to trust, like `linkTrust`.
   */
  grantToken?: string
  /** Relative or absolute URL: POST `{ "peerId": ... }` → `{ "token": ... }` (local demo hosts only). */
  grantUrl?: string
  /** The host's per-run secret a grant request must carry (cell-config.json only, never a URL). */
  grantSecret?: string
  /**
   * How the fleet's records travel: the tab's light peer must use the same mode as every node of
   * the fleet. Absent: 'fleet' (the default everywhere).
   */
  dissemination?: Dissemination
}

const DISSEMINATIONS: readonly Dissemination[] = ['fleet', 'per-cell']

/** Authority ids as cell-config.json and links carry them: 64 lowercase hex (an ed25519 public key). */
const AUTHORITY_ID = /^[0-9a-f]{64}$/

function strings (value: unknown, max: number, maxChars: number, what: string): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > max) throw new BadPageConfigError(`${what} must be an array of at most ${max} strings`)
  return value.map((v) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > maxChars) throw new BadPageConfigError(`${what} holds an entry that is not a string of 1-${maxChars} characters`)
    return v
  })
}

function authorityIds (value: unknown, what: string): string[] {
  const ids = strings(value, PAGE_CONFIG_LIMITS.trust, 64, what)
  for (const id of ids) if (!AUTHORITY_ID.test(id)) throw new BadPageConfigError(`${what} holds "${id.slice(0, 16)}", which is not a 64-hex authority id`)
  return [...new Set(ids)]
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
    trust: authorityIds(d.trust, 'trust')
  }
  if (config.bootstrap.length === 0) throw new BadPageConfigError('bootstrap lists no full node address')
  const grantToken = optionalString(d.grantToken, PAGE_CONFIG_LIMITS.tokenChars, 'grantToken')
  const grantUrl = optionalString(d.grantUrl, PAGE_CONFIG_LIMITS.urlChars, 'grantUrl')
  const grantSecret = optionalString(d.grantSecret, PAGE_CONFIG_LIMITS.secretChars, 'grantSecret')
  if (grantToken !== undefined) config.grantToken = grantToken
  if (grantUrl !== undefined) config.grantUrl = grantUrl
  if (grantSecret !== undefined) config.grantSecret = grantSecret
  if (d.dissemination !== undefined) {
    if (typeof d.dissemination !== 'string' || !(DISSEMINATIONS as readonly string[]).includes(d.dissemination)) {
      throw new BadPageConfigError(`dissemination must be ${DISSEMINATIONS.map(m => `"${m}"`).join(' or ')}, not ${typeof d.dissemination === 'string' ? JSON.stringify(d.dissemination.slice(0, 32)) : `a ${typeof d.dissemination}`}`)
    }
    config.dissemination = d.dissemination as Dissemination
  }
  return config
}

function nonEmpty (value: string | null): string | undefined {
  return value === null || value.trim() === '' ? undefined : value.trim()
}

/**
 * Reads `?bootstrap=a,b&bootstrap=c&trust=...&grant=...&dissemination=per-cell`; undefined when no
 * bootstrap is given. The query's authorities are only proposed (`linkTrust`, `trust` stays empty);
 * a link never sets a grant URL or secret. A link's mode only decides what this tab subscribes to.
 */
export function pageConfigFromQuery (search: string): PageConfig | undefined {
  const q = new URLSearchParams(search)
  const list = (key: string): string[] => q.getAll(key).flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
  const bootstrap = list('bootstrap')
  if (bootstrap.length === 0) return undefined
  // No `trust` in what is parsed: a link's authorities are never the operator's.
  return { ...parsePageConfig({ bootstrap, grantToken: q.get('grant') ?? undefined, dissemination: nonEmpty(q.get('dissemination')) }), linkTrust: authorityIds(list('trust').map(t => t.toLowerCase()), 'trust') }
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

/**
 * Asks the local host to issue a caller grant for this tab's peer id (demo hosts only), with the
 * host's per-run secret from cell-config.json. Only a same-origin grant URL is asked: the secret
 * must not travel to any other site a config might name.
 */
export async function requestGrant (grantUrl: string, peerId: string, base: string, options: { secret?: string, signal?: AbortSignal, fetch?: typeof fetch } = {}): Promise<string> {
  const url = new URL(grantUrl, base)
  if (url.origin !== new URL(base).origin) throw new BadPageConfigError(`grantUrl ${url.origin} is not on this page's origin`)
  const res = await (options.fetch ?? fetch)(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(options.secret !== undefined ? { 'x-cell-grant-secret': options.secret } : {}) },
    credentials: 'omit',
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
