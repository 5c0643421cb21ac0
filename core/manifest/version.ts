import { CellError } from '../errors.ts'

// Cell names and release versions.
//
// A cell name is a DNS label (so it can appear in hostnames, dataset names and OCI tags):
// lowercase letter first, then lowercase letters, digits or hyphens, at most 63 characters, and
// not ending in a hyphen.
//
// A version is semver 2.0.0 `MAJOR.MINOR.PATCH` with an optional `-prerelease`. Build metadata
// (`+build`) is rejected: semver gives it no precedence, so two releases differing only in build
// metadata could not be ordered, and releases must be totally ordered for rollouts.

export class InvalidVersionError extends CellError { static override readonly errorName = 'InvalidVersionError' }

export const MAX_VERSION_LENGTH = 128

const CELL_NAME = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/

export function isCellName (name: string): boolean {
  return typeof name === 'string' && CELL_NAME.test(name)
}

const NUMERIC = '0|[1-9]\\d*'
const IDENTIFIER = `(?:${NUMERIC}|\\d*[A-Za-z-][0-9A-Za-z-]*)`
const SEMVER = new RegExp(`^(${NUMERIC})\\.(${NUMERIC})\\.(${NUMERIC})(?:-(${IDENTIFIER}(?:\\.${IDENTIFIER})*))?$`)

export interface Version {
  major: number
  minor: number
  patch: number
  /** Dot-separated prerelease identifiers; empty for a release. Numeric ones are numbers. */
  prerelease: Array<string | number>
}

export function parseVersion (text: string): Version {
  const bad = (why: string): InvalidVersionError =>
    new InvalidVersionError(`invalid version ${JSON.stringify(text)}: ${why}`)
  if (typeof text !== 'string') throw bad('not a string')
  if (text.length > MAX_VERSION_LENGTH) throw bad('too long')
  if (text.includes('+')) throw bad('build metadata (+...) is not allowed')
  const match = SEMVER.exec(text)
  if (match === null) throw bad('expected MAJOR.MINOR.PATCH with an optional -prerelease, e.g. "1.4.0" or "2.0.0-rc.1"')
  const [major, minor, patch] = [match[1], match[2], match[3]].map(Number)
  if (![major, minor, patch].every(Number.isSafeInteger)) throw bad('number too large')
  const prerelease: Array<string | number> = []
  if (match[4] !== undefined) {
    for (const id of match[4].split('.')) {
      if (/^\d+$/.test(id)) {
        const n = Number(id)
        if (!Number.isSafeInteger(n)) throw bad('number too large')
        prerelease.push(n)
      } else {
        prerelease.push(id)
      }
    }
  }
  return { major, minor, patch, prerelease }
}

export function isVersion (text: string): boolean {
  try {
    parseVersion(text)
    return true
  } catch {
    return false
  }
}

/** Semver precedence: negative if a < b, 0 if equal precedence, positive if a > b. */
export function compareVersions (a: string, b: string): number {
  const x = parseVersion(a)
  const y = parseVersion(b)
  for (const key of ['major', 'minor', 'patch'] as const) {
    if (x[key] !== y[key]) return x[key] < y[key] ? -1 : 1
  }
  // A release outranks any of its prereleases.
  if (x.prerelease.length === 0 || y.prerelease.length === 0) {
    return Math.sign(y.prerelease.length - x.prerelease.length)
  }
  const n = Math.min(x.prerelease.length, y.prerelease.length)
  for (let i = 0; i < n; i++) {
    const p = x.prerelease[i]
    const q = y.prerelease[i]
    if (p === q) continue
    // Numeric identifiers have lower precedence than alphanumeric ones.
    if (typeof p === 'number' && typeof q === 'string') return -1
    if (typeof p === 'string' && typeof q === 'number') return 1
    return p < q ? -1 : 1
  }
  return Math.sign(x.prerelease.length - y.prerelease.length)
}
