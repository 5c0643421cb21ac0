// A tab dials a full node over WebRTC-direct (no certificates, the certhash is in the address) and
// joins the fleet through it. The node is a separate `cell up` process: that is the real deployment,
// and it keeps node-datachannel out of the test worker. Chromium runs behind a veth link of its own
// (netns.ts): on a machine without a default route it gathers no WebRTC candidates reliably.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium, serveFiles } from './chromium.ts'
import { generateAuthority } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { buildTestPage } from '../../browser-host/test-page/build.ts'
import { cell, stopProc, type Proc } from '../integration/processes.ts'
import { createBrowserNetns, type BrowserNetns } from './netns.ts'

describe.skipIf(!HAS_CHROMIUM)('WebRTC-direct from Chromium', () => {
  let dir = ''
  let node: Proc | undefined
  let server: Server | undefined
  let context: BrowserContext | undefined
  let netns: BrowserNetns | undefined
  afterAll(async () => {
    await context?.close()
    server?.close()
    if (node != null) await stopProc(node)
    netns?.remove()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  }, 60_000)

  it('joins the fleet through a webrtc-direct address only', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-webrtc-'))
    const keyPath = join(dir, 'authority.key')
    const authority = await generateAuthority()
    await writeAuthorityKey(keyPath, authority)
    netns = createBrowserNetns(dir)
    const host = netns.hostIp
    node = cell(['up', '--data', join(dir, 'node'), '--authority', keyPath, '--host', host])
    const addr = (await node.waitFor(new RegExp(`listening (/ip4/${host.replaceAll('.', '\\.')}/udp/\\d+/webrtc-direct/certhash/\\S+)`), 30_000))[1]
    const peerId = addr.split('/p2p/')[1]

    const served = await serveFiles(await buildTestPage(), host)
    server = served.server
    context = await launchChromium(join(dir, 'profile'), { webrtc: true, executablePath: netns.chromium, secureOrigin: served.url })
    const page = context.pages()[0] ?? await context.newPage()
    await page.goto(served.url)
    await page.evaluate(async ({ addr, authorityId }) => {
      const w = globalThis as any
      // The tab trusts the fleet's authority: node records count only when their host grant chains to it.
      w.peer = await w.cell.createLightPeer({ bootstrap: [addr], trust: [authorityId], storeName: 'webrtc', heartbeatMs: 500 })
    }, { addr, authorityId: authority.id })
    // Connected to the node over WebRTC-direct, and its gossip reached the tab.
    await page.waitForFunction((peerId) => {
      const peer = (globalThis as any).peer
      const viaWebRTC = peer.connections().some((c: any) => c.peerId === peerId && c.addr.includes('/webrtc-direct'))
      return viaWebRTC && peer.fleet().nodes.some((n: any) => n.record.nodeId === peerId)
    }, peerId, { timeout: 30_000, polling: 200 })
    const conns = await page.evaluate(() => (globalThis as any).peer.connections())
    expect(conns.some((c: { addr: string }) => c.addr.includes('/webrtc-direct'))).toBe(true)
    await page.evaluate(async () => { await (globalThis as any).peer.stop() })
  }, 120_000)
})
