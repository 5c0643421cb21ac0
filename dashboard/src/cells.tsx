// Cell cards: version, replicas against min/max, rollout progress, canary split and charts.
import { For, Show } from 'solid-js'
import type { JSX } from 'solid-js'
import { Chart } from './chart.tsx'
import { formatBytes, formatDuration, formatNumber, shortId } from './model.ts'
import type { CellSample, HistoryEvent, ShareRow } from './model.ts'
import type { CellModel } from './store.ts'

const STATE_WORDS: Record<string, string> = {
  'below-min': 'below min',
  'above-max': 'above max',
  ok: 'within bounds',
  'no-policy': 'bounds unknown',
  none: 'no replica'
}

function shortDigest (d: string): string {
  const hex = d.replace(/^sha256[-:]/, '')
  return hex.slice(0, 8)
}

function Policy (props: { cell: CellModel }): JSX.Element {
  const p = (): CellModel['policy'] => props.cell.policy
  return (
    <dl class="policy">
      <div><dt>replicas</dt><dd>{p() !== undefined ? `${p()!.minReplicas}–${p()!.maxReplicas}` : '—'}</dd></div>
      <div><dt>canary</dt><dd>{p() !== undefined ? `${p()!.canaryWeight} %` : '—'}</dd></div>
      <div><dt>max surge</dt><dd>{p() !== undefined ? `${p()!.maxSurge} %` : '—'}</dd></div>
      <div><dt>grace</dt><dd>{p() !== undefined ? formatDuration(p()!.healthGraceMs) : '—'}</dd></div>
    </dl>
  )
}

function ShareBars (props: { rows: ShareRow[], unit: string, empty: string }): JSX.Element {
  return (
    <Show when={props.rows.length > 0} fallback={<p class="muted small">{props.empty}</p>}>
      <ul class="shares">
        <For each={props.rows}>{row => (
          <li classList={{ target: row.isTarget }}>
            <span class="share-label">{row.version}{row.isTarget ? ' (new)' : ''}</span>
            <span class="bar"><span style={{ width: `${(row.share * 100).toFixed(1)}%` }} /></span>
            <span class="share-value">{(row.share * 100).toFixed(0)} % · {formatNumber(row.value)} {props.unit}</span>
          </li>
        )}</For>
      </ul>
    </Show>
  )
}

function Rollout (props: { cell: CellModel }): JSX.Element {
  const r = (): CellModel['rollout'] => props.cell.rollout
  return (
    <section class="rollout" aria-label={`rollout of ${props.cell.name}`}>
      <h4>Rolling out {r().old.map(o => o.version).join(', ') || '—'} → <b>{r().target?.version}</b></h4>
      <div class="progress" title={`${r().newCount} new of ${r().newCount + r().oldCount} live`}>
        <span style={{ width: `${(r().fraction * 100).toFixed(1)}%` }} />
      </div>
      <p class="small">
        new <b>{r().newCount}</b> · old <b>{r().oldCount}</b> · proven {r().proven} · unproven {r().unproven}
        {' '}/ surge {r().surge ?? '—'}
      </p>
      <Show when={r().graceTimers.length > 0}>
        <ul class="timers">
          <For each={r().graceTimers}>{t => (
            <li>
              <code title={t.instanceId}>{t.instanceId}</code> on <span title={t.nodeId}>{shortId(t.nodeId)}</span>:{' '}
              {t.remainingMs === undefined ? 'starting' : `${formatDuration(t.remainingMs)} of grace left`}
              <span class="bar thin"><span style={{ width: `${(t.fraction * 100).toFixed(1)}%` }} /></span>
            </li>
          )}</For>
        </ul>
      </Show>
    </section>
  )
}

/** Why the cell's replicas crash (their heartbeats' exit reason and stderr), and a halt or crash-looping mark. */
function Crashes (props: { cell: CellModel }): JSX.Element {
  const c = (): CellModel => props.cell
  return (
    <Show when={c().crashes.length > 0 || c().halt !== undefined}>
      <section class="crashes" aria-label={`crashes of ${c().name}`}>
        <Show when={c().halt}>{h => (
          <p class={h().crashLooping ? 'halt crash-looping' : 'halt'} title={h().reason}>
            <strong>{h().crashLooping ? 'crash-looping' : 'halted'}</strong> v{h().version}
            {/* The version the cell runs again, published as another artifact: the digest tells them apart. */}
            {h().version === c().target?.version && h().digest !== c().target?.digest ? ` ${h().digest.slice(0, 8)}` : ''}
            {h().crashLooping ? ': not started again until another artifact is published or rolled back to' : ` (on ${shortId(h().nodeId)})`}
          </p>
        )}</Show>
        <For each={c().crashes}>{n => (
          <div class="crash">
            <p class="small">v{n.version} on <span title={n.nodeId}>{shortId(n.nodeId)}</span>: {n.reason}</p>
            <Show when={n.stderr.length > 0}><pre class="stderr">{n.stderr.join('\n')}</pre></Show>
          </div>
        )}</For>
      </section>
    </Show>
  )
}

/** A stateful cell's claims: where each is written, at which epoch, and whether a snapshot would survive its owner. */
function Storage (props: { cell: CellModel }): JSX.Element {
  return (
    <Show when={props.cell.storage.length > 0}>
      <section class="storage" aria-label={`storage of ${props.cell.name}`}>
        <h4>Storage</h4>
        <ul>
          <For each={props.cell.storage}>{c => (
            <li data-claim={c.claimId} classList={{ unsafe: c.safeAgeMs === undefined }}>
              <code>{c.claimId}</code> · epoch {c.epoch} · {c.ownerNodeId !== undefined ? <>on <span title={c.ownerNodeId}>{shortId(c.ownerNodeId)}</span></> : 'no replica serves it'}
              {' · '}
              {c.safeAgeMs !== undefined
                ? <>newest safe snapshot {formatDuration(c.safeAgeMs)} ago, held by {c.safeHolders} other node{c.safeHolders === 1 ? '' : 's'}</>
                : <strong>no safe snapshot yet{c.newestAgeMs !== undefined ? ` (newest ${formatDuration(c.newestAgeMs)} ago, not held by two other nodes)` : ''}</strong>}
            </li>
          )}</For>
        </ul>
      </section>
    </Show>
  )
}

export function CellCard (props: { cell: CellModel, history: CellSample[], events: HistoryEvent[], now: number, windowMs: number }): JSX.Element {
  const c = (): CellModel => props.cell
  return (
    <article class="card cell" data-cell={c().name}>
      <header class="cell-head">
        <h3>{c().name}</h3>
        <span class="version" title={c().target?.digest}>
          {c().target !== undefined ? <>v{c().target!.version} <code>{shortDigest(c().target!.digest)}</code></> : 'no release known'}
        </span>
        <span class={`replicas state-${c().replicas.state}`} title={STATE_WORDS[c().replicas.state]}>
          {c().replicas.live}
          <small> / {c().replicas.min !== undefined ? `${c().replicas.min}–${c().replicas.max}` : '—'}</small>
          <small class="state-word">{STATE_WORDS[c().replicas.state]}</small>
        </span>
      </header>
      <p class="small muted">
        ready {c().replicas.ready} · starting {c().replicas.starting} · draining {c().replicas.draining}
        {c().replicas.crashed > 0 ? ` · crashed ${c().replicas.crashed}` : ''}
      </p>
      <Crashes cell={c()} />
      <Policy cell={c()} />
      <Storage cell={c()} />
      <Show when={c().rollout.active}><Rollout cell={c()} /></Show>
      <section class="split" aria-label={`canary split of ${c().name}`}>
        <h4>Canary split <small class="muted">configured {c().policy !== undefined ? `${c().policy!.canaryWeight} %` : '—'}</small></h4>
        <div class="split-grid">
          <div><h5>Fleet QPS by release</h5><ShareBars rows={c().qpsShare} unit="qps" empty="No live replica serves traffic." /></div>
          <div><h5>This page's calls</h5><ShareBars rows={c().calls} unit="calls" empty="No calls from this page yet." /></div>
        </div>
      </section>
      <section class="charts" aria-label={`history of ${c().name}`}>
        <h4>Last {Math.round(props.windowMs / 60_000)} min <small class="muted">from heartbeats this tab received{props.events.length > 0 ? ` · ${props.events.length} rollout event${props.events.length === 1 ? '' : 's'}` : ''}</small></h4>
        <div class="chart-grid">
          <Chart label="CPU (sum)" series="cpuPercent" samples={props.history} events={props.events} nowMs={props.now} windowMs={props.windowMs} format={v => `${formatNumber(v, 0)} %`} color="var(--c-cpu)" />
          <Chart label="Memory (sum)" series="memoryBytes" samples={props.history} events={props.events} nowMs={props.now} windowMs={props.windowMs} format={formatBytes} color="var(--c-mem)" />
          <Chart label="QPS (sum)" series="qps" samples={props.history} events={props.events} nowMs={props.now} windowMs={props.windowMs} format={v => formatNumber(v, 0)} color="var(--c-qps)" />
          <Chart label="p99 (worst replica)" series="p99Ms" samples={props.history} events={props.events} nowMs={props.now} windowMs={props.windowMs} format={v => `${formatNumber(v, 0)} ms`} color="var(--c-p99)" />
        </div>
      </section>
    </article>
  )
}
