// A small SVG line chart. uPlot would add ~45 kB for four tiny charts per cell that need no zoom,
// cursor or axes; a polyline over a bounded series is all they need (see dashboard/README.md).
import { createMemo } from 'solid-js'
import type { JSX } from 'solid-js'

export interface SparklineProps {
  values: readonly number[]
  label: string
  /** Text of the latest value, already formatted with its unit. */
  current: string
  /** Series capacity, so a young series grows from the right instead of stretching. */
  capacity: number
  /** Hue of the line (CSS color). */
  color?: string
}

const W = 120
const H = 32
const MIN_WINDOW = 20

export function Sparkline (props: SparklineProps): JSX.Element {
  const path = createMemo(() => {
    const v = props.values
    if (v.length < 2) return ''
    const max = Math.max(...v) || 1
    // A young series spans at least MIN_WINDOW slots, then grows from the right up to capacity.
    const slots = Math.min(props.capacity, Math.max(v.length, MIN_WINDOW))
    const step = W / Math.max(1, slots - 1)
    const x0 = W - (v.length - 1) * step
    return v.map((y, i) => `${(x0 + i * step).toFixed(1)},${(H - 2 - (y / max) * (H - 4)).toFixed(1)}`).join(' ')
  })
  return (
    <figure class="spark" aria-label={`${props.label}: ${props.current}`}>
      <figcaption><span>{props.label}</span><b>{props.current}</b></figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-hidden="true">
        {path() === ''
          ? <line x1="0" x2={W} y1={H - 2} y2={H - 2} class="spark-empty" />
          : <>
            <polygon points={`${path().split(' ')[0].split(',')[0]},${H} ${path()} ${W},${H}`} fill={props.color ?? 'currentColor'} opacity="0.12" />
            <polyline points={path()} fill="none" stroke={props.color ?? 'currentColor'} stroke-width="1.5" vector-effect="non-scaling-stroke" />
          </>}
      </svg>
    </figure>
  )
}
