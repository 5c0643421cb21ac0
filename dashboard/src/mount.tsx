// Public entry for hosts: the light peer page, `cell up --dashboard`, `npm start`.
import { render } from 'solid-js/web'
import { Dashboard, NotConnected } from './app.tsx'
import type { StoreOptions } from './store.ts'
import type { FleetSource } from './source.ts'
import './styles.css'

/** Renders the dashboard into `el`; without a source it shows the "not connected" state. Returns a disposer. */
export function mountDashboard (el: HTMLElement, source?: FleetSource, options?: StoreOptions): () => void {
  el.textContent = ''
  return render(() => source === undefined ? <NotConnected /> : <Dashboard source={source} options={options} />, el)
}

export type { FleetSource, FleetViewLike, SourceStatus, CellPolicy, CallRoute, CallResult } from './source.ts'
export type { StoreOptions } from './store.ts'
