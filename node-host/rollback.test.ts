// Which artifact `cell rollback <cell> <version>` names when no --digest is given.
import { describe, expect, it } from 'vitest'
import type { Mesh } from '../core/mesh/index.ts'
import type { DesiredVersionRecord, InstanceRecord, ReleaseRecord } from '../core/fleet/index.ts'
import { digestOfVersion } from './rollback.ts'

const release = (version: string, digest: string, seq: number): ReleaseRecord => ({ cell: 'billing', version, digest, seq, authority: 'auth', signed: new Uint8Array(0) }) as unknown as ReleaseRecord

function meshWith (releases: ReleaseRecord[], instances: Array<Partial<InstanceRecord>> = [], desired?: DesiredVersionRecord): Mesh {
  const view = {
    releasesOf: (authority: string, cell: string) => authority === 'auth' && cell === 'billing' ? releases : [],
    releases: (cell: string) => cell === 'billing' ? releases : [],
    releaseOf: (authority: string, cell: string) => authority === 'auth' && cell === 'billing' ? releases[0] : undefined,
    release: (cell: string) => cell === 'billing' ? releases[0] : undefined,
    desiredOf: () => desired,
    desired: () => desired,
    instances: (cell: string) => cell === 'billing' ? instances : []
  }
  return { view } as unknown as Mesh
}

describe('digestOfVersion', () => {
  // The view keeps the newest release and up to 7 before it, highest seq first.
  const history = [release('1.2.0', 'd2', 30), release('1.1.0', 'd1', 20), release('1.0.0', 'd0', 10)]

  it('finds an older release the view keeps, not only the newest', () => {
    expect(digestOfVersion(meshWith(history), 'billing', '1.2.0', 'auth')).toBe('d2')
    expect(digestOfVersion(meshWith(history), 'billing', '1.0.0', 'auth')).toBe('d0')
    expect(digestOfVersion(meshWith(history), 'billing', '1.0.0')).toBe('d0')
    // Another authority's releases of the same name are not this one's.
    expect(digestOfVersion(meshWith(history), 'billing', '1.0.0', 'other')).toBeUndefined()
  })

  it('the newest release of a version republished under another artifact wins', () => {
    expect(digestOfVersion(meshWith([release('1.1.0', 'd1b', 40), ...history]), 'billing', '1.1.0', 'auth')).toBe('d1b')
  })

  it('falls back to running instances, and refuses to guess between two artifacts of one version', () => {
    expect(digestOfVersion(meshWith(history, [{ version: '0.9.0', digest: 'e0' }]), 'billing', '0.9.0', 'auth')).toBe('e0')
    expect(digestOfVersion(meshWith(history, [{ version: '0.9.0', digest: 'e0' }, { version: '0.9.0', digest: 'e1' }]), 'billing', '0.9.0', 'auth')).toBeUndefined()
    expect(digestOfVersion(meshWith(history), 'billing', '0.8.0', 'auth')).toBeUndefined()
  })
})
