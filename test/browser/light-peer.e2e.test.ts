// The light peer in Debian's Chromium against 3 in-process full nodes: a call without a grant is
// refused by name and shown in words, an imported grant admits the tab, a reload keeps the peer id
// and shows the stale cached fleet at once, two tabs reach each other over WebRTC through a full
// node's relay, and losing the connected full node leads to a reconnection to another one.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, mkdir, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { CHROMIUM, launchChromium, serveFiles } from './chromium.ts'
import { createBrowserNetns, type BrowserNetns } from './netns.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { buildTestPage } from '../../browser-host/test-page/build.ts'

const root = join(import.meta.dirname, '..', '..')
const billingDir = join(root, 'examples', 'billing')
const artifacts = join(root, 'test', 'artifacts')

type CallResult = { ok: true, value: any } | { ok: false, name: string, words: string }

// The full nodes here run without WebRTC-direct: stopping in-process nodes that loaded
// node-datachannel's listener can take the test worker down. Tabs reach them over WebSockets, and
// each other over WebRTC through the nodes' circuit relay. CI installs chromium (.ci/run).
describe.skipIf(!existsSync(CHROMIUM))('light peer in Chromium', () => {
  const nodes: FullNode[] = []
  const clients: Mesh[] = []
  let dir = ''
  let server: Server | undefined
  let context: BrowserContext | undefined
  let netns: BrowserNetns | undefined
  afterAll(async () => {
    for (const p of context?.pages() ?? []) await p.evaluate(async () => { await (globalThis as any).peer?.stop() }).catch(() => {})
    await context?.close().catch(() => {})
    await new Promise<void>(resolve => { if (server != null) server.close(() => { resolve() }); else resolve() })
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async n => await n.stop()))
    netns?.remove()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('calls billing with a grant, survives a reload, reaches another tab and reconnects', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-browser-'))
    // Chromium runs in its own network namespace linked to this one: the nodes and the page listen on
    // this end of the link, and the tabs get a real interface for WebRTC (see netns.ts).
    netns = createBrowserNetns(dir)
    const host = netns.hostIp
    const authority = await generateAuthority()
    const authorityId = authorityIdOf(authority.publicKey)
    for (let i = 0; i < 3; i++) {
      const bootstrap = i === 0 ? [] : [nodes[0].addresses()[0]]
      const node = await FullNode.create({ dataDir: join(dir, `n${i}`), bootstrap, authorityKeys: [authority], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false, host } })
      await node.start()
      nodes.push(node)
    }
    const wsAddr = (n: FullNode): string => n.addresses().find(a => a.includes('/ws/'))!
    expect(wsAddr(nodes[0])).toMatch(/\/ws\/p2p\//)
    const publisher = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority, listen: true })
    clients.push(publisher)
    const published = await new Publisher(publisher).publish(billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 45_000 })
    expect(published.ready).toBeGreaterThanOrEqual(1)

    const served = await serveFiles(await buildTestPage(), host)
    server = served.server
    const url = served.url

    context = await launchChromium(join(dir, 'chromium-profile'), { webrtc: true, executablePath: netns.chromium, secureOrigin: url })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', err => { pageErrors.push(String(err)) })
    await page.goto(url)

    const startPeer = async (p: Page, init: Record<string, unknown>): Promise<{ peerId: string, stale: boolean, nodes: number, cells: string[] }> =>
      await p.evaluate(async (init) => {
        const w = globalThis as any
        const peer = await w.cell.createLightPeer({ ...init, start: false })
        w.peer = peer
        const first = peer.fleet()
        w.cell.show(peer)
        await peer.start()
        return { peerId: peer.peerId, stale: first.stale, nodes: first.nodes.length, cells: first.cells.map((c: any) => c.cell) }
      }, init)
    const call = async (p: Page, amount: number): Promise<CallResult> =>
      await p.evaluate(async (amount) => await (globalThis as any).cell.callAndShow((globalThis as any).peer, 'billing', 'charge', { amount }), amount)
    const waitReplica = async (p: Page): Promise<void> => {
      await p.waitForFunction(() => (globalThis as any).peer.mesh.replicas('billing').length > 0, undefined, { timeout: 20_000 })
    }

    // 1. Without a grant the fleet shows the tab none of its private cells (fleet-sync answers public
    //    cells only), and the call is refused by name: the missing grant.
    const peerInit = { bootstrap: [wsAddr(nodes[0])], trust: [authorityId], storeName: 'tab-a', heartbeatMs: 500, saveEveryMs: 300 }
    const first = await startPeer(page, peerInit)
    expect(first.nodes).toBe(0) // a fresh profile has no cached fleet
    await page.waitForFunction(() => (globalThis as any).peer.mesh.libp2p.services.fleetSync.stats().pulls + (globalThis as any).peer.mesh.libp2p.services.fleetSync.stats().pullFailures > 0, undefined, { timeout: 20_000 })
    expect(await page.evaluate(() => (globalThis as any).peer.mesh.replicas('billing').length)).toBe(0)
    const refused = await call(page, 3)
    expect(refused.ok).toBe(false)
    if (refused.ok) throw new Error('unreachable')
    expect(refused).toMatchObject({ name: 'NoGrantError' })
    await expect.poll(async () => await page.textContent('#error')).toContain(refused.name)
    expect(await page.textContent('#error')).toMatch(/grant/)

    // 2. A caller grant for the tab's peer id, issued by the authority, admits it.
    const now = Date.now()
    const grant = await issueGrant(authority, { subject: first.peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 7 * 86_400_000 })
    await page.evaluate(async (token) => { await (globalThis as any).peer.importGrant(token) }, encodeGrantToken(grant))
    await waitReplica(page) // the grant makes the tab pull the fleet's full view again
    const charged = await call(page, 7)
    expect(charged).toMatchObject({ ok: true, value: { amount: 7 } })
    expect(await page.textContent('#result')).toContain('"amount":7')

    // 3. The live fleet (all 3 nodes) is saved to IndexedDB; a reload shows it at once, stale, under the same id.
    // (waitForFunction does not await an async predicate: its promise counts as truthy at once.)
    await expect.poll(async () => await page.evaluate(async () => {
      const saved = await new (globalThis as any).cell.IdbLightPeerStore('tab-a').load()
      return saved.fleet?.nodes.length === 3 && saved.fleet.cells.some((c: any) => c.cell === 'billing')
    }), { timeout: 20_000, interval: 200 }).toBe(true)
    await mkdir(artifacts, { recursive: true })
    await page.screenshot({ path: join(artifacts, 'light-peer-live.png') })
    await page.reload()
    const reloaded = await startPeer(page, peerInit)
    expect(reloaded.peerId).toBe(first.peerId)
    expect(reloaded.stale).toBe(true)
    expect(reloaded.nodes).toBe(3)
    expect(reloaded.cells).toContain('billing')
    await page.waitForFunction(() => !(globalThis as any).peer.fleet().stale, undefined, { timeout: 20_000 })
    await expect.poll(async () => await page.textContent('#fleet-state')).toMatch(/^Live/)
    await waitReplica(page)
    expect(await call(page, 11)).toMatchObject({ ok: true, value: { amount: 11 } }) // the grant survived the reload

    // 4. A second tab (own identity) reaches the first over WebRTC, signalled through a full node's relay.
    const tabB = await context.newPage()
    await tabB.goto(url)
    const b = await startPeer(tabB, { bootstrap: [wsAddr(nodes[1])], trust: [authorityId], storeName: 'tab-b', heartbeatMs: 500 })
    expect(b.peerId).not.toBe(first.peerId)
    const webrtcAddr = (await page.waitForFunction(() => (globalThis as any).peer.addresses().find((a: string) => a.includes('/p2p-circuit/webrtc/')),
      undefined, { timeout: 20_000 })).jsonValue() as unknown as Promise<string>
    const addrA = await webrtcAddr
    await tabB.waitForFunction(() => (globalThis as any).peer.fullNodes().length > 0, undefined, { timeout: 20_000 })
    // About one dial in three through the relay stalls in WebRTC signalling here and never completes
    // (not understood yet; see the closing note of issue 4). A user's retry gets through: so does the
    // test's, each attempt bounded, and every failed attempt is printed.
    const failedAttempts: string[] = []
    let rtt = -1
    const pingDeadline = Date.now() + 75_000
    while (rtt < 0) {
      const attempt = await tabB.evaluate(async (addr) => await (globalThis as any).peer.ping(addr, { signal: AbortSignal.timeout(12_000) })
        .then((ms: number) => ({ ms }), (err: Error) => ({ error: `${err.name}: ${err.message}` })), addrA)
      if ('ms' in attempt) rtt = attempt.ms
      else failedAttempts.push(attempt.error)
      if (rtt < 0 && Date.now() > pingDeadline) throw new Error(`tab B never reached tab A over ${addrA}: ${failedAttempts.join('; ')}`)
    }
    if (failedAttempts.length > 0) process.stdout.write(`tab-to-tab WebRTC: connected after ${failedAttempts.length} failed attempt(s): ${failedAttempts.join('; ')}\n`)
    expect(rtt).toBeGreaterThanOrEqual(0)
    const direct = await tabB.evaluate((id) => (globalThis as any).peer.connections().filter((c: any) => c.peerId === id && !c.limited), first.peerId)
    expect(direct.some((c: { addr: string }) => c.addr.includes('/webrtc'))).toBe(true)
    await tabB.evaluate(async () => { await (globalThis as any).peer.stop() })
    await tabB.close()

    // 5. The tab's full node dies: leave the tab on one full node, then stop that node. The tab
    //    re-dials another full node on its own, gossip resumes (fresh node records arrive after the
    //    drop) and calls work again.
    const keep = nodes[2]
    await page.evaluate(async (addr) => await (globalThis as any).peer.ping(addr, { signal: AbortSignal.timeout(10_000) }), wsAddr(keep))
    await page.waitForFunction((keep) => { // synchronous: an async predicate counts as true at once
      const peer = (globalThis as any).peer
      for (const conn of peer.mesh.libp2p.getConnections()) if (conn.remotePeer.toString() !== keep) conn.abort(new Error('test: keep one full node'))
      return peer.fullNodes().length === 1 && peer.fullNodes()[0] === keep
    }, keep.peerId, { timeout: 10_000, polling: 100 })
    const droppedMs = Date.now()
    await keep.stop() // the tab's full node dies
    // Either the tab's reconnector or libp2p's own dialer may get there first; what counts is a live
    // full node other than the dead one, and gossip from after the drop.
    await page.waitForFunction(({ droppedMs, dead }) => {
      const peer = (globalThis as any).peer
      const fresh = peer.fleet().nodes.some((n: any) => n.lastSeenMs > droppedMs + 500)
      const nodes: string[] = peer.fullNodes()
      return nodes.length > 0 && !nodes.includes(dead) && fresh
    }, { droppedMs, dead: keep.peerId }, { timeout: 30_000, polling: 200 })
    await waitReplica(page)
    await expect.poll(async () => (await call(page, 13)).ok, { timeout: 30_000, interval: 500 }).toBe(true)
    await page.screenshot({ path: join(artifacts, 'light-peer-reconnected.png') })
    expect(pageErrors).toEqual([])
    await page.evaluate(async () => { await (globalThis as any).peer.stop() })
  }, 240_000)
})
