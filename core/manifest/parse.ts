import { parse as parseToml, TomlError } from 'smol-toml'
import { multiaddr } from '@multiformats/multiaddr'
import {
  ManifestMissingKeyError, ManifestRangeError, ManifestSyntaxError, ManifestTooLargeError,
  ManifestTypeError, ManifestUnknownKeyError, ManifestValueError
} from './errors.ts'
import type { ManifestError, ManifestErrorInit } from './errors.ts'
import { formatKeyPath, locateKeys } from './locate.ts'
import type { KeyLocations, KeyPath } from './locate.ts'
import {
  DEFAULTS, MANIFEST_KEYS, MAX_ARRAY_LENGTH, MAX_MANIFEST_BYTES, MAX_REPLICAS, MAX_STRING_LENGTH, suggestKey
} from './schema.ts'
import type { Manifest, ManifestTable, SandboxLevel, StoragePolicy, UpdateStrategy } from './schema.ts'
import { parseDuration, parseSize } from './units.ts'
import { isCellName, parseVersion } from './version.ts'
import { syntaxHint, syntaxKey } from './syntax-hint.ts'

export interface ParseManifestOptions {
  /** Name used in error messages (default `Cell.toml`). */
  file?: string
}

type Table = Record<string, unknown>

/**
 * Parse and validate the text of a Cell.toml. Pure and synchronous. Throws a ManifestError
 * subclass naming file, line and key on the first problem found.
 */
export function parseManifest (source: string, opts: ParseManifestOptions = {}): Manifest {
  const file = opts.file ?? 'Cell.toml'
  if (typeof source !== 'string') {
    throw new ManifestTypeError('source must be a string', { file, line: 1, key: '' })
  }
  // UTF-8 never takes fewer bytes than UTF-16 code units, so the cheap check is safe.
  if (source.length > MAX_MANIFEST_BYTES || new TextEncoder().encode(source).byteLength > MAX_MANIFEST_BYTES) {
    throw new ManifestTooLargeError(`manifest exceeds ${MAX_MANIFEST_BYTES} bytes`, { file, line: 1, key: '' })
  }
  let doc: Table
  try {
    doc = parseToml(source, { integersAsBigInt: true, maxDepth: 16 })
  } catch (err) {
    const line = err instanceof TomlError ? err.line : 1
    const column = err instanceof TomlError ? err.column : 1
    const message = err instanceof Error ? err.message : String(err)
    const detail = message.split('\n')[0].replace(/^Invalid TOML document: /, '')
    const hint = syntaxHint(source, line)
    throw new ManifestSyntaxError(`TOML syntax error at column ${column}: ${detail}${hint === undefined ? '' : ` — ${hint}`}`, {
      file, line, column, key: syntaxKey(source, line), cause: err
    })
  }
  return new Reader(file, locateKeys(source)).manifest(doc)
}

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const MAIN_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/
const MAIN_EXTENSION = /\.(?:ts|mts|js|mjs)$/
const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

class Reader {
  readonly file: string
  readonly locations: KeyLocations

  constructor (file: string, locations: KeyLocations) {
    this.file = file
    this.locations = locations
  }

  manifest (doc: Table): Manifest {
    const root = this.table([], doc, '')
    if (root.cell === undefined) {
      throw this.error(ManifestMissingKeyError, ['cell'], 'missing required table [cell]')
    }
    const cell = this.table(['cell'], root.cell, 'cell')
    const name = this.required(['cell', 'name'], cell.name, v => this.cellName(['cell', 'name'], v))
    const version = this.optional(['cell', 'version'], cell.version, DEFAULTS.version, v => this.version(['cell', 'version'], v))
    const main = this.optional(['cell', 'main'], cell.main, DEFAULTS.main, v => this.mainPath(['cell', 'main'], v))
    const isPublic = this.optional(['cell', 'public'], cell.public, DEFAULTS.public, v => this.boolean(['cell', 'public'], v))

    if (cell.authority === undefined) {
      throw this.error(ManifestMissingKeyError, ['cell', 'authority', 'ed25519'], 'missing required key (the authority public key, 64 hex characters)')
    }
    const authority = this.table(['cell', 'authority'], cell.authority, 'cell.authority')
    const ed25519 = this.required(['cell', 'authority', 'ed25519'], authority.ed25519, v => this.hexKey(['cell', 'authority', 'ed25519'], v))
    const trust = this.optional(['cell', 'authority', 'trust'], authority.trust, [...DEFAULTS.authority.trust], v =>
      [...new Set(this.array(['cell', 'authority', 'trust'], v, (p, e) => this.hexKey(p, e)))])

    const biology = this.table(['cell', 'biology'], cell.biology ?? {}, 'cell.biology')
    const d = DEFAULTS.biology
    const int = (key: string, fallback: number, min: number, max: number): number =>
      this.optional(['cell', 'biology', key], biology[key], fallback, v => this.integer(['cell', 'biology', key], v, min, max))
    const minReplicas = int('min_replicas', d.minReplicas, 1, MAX_REPLICAS)
    const maxReplicas = int('max_replicas', d.maxReplicas, 1, MAX_REPLICAS)
    const cpuTarget = int('cpu_target', d.cpuTarget, 1, 100)
    const memoryTarget = int('memory_target', d.memoryTarget, 1, 100)
    const update = this.optional(['cell', 'biology', 'update'], biology.update, d.update, v => this.update(['cell', 'biology', 'update'], v))
    const maxSurge = int('max_surge', d.maxSurge, 1, 100)
    const healthGraceMs = this.optional(['cell', 'biology', 'health_grace'], biology.health_grace, d.healthGraceMs,
      v => this.duration(['cell', 'biology', 'health_grace'], v))
    const canaryWeight = int('canary_weight', d.canaryWeight, 0, 100)
    if (minReplicas > maxReplicas) {
      const blame = biology.min_replicas !== undefined ? 'min_replicas' : 'max_replicas'
      throw this.error(ManifestRangeError, ['cell', 'biology', blame],
        `min_replicas (${minReplicas}) must not exceed max_replicas (${maxReplicas})`)
    }

    let storage: StoragePolicy | undefined
    if (cell.storage !== undefined) {
      const t = this.table(['cell', 'storage'], cell.storage, 'cell.storage')
      storage = {
        claimBytes: this.required(['cell', 'storage', 'claim'], t.claim, v => this.size(['cell', 'storage', 'claim'], v)),
        class: this.optional(['cell', 'storage', 'class'], t.class, DEFAULTS.storage.class, v => this.storageClass(['cell', 'storage', 'class'], v)),
        snapshotEveryMs: this.optional(['cell', 'storage', 'snapshot_every'], t.snapshot_every, DEFAULTS.storage.snapshotEveryMs,
          v => this.duration(['cell', 'storage', 'snapshot_every'], v))
      }
    }

    const sandbox = this.table(['cell', 'sandbox'], cell.sandbox ?? {}, 'cell.sandbox')
    const requireSandbox = this.optional(['cell', 'sandbox', 'require'], sandbox.require, DEFAULTS.sandbox.require,
      v => this.sandboxLevel(['cell', 'sandbox', 'require'], v))

    const seeds = this.table(['cell', 'seeds'], cell.seeds ?? {}, 'cell.seeds')
    const bootstrap = this.optional(['cell', 'seeds', 'bootstrap'], seeds.bootstrap, [...DEFAULTS.seeds.bootstrap],
      v => this.array(['cell', 'seeds', 'bootstrap'], v, (p, e) => this.address(p, e)))

    const telemetry = this.table(['cell', 'telemetry'], cell.telemetry ?? {}, 'cell.telemetry')
    const prometheus = this.optional(['cell', 'telemetry', 'prometheus'], telemetry.prometheus, DEFAULTS.telemetry.prometheus,
      v => this.boolean(['cell', 'telemetry', 'prometheus'], v))
    const otlpTrace = this.optional(['cell', 'telemetry', 'otlp_trace'], telemetry.otlp_trace, DEFAULTS.telemetry.otlpTrace,
      v => this.boolean(['cell', 'telemetry', 'otlp_trace'], v))

    const manifest: Manifest = {
      name,
      version,
      main,
      public: isPublic,
      authority: { ed25519, trust },
      biology: { minReplicas, maxReplicas, cpuTarget, memoryTarget, update, maxSurge, healthGraceMs, canaryWeight },
      ...(storage === undefined ? {} : { storage }),
      sandbox: { require: requireSandbox },
      seeds: { bootstrap },
      telemetry: { prometheus, otlpTrace }
    }
    return deepFreeze(manifest)
  }

  error<E extends ManifestError>(
    Cls: new (detail: string, init: ManifestErrorInit) => E, path: KeyPath, detail: string, cause?: unknown
  ): E {
    return new Cls(detail, { file: this.file, line: this.locations.nearestLine(path), key: formatKeyPath(path), cause })
  }

  required<T>(path: KeyPath, value: unknown, read: (v: unknown) => T): T {
    if (value === undefined) throw this.error(ManifestMissingKeyError, path, 'missing required key')
    return read(value)
  }

  optional<T>(path: KeyPath, value: unknown, fallback: T, read: (v: unknown) => T): T {
    return value === undefined ? fallback : read(value)
  }

  /** Check that `value` is a table holding only the keys the schema allows for it. */
  table (path: KeyPath, value: unknown, schema: ManifestTable): Table {
    if (!isTable(value)) throw this.typeError(path, 'a table', value)
    const allowed: readonly string[] = MANIFEST_KEYS[schema]
    for (const key of Object.keys(value)) {
      if (allowed.includes(key)) continue
      const suggestion = suggestKey(key, allowed)
      const keyPath = [...path, key]
      throw new ManifestUnknownKeyError(`unknown key${suggestion === undefined ? '' : ` — did you mean ${suggestion}?`}`, {
        file: this.file, line: this.locations.nearestLine(keyPath), key: formatKeyPath(keyPath), suggestion
      })
    }
    return value
  }

  typeError (path: KeyPath, expected: string, value: unknown): ManifestTypeError {
    return this.error(ManifestTypeError, path, `expected ${expected}, got ${typeName(value)}`)
  }

  string (path: KeyPath, value: unknown): string {
    if (typeof value !== 'string') throw this.typeError(path, 'a string', value)
    return value
  }

  boolean (path: KeyPath, value: unknown): boolean {
    if (typeof value !== 'boolean') throw this.typeError(path, 'a boolean (true or false)', value)
    return value
  }

  integer (path: KeyPath, value: unknown, min: number, max: number): number {
    if (typeof value !== 'bigint') throw this.typeError(path, 'an integer', value)
    if (value < BigInt(min) || value > BigInt(max)) {
      throw this.error(ManifestRangeError, path, `must be between ${min} and ${max}, got ${value}`)
    }
    return Number(value)
  }

  array<T>(path: KeyPath, value: unknown, read: (path: KeyPath, element: unknown) => T): T[] {
    if (!Array.isArray(value)) throw this.typeError(path, 'an array', value)
    if (value.length > MAX_ARRAY_LENGTH) {
      throw this.error(ManifestTooLargeError, path, `array has ${value.length} elements, at most ${MAX_ARRAY_LENGTH} are allowed`)
    }
    return value.map((element, i) => read([...path, i], element))
  }

  duration (path: KeyPath, value: unknown): number {
    const text = this.string(path, value)
    try {
      return parseDuration(text)
    } catch (err) {
      throw this.error(ManifestValueError, path, (err as Error).message, err)
    }
  }

  size (path: KeyPath, value: unknown): number {
    const text = this.string(path, value)
    try {
      return parseSize(text)
    } catch (err) {
      throw this.error(ManifestValueError, path, (err as Error).message, err)
    }
  }

  cellName (path: KeyPath, value: unknown): string {
    const text = this.string(path, value)
    if (!isCellName(text)) {
      throw this.error(ManifestValueError, path,
        `invalid cell name ${JSON.stringify(text)}: use 1–63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen`)
    }
    return text
  }

  storageClass (path: KeyPath, value: unknown): string {
    const text = this.string(path, value)
    if (!isCellName(text)) {
      throw this.error(ManifestValueError, path, `invalid storage class ${JSON.stringify(text)}: use a lowercase label such as "ssd"`)
    }
    return text
  }

  version (path: KeyPath, value: unknown): string {
    const text = this.string(path, value)
    try {
      parseVersion(text)
    } catch (err) {
      throw this.error(ManifestValueError, path, (err as Error).message, err)
    }
    return text
  }

  mainPath (path: KeyPath, value: unknown): string {
    const text = this.string(path, value)
    const segments = text.split('/')
    const ok = text.length <= MAX_STRING_LENGTH && MAIN_EXTENSION.test(text) &&
      segments.every((s, i) => (i === 0 && s === '.' && segments.length > 1) || MAIN_SEGMENT.test(s))
    if (!ok) {
      throw this.error(ManifestValueError, path,
        `invalid entry module ${JSON.stringify(text)}: expected a relative path inside the cell ending in .ts, .mts, .js or .mjs`)
    }
    return text
  }

  hexKey (path: KeyPath, value: unknown): string {
    const text = this.string(path, value)
    if (!HEX_KEY.test(text)) {
      throw this.error(ManifestValueError, path,
        `invalid ed25519 public key: expected 64 hexadecimal characters, got ${text.length} characters`)
    }
    return text.toLowerCase()
  }

  update (path: KeyPath, value: unknown): UpdateStrategy {
    const text = this.string(path, value)
    if (text !== 'live' && text !== 'stop') {
      throw this.error(ManifestValueError, path, `invalid update strategy ${JSON.stringify(text)}: expected "live" or "stop"`)
    }
    return text
  }

  sandboxLevel (path: KeyPath, value: unknown): SandboxLevel {
    const text = this.string(path, value)
    if (text !== 'strict' && text !== 'process') {
      throw this.error(ManifestValueError, path, `invalid sandbox level ${JSON.stringify(text.slice(0, 40))}: expected "strict" or "process"`)
    }
    return text
  }

  address (path: KeyPath, value: unknown): string {
    const text = this.string(path, value)
    const bad = (why: string, cause?: unknown): ManifestValueError => this.error(ManifestValueError, path,
      `invalid bootstrap address ${JSON.stringify(text.slice(0, 80))}: ${why}`, cause)
    if (text.length > MAX_STRING_LENGTH) throw bad('too long')
    if (text.startsWith('/')) {
      try {
        multiaddr(text)
      } catch (err) {
        throw bad(`not a valid multiaddr (${(err as Error).message})`, err)
      }
      return text
    }
    const match = HOST_PORT.exec(text)
    if (match === null) throw bad('expected a multiaddr such as "/ip4/203.0.113.7/tcp/9317" or "host:port"')
    const port = Number(match[3])
    if (port < 1 || port > 65_535 || (match[3].length > 1 && match[3].startsWith('0'))) throw bad('port must be 1–65535')
    const host = match[2]
    if (host !== undefined && (host.length > 253 || !host.split('.').every(label => HOST_LABEL.test(label)))) {
      throw bad('invalid host name')
    }
    if (host !== undefined && /^[\d.]+$/.test(host)) {
      try {
        multiaddr(`/ip4/${host}`)
      } catch (err) {
        throw bad('invalid IPv4 address', err)
      }
    }
    if (match[1] !== undefined) {
      try {
        multiaddr(`/ip6/${match[1]}`)
      } catch (err) {
        throw bad('invalid IPv6 address', err)
      }
    }
    return text
  }
}

function isTable (value: unknown): value is Table {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)
}

function typeName (value: unknown): string {
  if (typeof value === 'bigint') return 'an integer'
  if (typeof value === 'number') return 'a float'
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'boolean') return 'a boolean'
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Date) return 'a date/time'
  return 'a table'
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
