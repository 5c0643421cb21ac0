// The typed Manifest, its defaults and the schema of keys Cell.toml may contain.
//
// Defaults (applied when a key is absent):
//
// | key                         | default      | Manifest field                 | allowed                              |
// |-----------------------------|--------------|--------------------------------|--------------------------------------|
// | cell.name                   | required     | name                           | DNS label, see isCellName            |
// | cell.version                | "0.0.0"      | version                        | semver, optional -prerelease         |
// | cell.main                   | "cell.ts"    | main                           | relative .ts/.js/.mts/.mjs path      |
// | cell.public                 | false        | public                         | boolean: admit callers of any authority |
// | cell.authority.ed25519      | required     | authority.ed25519              | 64 hex chars (stored lowercase)      |
// | cell.authority.trust        | []           | authority.trust                | ≤ 64 such keys (deduplicated)        |
// | cell.biology.min_replicas   | 1            | biology.minReplicas            | 1–10000, ≤ max_replicas              |
// | cell.biology.max_replicas   | 10           | biology.maxReplicas            | 1–10000                              |
// | cell.biology.cpu_target     | 60           | biology.cpuTarget (%)          | 1–100                                |
// | cell.biology.memory_target  | 70           | biology.memoryTarget (%)       | 1–100                                |
// | cell.biology.update         | "live"       | biology.update                 | "live" or "stop"                     |
// | cell.biology.max_surge      | 25           | biology.maxSurge (%)           | 1–100                                |
// | cell.biology.health_grace   | "10s"        | biology.healthGraceMs          | duration > 0                         |
// | cell.biology.canary_weight  | 5            | biology.canaryWeight (%)       | 0–100                                |
// | [cell.storage]              | absent       | storage (undefined if absent)  |                                      |
// | cell.storage.claim          | required *   | storage.claimBytes             | size > 0                             |
// | cell.storage.class          | "default" *  | storage.class                  | DNS label (a hint to the driver)     |
// | cell.storage.snapshot_every | "24h" *      | storage.snapshotEveryMs        | duration > 0                         |
// | cell.sandbox.require        | "strict"     | sandbox.require                | "strict" or "process"                |
// | cell.seeds.bootstrap        | []           | seeds.bootstrap                | ≤ 64 multiaddrs or host:port         |
// | cell.telemetry.prometheus   | true         | telemetry.prometheus           | boolean                              |
// | cell.telemetry.otlp_trace   | false        | telemetry.otlpTrace            | boolean                              |
//
// (*) only when [cell.storage] is declared.
//
// cell.sandbox.require is the weakest capsid a node may run the cell in: "strict" (bubblewrap:
// own mount, pid and network namespaces, an unprivileged uid, memory/pid/file limits) or
// "process" (Node's permission model, which also accepts nodes whose operator chose it; it does
// not confine the network). A node refuses to start a replica in a weaker sandbox than required.
//
// Integers must be TOML integers (`60`, not `60.0`). Durations and sizes are TOML strings
// (`health_grace = "10s"`, `claim = "10GiB"`); see units.ts for their grammar.

export type UpdateStrategy = 'live' | 'stop'

/** How strong a capsid is: bubblewrap with limits ('strict') or Node's permission model ('process'). */
export type SandboxLevel = 'strict' | 'process'

export interface SandboxPolicy {
  /** The weakest sandbox a node may run this cell in. */
  readonly require: SandboxLevel
}

export interface AuthorityPolicy {
  /** The cell's authority public key, 64 lowercase hex characters. */
  readonly ed25519: string
  /** Further authorities whose callers and releases this cell accepts (lowercase hex). */
  readonly trust: readonly string[]
}

export interface BiologyPolicy {
  readonly minReplicas: number
  readonly maxReplicas: number
  /** Percent of a CPU per replica the autonomic loop aims for. */
  readonly cpuTarget: number
  /** Percent of its memory limit per replica the autonomic loop aims for. */
  readonly memoryTarget: number
  readonly update: UpdateStrategy
  /** Percent of replicas that may run the new release at once during a rollout. */
  readonly maxSurge: number
  readonly healthGraceMs: number
  /** Percent of new channels routed to the newest release. */
  readonly canaryWeight: number
}

export interface StoragePolicy {
  readonly claimBytes: number
  readonly class: string
  readonly snapshotEveryMs: number
}

export interface SeedsPolicy {
  /** Multiaddrs (`/ip4/.../tcp/...`, `/dnsaddr/...`) or `host:port`, as written. */
  readonly bootstrap: readonly string[]
}

export interface TelemetryPolicy {
  readonly prometheus: boolean
  readonly otlpTrace: boolean
}

export interface Manifest {
  readonly name: string
  readonly version: string
  readonly main: string
  /** Admit callers of any authority, not only trusted ones. */
  readonly public: boolean
  readonly authority: AuthorityPolicy
  readonly biology: BiologyPolicy
  /** Present only when Cell.toml declares [cell.storage]. */
  readonly storage?: StoragePolicy
  readonly sandbox: SandboxPolicy
  readonly seeds: SeedsPolicy
  readonly telemetry: TelemetryPolicy
}

export const DEFAULTS = Object.freeze({
  version: '0.0.0',
  main: 'cell.ts',
  public: false,
  authority: Object.freeze({ trust: Object.freeze([] as string[]) }),
  biology: Object.freeze({
    minReplicas: 1,
    maxReplicas: 10,
    cpuTarget: 60,
    memoryTarget: 70,
    update: 'live' as UpdateStrategy,
    maxSurge: 25,
    healthGraceMs: 10_000,
    canaryWeight: 5
  }),
  storage: Object.freeze({ class: 'default', snapshotEveryMs: 86_400_000 }),
  sandbox: Object.freeze({ require: 'strict' as SandboxLevel }),
  seeds: Object.freeze({ bootstrap: Object.freeze([] as string[]) }),
  telemetry: Object.freeze({ prometheus: true, otlpTrace: false })
})

/** Sources larger than this many UTF-8 bytes are rejected before parsing. */
export const MAX_MANIFEST_BYTES = 64 * 1024
/** Longest accepted array (trust, bootstrap). */
export const MAX_ARRAY_LENGTH = 64
export const MAX_REPLICAS = 10_000
/** Longest accepted free-form string (main, bootstrap address). */
export const MAX_STRING_LENGTH = 255

/** Every table Cell.toml may contain ('' is the document root) and the keys each may hold. */
export const MANIFEST_KEYS = Object.freeze({
  '': ['cell'],
  cell: ['name', 'version', 'main', 'public', 'authority', 'biology', 'storage', 'sandbox', 'seeds', 'telemetry'],
  'cell.authority': ['ed25519', 'trust'],
  'cell.biology': ['min_replicas', 'max_replicas', 'cpu_target', 'memory_target', 'update', 'max_surge', 'health_grace', 'canary_weight'],
  'cell.storage': ['claim', 'class', 'snapshot_every'],
  'cell.sandbox': ['require'],
  'cell.seeds': ['bootstrap'],
  'cell.telemetry': ['prometheus', 'otlp_trace']
} as const)

export type ManifestTable = keyof typeof MANIFEST_KEYS

/** Levenshtein distance, case-insensitive, with `-` and `_` treated alike. */
export function editDistance (a: string, b: string): number {
  const x = a.toLowerCase().replaceAll('-', '_')
  const y = b.toLowerCase().replaceAll('-', '_')
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j)
  for (let i = 1; i <= x.length; i++) {
    const current = [i]
    for (let j = 1; j <= y.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[y.length]
}

/** The candidate nearest to `key`, if it is close enough to be a plausible typo. */
export function suggestKey (key: string, candidates: readonly string[]): string | undefined {
  if (key.length > 64) return undefined
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const d = editDistance(key, candidate)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  const threshold = Math.max(2, Math.floor(Math.max(key.length, best?.length ?? 0) / 3))
  return bestDistance <= threshold ? best : undefined
}
