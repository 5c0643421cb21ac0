// Production page entry: joins the fleet from this tab. Bootstrap addresses (and optionally a grant)
// come from the URL query or from the host's cell-config.json (`npm start`, `cell up --dashboard`);
// the tab then runs its own light peer and the dashboard reads only that peer's gossip and calls.
// A host page may still hand in `window.cellSource` (see main.tsx); without either the page shows
// the designed "not connected" state. The light peer (libp2p) is a separate chunk, loaded only
// when there is a fleet to join.
//
// Trust: the host's cell-config.json is the operator's word (same origin, Host-checked by the
// server), so its authorities are used at once. A link's `?trust=` (and the issuer of a `?grant=`
// token) is anyone's word: authorities the tab does not trust yet are shown in a confirm prompt
// (trust-prompt.tsx) and are stored and used only after the person accepts them.
import { mountDashboard } from './mount.tsx'
import { mountTrustPrompt } from './trust-prompt.tsx'
import type { FleetSource, FleetViewLike } from './source.ts'

declare global {
  interface Window { cellSource?: FleetSource, cellPeer?: { stop: () => Promise<void> } }
}

/** A source that only carries why the tab could not join; its view is empty. */
function failedSource (reason: string): FleetSource {
  const view = Object.assign(new EventTarget(), {
    nodes: () => [],
    instances: () => [],
    liveInstances: () => [],
    release: () => undefined,
    desired: () => undefined,
    cells: () => [],
    stats: () => ({ nodes: 0, instances: 0, releases: 0, desired: 0, accepted: {}, dropped: {}, expired: { node: 0, instance: 0 }, snapshotTruncated: 0 })
  }) as unknown as FleetViewLike
  return Object.assign(new EventTarget(), {
    view,
    peerId: 'none',
    status: 'error' as const,
    statusReason: reason,
    call: async () => { throw new Error(reason) }
  })
}

async function join (el: HTMLElement, mount: (source?: FleetSource) => void): Promise<void> {
  const { loadPageConfig, requestGrant, createLightPeer, lightPeerSource, describeError, decodeGrantToken } = await import('./fleet-peer.ts')
  let config
  try {
    config = await loadPageConfig(window.location, { signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    mount(failedSource(`The page configuration could not be read: ${describeError(err)}`))
    return
  }
  if (config === undefined) { mount(undefined); return }
  // A link's grant makes its issuer trusted when imported, so it waits for the same confirmation
  // as `?trust=` unless the tab already trusts that issuer.
  let linkGrant: { token: string, issuer: string } | undefined
  if (config.linkTrust !== undefined && config.grantToken !== undefined) {
    try {
      linkGrant = { token: config.grantToken, issuer: decodeGrantToken(config.grantToken).issuer }
    } catch (err) {
      mount(failedSource(`The grant in the link is not valid: ${describeError(err)}`))
      return
    }
  }
  let peer
  try {
    // The fleet's dissemination mode (cell-config.json names it for a per-cell fleet; absent: 'fleet').
    peer = await createLightPeer({ bootstrap: config.bootstrap, trust: config.trust, start: false, ...(config.dissemination !== undefined ? { dissemination: config.dissemination } : {}) })
  } catch (err) {
    mount(failedSource(`The light peer could not be created: ${describeError(err)}`))
    return
  }
  const known = new Set(peer.trusted())
  const asked = [...new Set([...(config.linkTrust ?? []), ...(linkGrant !== undefined ? [linkGrant.issuer] : [])])].filter(a => !known.has(a))
  window.cellPeer = peer
  const source = lightPeerSource(peer)
  window.cellSource = source
  if (linkGrant !== undefined && known.has(linkGrant.issuer)) {
    try {
      await peer.importGrant(linkGrant.token)
    } catch (err) {
      mount(failedSource(`The grant in the link could not be used: ${describeError(err)}`))
      return
    }
  }
  mount(source)
  if (asked.length > 0) askTrust(el, asked, linkGrant, peer)
  if (config.grantUrl !== undefined) await keepGranted(config.grantUrl, config.grantSecret, peer, { requestGrant, describeError })
  try {
    await peer.start()
  } catch (err) {
    source.fail(err)
  }
  el.dataset.peerId = peer.peerId
}

/** The soonest and the latest a grant is asked for again (its half-life in between), and after a failure. */
const RENEW_MIN_MS = 1_000
const RETRY_MAX_MS = 10 * 60_000
const RENEW_MAX_MS = 24 * 3_600_000

/**
 * Asks the page's host for a caller grant now, and again at each grant's half-life: a tab left
 * open for days (a wall screen) keeps calling after its first grant ends. A failure is retried with
 * backoff; without a grant the tab still sees the fleet, and calls are refused by name and shown in
 * words.
 */
async function keepGranted (
  grantUrl: string, secret: string | undefined,
  peer: { peerId: string, importGrant: (token: string) => Promise<{ notAfterMs: number }> },
  chunk: Pick<typeof import('./fleet-peer.ts'), 'requestGrant' | 'describeError'>
): Promise<void> {
  const { requestGrant, describeError } = chunk
  let failures = 0
  const renew = async (): Promise<void> => {
    let nextMs: number
    try {
      const token = await requestGrant(grantUrl, peer.peerId, window.location.href, { secret, signal: AbortSignal.timeout(10_000) })
      const cert = await peer.importGrant(token)
      failures = 0
      // At most a day: a timer longer than 2^31 ms (a grant of months) would fire at once, and again.
      nextMs = Math.min(RENEW_MAX_MS, Math.max(RENEW_MIN_MS, (cert.notAfterMs - Date.now()) / 2))
    } catch (err) {
      failures++
      console.warn('no grant for this tab:', describeError(err))
      nextMs = Math.min(RETRY_MAX_MS, 5_000 * 2 ** Math.min(failures, 10))
    }
    setTimeout(() => { void renew() }, nextMs)
  }
  await renew()
}

/** Shows the confirm prompt above the dashboard; the authorities are stored only on "Trust". */
function askTrust (el: HTMLElement, asked: string[], linkGrant: { token: string, issuer: string } | undefined, peer: { trust: (id: string) => Promise<void>, importGrant: (token: string) => Promise<unknown> }): void {
  const box = document.createElement('div')
  box.id = 'trust-prompt'
  el.before(box)
  mountTrustPrompt(box, {
    authorities: asked,
    grantIssuer: linkGrant !== undefined && asked.includes(linkGrant.issuer) ? linkGrant.issuer : undefined,
    accept: async () => {
      for (const id of asked) await peer.trust(id)
      if (linkGrant !== undefined && asked.includes(linkGrant.issuer)) await peer.importGrant(linkGrant.token)
    }
  })
}

const el = document.getElementById('app')
if (el !== null) {
  let dispose: (() => void) | undefined
  const mount = (source?: FleetSource): void => {
    dispose?.()
    dispose = mountDashboard(el, source)
  }
  window.addEventListener('cellsource', () => { mount(window.cellSource) })
  if (window.cellSource !== undefined) mount(window.cellSource)
  else void join(el, mount)
}
