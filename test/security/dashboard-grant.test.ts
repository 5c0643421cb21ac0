// Attacks on the dashboard server's `POST /grant` (issue 7 point 6) and on the page's `?trust=`.
//
// 1. DNS rebinding: a page on attacker.example rebinds its name to 127.0.0.1 and then reaches the
//    dashboard server "same-origin", with `Host: attacker.example:<port>`. Before the fix the server
//    answered any Host, served cell-config.json and signed a caller grant for the attacker's peer id.
// 2. Cross-site requests: another origin's page posts to http://127.0.0.1:<port>/grant.
// 3. A link `?bootstrap=…&trust=<hex>` used to store <hex> in the tab's trust at once.
//
// Each test below fails on the code before the fix; that was checked by running a copy of this file
// (with GRANT_SECRET_HEADER defined locally, allowedHostValues stubbed and a made-up secret, as the
// old server has none of them) against node-host/http/static-server.ts, browser-host/page-config.ts
// and dashboard/src/fleet-main.ts as of commit 9a88b5f: all 8 failed. The rebinding and origin tests got 200 and
// a token where they expect 403 and no grant, the secret tests likewise, the content-type test got
// a grant for a body posted as text/plain, the Chromium rebinding test loaded the page and its
// config from attacker.example, and the Chromium trust test found the link's authority already in
// IndexedDB before any click (and no prompt to click).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { CHROMIUM, HAS_CHROMIUM, launchChromium } from '../browser/chromium.ts'
import { ensureDashboardBuilt } from '../../node-host/http/build-dashboard.ts'
import { allowedHostValues, serveDashboard, GRANT_SECRET_HEADER, type DashboardServer } from '../../node-host/http/static-server.ts'

const root = join(import.meta.dirname, '..', '..')
const artifacts = join(root, 'test', 'artifacts')
const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const ATTACKER_PEER = '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9rtZ4Fjwg2Q2R'
const AUTHORITY = 'ab'.repeat(32)
const BOOTSTRAP = `/ip4/127.0.0.1/tcp/9/ws/p2p/${PEER}`

interface Reply { status: number, body: string, headers: Record<string, unknown> }

/** A raw request with exactly these headers (fetch() would not let a test set Host or Origin). */
async function raw (port: number, path: string, init: { method?: string, body?: string, headers?: Record<string, string> } = {}): Promise<Reply> {
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

describe('dashboard POST /grant against forged requests', () => {
  let dir = ''
  let server: DashboardServer
  let secret = ''
  const issued: string[] = []
  const self = (): string => `127.0.0.1:${server.port}`
  const good = (): Record<string, string> => ({ host: self(), origin: `http://${self()}`, 'content-type': 'application/json', [GRANT_SECRET_HEADER]: secret })
  const post = async (headers: Record<string, string>, peerId = ATTACKER_PEER): Promise<Reply> =>
    await raw(server.port, '/grant', { method: 'POST', headers, body: JSON.stringify({ peerId }) })

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-grant-attack-'))
    await mkdir(join(dir, 'dist'))
    await writeFile(join(dir, 'dist', 'index.html'), '<p>dashboard</p>')
    server = await serveDashboard({
      root: join(dir, 'dist'),
      config: () => ({ bootstrap: [BOOTSTRAP], trust: [AUTHORITY] }),
      issueGrant: async (peerId) => { issued.push(peerId); return `cell-grant-v1:for-${peerId}` }
    })
    const config = await raw(server.port, '/cell-config.json', { headers: { host: self() } })
    secret = (JSON.parse(config.body) as { grantSecret: string }).grantSecret
    expect(Buffer.from(secret, 'base64url')).toHaveLength(32)
  })
  afterAll(async () => {
    await server?.close()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('refuses a rebound Host: no page, no config (so no secret), no grant', async () => {
    const rebound = `attacker.example:${server.port}`
    const before = { ...server.stats.refused }
    // What a rebinding page's same-origin requests look like: its own name in Host and Origin.
    const config = await raw(server.port, '/cell-config.json', { headers: { host: rebound } })
    expect(config.status).toBe(403)
    expect(config.body).not.toContain(secret)
    expect((await raw(server.port, '/', { headers: { host: rebound } })).status).toBe(403)
    const grant = await post({ ...good(), host: rebound, origin: `http://${rebound}` })
    expect(grant.status).toBe(403)
    expect(grant.body).toMatch(/unknown host/)
    // Even with the right secret (learnt elsewhere), a foreign Host gets nothing.
    expect((await post({ ...good(), host: rebound })).status).toBe(403)
    // Another port on a loopback name is another server.
    expect((await post({ ...good(), host: '127.0.0.1:1', origin: 'http://127.0.0.1:1' })).status).toBe(403)
    expect(issued).toEqual([])
    expect(server.stats.refused.host - before.host).toBe(5)
  })

  it('refuses a foreign, opaque or cross-site Origin', async () => {
    const before = server.stats.refused.origin
    for (const origin of ['http://attacker.example', `http://attacker.example:${server.port}`, 'null', `https://${self()}`, `http://localhost:${server.port}`]) {
      const reply = await post({ ...good(), origin })
      expect(reply.status, origin).toBe(403)
      expect(reply.body, origin).toMatch(/origin/)
    }
    expect((await post({ ...good(), 'sec-fetch-site': 'cross-site' })).status).toBe(403)
    expect(issued).toEqual([])
    expect(server.stats.refused.origin - before).toBe(6)
  })

  it('refuses a missing or wrong secret', async () => {
    const before = server.stats.refused.secret
    const { [GRANT_SECRET_HEADER]: _omitted, ...noSecret } = good()
    expect((await post(noSecret)).status).toBe(403)
    const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')
    for (const wrong of [flipped, '', secret + 'x', secret.slice(1)]) {
      const reply = await post({ ...good(), [GRANT_SECRET_HEADER]: wrong })
      expect(reply.status, wrong).toBe(403)
      expect(reply.body).toMatch(/secret/)
    }
    expect(issued).toEqual([])
    expect(server.stats.refused.secret - before).toBe(5)
  })

  it('refuses what a cross-site form or no-cors fetch can send (not application/json)', async () => {
    const before = server.stats.refused.contentType
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      expect((await post({ ...good(), 'content-type': type })).status, type).toBe(415)
    }
    const { 'content-type': _none, ...untyped } = good()
    expect((await post(untyped)).status).toBe(415)
    expect(issued).toEqual([])
    expect(server.stats.refused.contentType - before).toBe(4)
  })

  it('grants the page itself: right Host, its own Origin (or none) and the secret', async () => {
    const grants = server.stats.grants
    const reply = await post(good(), PEER)
    expect(reply.status).toBe(200)
    expect(JSON.parse(reply.body)).toEqual({ token: `cell-grant-v1:for-${PEER}` })
    // The loopback forms of the same address are the same page; a non-browser client sends no Origin.
    for (const host of [`localhost:${server.port}`, `[::1]:${server.port}`]) {
      expect((await post({ ...good(), host, origin: `http://${host}` }, PEER)).status, host).toBe(200)
    }
    const { origin: _o, ...noOrigin } = good()
    expect((await post(noOrigin, PEER)).status).toBe(200)
    expect(issued).toEqual([PEER, PEER, PEER, PEER])
    expect(server.stats.grants - grants).toBe(4)
  })

  it('answers only its listen addresses, plus names the operator allows', () => {
    expect([...allowedHostValues('127.0.0.1', 8080)].sort()).toEqual(['127.0.0.1:8080', '[::1]:8080', 'localhost:8080'])
    expect(allowedHostValues('10.1.2.3', 80)).toEqual(new Set(['10.1.2.3:80', '10.1.2.3']))
    const wildcard = allowedHostValues('0.0.0.0', 8080, ['dash.example', 'proxy.example:443'])
    expect(wildcard.has('127.0.0.1:8080')).toBe(true)
    expect(wildcard.has('dash.example:8080')).toBe(true)
    expect(wildcard.has('proxy.example:443')).toBe(true)
    expect(wildcard.has('attacker.example:8080')).toBe(false)
    expect(() => allowedHostValues('127.0.0.1', 1, ['bad host/'])).toThrow()
  })
})

describe.skipIf(!HAS_CHROMIUM)('dashboard in Chromium: rebinding and a link\'s ?trust=', () => {
  let dir = ''
  let server: DashboardServer | undefined
  let browser: Browser | undefined
  let context: BrowserContext | undefined
  const issued: string[] = []
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-trust-link-'))
    // The page as shipped: a fresh production build (bundlers rename classes), into a temp dir.
    const outDir = await ensureDashboardBuilt({ outDir: join(dir, 'dist'), force: true })
    server = await serveDashboard({
      root: outDir,
      config: () => ({ bootstrap: [BOOTSTRAP], trust: [] }),
      issueGrant: async (peerId) => { issued.push(peerId); return 'cell-grant-v1:x' }
    })
    await mkdir(artifacts, { recursive: true })
  }, 180_000)
  afterAll(async () => {
    for (const p of context?.pages() ?? []) await p.evaluate(async () => { await (globalThis as any).cellPeer?.stop() }).catch(() => {})
    await context?.close().catch(() => {})
    await browser?.close().catch(() => {})
    await server?.close()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('a rebound name gets neither the page, its config nor a grant; a cross-site POST is refused', async () => {
    // attacker.example resolves to 127.0.0.1 in this browser: the end state of a rebinding attack.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--host-resolver-rules=MAP attacker.example 127.0.0.1'] })
    const page = await browser.newPage()
    const port = server!.port
    const landing = await page.goto(`http://attacker.example:${port}/`)
    expect(landing?.status()).toBe(403)
    const seen = await page.evaluate(async ({ port, header }) => {
      const config = await fetch('/cell-config.json')
      const grant = await fetch('/grant', { method: 'POST', headers: { 'content-type': 'application/json', [header]: 'guess' }, body: JSON.stringify({ peerId: '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9rtZ4Fjwg2Q2R' }) })
      // Cross-site to the real address: a no-cors "simple" POST reaches the server, and is refused.
      await fetch(`http://127.0.0.1:${port}/grant`, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ peerId: '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9rtZ4Fjwg2Q2R' }) })
      return { config: config.status, configBody: await config.text(), grant: grant.status }
    }, { port, header: GRANT_SECRET_HEADER })
    expect(seen.config).toBe(403)
    expect(seen.configBody).not.toMatch(/grantSecret/)
    expect(seen.grant).toBe(403)
    expect(server!.stats.refused.host).toBeGreaterThanOrEqual(3)
    expect(server!.stats.refused.contentType).toBeGreaterThanOrEqual(1)
    expect(issued).toEqual([])
  }, 60_000)

  it('stores and uses a link\'s ?trust= authority only after the person clicks "Trust"', async () => {
    context = await launchChromium(join(dir, 'profile'), { viewport: { width: 1100, height: 700 } })
    const page = context.pages()[0] ?? await context.newPage()
    const errors: string[] = []
    page.on('pageerror', err => { errors.push(String(err)) })
    const link = (authority: string): string => `${server!.url}?bootstrap=${encodeURIComponent(BOOTSTRAP)}&trust=${authority}`
    const stored = async (p: Page): Promise<string[]> => await p.evaluate(async () => await new Promise<string[]>((resolve, reject) => {
      const open = indexedDB.open('cell-light-peer')
      open.onerror = () => { reject(open.error) }
      open.onsuccess = () => {
        const get = open.result.transaction('state').objectStore('state').get('trust')
        get.onsuccess = () => { open.result.close(); resolve((get.result as string[] | undefined) ?? []) }
        get.onerror = () => { reject(get.error) }
      }
    }))
    const inUse = async (p: Page): Promise<string[]> => await p.evaluate(() => (globalThis as any).cellPeer.trusted() as string[])

    // Accept path.
    const accepted = 'cd'.repeat(32)
    await page.goto(link(accepted))
    // The tab's peer exists (its stored trust is written when it is created) before anyone clicked.
    await page.waitForFunction(() => (globalThis as any).cellPeer !== undefined, undefined, { timeout: 30_000 })
    expect(await inUse(page)).not.toContain(accepted)
    expect(await stored(page)).not.toContain(accepted)
    await page.locator('[data-trust-prompt="asking"]').waitFor({ timeout: 30_000 })
    expect(await page.locator('[data-authority]').evaluateAll(els => els.map(e => e.getAttribute('data-authority')))).toEqual([accepted])
    expect(await page.getByRole('alertdialog').getByText(accepted).isVisible()).toBe(true)
    expect(await inUse(page)).not.toContain(accepted)
    expect(await stored(page)).not.toContain(accepted)
    await page.screenshot({ path: join(artifacts, 'dashboard-trust-prompt.png') })
    await page.click('[data-trust-accept]')
    await page.locator('[data-trust-prompt="accepted"]').waitFor({ timeout: 10_000 })
    expect(await inUse(page)).toContain(accepted)
    expect(await stored(page)).toContain(accepted)
    // Once trusted, the same link asks nothing.
    await page.evaluate(async () => { await (globalThis as any).cellPeer?.stop() })
    await page.goto(link(accepted))
    await page.waitForFunction(() => (globalThis as any).cellPeer !== undefined, undefined, { timeout: 30_000 })
    expect(await page.locator('[data-trust-prompt]').count()).toBe(0)

    // Reject path: nothing stored, and the next load asks again.
    const rejected = 'ef'.repeat(32)
    await page.evaluate(async () => { await (globalThis as any).cellPeer?.stop() })
    await page.setViewportSize({ width: 375, height: 800 })
    await page.goto(link(rejected))
    await page.locator('[data-trust-prompt="asking"]').waitFor({ timeout: 30_000 })
    // On a phone the full id wraps and both buttons stay on screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375)
    expect(await page.locator('[data-trust-reject]').isVisible()).toBe(true)
    await page.screenshot({ path: join(artifacts, 'dashboard-trust-prompt-375.png') })
    await page.click('[data-trust-reject]')
    await page.locator('[data-trust-prompt="rejected"]').waitFor({ timeout: 10_000 })
    expect(await inUse(page)).not.toContain(rejected)
    expect(await stored(page)).not.toContain(rejected)
    expect(await stored(page)).toContain(accepted)
    await page.evaluate(async () => { await (globalThis as any).cellPeer?.stop() })
    await page.goto(link(rejected))
    await page.locator('[data-trust-prompt="asking"]').waitFor({ timeout: 30_000 })
    expect(await stored(page)).not.toContain(rejected)
    expect(errors).toEqual([])
  }, 120_000)
})
