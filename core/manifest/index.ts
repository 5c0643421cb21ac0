// Cell.toml → typed, validated Manifest. See schema.ts for keys and defaults, units.ts for the
// duration and size grammar, version.ts for names and versions.
export { parseManifest } from './parse.ts'
export { manifestNotices, OTLP_TRACE_IGNORED } from './notices.ts'
export type { ParseManifestOptions } from './parse.ts'
export {
  ManifestError, ManifestSyntaxError, ManifestTypeError, ManifestRangeError, ManifestUnknownKeyError,
  ManifestValueError, ManifestMissingKeyError, ManifestTooLargeError
} from './errors.ts'
export type { ManifestErrorInit } from './errors.ts'
export {
  DEFAULTS, MANIFEST_KEYS, MAX_MANIFEST_BYTES, MAX_ARRAY_LENGTH, MAX_REPLICAS, MAX_STRING_LENGTH, editDistance, suggestKey
} from './schema.ts'
export type {
  Manifest, AuthorityPolicy, BiologyPolicy, StoragePolicy, SandboxPolicy, SandboxLevel, SeedsPolicy, TelemetryPolicy, UpdateStrategy, ManifestTable
} from './schema.ts'
export { parseDuration, parseSize, InvalidDurationError, InvalidSizeError } from './units.ts'
export type { UnitOptions } from './units.ts'
export { compareVersions, parseVersion, isVersion, isCellName, InvalidVersionError, MAX_VERSION_LENGTH } from './version.ts'
export type { Version } from './version.ts'
export { locateKeys, formatKeyPath, KeyLocations } from './locate.ts'
export type { KeyPath } from './locate.ts'
