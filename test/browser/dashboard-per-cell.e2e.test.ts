// The production dashboard in Debian's Chromium on a per-cell fleet (docs/biology.md "Scale"): 2
// in-process full nodes with `dissemination: 'per-cell'`, billing published by a per-cell client,
// the built page served with the config `cell up --dashboard` serves (nodePageConfig: the node's
// WebSocket addresses, trust and its mode). The tab's light peer runs in per-cell mode because the
// page config says so: it sees both nodes (members topic), follows billing (its cell topic), hears
// nothing on the fleet topic, and a call from the call panel is answered over WebSockets.
import { describe, it, expect, afterAll } from 'vitest'
import { join } from 'node:path'
import type { BrowserContext } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium, closeTabs } from './chromium.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { FLEET_TOPIC, MEMBERS_TOPIC, cellTopic } from '../../core/fleet/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { ensureDashboardBuilt } from '../../node-host/http/build-dashboard.ts'
import { serveDashboard, nodePageConfig, type DashboardServer } from '../../node-host/http/static-server.ts'
import { TestFleet } from '../integration/test-fleet.ts'

const root = join(import.meta.dirname, '..', '..')

/** What the test reads of the page's light peer (`window.cellPeer`, set by fleet-main.ts). */
interface TabPeer {
  stop: () => Promise<void>
  connections: () => Array<{ addr: string }>
  mesh: {
    replicas: (cell: string) => unknown[]
    libp2p: { services: { pubsub: { getTopics: () => string[] } } }
    gossip: { dissemination: string, followed: () => string[], stats: () => { bytes: { in: Record<string, number>, out: Record<string, number> } } }
  }
}
type TabGlobal = { cellPeer?: TabPeer }

describe.skipIf(!HAS_CHROMIUM)('dashboard on a per-cell fleet in Chromium', () => {
  const fleet = new TestFleet()
  let server: DashboardServer | undefined
  let context: BrowserContext | undefined
  afterAll(async () => {
    await closeTabs(context)
    await server?.close()
    await fleet.stop()
  }, 60_000)

  it('joins in per-cell mode from cell-config.json, shows the nodes and billing, and calls billing', async () => {
    const authority = await generateAuthority()
    const authorityId = authorityIdOf(authority.publicKey)
    const dir = await fleet.start('cell-dashboard-per-cell-', 2, { authorityKeys: [authority], dissemination: 'per-cell' })
    const [n0] = fleet.nodes
    const publisher = await createClient({ bootstrap: [n0.addresses()[0]], authorityKey: authority, listen: true, dissemination: 'per-cell' })
    fleet.clients.push(publisher)
    const published = await new Publisher(publisher).publish(join(root, 'examples', 'billing'), '1.0.0', authority, { setAuthority: true, timeoutMs: 60_000 })
    expect(published.ready).toBeGreaterThanOrEqual(1)
    await waitForReplicas(publisher, 'billing', { timeoutMs: 20_000 })

    const outDir = await ensureDashboardBuilt({ outDir: join(dir, 'dist'), force: true })
    server = await serveDashboard({
      root: outDir,
      config: () => nodePageConfig(n0),
      issueGrant: async (peerId) => {
        const now = Date.now()
        return encodeGrantToken(await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
      }
    })
    // What the node tells the page: its own mode, with its addresses and trust.
    const config = await (await fetch(new URL('cell-config.json', server.url), { signal: AbortSignal.timeout(10_000) })).json()
    expect(config).toMatchObject({ bootstrap: [expect.stringMatching(/\/ws\/p2p\//)], trust: [authorityId], dissemination: 'per-cell' })

    context = await launchChromium(join(dir, 'chromium-profile'), { viewport: { width: 1280, height: 800 } })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', err => { pageErrors.push(String(err)) })
    const openedMs = Date.now()
    await page.goto(server.url)

    // Both nodes (members topic and fleet-sync) and billing, live.
    await page.waitForFunction(() => document.querySelectorAll('[data-node]').length === 2 && document.querySelector('[data-cell="billing"]') !== null,
      undefined, { timeout: 30_000, polling: 200 })
    const shown = await page.$$eval('[data-node]', els => els.map(e => e.getAttribute('data-node')))
    expect(shown.sort()).toEqual(fleet.nodes.map(n => n.peerId).sort())
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent === 'live', undefined, { timeout: 20_000, polling: 200 })

    // A call from the call panel, answered by a billing replica the tab learnt on billing's own topic.
    await page.waitForFunction(() => ((globalThis as TabGlobal).cellPeer?.mesh.replicas('billing').length ?? 0) > 0, undefined, { timeout: 20_000, polling: 200 })
    await page.fill('input[name="cell"]', 'billing')
    await page.fill('input[name="method"]', 'charge')
    await page.fill('textarea[name="request"]', '{"amount":7,"currency":"EUR"}')
    await page.click('.call-panel button[type="submit"]')
    const answer = await page.waitForSelector('[data-call-result]', { timeout: 30_000 })
    const answeredMs = Date.now() - openedMs
    expect(await answer.getAttribute('data-call-result')).toBe('ok')
    expect(await answer.textContent()).toMatch(/"amount": 7/)

    // The tab's mesh really is per-cell: subscribed to the members topic and billing's topic, over
    // WebSockets to the full nodes, and nothing arrived on (or was sent to) the fleet topic.
    const tab = await page.evaluate(({ members, billing, fleet }) => {
      const peer = (globalThis as TabGlobal).cellPeer!
      const gossip = peer.mesh.gossip
      const topics: string[] = peer.mesh.libp2p.services.pubsub.getTopics()
      return {
        mode: gossip.dissemination,
        followed: gossip.followed(),
        members: topics.includes(members),
        billingTopic: topics.includes(billing),
        fleetTopic: topics.includes(fleet),
        bytes: gossip.stats().bytes,
        transports: peer.connections().map(c => c.addr)
      }
    }, { members: MEMBERS_TOPIC, billing: cellTopic('billing'), fleet: FLEET_TOPIC })
    expect(tab.mode).toBe('per-cell')
    expect(tab.followed).toContain('billing')
    expect(tab).toMatchObject({ members: true, billingTopic: true, fleetTopic: false })
    expect(tab.bytes.in.fleet).toBe(0)
    expect(tab.bytes.out.fleet).toBe(0)
    // Node and instance records came first by fleet-sync pulls (members change rarely); billing's
    // host resends its replica on billing's topic within refreshMs (5 s here), and the tab hears it.
    await page.waitForFunction(() => ((globalThis as TabGlobal).cellPeer?.mesh.gossip.stats().bytes.in.cells ?? 0) > 0, undefined, { timeout: 20_000, polling: 200 })
    const heardMs = Date.now() - openedMs
    process.stdout.write(`per-cell dashboard: first billing call answered ${answeredMs} ms after the page was opened (gossip in by then ${JSON.stringify(tab.bytes.in)} B: the view came by fleet-sync pulls); first record on billing's topic after ${heardMs} ms\n`)
    expect(tab.transports.some(a => a.includes('/ws/'))).toBe(true)
    // Same mode everywhere: no mismatch banner (test/browser/dashboard-mismatch.e2e.test.ts has the other case).
    expect(await page.locator('[data-testid="mismatch-warning"]').count()).toBe(0)
    expect(pageErrors).toEqual([])
  }, 120_000)
})
