// The production dashboard in Debian's Chromium, joined to a fleet of the other dissemination mode
// (docs/biology.md "Scale"): one in-process full node with `dissemination: 'per-cell'`, and a page
// config without the mode (a hand-written cell-config.json or a `?bootstrap=` link), so the tab's
// light peer gossips per fleet. Its FleetGossip finds the node on the members topic and not on the
// fleet topic, and the dashboard says so in a banner beside whatever it shows, in the gossip's own
// words, until the node leaves. Screenshot: test/artifacts/dashboard-mismatch-1280x800.png.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { BrowserContext } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium, closeTabs } from './chromium.ts'
import { generateAuthority } from '../../core/identity/index.ts'
import { ensureDashboardBuilt } from '../../node-host/http/build-dashboard.ts'
import { serveDashboard, nodePageConfig, type DashboardServer } from '../../node-host/http/static-server.ts'
import { TestFleet } from '../integration/test-fleet.ts'

const root = join(import.meta.dirname, '..', '..')
const artifacts = join(root, 'test', 'artifacts')

type TabGlobal = { cellPeer?: { stop: () => Promise<void>, mesh: { gossip: { dissemination: string } } } }

describe.skipIf(!HAS_CHROMIUM)('dashboard of the other dissemination mode in Chromium', () => {
  const fleet = new TestFleet()
  let server: DashboardServer | undefined
  let context: BrowserContext | undefined
  afterAll(async () => {
    await closeTabs(context)
    await server?.close()
    await fleet.stop()
  }, 60_000)

  it('a fleet-mode page on a per-cell node shows the mismatch banner beside the fleet, until the node leaves', async () => {
    const authority = await generateAuthority()
    const dir = await fleet.start('cell-dashboard-mismatch-', 1, { authorityKeys: [authority], dissemination: 'per-cell' })
    const [n0] = fleet.nodes
    const outDir = await ensureDashboardBuilt({ outDir: join(dir, 'dist'), force: true })
    // The node's own config names its mode; this page's config leaves it out, so the tab defaults to 'fleet'.
    const { dissemination, ...withoutMode } = nodePageConfig(n0)
    expect(dissemination).toBe('per-cell')
    server = await serveDashboard({ root: outDir, config: () => withoutMode })

    context = await launchChromium(join(dir, 'chromium-profile'), { viewport: { width: 1280, height: 800 } })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', err => { pageErrors.push(String(err)) })
    const openedMs = Date.now()
    await page.goto(server.url)

    const banner = page.locator('[data-testid="mismatch-warning"]')
    await banner.waitFor({ timeout: 30_000 })
    const shownMs = Date.now() - openedMs
    expect(await page.evaluate(() => (globalThis as TabGlobal).cellPeer?.mesh.gossip.dissemination)).toBe('fleet')
    expect(await banner.getAttribute('role')).toBe('alert')
    const text = await banner.innerText()
    // The gossip's DisseminationMismatchError message, naming the node by the end of its id.
    expect(text).toContain(`node …${n0.peerId.slice(-6)} disseminates per cell, this tab per fleet`)
    expect(text).toContain('same --dissemination')
    expect(text).toMatch(/dissemination.*cell-config\.json/)
    // A warning, not an error: no error banner, and the dashboard below it is still there.
    expect(await page.locator('.banner.error').count()).toBe(0)
    expect(await page.locator('main.grid, [data-state="loading"]').count()).toBe(1)
    await mkdir(artifacts, { recursive: true })
    await page.screenshot({ path: join(artifacts, 'dashboard-mismatch-1280x800.png') })

    // The node goes away (its connection closes, gossipsub forgets its topics): the tab's next
    // heartbeat re-reads the gossip's mismatches and the banner goes with it.
    const stoppedMs = Date.now()
    await n0.stop()
    await banner.waitFor({ state: 'detached', timeout: 20_000 })
    process.stdout.write(`mismatch banner shown ${shownMs} ms after the page was opened, gone ${Date.now() - stoppedMs} ms after the node stopped\n`)
    expect(pageErrors).toEqual([])
  }, 90_000)
})
