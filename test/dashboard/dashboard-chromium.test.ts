// Smoke test of the built dashboard in Debian's Chromium: the production entry shows the designed
// "not connected" state, and the dev entry (fake fleet) renders nodes, cells, a rollout, charts,
// calls with their canary split and named errors, live updates and stale/error banners, at
// desktop and phone widths. Screenshots go to test/artifacts/ (gitignored) for a human look.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { extname, join, normalize, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BrowserContext, Page } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium } from '../browser/chromium.ts'

const repo = resolve(fileURLToPath(new URL('../..', import.meta.url)))
const artifacts = join(repo, 'test/artifacts')
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' }

let outDir: string
let profile: string
let server: Server
let base: string
let context: BrowserContext

describe.skipIf(!HAS_CHROMIUM)('dashboard in Chromium', () => {
  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), 'cell-dashboard-'))
    const { build } = await import('vite')
    await build({
      configFile: join(repo, 'dashboard/vite.config.ts'),
      logLevel: 'silent',
      build: { outDir, emptyOutDir: true, rollupOptions: { input: { index: join(repo, 'dashboard/index.html'), dev: join(repo, 'dashboard/dev.html') } } }
    })
    server = createServer((req, res) => {
      const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '')
      const file = join(outDir, path === '/' ? 'index.html' : path)
      readFile(file).then(body => {
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(body)
      }, () => { res.writeHead(404).end() })
    })
    await new Promise<void>(ok => server.listen(0, '127.0.0.1', ok))
    const addr = server.address()
    base = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
    profile = await mkdtemp(join(tmpdir(), 'cell-chromium-'))
    await mkdir(artifacts, { recursive: true })
    context = await launchChromium(profile)
  }, 120_000)

  afterAll(async () => {
    await context?.close()
    await new Promise(ok => server?.close(ok))
    if (outDir !== undefined) await rm(outDir, { recursive: true, force: true })
    if (profile !== undefined) await rm(profile, { recursive: true, force: true })
  })

  async function open (path: string, width: number): Promise<Page> {
    const page = await context.newPage()
    await page.setViewportSize({ width, height: 800 })
    const errors: string[] = []
    page.on('pageerror', err => errors.push(err.message))
    await page.goto(base + path)
    Object.assign(page, { pageErrors: errors })
    return page
  }

  const pageErrors = (page: Page): string[] => (page as Page & { pageErrors: string[] }).pageErrors

  it('the production entry without a host source shows "not connected"', async () => {
    const page = await open('/index.html', 1280)
    await page.locator('[data-state="not-connected"]').waitFor({ timeout: 10_000 })
    expect(await page.getByRole('heading', { name: 'Not connected' }).isVisible()).toBe(true)
    await page.screenshot({ path: join(artifacts, 'dashboard-not-connected.png') })
    expect(pageErrors(page)).toEqual([])
    await page.close()
  })

  it('shows a designed "joining" state until the first heartbeat, then the fleet', async () => {
    const page = await open('/dev.html?empty&status=connecting', 1280)
    await page.locator('[data-state="loading"]').waitFor({ timeout: 10_000 })
    expect(await page.getByRole('heading', { name: 'Joining the fleet…' }).isVisible()).toBe(true)
    expect(await page.locator('[data-testid="status"]').innerText()).toBe('connecting')
    await page.screenshot({ path: join(artifacts, 'dashboard-joining.png') })
    await page.evaluate(() => {
      const s = (window as unknown as { fakeSource: { setStatus: (s: string) => void, addNode: () => string } }).fakeSource
      s.setStatus('live')
      s.addNode()
    })
    await expect.poll(async () => await page.locator('[data-node]').count(), { timeout: 10_000 }).toBe(1)
    expect(await page.locator('[data-testid="status"]').innerText()).toBe('live')
    expect(pageErrors(page)).toEqual([])
    await page.close()
  })

  it('shows nodes, cells, a rollout, charts and calls at 1280×800', async () => {
    const page = await open('/dev.html', 1280)
    await page.locator('[data-testid="status"]', { hasText: 'live' }).waitFor({ timeout: 10_000 })
    await expect.poll(async () => await page.locator('[data-node]').count(), { timeout: 10_000 }).toBe(3)
    expect(await page.locator('[data-cell]').evaluateAll(els => els.map(e => e.getAttribute('data-cell')))).toEqual(['billing', 'importer', 'ledger'])
    // Issue 8: a crash-looping cell says so, with the crash reason its replicas' heartbeats carry
    // (before, the card showed only "crashed 1" and the reason was on the hosting node's stderr).
    const importer = page.locator('[data-cell="importer"]')
    expect(await importer.locator('.crashes .crash-looping').innerText()).toMatch(/crash-looping\s+v0\.1\.0: not started again until another artifact is published or rolled back to/i)
    expect(await importer.locator('.crashes pre.stderr').innerText()).toMatch(/Error: DATABASE_URL is not set$/)
    expect(await importer.locator('.crashes .crash p').innerText()).toMatch(/exited \(code 1, signal null\) before it was ready/)
    expect(await page.locator('[data-cell="billing"] .crashes').count()).toBe(0)
    // A stateful cell says where its claim is written and whether a snapshot survives its owner.
    expect(await page.locator('[data-cell="ledger"] .storage [data-claim="ledger/0"]').innerText()).toMatch(/^ledger\/0 · epoch 3 · on …\w+ · newest safe snapshot 6 min \d+ s ago, held by 2 other nodes$/)
    expect(await page.locator('[data-cell="billing"] .storage').count()).toBe(0)
    const billing = page.locator('[data-cell="billing"]')
    expect(await billing.getByText('Rolling out 1.2.0 → 1.3.0').isVisible()).toBe(true)
    expect(await billing.getByText(/of grace left/).first().isVisible()).toBe(true)
    expect(await billing.locator('.replicas').innerText()).toMatch(/4\s*\/ 2–6/)
    // Charts draw once two samples exist (one per second).
    await billing.locator('.charts polyline').first().waitFor({ timeout: 10_000 })
    expect(await billing.locator('.charts figure').count()).toBe(4)

    // Calls from the page: five to billing, counted per answering release.
    await page.fill('input[name=cell]', 'billing')
    await page.fill('input[name=method]', 'charge')
    await page.fill('textarea[name=request]', '{"amount": 5}')
    await page.fill('input[name=repeat]', '5')
    await page.click('button[type=submit]')
    await expect.poll(async () => await page.locator('[data-call-result="ok"]').count(), { timeout: 10_000 }).toBe(5)
    expect(await page.locator('.results pre').first().innerText()).toContain('"amount": 5')
    const callRows = billing.locator('.split-grid > div').nth(1).locator('li')
    await expect.poll(async () => await callRows.count(), { timeout: 5000 }).toBeGreaterThan(0)
    const counted = (await callRows.allInnerTexts()).map(t => Number(/· (\d+) calls/.exec(t)?.[1]))
    expect(counted.reduce((a, b) => a + b, 0)).toBe(5)

    // A failing call shows the error's name and what it means.
    await page.fill('input[name=method]', 'fail')
    await page.fill('input[name=repeat]', '1')
    await page.click('button[type=submit]')
    const failed = page.locator('[data-call-result="error"]').first()
    await failed.waitFor({ timeout: 10_000 })
    expect(await failed.locator('.error-name').innerText()).toBe('UnknownMethodError')
    expect(await failed.locator('.error-words').innerText()).toBe('The cell has no method of that name.')
    // Invalid JSON is refused before any call.
    await page.fill('textarea[name=request]', '{nope')
    await page.click('button[type=submit]')
    await page.getByText(/The request is not valid JSON/).waitFor({ timeout: 5000 })

    // A fourth node appears without a reload.
    await page.evaluate(() => { (window as unknown as { fakeSource: { addNode: () => string } }).fakeSource.addNode() })
    await expect.poll(async () => await page.locator('[data-node]').count(), { timeout: 10_000 }).toBe(4)

    await page.screenshot({ path: join(artifacts, 'dashboard-1280x800.png') })
    await page.screenshot({ path: join(artifacts, 'dashboard-1280-full.png'), fullPage: true })

    // A source's warning (a full node of the other dissemination mode) is a banner beside the fleet,
    // not an error state: the nodes stay, the status stays live; cleared, it goes away.
    const warning = "node …a1b2c3 disseminates per cell, this tab per fleet: they do not see each other's replicas; start every node and client of a fleet with the same --dissemination (or CELL_DISSEMINATION; docs/biology.md, \"Scale\")"
    await page.evaluate((w) => { (window as unknown as { fakeSource: { setWarnings: (w: string[]) => void } }).fakeSource.setWarnings([w]) }, warning)
    const banner = page.locator('[data-testid="mismatch-warning"]')
    await banner.waitFor({ timeout: 5000 })
    expect(await banner.getAttribute('role')).toBe('alert')
    expect(await banner.innerText()).toContain(warning)
    expect(await page.locator('[data-node]').count()).toBe(4)
    expect(await page.locator('[data-testid="status"]').innerText()).toBe('live')
    await page.evaluate(() => { window.scrollTo(0, 0) })
    await page.screenshot({ path: join(artifacts, 'dashboard-warning.png') })
    await page.evaluate(() => { (window as unknown as { fakeSource: { setWarnings: (w: string[]) => void } }).fakeSource.setWarnings([]) })
    await banner.waitFor({ state: 'detached', timeout: 5000 })

    // Stale and error states are announced, not blank.
    await page.evaluate(() => { (window as unknown as { fakeSource: { setStatus: (s: string, r?: string) => void } }).fakeSource.setStatus('stale', 'full node unreachable') })
    await page.getByText('Showing the last known fleet.').waitFor({ timeout: 5000 })
    expect(await page.locator('[data-testid="status"]').innerText()).toBe('stale')
    await page.screenshot({ path: join(artifacts, 'dashboard-stale.png') })
    await page.evaluate(() => { (window as unknown as { fakeSource: { setStatus: (s: string, r?: string) => void } }).fakeSource.setStatus('error', 'No full node answered (3 tried).') })
    await page.getByText('The light peer reports an error.').waitFor({ timeout: 5000 })
    expect(await page.locator('button[type=submit]').isDisabled()).toBe(true)
    expect(pageErrors(page)).toEqual([])
    await page.close()
  })

  // Issue 12 point 6: 15 scripted minutes replayed on a virtual clock (dev.html?history) give
  // charts with axes, ≥ 300 points and the rollout events marked, and a topology of every node and
  // replica. The replay (~20 s) runs once; the window is then narrowed to a phone's width, as a
  // person resizing it would, and everything is checked again at that width.
  it('charts 15 min of history with rollout events, and the topology, at 1280 px and after narrowing to 375 px', async () => {
    const page = await open('/dev.html?history', 1280)
    await expect.poll(async () => await page.evaluate(() => (window as unknown as { fakeSteps: () => number }).fakeSteps()), { timeout: 90_000, interval: 250 }).toBeGreaterThanOrEqual(900) // ~20 s idle; slower under load
    const check = async (width: number): Promise<void> => {
      const billing = page.locator('[data-cell="billing"]')
      const charts = billing.locator('.charts figure.chart')
      await expect.poll(async () => await charts.count(), { timeout: 10_000 }).toBe(4)
      for (const chart of await charts.all()) {
        expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(300)
        expect(await chart.locator('.axis-x text').allTextContents()).toEqual(expect.arrayContaining(['now', '−5 min', '−10 min', '−15 min']))
        expect(await chart.locator('.axis-y text').count()).toBeGreaterThanOrEqual(2)
        expect((await chart.locator('polyline').getAttribute('points'))!.split(' ').length).toBeGreaterThanOrEqual(300)
        // The 1.3.0 publication and the retired 1.2.0 replica are marked on every billing chart.
        expect(await chart.locator('.marker-release text').allTextContents()).toEqual(['v1.3.0'])
        expect(await chart.locator('.marker-retire').count()).toBe(1)
      }
      expect(await page.locator('[data-cell="importer"] .chart').first().locator('.marker text').allTextContents()).toEqual(['crash-loop v0.1.0'])
      // The topology lists every node and every replica the view holds, and the tab's two connections.
      const nodeIds = await page.locator('[data-node]').evaluateAll(els => els.map(e => e.getAttribute('data-node')))
      expect(nodeIds).toHaveLength(3)
      expect(await page.locator('[data-topology-node]').evaluateAll(els => els.map(e => e.getAttribute('data-topology-node')))).toEqual(nodeIds)
      const replicas = await page.evaluate(() => (window as unknown as { fakeSource: { view: { instances: () => Array<{ instanceId: string, state: string }> } } }).fakeSource.view.instances().filter(i => i.state !== 'stopped').map(i => i.instanceId).sort())
      expect(replicas).toHaveLength(7)
      expect((await page.locator('[data-topology-replica]').evaluateAll(els => els.map(e => e.getAttribute('data-topology-replica')))).sort()).toEqual(replicas)
      expect(await page.locator('.topology .topo-link').count()).toBe(2)
      expect(await page.locator('.topology circle.topo-replica').count()).toBe(7)
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width)
      const name = width === 1280 ? 'dashboard-history-1280x800' : 'dashboard-history-375'
      await page.screenshot({ path: join(artifacts, `${name}.png`) })
      await page.screenshot({ path: join(artifacts, `${name}-full.png`), fullPage: true })
      await page.locator('.topology').screenshot({ path: join(artifacts, `dashboard-topology-${width}.png`) })
    }
    await check(1280)
    await page.setViewportSize({ width: 375, height: 800 })
    await check(375)
    expect(pageErrors(page)).toEqual([])
    await page.close()
  }, 150_000)

  it('fits a 375 px phone screen without horizontal scrolling', async () => {
    const page = await open('/dev.html?nopolicy', 375)
    await expect.poll(async () => await page.locator('[data-node]').count(), { timeout: 10_000 }).toBe(3)
    await page.locator('[data-cell="billing"] .charts polyline').first().waitFor({ timeout: 10_000 })
    // Without a policy the bounds read "—", never a made-up number.
    expect(await page.locator('[data-cell="billing"] .policy').innerText()).toMatch(/replicas\s*—/)
    expect(await page.locator('[data-cell="billing"] .replicas').innerText()).toMatch(/bounds unknown/)
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375)
    expect(await page.locator('button[type=submit]').isVisible()).toBe(true)
    await page.screenshot({ path: join(artifacts, 'dashboard-375x800.png') })
    await page.screenshot({ path: join(artifacts, 'dashboard-375-full.png'), fullPage: true })
    expect(pageErrors(page)).toEqual([])
    await page.close()
  })
})
