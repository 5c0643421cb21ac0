// Node list: addresses, capacity and load of every full node with a fresh heartbeat.
import { createMemo, For, Show } from 'solid-js'
import type { JSX } from 'solid-js'
import { formatBytes, formatDuration, shortId } from './model.ts'
import type { NodeRecord } from './source.ts'

function Meter (props: { label: string, percent: number, text: string }): JSX.Element {
  const p = (): number => Math.max(0, Math.min(100, props.percent))
  return (
    <div class="meter" classList={{ hot: p() >= 85 }}>
      <span class="meter-label">{props.label}</span>
      <span class="bar"><span style={{ width: `${p().toFixed(1)}%` }} /></span>
      <span class="meter-text">{props.text}</span>
    </div>
  )
}

export function NodeList (props: { nodes: NodeRecord[], now: number }): JSX.Element {
  // Keyed by node id, not by record: every heartbeat brings a new record object, and re-creating
  // the row each second would close an open address list under the user's cursor.
  const ids = createMemo(() => props.nodes.map(n => n.nodeId), undefined, { equals: (a, b) => a.length === b.length && a.every((x, i) => x === b[i]) })
  const byId = createMemo(() => new Map(props.nodes.map(n => [n.nodeId, n])))
  return (
    <ul class="nodes">
      <For each={ids()}>{id => <Show when={byId().get(id)}>{node => {
        const cpuShare = (): number => node().capacity.cpuCores > 0 ? node().load.cpuPercent / node().capacity.cpuCores : node().load.cpuPercent
        const used = (): number => node().capacity.slots - node().capacity.freeSlots
        return (
          <li class="card node" data-node={node().nodeId}>
            <header>
              <h3 title={node().nodeId}>{shortId(node().nodeId, 10)}</h3>
              <span class="roles"><For each={node().roles}>{r => <span class="tag">{r}</span>}</For></span>
              <span class="muted small">up {formatDuration(Math.max(0, props.now - node().startedMs))}</span>
            </header>
            <Meter label="CPU" percent={cpuShare()} text={`${cpuShare().toFixed(0)} % of ${node().capacity.cpuCores} cores`} />
            <Meter label="Mem" percent={node().load.memoryPercent} text={`${formatBytes(node().capacity.memoryBytes - node().capacity.freeMemoryBytes)} / ${formatBytes(node().capacity.memoryBytes)}`} />
            <Meter label="Slots" percent={node().capacity.slots > 0 ? (used() / node().capacity.slots) * 100 : 0} text={`${used()} / ${node().capacity.slots} used`} />
            <details class="addrs">
              <summary>{node().addrs.length} address{node().addrs.length === 1 ? '' : 'es'}</summary>
              <Show when={node().addrs.length > 0} fallback={<p class="muted small">No listen address announced.</p>}>
                <ul><For each={node().addrs}>{a => <li><code>{a}</code></li>}</For></ul>
              </Show>
            </details>
          </li>
        )
      }}</Show>}</For>
    </ul>
  )
}
