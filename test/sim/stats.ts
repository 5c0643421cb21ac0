// Aggregation of scenario results into the markdown table of docs/biology.md.

import { createHash } from 'node:crypto'
import type { ScenarioResult } from './scenarios.ts'

/** Nearest-rank percentile of an ascending array. */
export function percentile (sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

export interface MetricSummary {
  metric: string
  min: number
  p50: number
  p95: number
  max: number
}

export interface ScenarioSummary {
  scenario: string
  seeds: number
  violations: number
  /** First few violations, "seed N: text". */
  examples: string[]
  metrics: MetricSummary[]
}

export function summarise (scenario: string, results: readonly ScenarioResult[]): ScenarioSummary {
  const names = results.length === 0 ? [] : Object.keys(results[0].metrics)
  const metrics = names.map(metric => {
    const values = results.map(r => r.metrics[metric]).sort((a, b) => a - b)
    return { metric, min: values[0], p50: percentile(values, 50), p95: percentile(values, 95), max: values[values.length - 1] }
  })
  const bad = results.filter(r => r.violations.length > 0)
  return {
    scenario,
    seeds: results.length,
    violations: bad.length,
    examples: bad.slice(0, 5).map(r => `seed ${r.seed}: ${r.violations.join('; ')}`),
    metrics
  }
}

/** One digest over every run's event log, in scenario and seed order: the whole table's fingerprint. */
export function combinedDigest (results: readonly ScenarioResult[]): string {
  const h = createHash('sha256')
  const ordered = [...results].sort((a, b) => a.scenario < b.scenario ? -1 : a.scenario > b.scenario ? 1 : a.seed - b.seed)
  for (const r of ordered) h.update(`${r.scenario}:${r.seed}:${r.logHash}\n`)
  return h.digest('hex')
}

function fmt (x: number): string {
  if (!Number.isFinite(x)) return '∞'
  return Number.isInteger(x) ? String(x) : x.toFixed(1)
}

export function markdownTable (titles: Record<string, string>, summaries: readonly ScenarioSummary[]): string {
  const lines = ['| scenario | metric | min | p50 | p95 | max | seeds | runs breaking an invariant |', '|---|---|---:|---:|---:|---:|---:|---:|']
  for (const s of summaries) {
    s.metrics.forEach((m, i) => {
      const head = i === 0 ? `${titles[s.scenario] ?? s.scenario}` : ''
      const tail = i === 0 ? `| ${s.seeds} | ${s.violations} |` : '| | |'
      lines.push(`| ${head} | ${m.metric} | ${fmt(m.min)} | ${fmt(m.p50)} | ${fmt(m.p95)} | ${fmt(m.max)} ${tail}`)
    })
  }
  return lines.join('\n')
}
