import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serveDashboard, webSocketAddrs, STATIC_LIMITS, type DashboardServer } from './static-server.ts'

interface Reply { status: number, body: string, headers: Record<string, unknown> }

// Raw requests: fetch() would normalise "/../" away before it reaches the server.
async function raw (port: number, path: string, init: { method?: string, body?: string, headers?: Record<string, string | number> } = {}): Promise<Reply> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: init.method ?? 'GET', headers: init.headers, signal: AbortSignal.timeout(5000) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(init.body)
  })
}

describe('dashboard static server', () => {
  let dir = ''
  let server: DashboardServer
  const issued: string[] = []
  const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-static-'))
    await mkdir(join(dir, 'dist', 'assets'), { recursive: true })
    await writeFile(join(dir, 'dist', 'index.html'), '<p>dashboard</p>')
    await writeFile(join(dir, 'dist', 'assets', 'app.js'), 'export const x = 1')
    await writeFile(join(dir, 'secret.txt'), 'outside the root')
    await symlink(join(dir, 'secret.txt'), join(dir, 'dist', 'link.txt'))
    server = await serveDashboard({
      root: join(dir, 'dist'),
      config: () => ({ bootstrap: ['/ip4/127.0.0.1/tcp/1/ws/p2p/' + PEER], trust: ['ab'.repeat(32)] }),
      issueGrant: async (peerId) => { issued.push(peerId); return `cell-grant-v1:for-${peerId}` }
    })
  })
  afterAll(async () => {
    await server?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('serves the page, hashed assets and the config with a grant URL', async () => {
    const index = await raw(server.port, '/')
    expect(index).toMatchObject({ status: 200, body: '<p>dashboard</p>' })
    expect(index.headers['content-type']).toMatch(/text\/html/)
    const asset = await raw(server.port, '/assets/app.js')
    expect(asset.status).toBe(200)
    expect(asset.headers['cache-control']).toMatch(/immutable/)
    const config = await raw(server.port, '/cell-config.json')
    expect(JSON.parse(config.body)).toEqual({ bootstrap: ['/ip4/127.0.0.1/tcp/1/ws/p2p/' + PEER], trust: ['ab'.repeat(32)], grantUrl: 'grant', grantSecret: expect.stringMatching(/^[\w-]{43}$/) })
    expect(index.headers['content-security-policy']).toBe("frame-ancestors 'none'")
    expect((await raw(server.port, '/nope.js')).status).toBe(404)
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/`)
  })

  it('never serves a file outside its root', async () => {
    for (const path of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/%2e%2e%2fsecret.txt',
      '/assets%2f..%2f..%2fsecret.txt', '/..\\secret.txt', '/%5c..%5csecret.txt', '/link.txt', '/%00index.html', '/%E0%A4%A']) {
      const reply = await raw(server.port, path)
      expect([400, 403, 404], path).toContain(reply.status)
      expect(reply.body, path).not.toContain('outside the root')
    }
  })

  it('bounds URLs, methods and grant bodies', async () => {
    expect((await raw(server.port, '/' + 'a'.repeat(STATIC_LIMITS.urlChars))).status).toBe(414)
    expect((await raw(server.port, '/', { method: 'PUT', body: 'x' })).status).toBe(405)
    const big = JSON.stringify({ peerId: PEER, pad: 'x'.repeat(STATIC_LIMITS.grantBodyBytes) })
    const secret = (JSON.parse((await raw(server.port, '/cell-config.json')).body) as { grantSecret: string }).grantSecret
    const headers = { 'content-type': 'application/json', 'x-cell-grant-secret': secret }
    expect((await raw(server.port, '/grant', { method: 'POST', body: big, headers })).status).toBe(413)
    expect((await raw(server.port, '/grant', { method: 'POST', body: '{"peerId":"../../etc"}', headers })).status).toBe(400)
    expect(issued).toEqual([])
    const ok = await raw(server.port, '/grant', { method: 'POST', body: JSON.stringify({ peerId: PEER }), headers })
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.body)).toEqual({ token: `cell-grant-v1:for-${PEER}` })
    expect(issued).toEqual([PEER])
  })

  it('picks loopback WebSocket addresses for the config', () => {
    const p = '/p2p/' + PEER
    expect(webSocketAddrs([`/ip4/127.0.0.1/tcp/1${p}`, `/ip4/10.0.0.2/tcp/2/ws${p}`, `/ip4/127.0.0.1/tcp/3/ws${p}`, `/ip4/127.0.0.1/udp/4/webrtc-direct${p}`]))
      .toEqual([`/ip4/127.0.0.1/tcp/3/ws${p}`])
    expect(webSocketAddrs([`/ip4/10.0.0.2/tcp/2/ws${p}`])).toEqual([`/ip4/10.0.0.2/tcp/2/ws${p}`])
  })
})
