// Fleet topology from what the view knows: every full node, this tab's own connections (when the
// source tells), and where each replica runs. Node records carry no peer list, so links between
// full nodes are not drawn; the tab sits in the middle with a line to each node it is connected to.
import { createMemo, For, Show } from 'solid-js'
import type { JSX } from 'solid-js'
import { shortId } from './model.ts'
import type { InstanceRecord, NodeRecord } from './source.ts'

const W = 300
const H = 270
const CX = W / 2
const CY = H / 2
/** Nodes drawn in the picture at most; the list below shows all of them. */
const MAX_DRAWN = 24
const PALETTE = ['#3b5bdb', '#2f9e44', '#e8590c', '#7048e8', '#0c8599', '#c2255c', '#5c940d', '#868e96']

function labelDy (a: number): number {
  const sin = Math.sin(a)
  if (sin < -0.3) return sin < -0.7 ? -40 : -24
  return sin > 0.7 ? 46 : sin > 0.2 ? 38 : 30
}

export interface TopologyProps {
  nodes: readonly NodeRecord[]
  instances: readonly InstanceRecord[]
  /** Peer ids the tab is connected to; undefined when the source cannot tell. */
  connections: readonly string[] | undefined
  tabId: string
}

export function Topology (props: TopologyProps): JSX.Element {
  const cells = createMemo(() => [...new Set(props.instances.map(i => i.cell))].sort())
  const color = (cell: string): string => PALETTE[Math.max(0, cells().indexOf(cell)) % PALETTE.length]
  const shown = createMemo(() => props.instances.filter(i => i.state !== 'stopped'))
  const byNode = createMemo(() => {
    const m = new Map<string, InstanceRecord[]>()
    for (const i of shown()) m.set(i.nodeId, [...(m.get(i.nodeId) ?? []), i])
    for (const list of m.values()) list.sort((a, b) => a.cell < b.cell ? -1 : a.cell > b.cell ? 1 : a.instanceId < b.instanceId ? -1 : 1)
    return m
  })
  const connected = createMemo(() => new Set(props.connections ?? []))
  const drawn = createMemo(() => {
    const list = props.nodes.slice(0, MAX_DRAWN)
    const r = list.length <= 1 ? 0 : Math.min(88, 56 + list.length * 5)
    return list.map((n, k) => {
      const a = -Math.PI / 2 + (2 * Math.PI * k) / Math.max(1, list.length)
      return { node: n, x: CX + r * Math.cos(a), y: CY + r * Math.sin(a) + (list.length <= 1 ? -60 : 0), a }
    })
  })
  // The picture is cropped to what is drawn (three nodes leave the lower part of the ring empty).
  const box = createMemo(() => {
    const ys = [CY - 14, CY + 14, ...drawn().map(d => d.y)]
    const top = Math.max(0, Math.min(...ys) - 52)
    return `0 ${top.toFixed(0)} ${W} ${(Math.min(H, Math.max(...ys) + 56) - top).toFixed(0)}`
  })
  const orphans = createMemo(() => shown().filter(i => !props.nodes.some(n => n.nodeId === i.nodeId)))
  return (
    <section class="card topology" aria-label="topology">
      <svg viewBox={box()} role="img" aria-label={`${props.nodes.length} full nodes, ${shown().length} replicas, this tab connected to ${props.connections?.length ?? 'an unknown number of'} nodes`}>
        <For each={drawn()}>{d => (
          <Show when={connected().has(d.node.nodeId)}>
            <line class="topo-link" x1={CX} y1={CY} x2={d.x} y2={d.y} />
          </Show>
        )}</For>
        <g class="topo-tab">
          <rect x={CX - 26} y={CY - 12} width="52" height="24" rx="5" />
          <text x={CX} y={CY + 4} text-anchor="middle">this tab</text>
        </g>
        <For each={drawn()}>{d => {
          const reps = (): InstanceRecord[] => byNode().get(d.node.nodeId) ?? []
          return (
            <g class="topo-node" classList={{ connected: connected().has(d.node.nodeId) }}>
              <circle cx={d.x} cy={d.y} r="16" />
              <text x={d.x} y={d.y + 4.5} text-anchor="middle" class="topo-count">{reps().length}</text>
              {/* Replicas on an arc on the outer side (the link comes from the centre), the id beyond them. */}
              <For each={reps().slice(0, 12)}>{(i, k) => {
                const a = (): number => d.a + ((k() - (Math.min(12, reps().length) - 1) / 2) * 0.45)
                return <circle class={`topo-replica state-${i.state}`} cx={d.x + 24 * Math.cos(a())} cy={d.y + 24 * Math.sin(a())} r="5" fill={i.state === 'ready' || i.state === 'starting' ? color(i.cell) : '#fff'} stroke={color(i.cell)} />
              }}</For>
              {/* Centred above (upper nodes) or below the node, clear of the replica arc: long ids never leave the picture. */}
              <text x={d.x} y={d.y + labelDy(d.a)} text-anchor="middle" class="topo-label">{shortId(d.node.nodeId, 6)}</text>
            </g>
          )
        }}</For>
      </svg>
      <p class="small muted">
        <For each={cells()}>{c => <span class="topo-key"><i style={{ background: color(c) }} />{c}</span>}</For>
        <span class="topo-key"><i class="hollow" />draining / crashed</span>
        {props.connections === undefined ? ' · the tab’s connections are unknown to this source' : ''}
        {props.nodes.length > MAX_DRAWN ? ` · ${MAX_DRAWN} of ${props.nodes.length} nodes drawn` : ''}
      </p>
      <ul class="topo-list">
        <For each={props.nodes}>{n => (
          <li data-topology-node={n.nodeId}>
            <b title={n.nodeId}>{shortId(n.nodeId, 10)}</b>
            {connected().has(n.nodeId) ? <span class="tag">tab connected</span> : null}
            <Show when={(byNode().get(n.nodeId) ?? []).length > 0} fallback={<span class="muted small"> no replica</span>}>
              <ul>
                <For each={byNode().get(n.nodeId)}>{i => (
                  <li data-topology-replica={i.instanceId} class="small">
                    <i class="dot" style={{ background: i.state === 'ready' || i.state === 'starting' ? color(i.cell) : 'transparent', 'border-color': color(i.cell) }} />
                    {i.cell} v{i.version} <span class="muted">{i.state}</span>
                  </li>
                )}</For>
              </ul>
            </Show>
          </li>
        )}</For>
        <Show when={orphans().length > 0}>
          <li class="muted small">{orphans().length} replica(s) on nodes whose record expired</li>
        </Show>
      </ul>
    </section>
  )
}
