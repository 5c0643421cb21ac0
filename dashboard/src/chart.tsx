// A time-series chart of one cell figure over the history window: value axis with "nice" ticks,
// time axis in minutes before now, and the cell's rollout events as marked vertical lines.
// Hand-rolled SVG over a bounded series (≤ 900 points): no charting dependency (dashboard/README.md).
import { createMemo, For, Show } from 'solid-js'
import type { JSX } from 'solid-js'
import { niceTicks } from './model.ts'
import type { CellSample, HistoryEvent } from './model.ts'

export type SeriesKey = 'cpuPercent' | 'memoryBytes' | 'qps' | 'p99Ms'

export interface ChartProps {
  label: string
  samples: readonly CellSample[]
  series: SeriesKey
  events: readonly HistoryEvent[]
  nowMs: number
  windowMs: number
  /** Formats a value with its unit (axis labels and the latest value). */
  format: (v: number) => string
  color: string
}

const W = 320
const H = 132
const L = 46
const R = 8
const T = 24
const B = 20
const EVENT_COLORS: Record<HistoryEvent['kind'], string> = { release: 'var(--accent)', halt: 'var(--bad)', retire: 'var(--muted)' }

export function Chart (props: ChartProps): JSX.Element {
  const from = (): number => props.nowMs - props.windowMs
  const x = (t: number): number => L + ((t - from()) / props.windowMs) * (W - L - R)
  const inWindow = createMemo(() => props.samples.filter(s => s.atMs >= from() && s.atMs <= props.nowMs))
  // Bytes get round ticks in MiB or GiB, not in decimal bytes (95.4 MiB, 191 MiB, …).
  const ticks = createMemo(() => {
    const max = Math.max(0, ...inWindow().map(s => s[props.series]))
    const unit = props.series !== 'memoryBytes' ? 1 : max >= 2 * 2 ** 30 ? 2 ** 30 : max >= 2 * 2 ** 20 ? 2 ** 20 : 1
    return niceTicks(max / unit).map(v => v * unit)
  })
  const top = (): number => ticks()[ticks().length - 1] || 1
  const y = (v: number): number => T + (1 - v / top()) * (H - T - B)
  const points = createMemo(() => inWindow().map(s => `${x(s.atMs).toFixed(1)},${y(s[props.series]).toFixed(1)}`).join(' '))
  const minutes = createMemo(() => {
    const span = props.windowMs / 60_000
    const step = span > 10 ? 5 : span > 4 ? 2 : 1
    const out: number[] = []
    for (let m = 0; m <= span + 1e-9; m += step) out.push(m)
    return out
  })
  const events = createMemo(() => props.events.filter(e => e.atMs >= from() && e.atMs <= props.nowMs))
  const last = (): CellSample | undefined => inWindow()[inWindow().length - 1]
  return (
    <figure class="chart" data-series={props.series} data-points={inWindow().length} data-events={events().length}
      aria-label={`${props.label} over the last ${Math.round(props.windowMs / 60_000)} min: ${last() !== undefined ? props.format(last()![props.series]) : 'no data'}`}>
      <figcaption><span>{props.label}</span><b>{last() !== undefined ? props.format(last()![props.series]) : '—'}</b></figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-hidden="true">
        <g class="axis-y">
          <For each={ticks()}>{v => <>
            <line x1={L} x2={W - R} y1={y(v)} y2={y(v)} class={v === 0 ? 'axis-line' : 'grid-line'} />
            <text x={L - 4} y={y(v) + 3} text-anchor="end">{props.format(v)}</text>
          </>}</For>
        </g>
        <g class="axis-x">
          <line x1={L} x2={L} y1={T} y2={H - B} class="axis-line" />
          <For each={minutes()}>{m => <>
            <line x1={x(props.nowMs - m * 60_000)} x2={x(props.nowMs - m * 60_000)} y1={H - B} y2={H - B + 3} class="axis-line" />
            <text x={x(props.nowMs - m * 60_000)} y={H - 4} text-anchor={m === 0 ? 'end' : 'middle'}>{m === 0 ? 'now' : `−${m} min`}</text>
          </>}</For>
        </g>
        <g class="markers">
          <For each={events()}>{(e, i) => (
            <g class={`marker marker-${e.kind}`}>
              <title>{`${e.label} at ${new Date(e.atMs).toISOString().slice(11, 19)} UTC`}</title>
              <line x1={x(e.atMs)} x2={x(e.atMs)} y1={11 + (i() % 2) * 10} y2={H - B} stroke={EVENT_COLORS[e.kind]} stroke-dasharray="3 2" />
              <text x={x(e.atMs) + 2} y={9 + (i() % 2) * 10} fill={EVENT_COLORS[e.kind]} text-anchor={x(e.atMs) > W - 60 ? 'end' : 'start'}>{e.label}</text>
            </g>
          )}</For>
        </g>
        <Show when={inWindow().length > 1} fallback={<text x={(L + W - R) / 2} y={(T + H - B) / 2} text-anchor="middle" class="no-data">collecting…</text>}>
          <polyline points={points()} fill="none" stroke={props.color} stroke-width="1.5" stroke-linejoin="round" />
        </Show>
      </svg>
    </figure>
  )
}
