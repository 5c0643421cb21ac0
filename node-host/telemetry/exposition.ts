// Prometheus text exposition (format 0.0.4), as far as the fleet views need it: pick one cell's
// series out of a node's exposition, label every series with the node it came from, and merge the
// expositions of several nodes into one in which each metric family appears once (HELP and TYPE
// once, its samples contiguous), which is what `promtool check metrics` and Prometheus require.
// prom-client writes the format; this reads only what prom-client (or another node of ours) wrote,
// and skips lines it does not understand rather than failing a whole scrape.

/** Lines of one exposition kept at most; the rest are dropped (the text is bounded upstream too). */
export const MAX_EXPOSITION_LINES = 200_000

export interface Family {
  name: string
  help?: string
  type?: string
  /** Sample lines, as written (or relabelled). */
  samples: string[]
}

/** Splits an exposition into families in order of appearance. Samples before any HELP/TYPE form a family of their own name. */
export function parseExposition (text: string): Family[] {
  const families: Family[] = []
  const byName = new Map<string, Family>()
  let current: Family | undefined
  const family = (name: string): Family => {
    let f = byName.get(name)
    if (f === undefined) {
      f = { name, samples: [] }
      byName.set(name, f)
      families.push(f)
    }
    return f
  }
  const lines = text.split('\n')
  for (let i = 0; i < lines.length && i < MAX_EXPOSITION_LINES; i++) {
    const line = lines[i]
    if (line === '') continue
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line)
    if (meta !== null) {
      current = family(meta[2])
      if (meta[1] === 'HELP') current.help ??= meta[3]
      else current.type ??= meta[3]
      continue
    }
    if (line.startsWith('#')) continue
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0]
    if (name === undefined) continue
    // A histogram's or summary's _bucket/_sum/_count samples belong to the family declared above them.
    const owner = current !== undefined && (name === current.name || (name.startsWith(current.name + '_') && /^_(bucket|sum|count|total|created)$/.test(name.slice(current.name.length))))
      ? current
      : family(name)
    owner.samples.push(line)
  }
  return families
}

/** The labels of a sample line as [name, raw escaped value] pairs, and where the value part starts. */
export function sampleLabels (line: string): { name: string, labels: Array<[string, string]>, rest: string } | undefined {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0]
  if (name === undefined) return undefined
  let at = name.length
  const labels: Array<[string, string]> = []
  if (line[at] === '{') {
    at++
    while (at < line.length && line[at] !== '}') {
      const key = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(at, at + 200))
      if (key === null) return undefined
      at += key[0].length
      let value = ''
      while (at < line.length && line[at] !== '"') {
        if (line[at] === '\\' && at + 1 < line.length) { value += line.slice(at, at + 2); at += 2 } else { value += line[at]; at++ }
      }
      if (line[at] !== '"') return undefined
      at++
      labels.push([key[1], value])
      while (line[at] === ' ' || line[at] === ',') at++
    }
    if (line[at] !== '}') return undefined
    at++
  }
  return { name, labels, rest: line.slice(at) }
}

/** A label value escaped for the text format. */
export function escapeLabelValue (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** Writes families back as an exposition. Families without samples are left out. */
export function formatExposition (families: Family[]): string {
  const out: string[] = []
  for (const f of families) {
    if (f.samples.length === 0) continue
    if (f.help !== undefined) out.push(`# HELP ${f.name} ${f.help}`)
    if (f.type !== undefined) out.push(`# TYPE ${f.name} ${f.type}`)
    out.push(...f.samples)
  }
  return out.length === 0 ? '' : out.join('\n') + '\n'
}

/** Only the series labelled `cell="<cell>"` (one cell's series of a node's exposition). */
export function cellSeries (text: string, cell: string): string {
  const wanted = escapeLabelValue(cell)
  const families = parseExposition(text)
  for (const f of families) {
    f.samples = f.samples.filter(line => sampleLabels(line)?.labels.some(([k, v]) => k === 'cell' && v === wanted) === true)
  }
  return formatExposition(families)
}

/** Every sample with `labels` put first (replacing labels of the same name the sample had). */
export function withLabels (families: Family[], labels: Record<string, string>): Family[] {
  const added = Object.entries(labels).map(([k, v]) => [k, escapeLabelValue(v)] as [string, string])
  return families.map(f => ({
    ...f,
    samples: f.samples.flatMap(line => {
      const parsed = sampleLabels(line)
      if (parsed === undefined) return []
      const all = [...added, ...parsed.labels.filter(([k]) => !(k in labels))]
      return [`${parsed.name}{${all.map(([k, v]) => `${k}="${v}"`).join(',')}}${parsed.rest}`]
    })
  }))
}

/**
 * One exposition from several nodes' expositions, each sample labelled `node="<id>"`: a family's HELP
 * and TYPE come from the first node that has it, its samples from every node in turn. A family whose
 * TYPE differs between nodes (two versions of the node software) keeps the first node's samples only.
 */
export function mergeExpositions (parts: Array<{ node: string, text: string }>): string {
  const merged: Family[] = []
  const byName = new Map<string, Family>()
  for (const part of parts) {
    for (const f of withLabels(parseExposition(part.text), { node: part.node })) {
      const have = byName.get(f.name)
      if (have === undefined) {
        const copy = { ...f, samples: [...f.samples] }
        byName.set(f.name, copy)
        merged.push(copy)
      } else if (have.type === f.type) {
        have.samples.push(...f.samples)
      }
    }
  }
  return formatExposition(merged)
}
