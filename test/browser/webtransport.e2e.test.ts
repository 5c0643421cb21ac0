// Tabs dial a `cell up` node over WebTransport only: Chromium → QUIC/HTTP3 (the node's Deno
// sidecar) → the Unix socket bridge → Noise with certhash extensions in the node → an ordinary
// libp2p connection (identify, gossipsub, synapse). The node runs with 20-second certificates, so
// it rotates every 12 seconds: a connection made before a rotation keeps working, and a new tab
// dialing only the new hashes connects.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium, serveFiles } from './chromium.ts'
import { generateAuthority, issueGrant, encodeGrantToken, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { buildTestPage } from '../../browser-host/test-page/build.ts'
import { denoBinary } from '../../node-host/webtransport/sidecar.ts'
import { cell, stopProc, projectRoot, type Proc } from '../integration/processes.ts'

const WT_ADDR = /listening (\/ip4\/127\.0\.0\.1\/udp\/\d+\/quic-v1\/webtransport\/certhash\/\S+)/

interface PeerConn { peerId: string, addr: string }
interface TabWindow { cell: { createLightPeer: (init: Record<string, unknown>) => Promise<TabPeer> }, peer: TabPeer }
interface TabPeer {
  peerId: string
  start: () => Promise<void>
  stop: () => Promise<void>
  connections: () => PeerConn[]
  importGrant: (token: string) => Promise<unknown>
  fleet: () => { nodes: Array<{ record: { nodeId: string, addrs: string[] } }> }
  mesh: {
    replicas: (cell: string) => unknown[]
    remote: (cell: string) => { charge: (req: { amount: number }) => Promise<{ amount: number }> }
    libp2p: { getConnections: () => Array<{ id: string, remotePeer: { toString: () => string } }> }
  }
}

const hashesOf = (addr: string): string[] => [...addr.matchAll(/\/certhash\/([^/]+)/g)].map(m => m[1])

describe.skipIf(!HAS_CHROMIUM || denoBinary() === undefined)('WebTransport from Chromium to a full node', () => {
  let dir = ''
  let node: Proc | undefined
  let server: Server | undefined
  let context: BrowserContext | undefined
  let publisher: Mesh | undefined
  let authority: AuthorityKey
  let wtAddr = ''
  let nodeId = ''
  let url = ''

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-wt-e2e-'))
    const keyPath = join(dir, 'authority.key')
    authority = await generateAuthority()
    await writeAuthorityKey(keyPath, authority)
    node = cell(['up', '--data', join(dir, 'node'), '--authority', keyPath, '--host', '127.0.0.1', '--webtransport', '0', '--heartbeat', '1s'], { CELL_WEBTRANSPORT_CERT_MS: '20000' })
    wtAddr = (await node.waitFor(WT_ADDR, 60_000))[1]
    nodeId = wtAddr.split('/p2p/')[1]
    const tcp = (await node.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+)/, 5_000))[1]
    publisher = await createClient({ bootstrap: [tcp], authorityKey: authority, listen: true })
    const published = await new Publisher(publisher).publish(join(projectRoot, 'examples', 'billing'), '1.0.0', authority, { setAuthority: true, timeoutMs: 60_000 })
    expect(published.ready).toBeGreaterThanOrEqual(1)
    const served = await serveFiles(await buildTestPage(), '127.0.0.1')
    server = served.server
    url = served.url
    context = await launchChromium(join(dir, 'profile'))
  }, 150_000)

  afterAll(async () => {
    for (const p of context?.pages() ?? []) await p.evaluate(async () => { await (globalThis as unknown as TabWindow).peer?.stop() }).catch(() => {})
    await context?.close().catch(() => {})
    server?.close()
    await publisher?.stop()
    // WT_DEBUG=<file>: the node's whole stderr (run with DEBUG='cell:*webtransport*' for the bridge's frames).
    if (process.env.WT_DEBUG !== undefined) await writeFile(process.env.WT_DEBUG, node?.stderr() ?? '')
    if (node != null) await stopProc(node)
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  }, 60_000)

  /**
   * The node's WebTransport address as its gossiped record carries it now. The address it printed
   * at start holds hashes of the certificate it served then and of the next one: two rotations
   * (24 s here) later neither is served, so a tab opened late in a slow run must not dial it.
   */
  const currentWtAddr = async (): Promise<string> => {
    const addr = await waitForView(publisher!, () => wtAddrs().at(0), "the node's record with a WebTransport address", { timeoutMs: 30_000 })
    return `${addr.replace(/\/p2p\/[^/]+$/, '')}/p2p/${nodeId}`
  }

  /** The node's WebTransport addresses in the test client's fleet view. */
  const wtAddrs = (): string[] => publisher!.view.nodes().find(n => n.nodeId === nodeId)?.addrs.filter(a => a.includes('/quic-v1/webtransport/')) ?? []

  /** A tab whose light peer bootstraps from `addr` only; resolves once it is connected to the node, with the time that took. */
  const openTab = async (addr: string, storeName: string): Promise<{ page: Page, peerId: string, connectMs: number }> => {
    const page = await context!.newPage()
    await page.goto(url)
    const started = await page.evaluate(async ({ addr, storeName, authorityId }) => {
      const w = globalThis as unknown as TabWindow
      w.peer = await w.cell.createLightPeer({ bootstrap: [addr], trust: [authorityId], storeName, heartbeatMs: 500, webRTCDirect: false })
      const t0 = performance.now()
      await w.peer.start()
      return { peerId: w.peer.peerId, t0 }
    }, { addr, storeName, authorityId: authority.id })
    const connected = await page.waitForFunction((nodeId) => {
      const c = (globalThis as unknown as TabWindow).peer.connections().find(c => c.peerId === nodeId)
      return c !== undefined ? performance.now() : false
    }, nodeId, { timeout: 30_000, polling: 20 })
    return { page, peerId: started.peerId, connectMs: Math.round(await connected.jsonValue() as number - started.t0) }
  }

  const grant = async (page: Page, peerId: string): Promise<void> => {
    const now = Date.now()
    const token = encodeGrantToken(await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    await page.evaluate(async (token) => { await (globalThis as unknown as TabWindow).peer.importGrant(token) }, token)
    await page.waitForFunction(() => (globalThis as unknown as TabWindow).peer.mesh.replicas('billing').length > 0, undefined, { timeout: 30_000 })
  }

  const charge = async (page: Page, amount: number): Promise<{ amount: number }> =>
    await page.evaluate(async (amount) => await (globalThis as unknown as TabWindow).peer.mesh.remote('billing').charge({ amount }), amount)

  const nodeConnections = async (page: Page): Promise<PeerConn[]> =>
    (await page.evaluate(() => (globalThis as unknown as TabWindow).peer.connections())).filter(c => c.peerId === nodeId)

  it('joins the fleet and calls billing through the WebTransport address only', async () => {
    const a = await openTab(await currentWtAddr(), 'wt-a')
    console.log(`webtransport: tab connected to the node in ${a.connectMs} ms`)
    // The node's gossip reached the tab over that connection.
    await a.page.waitForFunction((nodeId) => (globalThis as unknown as TabWindow).peer.fleet().nodes.some(n => n.record.nodeId === nodeId), nodeId, { timeout: 30_000 })
    await grant(a.page, a.peerId)
    expect(await charge(a.page, 7)).toMatchObject({ amount: 7 })
    // A figure for the report, not a pass mark: sequential and 16-way concurrent calls over this connection.
    const rate = await a.page.evaluate(async () => {
      const billing = (globalThis as unknown as TabWindow).peer.mesh.remote('billing')
      let t = performance.now()
      for (let i = 1; i <= 100; i++) await billing.charge({ amount: i })
      const sequential = 100_000 / (performance.now() - t)
      t = performance.now()
      await Promise.all(Array.from({ length: 16 }, async (_, w) => { for (let i = 1; i <= 25; i++) await billing.charge({ amount: w * 100 + i }) }))
      return { sequential: Math.round(sequential), concurrent: Math.round(400_000 / (performance.now() - t)) }
    })
    console.log(`webtransport: ${rate.sequential} calls/s sequential, ${rate.concurrent} calls/s 16-way concurrent`)
    expect(rate.sequential).toBeGreaterThan(0)
    const conns = await nodeConnections(a.page)
    expect(conns.length).toBeGreaterThan(0)
    expect(conns.every(c => c.addr.includes('/quic-v1/webtransport/'))).toBe(true)
  }, 120_000)

  it('stops a light peer connected over WebTransport without crashing its tab', async () => {
    const a = await openTab(await currentWtAddr(), 'wt-stop')
    await a.page.waitForFunction((nodeId) => (globalThis as unknown as TabWindow).peer.fleet().nodes.some(n => n.record.nodeId === nodeId), nodeId, { timeout: 30_000 })
    await grant(a.page, a.peerId)
    expect(await charge(a.page, 3)).toMatchObject({ amount: 3 })
    let crashed = false
    a.page.on('crash', () => { crashed = true })
    const stopped = await a.page.evaluate(async () => {
      const t0 = performance.now()
      await (globalThis as unknown as TabWindow).peer.stop()
      return performance.now() - t0
    })
    console.log(`webtransport: peer.stop() took ${Math.round(stopped)} ms`)
    // The tab still runs script after the stop.
    expect(await a.page.evaluate(() => 1 + 1)).toBe(2)
    expect(crashed).toBe(false)
    await a.page.close()
  }, 120_000)

  it('connects a new tab that dials an address gossiped before the last rotation', async () => {
    // The address as the fleet knew it, then one rotation: its first certificate is retired, its
    // second is served. The browser's Noise check wants every dialed hash among the node's.
    const stale = await currentWtAddr()
    const [retired, served] = hashesOf(stale)
    await waitForView(publisher!, () => wtAddrs().some(a => a.includes(`/certhash/${served}/`) && !a.includes(`/certhash/${retired}/`)) ? true : undefined, 'a rotation in the gossiped record', { timeoutMs: 40_000 })
    const c = await openTab(stale, 'wt-stale')
    console.log(`webtransport: a tab dialing the pre-rotation address connected in ${c.connectMs} ms`)
    expect((await nodeConnections(c.page)).every(x => x.addr.includes(`/certhash/${retired}/`))).toBe(true)
    await c.page.evaluate(async () => { await (globalThis as unknown as TabWindow).peer.stop() })
    await c.page.close()
  }, 120_000)

  it('keeps a live connection through a certificate rotation, and a new tab dials the new hashes', async () => {
    const a = context!.pages().find(p => p.url() === url && !p.isClosed() && p !== context!.pages()[0]) ?? (await openTab(await currentWtAddr(), 'wt-a2')).page
    const advertised = async (): Promise<string> => await a.evaluate((nodeId) => (globalThis as unknown as TabWindow).peer.fleet().nodes.find(n => n.record.nodeId === nodeId)?.record.addrs.find(x => x.includes('/webtransport/')) ?? '', nodeId)
    const connectionIds = async (): Promise<string[]> => await a.evaluate((nodeId) => (globalThis as unknown as TabWindow).peer.mesh.libp2p.getConnections().filter(c => c.remotePeer.toString() === nodeId).map(c => c.id), nodeId)
    const connBefore = await connectionIds()
    expect(connBefore).toHaveLength(1)
    // Both hashes advertised while that connection was open must go: two rotations at least, so at
    // least one happened after it (the gossiped record may lag the node by a heartbeat).
    const before = hashesOf(await advertised())
    expect(before).toHaveLength(2)
    const rotated = await a.waitForFunction(({ nodeId, before }) => {
      const rec = (globalThis as unknown as TabWindow).peer.fleet().nodes.find(n => n.record.nodeId === nodeId)?.record
      const wt = rec?.addrs.find(x => x.includes('/webtransport/') && !before.some(h => x.includes(`/certhash/${h}/`)))
      return wt ?? false
    }, { nodeId, before }, { timeout: 60_000, polling: 250 })
    const newAddr = `${await rotated.jsonValue() as string}`.replace(/\/p2p\/[^/]+$/, '') + `/p2p/${nodeId}`
    expect(hashesOf(newAddr).filter(h => before.includes(h))).toEqual([])
    // The tab's connection made before the rotation is the same one, and still carries calls.
    expect(await charge(a, 11)).toMatchObject({ amount: 11 })
    expect(await connectionIds()).toEqual(connBefore)
    // A new tab with only the new hashes connects (the node serves a certificate made after the first tab connected).
    const b = await openTab(newAddr, 'wt-b')
    await grant(b.page, b.peerId)
    expect(await charge(b.page, 13)).toMatchObject({ amount: 13 })
    expect((await nodeConnections(b.page)).every(c => c.addr.includes('/quic-v1/webtransport/'))).toBe(true)
  }, 120_000)
})
