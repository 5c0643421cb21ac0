import { describe, it, expect } from 'vitest'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../core/identity/index.ts'
import { parseEdgeConfig, CONFIG_DEFAULTS } from './config.ts'
import { EdgeConfigError } from './errors.ts'
import { newEdgeKey, edgePeerId } from './keys.ts'

const WS = '/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWFkKgZah5UyvFrrtitn5TKJjD77LCThPKyb4kRSAbYvLG'

describe('edge config', () => {
  it('reads key, grant (its issuer trusted), bootstrap and limits from the env', async () => {
    const { key, peerId } = await newEdgeKey()
    expect(edgePeerId(key)).toBe(peerId)
    const authority = await generateAuthority()
    const now = Date.now()
    const grant = encodeGrantToken(await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now, notAfterMs: now + 60_000 }))
    const c = parseEdgeConfig({ EDGE_KEY: key, EDGE_GRANT: grant, BOOTSTRAP: `${WS}, ${WS}\n`, ALLOW_HOSTS: '127.0.0.1', MAX_DEADLINE_MS: '3000' })
    expect(c.bootstrap).toEqual([WS])
    expect(c.trust).toEqual([authorityIdOf(authority.publicKey)])
    expect(c.allowHosts).toEqual(['127.0.0.1'])
    expect(c.maxDeadlineMs).toBe(3000)
    expect(c.defaultDeadlineMs).toBe(3000) // never above the maximum
    expect(c.maxBodyBytes).toBe(CONFIG_DEFAULTS.maxBodyBytes)
  })

  it('names the var that is wrong', async () => {
    const { key } = await newEdgeKey()
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ BOOTSTRAP: WS }, /EDGE_KEY is not set/],
      [{ EDGE_KEY: 'bm90IGEga2V5', BOOTSTRAP: WS }, /EDGE_KEY is not/],
      [{ EDGE_KEY: key }, /BOOTSTRAP is empty/],
      [{ EDGE_KEY: key, BOOTSTRAP: '/ip4/127.0.0.1/tcp/4001/p2p/x' }, /BOOTSTRAP: .* not a WebSocket/],
      [{ EDGE_KEY: key, BOOTSTRAP: WS, TRUST: 'abc' }, /TRUST: /],
      [{ EDGE_KEY: key, BOOTSTRAP: WS, EDGE_GRANT: 'cell-grant-v1:garbage' }, /EDGE_GRANT/],
      [{ EDGE_KEY: key, BOOTSTRAP: WS, MAX_BODY_BYTES: '99999999999' }, /MAX_BODY_BYTES/],
      [{ EDGE_KEY: key, BOOTSTRAP: Array.from({ length: 40 }, (_, i) => WS.replace('4001', String(5000 + i))).join(',') }, /BOOTSTRAP: at most/]
    ]
    for (const [env, message] of bad) {
      let caught: unknown
      try { parseEdgeConfig(env) } catch (err) { caught = err }
      expect(caught, JSON.stringify(env).slice(0, 80)).toBeInstanceOf(EdgeConfigError)
      expect((caught as Error).message).toMatch(message)
    }
  })
})
