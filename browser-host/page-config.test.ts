import { describe, expect, it } from 'vitest'
import { BadPageConfigError, loadPageConfig, pageConfigFromQuery, parsePageConfig, requestGrant, PAGE_CONFIG_LIMITS } from './page-config.ts'

const ADDR = '/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const A = 'ab'.repeat(32)
const B = 'cd'.repeat(32)

describe('page config', () => {
  it('reads the query: repeated or comma-separated bootstrap, trust and grant', () => {
    expect(pageConfigFromQuery('')).toBeUndefined()
    expect(pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)},${encodeURIComponent(ADDR + 'x')}&trust=${A}&grant=cell-grant-v1:t`))
      .toEqual({ bootstrap: [ADDR, ADDR + 'x'], trust: [], linkTrust: [A], grantToken: 'cell-grant-v1:t' })
  })

  it('only proposes a link\'s authorities; a link never carries a grant URL or secret', () => {
    const q = pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)}&trust=${A},${B.toUpperCase()}&trust=${A}&grantUrl=http://evil/&grantSecret=s`)
    expect(q).toEqual({ bootstrap: [ADDR], trust: [], linkTrust: [A, B] })
    for (const bad of ['ab', 'zz'.repeat(32), A + '00']) {
      expect(() => pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)}&trust=${bad}`), bad).toThrow(BadPageConfigError)
    }
    // The host's config is the operator's: its trust is used as given, and it may carry the secret.
    expect(parsePageConfig({ bootstrap: [ADDR], trust: [A], grantUrl: 'grant', grantSecret: 's3cret', linkTrust: [B] }))
      .toEqual({ bootstrap: [ADDR], trust: [A], grantUrl: 'grant', grantSecret: 's3cret' })
    expect(() => parsePageConfig({ bootstrap: [ADDR], trust: ['ab'] })).toThrow(BadPageConfigError)
  })

  it('rejects documents a page cannot join with, by name', () => {
    for (const doc of [null, [], 'x', {}, { bootstrap: [] }, { bootstrap: [1] }, { bootstrap: 'a' },
      { bootstrap: Array(PAGE_CONFIG_LIMITS.bootstrap + 1).fill(ADDR) }, { bootstrap: [ADDR], grantToken: 5 }]) {
      expect(() => parsePageConfig(doc), JSON.stringify(doc)).toThrow(BadPageConfigError)
    }
    expect(parsePageConfig({ bootstrap: [ADDR], grantUrl: 'grant', extra: 1 })).toEqual({ bootstrap: [ADDR], trust: [], grantUrl: 'grant' })
  })

  it('names the fleet\'s dissemination mode: fleet or per-cell, absent is fleet, anything else refused by name', () => {
    expect(parsePageConfig({ bootstrap: [ADDR], dissemination: 'per-cell' })).toEqual({ bootstrap: [ADDR], trust: [], dissemination: 'per-cell' })
    expect(parsePageConfig({ bootstrap: [ADDR], dissemination: 'fleet' })).toEqual({ bootstrap: [ADDR], trust: [], dissemination: 'fleet' })
    // Absent: the field stays absent (the light peer's default, 'fleet').
    expect(parsePageConfig({ bootstrap: [ADDR] })).not.toHaveProperty('dissemination')
    for (const bad of ['per_cell', 'PER-CELL', '', 'fleet ', 1, null, ['per-cell'], { mode: 'per-cell' }, 'x'.repeat(10_000)]) {
      let thrown: unknown
      try { parsePageConfig({ bootstrap: [ADDR], dissemination: bad }) } catch (err) { thrown = err }
      expect(thrown, JSON.stringify(bad)?.slice(0, 40)).toBeInstanceOf(BadPageConfigError)
      expect((thrown as Error).name).toBe('BadPageConfigError')
      expect((thrown as Error).message).toMatch(/^dissemination must be "fleet" or "per-cell", not /)
      expect((thrown as Error).message.length).toBeLessThan(120) // an oversized value is not echoed whole
    }
    // A link may name it too; empty means absent, a wrong mode is refused.
    expect(pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)}&dissemination=per-cell`)).toEqual({ bootstrap: [ADDR], trust: [], linkTrust: [], dissemination: 'per-cell' })
    expect(pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)}&dissemination=`)).toEqual({ bootstrap: [ADDR], trust: [], linkTrust: [] })
    expect(() => pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)}&dissemination=gossip`)).toThrow(BadPageConfigError)
  })

  it('loads cell-config.json beside the page; none served means not connected', async () => {
    const at: string[] = []
    const serve = (status: number, body: string): typeof fetch => (async (url: URL) => { at.push(String(url)); return new Response(body, { status }) }) as unknown as typeof fetch
    const location = { search: '', href: 'http://127.0.0.1:8080/dash/index.html' }
    expect(await loadPageConfig(location, { fetch: serve(200, JSON.stringify({ bootstrap: [ADDR] })) })).toEqual({ bootstrap: [ADDR], trust: [] })
    expect(at).toEqual(['http://127.0.0.1:8080/dash/cell-config.json'])
    expect(await loadPageConfig(location, { fetch: serve(200, JSON.stringify({ bootstrap: [ADDR], dissemination: 'per-cell' })) })).toEqual({ bootstrap: [ADDR], trust: [], dissemination: 'per-cell' })
    await expect(loadPageConfig(location, { fetch: serve(200, JSON.stringify({ bootstrap: [ADDR], dissemination: 'members' })) })).rejects.toThrow(BadPageConfigError)
    expect(await loadPageConfig(location, { fetch: serve(404, '') })).toBeUndefined()
    await expect(loadPageConfig(location, { fetch: serve(500, '') })).rejects.toThrow(BadPageConfigError)
    await expect(loadPageConfig(location, { fetch: serve(200, '{') })).rejects.toThrow(BadPageConfigError)
    // The query wins and nothing is fetched.
    expect(await loadPageConfig({ ...location, search: `?bootstrap=${encodeURIComponent(ADDR)}` }, { fetch: serve(500, '') })).toEqual({ bootstrap: [ADDR], trust: [], linkTrust: [] })
  })

  it('asks the host for a grant for its own peer id, with the host\'s secret, same-origin only', async () => {
    let sent: unknown
    const host = (async (url: URL, init: RequestInit) => { sent = [String(url), init.method, init.headers, JSON.parse(String(init.body))]; return Response.json({ token: 'cell-grant-v1:x' }) }) as unknown as typeof fetch
    expect(await requestGrant('grant', 'peer1', 'http://h/dash/', { secret: 's3cret', fetch: host })).toBe('cell-grant-v1:x')
    expect(sent).toEqual(['http://h/dash/grant', 'POST', { 'content-type': 'application/json', 'x-cell-grant-secret': 's3cret' }, { peerId: 'peer1' }])
    sent = undefined
    await expect(requestGrant('http://elsewhere/grant', 'peer1', 'http://h/dash/', { secret: 's3cret', fetch: host })).rejects.toThrow(BadPageConfigError)
    expect(sent).toBeUndefined()
    const refusing = (async () => new Response('no', { status: 429 })) as unknown as typeof fetch
    await expect(requestGrant('grant', 'peer1', 'http://h/', { fetch: refusing })).rejects.toThrow(BadPageConfigError)
  })
})
