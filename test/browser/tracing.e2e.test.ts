// Issue 12 point 5: one trace from a Chromium tab's call through a full node to the replica's host
// side. The tab's light peer exports its client spans (the OTLP/HTTP exporter) to a local OTLP/HTTP
// receiver (which answers CORS preflight), the in-process full node its server and capsid spans;
// a failing call's spans carry ERROR.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext } from 'playwright-core'
import { CHROMIUM, launchChromium, serveFiles } from './chromium.ts'
import { createBrowserNetns, type BrowserNetns } from './netns.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { buildTestPage } from '../../browser-host/test-page/build.ts'
import { OtlpReceiver, KIND, STATUS, callTrace, type ReceivedSpan } from '../integration/otlp-receiver.ts'

/** What the test page exposes on `window` (browser-host/test-page/entry.ts), as far as this test uses it. */
interface TabPeer {
  peerId: string
  importGrant: (token: string) => Promise<unknown>
  mesh: { replicas: (cell: string) => unknown[] }
  call: (cell: string, method: string, request: unknown) => Promise<unknown>
  flushTraces: () => Promise<void>
  traceStats: () => { exported: number, failed: number, dropped: number } | undefined
  stop: () => Promise<void>
}
interface TabGlobal { cell: { createLightPeer: (init: unknown) => Promise<TabPeer> }, peer: TabPeer }

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')

describe.skipIf(!existsSync(CHROMIUM))('traces from a Chromium tab', () => {
  let node: FullNode | undefined
  const clients: Mesh[] = []
  const receiver = new OtlpReceiver()
  let dir = ''
  let server: Server | undefined
  let context: BrowserContext | undefined
  let netns: BrowserNetns | undefined
  afterAll(async () => {
    for (const p of context?.pages() ?? []) await p.evaluate(async () => { await (globalThis as unknown as Partial<TabGlobal>).peer?.stop() }).catch(() => {})
    await context?.close().catch(() => {})
    await new Promise<void>(resolve => { if (server != null) server.close(() => { resolve() }); else resolve() })
    await Promise.all(clients.map(async c => await c.stop()))
    await node?.stop()
    await receiver.stop()
    netns?.remove()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('tab → full node → replica in one trace, with parent links, durations and ERROR on the failing call', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-trace-browser-'))
    netns = createBrowserNetns(dir)
    const host = netns.hostIp
    const otlp = await receiver.start(host)
    const authority = await generateAuthority()
    node = await FullNode.create({ dataDir: join(dir, 'n0'), authorityKeys: [authority], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false, host }, otlp: { url: otlp, ratio: 1, scheduledDelayMs: 50 } })
    await node.start()
    const publisher = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: authority, listen: true })
    clients.push(publisher)
    await new Publisher(publisher).publish(billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 45_000 })

    const served = await serveFiles(await buildTestPage(), host)
    server = served.server
    context = await launchChromium(join(dir, 'chromium-profile'), { webrtc: true, executablePath: netns.chromium, secureOrigin: served.url })
    const page = context.pages()[0] ?? await context.newPage()
    await page.goto(served.url)
    const wsAddr = node.addresses().find(a => a.includes('/ws/'))!
    const peerId = await page.evaluate(async (init) => {
      const w = globalThis as unknown as TabGlobal
      w.peer = await w.cell.createLightPeer(init)
      return w.peer.peerId
    }, { bootstrap: [wsAddr], trust: [authorityIdOf(authority.publicKey)], storeName: 'trace-tab', heartbeatMs: 500, otlp: { url: otlp, ratio: 1, serviceName: 'tab', scheduledDelayMs: 50 } })
    const now = Date.now()
    const grant = await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 86_400_000 })
    await page.evaluate(async (token) => { await (globalThis as unknown as TabGlobal).peer.importGrant(token) }, encodeGrantToken(grant))
    await page.waitForFunction(() => (globalThis as unknown as TabGlobal).peer.mesh.replicas('billing').length > 0, undefined, { timeout: 20_000 })

    const outcomes = await page.evaluate(async () => {
      const peer = (globalThis as unknown as TabGlobal).peer
      const ok = await peer.call('billing', 'charge', { amount: 7 }).then((v) => (v as { amount: number }).amount, (e: Error) => e.name)
      const failed = await peer.call('billing', 'charge', { amount: -1 }).then(() => 'answered', (e: { remoteName?: string, name: string }) => e.remoteName ?? e.name)
      await peer.flushTraces()
      return { ok, failed, stats: peer.traceStats() }
    })
    expect(outcomes.ok).toBe(7)
    expect(outcomes.failed).toBe('InvalidAmountError')
    expect(outcomes.stats).toMatchObject({ failed: 0, dropped: 0 })
    await node.tracer!.flush()

    await expect.poll(() => receiver.spans.filter(s => s.service === 'tab' && s.kind === KIND.client).length, { timeout: 10_000 }).toBe(2)
    const tab = receiver.spans.filter(s => s.service === 'tab' && s.kind === KIND.client)
    const ok = tab.find(s => s.status.code !== STATUS.error)!
    const failed = tab.find(s => s.status.code === STATUS.error)!
    expect(ok).toBeDefined()
    expect(failed).toBeDefined()
    expect(failed.status.message).toMatch(/InvalidAmountError/)
    for (const client of [ok, failed]) {
      await expect.poll(() => callTrace(receiver.spans, client) !== undefined, { timeout: 10_000 }).toBe(true)
      const trace = callTrace(receiver.spans, client)!
      expect(trace.server.service).toBe('cell-node')
      const spans: ReceivedSpan[] = [client, trace.server, trace.capsid]
      for (const s of spans) expect(s.endNs > s.startNs, `${s.name} has a duration`).toBe(true)
      expect(new Set(spans.map(s => s.traceId)).size).toBe(1)
      const wanted = client === failed ? STATUS.error : STATUS.unset
      expect([trace.server.status.code, trace.capsid.status.code]).toEqual([wanted, wanted])
    }
    expect(receiver.rejected).toBe(0)
  }, 180_000)
})
