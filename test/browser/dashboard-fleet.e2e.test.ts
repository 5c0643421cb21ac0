// The production dashboard in Debian's Chromium against a real fleet: 3 in-process full nodes, the
// billing cell published, the built page served by node-host/http's static server with the nodes'
// WebSocket addresses in cell-config.json. The page runs its own light peer: it lists all nodes and
// billing, a call from its call panel returns billing's answer, a 4th node started later appears
// without a reload, and the static server sees no request after the page has loaded (no poller).
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, mkdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium, closeTabs } from './chromium.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { ensureDashboardBuilt } from '../../node-host/http/build-dashboard.ts'
import { serveDashboard, webSocketAddrs, type DashboardServer } from '../../node-host/http/static-server.ts'
import type { Mesh } from '../../core/mesh/index.ts'

const root = join(import.meta.dirname, '..', '..')
/** How long the page host's grants last here. */
const PAGE_GRANT_MS = 5_000
const artifacts = join(root, 'test', 'artifacts')

// Full nodes without WebRTC-direct: stopping in-process nodes that loaded node-datachannel's
// listener can take the test worker down. The tab reaches them over WebSockets.
describe.skipIf(!HAS_CHROMIUM)('dashboard on a live fleet in Chromium', () => {
  const nodes: FullNode[] = []
  const clients: Mesh[] = []
  let dir = ''
  let server: DashboardServer | undefined
  let context: BrowserContext | undefined
  afterAll(async () => {
    await closeTabs(context)
    await server?.close()
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async n => await n.stop()))
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('lists the nodes and billing, calls it from the page and shows a 4th node live', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-dashboard-fleet-'))
    const authority = await generateAuthority()
    const authorityId = authorityIdOf(authority.publicKey)
    const startNode = async (i: number): Promise<FullNode> => {
      const bootstrap = nodes.length === 0 ? [] : [nodes[0].addresses()[0]]
      const node = await FullNode.create({ dataDir: join(dir, `n${i}`), bootstrap, authorityKeys: [authority], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
      await node.start()
      nodes.push(node)
      return node
    }
    for (let i = 0; i < 3; i++) await startNode(i)
    const publisher = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority, listen: true })
    clients.push(publisher)
    const published = await new Publisher(publisher).publish(join(root, 'examples', 'billing'), '1.0.0', authority, { setAuthority: true, timeoutMs: 90_000 })
    expect(published.ready).toBeGreaterThanOrEqual(1)

    // The page as shipped: a fresh production build of dashboard/ (into a temp dir, so a stale
    // dashboard/dist cannot make this pass), served with the grant endpoint the demo uses.
    const outDir = await ensureDashboardBuilt({ outDir: join(dir, 'dist'), force: true })
    const granted: string[] = []
    const grantEnds: number[] = []
    server = await serveDashboard({
      root: outDir,
      config: () => ({ bootstrap: nodes.slice(0, 3).flatMap(n => webSocketAddrs(n.addresses())), trust: [authorityId] }),
      // Short grants: the tab must ask again at each one's half-life to keep calling (a tab open for
      // days; on the old code it asked once and its calls were refused once that grant ended).
      issueGrant: async (peerId) => {
        granted.push(peerId)
        const now = Date.now()
        grantEnds.push(now + PAGE_GRANT_MS)
        return encodeGrantToken(await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + PAGE_GRANT_MS }))
      }
    })

    context = await launchChromium(join(dir, 'chromium-profile'), { viewport: { width: 1280, height: 800 } })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', err => { pageErrors.push(String(err)) })
    await page.goto(server.url)

    // All 3 nodes and the billing cell, from the tab's own gossip subscription.
    await page.waitForFunction(() => document.querySelectorAll('[data-node]').length === 3 && document.querySelector('[data-cell="billing"]') !== null,
      undefined, { timeout: 30_000, polling: 200 })
    const shown = await page.$$eval('[data-node]', els => els.map(e => e.getAttribute('data-node')))
    expect(shown.sort()).toEqual(nodes.map(n => n.peerId.toString()).sort())
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent === 'live', undefined, { timeout: 20_000, polling: 200 })
    const peerId = await page.evaluate(() => (globalThis as any).cellPeer.peerId as string)
    expect(granted[0]).toBe(peerId) // the tab asked for its grant, for its own peer id
    const requestsAfterLoad = server.stats.requests

    // A call from the call panel returns billing's answer.
    await page.waitForFunction(() => (globalThis as any).cellPeer.mesh.replicas('billing').length > 0, undefined, { timeout: 20_000 })
    await page.fill('input[name="cell"]', 'billing')
    await page.fill('input[name="method"]', 'charge')
    await page.fill('textarea[name="request"]', '{"amount":7,"currency":"EUR"}')
    await page.click('.call-panel button[type="submit"]')
    const answer = await page.waitForSelector('[data-call-result]', { timeout: 30_000 })
    expect(await answer.getAttribute('data-call-result')).toBe('ok')
    const text = await answer.textContent()
    expect(text).toMatch(/"amount": 7/)
    expect(text).toMatch(/"id": "ch_[0-9a-f]+"/)
    // The page's own call is attributed to the release that answered it (the measured canary split).
    await page.waitForFunction(() => {
      const card = document.querySelector('[data-cell="billing"]')?.textContent ?? ''
      return card.includes('1 calls') && !card.includes('unattributed')
    }, undefined, { timeout: 10_000, polling: 200 })

    // The cell's replica bounds come from the Cell.toml inside its signed artifact (examples/billing:
    // min 1, max 5), which the tab fetched and verified itself.
    await page.waitForFunction(() => document.querySelector('[data-cell="billing"] .state-word')?.textContent === 'within bounds', undefined, { timeout: 30_000, polling: 200 })
    expect(await page.textContent('[data-cell="billing"]')).toContain('1–5')

    // A 4th node joins: it shows up on the page without a reload.
    const fourth = await startNode(3)
    await page.waitForFunction((id) => document.querySelectorAll('[data-node]').length === 4 && document.querySelector(`[data-node="${id}"]`) !== null,
      fourth.peerId.toString(), { timeout: 30_000, polling: 200 })
    expect(await page.textContent('.counts')).toMatch(/^4 nodes · 1 cells/)
    // After the page loaded, the HTTP server saw at most lazily loaded code chunks, no data: the
    // updates came over the tab's gossip subscription.
    const since = server.stats.requests - requestsAfterLoad
    expect(since).toBeLessThanOrEqual(server.recent.length)
    // (and the tab's grant renewals).
    expect(server.recent.slice(server.recent.length - since).filter(r => !/^GET \/assets\/[\w.-]+\.js$/.test(r) && r !== 'POST /grant')).toEqual([])

    // Past the first grant's end the tab has asked again (for itself only), and still calls.
    await page.waitForFunction((end) => Date.now() > end + 1_000 && document.querySelector('[data-call-result]') !== null, grantEnds[0], { timeout: PAGE_GRANT_MS + 30_000, polling: 250 })
    expect(granted.length).toBeGreaterThanOrEqual(2)
    expect(new Set(granted)).toEqual(new Set([peerId]))
    await page.fill('textarea[name="request"]', '{"amount":9,"currency":"EUR"}')
    await page.click('.call-panel button[type="submit"]')
    await page.waitForFunction(() => (document.querySelector('[data-call-result]')?.textContent ?? '').includes('"amount": 9'), undefined, { timeout: 30_000, polling: 200 })
    expect(await page.getAttribute('[data-call-result]', 'data-call-result')).toBe('ok')

    await mkdir(artifacts, { recursive: true })
    await page.screenshot({ path: join(artifacts, 'dashboard-fleet.png'), fullPage: true })
    expect(pageErrors).toEqual([])
  }, 240_000)
})
