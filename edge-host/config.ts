// The edge's settings, read from the Worker's vars and secrets (wrangler.toml [vars], `.dev.vars`,
// `wrangler secret put`). Every value is checked here, once, with a named error that says which
// var is wrong; nothing past this file reads `env`.
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { fromString } from 'uint8arrays/from-string'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { decodeGrantToken, type Certificate } from '../core/identity/index.ts'
import { EdgeConfigError } from './errors.ts'

/** What the Worker's environment may hold (all strings: vars and secrets alike). */
export interface EdgeEnv {
  /** Secret: the edge's libp2p ed25519 key, protobuf-encoded, base64 (edge-host/keys.ts makes one). */
  EDGE_KEY?: string
  /** Secret or var: `cell grant caller <edge peer id>`'s token (cell-grant-v1:…). */
  EDGE_GRANT?: string
  /** Full nodes' WebSocket multiaddrs with /p2p/ ids, separated by commas or whitespace. */
  BOOTSTRAP?: string
  /** Authority ids whose releases and replicas the edge accepts (the grant's issuer is added). */
  TRUST?: string
  /** Hosts on private ranges the edge may dial anyway (e.g. "127.0.0.1" for a fleet on a laptop). */
  ALLOW_HOSTS?: string
  MAX_BODY_BYTES?: string
  DEFAULT_DEADLINE_MS?: string
  MAX_DEADLINE_MS?: string
  /** Fleet heartbeat period the view's ttl derives from (default 1000, as full nodes). */
  HEARTBEAT_MS?: string
}

export interface EdgeConfig {
  privateKey: Ed25519PrivateKey
  grant?: Certificate
  grantToken?: string
  bootstrap: string[]
  trust: string[]
  allowHosts: string[]
  maxBodyBytes: number
  defaultDeadlineMs: number
  maxDeadlineMs: number
  heartbeatMs: number
}

export const CONFIG_LIMITS = {
  bootstrap: 32,
  trust: 64,
  allowHosts: 32,
  /** Synapse frames carry at most 4 MiB; a body larger than that could never be sent anyway. */
  maxBodyBytes: 4 * 1024 * 1024,
  maxDeadlineMs: 300_000
} as const

export const CONFIG_DEFAULTS = {
  maxBodyBytes: 1024 * 1024,
  defaultDeadlineMs: 10_000,
  maxDeadlineMs: 60_000,
  heartbeatMs: 1000
} as const

function list (text: string | undefined, name: string, max: number): string[] {
  const items = (text ?? '').split(/[\s,]+/).map(s => s.trim()).filter(s => s !== '')
  if (items.length > max) throw new EdgeConfigError(`${name}: at most ${max} entries, got ${items.length}`)
  return [...new Set(items)]
}

function whole (text: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (text == null || text.trim() === '') return fallback
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new EdgeConfigError(`${name}: expected a whole number in [${min}, ${max}], got "${text.slice(0, 40)}"`)
  return n
}

export function parseEdgeKey (text: string | undefined): Ed25519PrivateKey {
  if (text == null || text.trim() === '') throw new EdgeConfigError('EDGE_KEY is not set: make one with `node edge-host/keys.ts` and store it as a secret (wrangler secret put EDGE_KEY, or .dev.vars)')
  let key
  try {
    key = privateKeyFromProtobuf(fromString(text.trim(), 'base64pad'))
  } catch (err) {
    throw new EdgeConfigError('EDGE_KEY is not a base64 protobuf-encoded libp2p private key', { cause: err })
  }
  if (key.type !== 'Ed25519') throw new EdgeConfigError(`EDGE_KEY is a ${key.type} key, expected Ed25519`)
  return key
}

export function parseEdgeConfig (env: EdgeEnv): EdgeConfig {
  const privateKey = parseEdgeKey(env.EDGE_KEY)
  const bootstrap = list(env.BOOTSTRAP, 'BOOTSTRAP', CONFIG_LIMITS.bootstrap)
  if (bootstrap.length === 0) throw new EdgeConfigError('BOOTSTRAP is empty: give the WebSocket multiaddrs (/ws/p2p/…) of one or more full nodes')
  for (const a of bootstrap) {
    if (!/\/p2p\/\w+$/.test(a) || !/\/(ws|wss|tls\/ws)\//.test(a)) throw new EdgeConfigError(`BOOTSTRAP: "${a.slice(0, 120)}" is not a WebSocket multiaddr ending in /p2p/<peer id>`)
  }
  const trust = list(env.TRUST, 'TRUST', CONFIG_LIMITS.trust)
  for (const t of trust) if (!/^[0-9a-f]{64}$/.test(t)) throw new EdgeConfigError(`TRUST: "${t.slice(0, 80)}" is not an authority id (64 hex digits)`)
  let grant: Certificate | undefined
  const grantToken = env.EDGE_GRANT?.trim()
  if (grantToken != null && grantToken !== '') {
    try {
      grant = decodeGrantToken(grantToken)
    } catch (err) {
      throw new EdgeConfigError('EDGE_GRANT is not a grant token (cell grant caller <edge peer id> prints one)', { cause: err })
    }
    if (!trust.includes(grant.issuer)) trust.push(grant.issuer)
  }
  const maxDeadlineMs = whole(env.MAX_DEADLINE_MS, 'MAX_DEADLINE_MS', CONFIG_DEFAULTS.maxDeadlineMs, 1, CONFIG_LIMITS.maxDeadlineMs)
  return {
    privateKey,
    ...(grant !== undefined ? { grant, grantToken } : {}),
    bootstrap,
    trust,
    allowHosts: list(env.ALLOW_HOSTS, 'ALLOW_HOSTS', CONFIG_LIMITS.allowHosts),
    maxBodyBytes: whole(env.MAX_BODY_BYTES, 'MAX_BODY_BYTES', CONFIG_DEFAULTS.maxBodyBytes, 1, CONFIG_LIMITS.maxBodyBytes),
    defaultDeadlineMs: Math.min(maxDeadlineMs, whole(env.DEFAULT_DEADLINE_MS, 'DEFAULT_DEADLINE_MS', CONFIG_DEFAULTS.defaultDeadlineMs, 1, CONFIG_LIMITS.maxDeadlineMs)),
    maxDeadlineMs,
    heartbeatMs: whole(env.HEARTBEAT_MS, 'HEARTBEAT_MS', CONFIG_DEFAULTS.heartbeatMs, 100, 60_000)
  }
}
