// Hostile WebTransport sessions from real Chromium against a libp2p node with the sidecar listener:
// the wrong path, a peer that fails Noise, a peer opening too many streams, a sidecar that crashes
// (restarted on the same port with the same certificate). None of them becomes a libp2p connection.
// And a `cell up` without Deno says so and runs without the listener.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { createLibp2p, type Libp2p } from 'libp2p'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { base64url } from 'multiformats/bases/base64'
import { HAS_CHROMIUM, launchChromium, serveFiles } from './chromium.ts'
import { webTransportListener, type WebTransportHandle } from '../../node-host/webtransport/transport.ts'
import { denoBinary } from '../../node-host/webtransport/sidecar.ts'
import { cell, stopProc, type Proc } from '../integration/processes.ts'

const MAX_STREAMS = 4

/** What a page-side probe reports. */
interface Probe { ready: boolean, closed: string, streams?: number }

describe.skipIf(!HAS_CHROMIUM || denoBinary() === undefined)('hostile WebTransport sessions', () => {
  let dir = ''
  let node: Libp2p | undefined
  let handle: WebTransportHandle | undefined
  let server: Server | undefined
  let context: BrowserContext | undefined
  let page: Page
  let origin = ''
  let hashes: number[][] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-wt-attack-'))
    node = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/udp/0/quic-v1/webtransport'] },
      transports: [webTransportListener({ maxStreamsPerSession: MAX_STREAMS }, (h) => { handle = h })],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    const addr = node.getMultiaddrs().map(String).find(a => a.includes('/webtransport/'))!
    origin = `https://127.0.0.1:${/\/udp\/(\d+)\//.exec(addr)![1]}`
    hashes = [...addr.matchAll(/\/certhash\/([^/]+)/g)].map(m => [...base64url.decode(m[1]).subarray(2)])
    const served = await serveFiles({ '/index.html': { body: '<!doctype html><title>wt</title>', type: 'text/html' } })
    server = served.server
    context = await launchChromium(join(dir, 'profile'))
    page = context.pages()[0] ?? await context.newPage()
    await page.goto(served.url)
  }, 60_000)

  afterAll(async () => {
    await context?.close().catch(() => {})
    server?.close()
    await node?.stop()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  }, 30_000)

  /** Open a session on `path`; `act` (page-side source) runs once it is ready; resolves when the session ends or after `waitMs`. */
  const probe = async (path: string, act: 'none' | 'garbage' | 'streams', waitMs = 8000): Promise<Probe> =>
    await page.evaluate(async ({ url, hashes, act, waitMs }) => {
      const wt = new WebTransport(url, { serverCertificateHashes: hashes.map(h => ({ algorithm: 'sha-256', value: new Uint8Array(h) })) })
      let closed = 'open'
      const ended = wt.closed.then((i) => { closed = `closed ${i.closeCode ?? ''} ${i.reason ?? ''}` }, (e: Error) => { closed = `error ${e.message}` })
      let ready = false
      try { await wt.ready; ready = true } catch { return { ready, closed: 'refused' } }
      let streams = 0
      if (act === 'garbage') {
        // A Noise message 1 must be a 32-byte ephemeral key behind a length prefix; this is not one.
        const s = await wt.createBidirectionalStream()
        const w = s.writable.getWriter()
        await w.write(new Uint8Array([0, 5, 1, 2, 3, 4, 5]))
      } else if (act === 'streams') {
        const timeout = new Promise<null>((resolve) => { setTimeout(() => { resolve(null) }, 2000) })
        for (let i = 0; i < 12; i++) {
          // Beyond the limit the browser either waits for stream credit or fails the call.
          const s = await Promise.race([wt.createBidirectionalStream(), timeout]).catch(() => null)
          if (s === null) break
          streams++
          void s.writable.getWriter().write(new Uint8Array([1])).catch(() => {})
        }
      }
      await Promise.race([ended, new Promise((resolve) => { setTimeout(resolve, waitMs) })])
      try { wt.close() } catch { /* closed */ }
      return { ready, closed, streams }
    }, { url: `${origin}${path}`, hashes, act, waitMs })

  it('refuses sessions on any other path, counted, with no connection', async () => {
    const wrong = await probe('/not-libp2p', 'none')
    expect(wrong.closed).not.toBe('open')
    const noQuery = await probe('/.well-known/libp2p-webtransport', 'none')
    expect(noQuery.closed).not.toBe('open')
    expect(handle!.stats().rejected['wrong-path']).toBe(2)
    expect(handle!.stats().sessions).toBe(0)
    expect(node!.getConnections()).toHaveLength(0)
  }, 30_000)

  it('ends a session whose Noise handshake fails', async () => {
    const before = handle!.stats().handshakeFailures
    const r = await probe('/.well-known/libp2p-webtransport?type=noise', 'garbage', 15_000)
    expect(r.ready).toBe(true)
    expect(r.closed).not.toBe('open')
    expect(handle!.stats().handshakeFailures).toBe(before + 1)
    expect(node!.getConnections()).toHaveLength(0)
  }, 30_000)

  it('lets a session hold at most the stream limit, and ends it when no handshake comes', async () => {
    const opened = handle!.stats().streamsOpened
    const r = await probe('/.well-known/libp2p-webtransport?type=noise', 'streams', 15_000)
    expect(r.ready).toBe(true)
    // QUIC flow control (the sidecar's stream limit) holds the browser back; the node takes no more than the limit.
    expect(r.streams).toBeGreaterThan(0)
    expect(r.streams).toBeLessThanOrEqual(MAX_STREAMS)
    expect(handle!.stats().streamsOpened - opened).toBeLessThanOrEqual(MAX_STREAMS)
    expect(r.closed).not.toBe('open') // the upgrade deadline ended it: one garbage byte is no handshake
    expect(node!.getConnections()).toHaveLength(0)
  }, 30_000)

  it('restarts a crashed sidecar on the same port with the same certificate', async () => {
    const pid = handle!.sidecarPid()
    expect(pid).toBeGreaterThan(0)
    process.kill(pid!, 'SIGKILL')
    const deadline = Date.now() + 20_000
    while (handle!.sidecarPid() === pid || handle!.sidecarPid() === undefined) {
      if (Date.now() > deadline) throw new Error('sidecar not restarted within 20 s')
      await new Promise<void>((resolve) => { setTimeout(resolve, 100) })
    }
    expect(handle!.stats().starts).toBe(2)
    // The new sidecar answers on the same address and certificate: a wrong-path session is refused by it.
    const rejected = handle!.stats().rejected['wrong-path'] ?? 0
    const deadline2 = Date.now() + 20_000
    while ((handle!.stats().rejected['wrong-path'] ?? 0) === rejected) {
      if (Date.now() > deadline2) throw new Error('the restarted sidecar does not answer')
      await probe('/not-libp2p', 'none', 2000)
    }
  }, 60_000)
})

describe('cell up without Deno', () => {
  let proc: Proc | undefined
  let dir = ''
  afterAll(async () => {
    if (proc !== undefined) await stopProc(proc)
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('says so at start and runs without the WebTransport listener', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-no-deno-'))
    proc = cell(['up', '--data', join(dir, 'node'), '--sandbox', 'process'], { CELL_DENO: 'none' })
    await proc.waitFor(/^trusts /m, 60_000)
    expect(proc.stderr()).toMatch(/no Deno binary .* without its WebTransport listener/)
    expect(proc.stdout()).toMatch(/listening \/ip4\/127\.0\.0\.1\/tcp\//)
    expect(proc.stdout()).not.toMatch(/webtransport/)
  }, 90_000)
})
