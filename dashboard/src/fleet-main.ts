// Production page entry: joins the fleet from this tab. Bootstrap addresses (and optionally a grant)
// come from the URL query or from the host's cell-config.json (`npm start`, `cell up --dashboard`);
// the tab then runs its own light peer and the dashboard reads only that peer's gossip and calls.
// A host page may still hand in `window.cellSource` (see main.tsx); without either the page shows
// the designed "not connected" state. The light peer (libp2p) is a separate chunk, loaded only
// when there is a fleet to join.
import { mountDashboard } from './mount.tsx'
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
  const { loadPageConfig, requestGrant, createLightPeer, lightPeerSource, describeError } = await import('./fleet-peer.ts')
  let config
  try {
    config = await loadPageConfig(window.location, { signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    mount(failedSource(`The page configuration could not be read: ${describeError(err)}`))
    return
  }
  if (config === undefined) { mount(undefined); return }
  let peer
  try {
    peer = await createLightPeer({ bootstrap: config.bootstrap, trust: config.trust, grantToken: config.grantToken, start: false })
  } catch (err) {
    mount(failedSource(`The light peer could not be created: ${describeError(err)}`))
    return
  }
  window.cellPeer = peer
  const source = lightPeerSource(peer)
  window.cellSource = source
  mount(source)
  try {
    if (config.grantUrl !== undefined) {
      const token = await requestGrant(config.grantUrl, peer.peerId, window.location.href, { signal: AbortSignal.timeout(10_000) })
      await peer.importGrant(token)
    }
  } catch (err) {
    // Without a grant the tab still sees the fleet; calls are refused by name and shown in words.
    console.warn('no grant for this tab:', describeError(err))
  }
  try {
    await peer.start()
  } catch (err) {
    source.fail(err)
  }
  el.dataset.peerId = peer.peerId
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
