// Error identity in the production dashboard bundle (issue 9). The bundler renames classes
// (`class NoReplicaError` becomes `var DG = class …`), so names taken from constructors were
// minified on the page, the wire registry never rebuilt a server's error into its class, and a
// server's trust refusal was no TrustError to the light peer. Here the shipped build runs in
// Chromium against a real full node and the call panel shows, by their literal names:
// - a server error: a method billing does not have → UnknownMethodError, rebuilt into its class;
// - a trust refusal: a cell of a second authority, for which the tab holds no grant. The node
//   refuses the handshake (UnknownAuthorityError); the tab recognises it as a TrustError and names
//   the reason NoGrantError, without trying the node again;
// - a local error: a cell nobody published → UnknownCellError, thrown in the page.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium } from './chromium.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { ensureDashboardBuilt } from '../../node-host/http/build-dashboard.ts'
import { serveDashboard, webSocketAddrs, type DashboardServer } from '../../node-host/http/static-server.ts'
import type { Mesh } from '../../core/mesh/index.ts'

const root = join(import.meta.dirname, '..', '..')

interface Shown { name: string, words: string, message: string }

/** Submits one call from the page's call panel and returns the named error it shows. */
async function callFromPanel (page: Page, cell: string, method: string): Promise<Shown> {
  const before = await page.locator('.call-panel .results li').count()
  await page.fill('input[name="cell"]', cell)
  await page.fill('input[name="method"]', method)
  await page.fill('textarea[name="request"]', '{}')
  await page.click('.call-panel button[type="submit"]')
  await page.waitForFunction((n) => document.querySelectorAll('.call-panel .results li').length > n, before, { timeout: 30_000, polling: 100 })
  const newest = page.locator('.call-panel .results li').first()
  expect(await newest.getAttribute('data-call-result')).toBe('error')
  return {
    name: await newest.locator('.error-name').innerText(),
    words: await newest.locator('.error-words').innerText(),
    message: await newest.locator('.muted.small').innerText()
  }
}

describe.skipIf(!HAS_CHROMIUM)('error names in the production dashboard', () => {
  const nodes: FullNode[] = []
  const clients: Mesh[] = []
  let dir = ''
  let server: DashboardServer | undefined
  let context: BrowserContext | undefined
  afterAll(async () => {
    await context?.close().catch(() => {})
    await server?.close()
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async n => await n.stop()))
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('shows a server error, a trust refusal and a local error by their literal names', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-dashboard-errors-'))
    const a = await generateAuthority()
    const b = await generateAuthority()
    const node = await FullNode.create({ dataDir: join(dir, 'n0'), authorityKeys: [a, b], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
    await node.start()
    nodes.push(node)
    const bootstrap = [node.addresses()[0]]

    // billing from authority a; a one-method cell of authority b, written here (no imports).
    const other = join(dir, 'other-cell')
    await mkdir(other)
    await writeFile(join(other, 'Cell.toml'), '[cell]\nname = "other"\nversion = "1.0.0"\nmain = "cell.ts"\n\n[cell.authority]\ned25519 = "' + '0'.repeat(64) + '"\n\n[cell.biology]\nmin_replicas = 1\nmax_replicas = 1\n')
    await writeFile(join(other, 'cell.ts'), 'export default { async hello () { return { hello: true } } }\n')
    for (const [cellDir, key] of [[join(root, 'examples', 'billing'), a], [other, b]] as const) {
      const publisher = await createClient({ bootstrap, authorityKey: key, listen: true })
      clients.push(publisher)
      const published = await new Publisher(publisher).publish(cellDir, '1.0.0', key, { setAuthority: true, timeoutMs: 90_000 })
      expect(published.ready).toBeGreaterThanOrEqual(1)
    }

    // The shipped bundle, freshly built (minified: class identifiers are renamed).
    const outDir = await ensureDashboardBuilt({ outDir: join(dir, 'dist'), force: true })
    server = await serveDashboard({
      root: outDir,
      // The tab trusts both authorities' releases but is granted the caller role by a only.
      config: () => ({ bootstrap: webSocketAddrs(node.addresses()), trust: [authorityIdOf(a.publicKey), authorityIdOf(b.publicKey)] }),
      issueGrant: async (peerId) => {
        const now = Date.now()
        return encodeGrantToken(await issueGrant(a, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
      }
    })
    context = await launchChromium(join(dir, 'chromium-profile'), { viewport: { width: 1280, height: 800 } })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', err => { pageErrors.push(String(err)) })
    await page.goto(server.url)
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent === 'live', undefined, { timeout: 30_000, polling: 200 })
    await page.waitForFunction(() => {
      const mesh = (globalThis as unknown as { cellPeer: { mesh: { replicas: (cell: string) => unknown[] } } }).cellPeer.mesh
      return mesh.replicas('billing').length > 0 && mesh.replicas('other').length > 0
    }, undefined, { timeout: 30_000, polling: 200 })

    // The bundle does rename classes: without literal names, this is what the page would show.
    const minified = await page.evaluate(() => (globalThis as unknown as { cellPeer: object }).cellPeer.constructor.name)
    expect(minified).not.toBe('LightPeer')

    // A server error, rebuilt into its class by the page's registry (not a RemoteError that only
    // remembers the name the server sent).
    const server1 = await callFromPanel(page, 'billing', 'refund')
    expect(server1.name).toBe('UnknownMethodError')
    expect(server1.words).toBe('The cell has no method of that name.')
    const rebuilt = await page.evaluate(async () => {
      try {
        await (globalThis as unknown as { cellPeer: { call: (c: string, m: string, r: unknown) => Promise<unknown> } }).cellPeer.call('billing', 'refund', {})
        return undefined
      } catch (err) {
        return { name: (err as Error).name, remoteName: (err as { remoteName?: string }).remoteName ?? null }
      }
    })
    expect(rebuilt).toEqual({ name: 'UnknownMethodError', remoteName: null })

    // A trust refusal by the node, recognised as one: the tab lacks a grant from other's authority.
    const refusal = await callFromPanel(page, 'other', 'hello')
    expect(refusal.name).toBe('NoGrantError')
    expect(refusal.message).toContain(`holds no grant from ${authorityIdOf(b.publicKey)}`)

    // A local error, thrown in the page by its mesh.
    const local = await callFromPanel(page, 'nosuch', 'hello')
    expect(local.name).toBe('UnknownCellError')
    expect(local.words).toMatch(/no trusted release/)

    expect(pageErrors).toEqual([])
  }, 240_000)
})
