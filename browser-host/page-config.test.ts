import { describe, expect, it } from 'vitest'
import { BadPageConfigError, loadPageConfig, pageConfigFromQuery, parsePageConfig, requestGrant, PAGE_CONFIG_LIMITS } from './page-config.ts'

const ADDR = '/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

describe('page config', () => {
  it('reads the query: repeated or comma-separated bootstrap, trust and grant', () => {
    expect(pageConfigFromQuery('')).toBeUndefined()
    expect(pageConfigFromQuery(`?bootstrap=${encodeURIComponent(ADDR)},${encodeURIComponent(ADDR + 'x')}&trust=ab&grant=cell-grant-v1:t`))
      .toEqual({ bootstrap: [ADDR, ADDR + 'x'], trust: ['ab'], grantToken: 'cell-grant-v1:t' })
  })

  it('rejects documents a page cannot join with, by name', () => {
    for (const doc of [null, [], 'x', {}, { bootstrap: [] }, { bootstrap: [1] }, { bootstrap: 'a' },
      { bootstrap: Array(PAGE_CONFIG_LIMITS.bootstrap + 1).fill(ADDR) }, { bootstrap: [ADDR], grantToken: 5 }]) {
      expect(() => parsePageConfig(doc), JSON.stringify(doc)).toThrow(BadPageConfigError)
    }
    expect(parsePageConfig({ bootstrap: [ADDR], grantUrl: 'grant', extra: 1 })).toEqual({ bootstrap: [ADDR], trust: [], grantUrl: 'grant' })
  })

  it('loads cell-config.json beside the page; none served means not connected', async () => {
    const at: string[] = []
    const serve = (status: number, body: string): typeof fetch => (async (url: URL) => { at.push(String(url)); return new Response(body, { status }) }) as unknown as typeof fetch
    const location = { search: '', href: 'http://127.0.0.1:8080/dash/index.html' }
    expect(await loadPageConfig(location, { fetch: serve(200, JSON.stringify({ bootstrap: [ADDR] })) })).toEqual({ bootstrap: [ADDR], trust: [] })
    expect(at).toEqual(['http://127.0.0.1:8080/dash/cell-config.json'])
    expect(await loadPageConfig(location, { fetch: serve(404, '') })).toBeUndefined()
    await expect(loadPageConfig(location, { fetch: serve(500, '') })).rejects.toThrow(BadPageConfigError)
    await expect(loadPageConfig(location, { fetch: serve(200, '{') })).rejects.toThrow(BadPageConfigError)
    // The query wins and nothing is fetched.
    expect(await loadPageConfig({ ...location, search: `?bootstrap=${encodeURIComponent(ADDR)}` }, { fetch: serve(500, '') })).toEqual({ bootstrap: [ADDR], trust: [] })
  })

  it('asks the host for a grant for its own peer id', async () => {
    let sent: unknown
    const host = (async (url: URL, init: RequestInit) => { sent = [String(url), init.method, JSON.parse(String(init.body))]; return Response.json({ token: 'cell-grant-v1:x' }) }) as unknown as typeof fetch
    expect(await requestGrant('grant', 'peer1', 'http://h/dash/', { fetch: host })).toBe('cell-grant-v1:x')
    expect(sent).toEqual(['http://h/dash/grant', 'POST', { peerId: 'peer1' }])
    const refusing = (async () => new Response('no', { status: 429 })) as unknown as typeof fetch
    await expect(requestGrant('grant', 'peer1', 'http://h/', { fetch: refusing })).rejects.toThrow(BadPageConfigError)
  })
})
