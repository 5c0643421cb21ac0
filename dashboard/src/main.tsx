// Page entry. The host page sets `window.cellSource` (a FleetSource, e.g. the browser light peer)
// before this script runs, or later followed by a `cellsource` event; otherwise the page shows the
// designed "not connected" state. It never falls back to a fake fleet.
import { mountDashboard } from './mount.tsx'
import type { FleetSource } from './source.ts'

export { mountDashboard }

declare global {
  interface Window { cellSource?: FleetSource }
}

const el = document.getElementById('app')
if (el !== null) {
  let dispose = mountDashboard(el, window.cellSource)
  window.addEventListener('cellsource', () => {
    dispose()
    dispose = mountDashboard(el, window.cellSource)
  })
}
