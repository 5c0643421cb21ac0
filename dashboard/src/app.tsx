// The dashboard shell: status header, designed empty/loading/stale/error states, and the panels.
import { createMemo, For, Match, Show, Switch } from 'solid-js'
import type { JSX } from 'solid-js'
import { CallPanel } from './call-panel.tsx'
import { CellCard } from './cells.tsx'
import { NodeList } from './nodes.tsx'
import { Topology } from './topology.tsx'
import { formatDuration, HISTORY_WINDOW_MS, shortId } from './model.ts'
import { createFleetStore } from './store.ts'
import type { StoreOptions } from './store.ts'
import type { FleetSource } from './source.ts'

const sameList = (a: string[], b: string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i])

const STATUS_WORDS = { connecting: 'connecting', live: 'live', stale: 'stale', error: 'error' } as const

export function NotConnected (): JSX.Element {
  return (
    <div class="shell">
      <header class="top"><h1>Cell <span>fleet</span></h1><span class="pill status-error">not connected</span></header>
      <section class="card empty hero" data-state="not-connected">
        <h2>Not connected</h2>
        <p>This page shows the fleet through a light peer running in this tab, fed by its own gossip
          subscription. No peer was handed to it.</p>
        <p class="small muted">Open the dashboard from a full node (<code>cell up --dashboard</code>) or with
          {' '}<code>npm start</code>, or mount it from your page with <code>mountDashboard(el, source)</code>.</p>
      </section>
    </div>
  )
}

export function Dashboard (props: { source: FleetSource, options?: StoreOptions }): JSX.Element {
  const store = createFleetStore(props.source, props.options)
  const windowMs = props.options?.historyWindowMs ?? HISTORY_WINDOW_MS
  const cellNames = createMemo(() => store.cells().map(c => c.name), undefined, { equals: sameList })
  const replicaCount = (): number => store.cells().reduce((s, c) => s + c.replicas.live, 0)
  const ago = (): string => {
    const t = store.lastChangeMs()
    return t === undefined ? 'never' : `${formatDuration(Math.max(0, store.now() - t))} ago`
  }

  return (
    <div class="shell" data-status={store.status()}>
      <header class="top">
        <h1>Cell <span>fleet</span></h1>
        <span class={`pill status-${store.status()}`} data-testid="status">{STATUS_WORDS[store.status()]}</span>
        <span class="muted small counts">{store.nodes().length} nodes · {store.cells().length} cells · {replicaCount()} replicas</span>
        <span class="muted small peer" title={props.source.peerId}>tab {shortId(props.source.peerId, 10)} · updated {ago()}</span>
      </header>
      <Switch>
        <Match when={store.status() === 'error'}>
          <div class="banner error" role="alert"><b>The light peer reports an error.</b> {store.statusReason() ?? 'It will keep trying to reach a full node.'} {store.nodes().length > 0 ? 'Showing the last known fleet.' : ''}</div>
        </Match>
        <Match when={store.status() === 'stale'}>
          <div class="banner stale" role="status"><b>Showing the last known fleet.</b> Last record {ago()}{store.statusReason() !== undefined ? ` — ${store.statusReason()}` : ''}; reconnecting…</div>
        </Match>
      </Switch>
      {/* A warning beside the fleet, never instead of it: what is shown is still what gossip brought. */}
      <Show when={store.warnings().length > 0}>
        <div class="banner warn" role="alert" data-testid="mismatch-warning">
          <b>This tab may see only part of the fleet.</b>
          <ul>
            <For each={store.warnings()}>{w => <li>{w}</li>}</For>
          </ul>
        </div>
      </Show>
      <Show when={!store.loading()} fallback={
        <section class="card empty" data-state="loading">
          <h2>Joining the fleet…</h2>
          <p>Waiting for the first heartbeat from a full node. Nodes and cells appear here as soon as
            their records arrive over gossip.</p>
          <div class="skeleton" /><div class="skeleton short" />
        </section>
      }>
        <main class="grid" classList={{ dim: store.status() === 'stale' || store.status() === 'error' }}>
          <section class="cells-col" aria-label="cells">
            <h2>Cells</h2>
            <Show when={store.cells().length > 0} fallback={
              <div class="card empty" data-state="no-cells">
                <h3>No cells yet</h3>
                <p class="small">No release or replica is known to this peer. Publish one with <code>cell publish &lt;version&gt;</code>; it shows up here within a heartbeat.</p>
              </div>
            }>
              {/* Keyed by name: each refresh builds new models, and a card should update in place. */}
              <For each={cellNames()}>{name => (
                <Show when={store.cells().find(c => c.name === name)}>{c => <CellCard cell={c()} history={store.history().get(name) ?? []} events={store.events().get(name) ?? []} now={store.now()} windowMs={windowMs} />}</Show>
              )}</For>
            </Show>
          </section>
          <aside class="side-col">
            <Show when={store.nodes().length > 0}>
              <section aria-label="fleet topology">
                <h2>Topology</h2>
                <Topology nodes={store.nodes()} instances={store.cells().flatMap(c => c.instances)} connections={store.connections()} tabId={props.source.peerId} />
              </section>
            </Show>
            <section aria-label="nodes">
              <h2>Nodes</h2>
              <Show when={store.nodes().length > 0} fallback={
                <div class="card empty" data-state="no-nodes"><h3>No full node heard from</h3><p class="small">Node records expire after three missed heartbeats.</p></div>
              }>
                <NodeList nodes={store.nodes()} now={store.now()} />
              </Show>
            </section>
            <CallPanel store={store} cells={cellNames()} disabled={store.status() === 'error' || store.status() === 'connecting'} />
          </aside>
        </main>
      </Show>
    </div>
  )
}
