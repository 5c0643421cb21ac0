// The e2e test page: exposes the light peer API on `window.cell` for playwright to drive, and draws
// the fleet summary and the last call's answer or error so a screenshot shows what a user sees.
import { createLightPeer, describeError, errorName, IdbLightPeerStore, MemoryLightPeerStore, type LightPeer } from '../index.ts'

function text (id: string, value: string, cls?: string): void {
  const el = document.getElementById(id)
  if (el == null) return
  el.textContent = value
  if (cls != null) el.className = cls
}

/** Draws the peer's fleet view now and on every change. */
function show (peer: LightPeer): void {
  const draw = (): void => {
    const fleet = peer.fleet()
    text('peer-id', peer.peerId)
    const when = new Date(fleet.asOfMs).toISOString()
    text('fleet-state', fleet.stale ? `Stale: last known fleet as of ${when}, refreshing…` : `Live: ${fleet.nodes.length} node(s)`, fleet.stale ? 'stale' : 'live')
    const body = document.getElementById('nodes')
    if (body != null) {
      body.replaceChildren(...fleet.nodes.map(n => {
        const tr = document.createElement('tr')
        for (const v of [n.record.nodeId, new Date(n.lastSeenMs).toISOString()]) {
          const td = document.createElement('td')
          td.textContent = v
          tr.append(td)
        }
        return tr
      }))
    }
    text('cells', fleet.cells.map(c => `${c.cell}@${c.version}`).join(', ') || 'none')
  }
  draw()
  peer.addEventListener('fleet', draw)
}

/** Runs a call and shows the answer or the error in words; returns what the test asserts on. */
async function callAndShow (peer: LightPeer, cell: string, method: string, request: unknown, timeoutMs = 10_000): Promise<{ ok: true, value: unknown } | { ok: false, name: string, words: string, cause?: string }> {
  try {
    const value = await peer.call(cell, method, request, { timeoutMs })
    text('result', `${cell}.${method} → ${JSON.stringify(value)}`)
    text('error', '')
    return { ok: true, value }
  } catch (err) {
    const words = describeError(err)
    text('error', words)
    const cause = (err as Error).cause
    return { ok: false, name: errorName(err), words, cause: cause != null ? `${errorName(cause)}: ${String((cause as Error).message ?? cause)}` : undefined }
  }
}

Object.assign(globalThis, {
  cell: { createLightPeer, describeError, errorName, IdbLightPeerStore, MemoryLightPeerStore, show, callAndShow }
})
