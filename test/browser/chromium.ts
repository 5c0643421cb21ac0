// Debian's Chromium for the browser suites (never a downloaded browser), and a loopback server for
// in-memory test pages.
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { chromium, type BrowserContext } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
export const HAS_CHROMIUM = existsSync(CHROMIUM)

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync']

/**
 * A fresh headless Chromium with its own profile directory. `webrtc` shows host ICE candidates as
 * addresses instead of mDNS names that nothing here resolves (Chromium gathers none on loopback: see
 * netns.ts for tab-to-tab WebRTC). `executablePath` runs it through a wrapper, e.g. in a namespace;
 * `secureOrigin` is a page origin off localhost that Chromium must treat as secure (WebCrypto needs it).
 */
export async function launchChromium (profileDir: string, options: { viewport?: { width: number, height: number }, webrtc?: boolean, executablePath?: string, secureOrigin?: string } = {}): Promise<BrowserContext> {
  return await chromium.launchPersistentContext(profileDir, {
    executablePath: options.executablePath ?? CHROMIUM,
    headless: true,
    timeout: 30_000,
    ...(options.viewport != null ? { viewport: options.viewport } : {}),
    args: [...FLAGS, ...(options.webrtc === true ? ['--disable-features=WebRtcHideLocalIpsWithMdns'] : []), ...(options.secureOrigin != null ? [`--unsafely-treat-insecure-origin-as-secure=${new URL(options.secureOrigin).origin}`] : [])]
  })
}

/**
 * Stops the light peer of every page in `context` (`window.cellPeer`, set by the dashboard's
 * fleet-main.ts), then closes the browser: a tab's peer leaves the fleet before its process ends.
 */
export async function closeTabs (context: BrowserContext | undefined): Promise<void> {
  for (const p of context?.pages() ?? []) await p.evaluate(async () => { await (globalThis as { cellPeer?: { stop: () => Promise<void> } }).cellPeer?.stop() }).catch(() => {})
  await context?.close().catch(() => {})
}

/** Serve `files` (path → body and type) on `host` (127.0.0.1); resolves with the server and its base URL. */
export async function serveFiles (files: Record<string, { body: string | Uint8Array, type: string }>, host = '127.0.0.1'): Promise<{ server: Server, url: string }> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const file = files[path === '/' ? '/index.html' : path]
    if (file == null) { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body)
  })
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  return { server, url: `http://${host}:${(server.address() as { port: number }).port}/` }
}
