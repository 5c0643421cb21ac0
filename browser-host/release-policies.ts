// The policy of each cell (replica bounds, canary weight, surge, grace) lives in the Cell.toml packed
// into its artifact, whose sha256 the authority signed. A light peer fetches that artifact once per
// release from a connected full node, verifies the digest, and reads the policy from it — so the
// dashboard and the canary split use the author's numbers, not defaults.
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { FleetView } from '../core/fleet/index.ts'
import { parseManifest, type BiologyPolicy } from '../core/manifest/index.ts'
import { unpackArtifact } from '../core/manifest/packaged.ts'
import { fetchArtifact } from '../node-host/artifacts/artifact-exchange.ts'

const log = logger('cell:light:policies')
const MAX_CELLS = 256

export class ReleasePolicies extends EventTarget {
  private readonly libp2p: Libp2p
  private readonly view: FleetView
  private readonly fullNodes: () => string[]
  private readonly byCell = new Map<string, { digest: string, policy: BiologyPolicy }>()
  private readonly pending = new Set<string>()
  private readonly onChange = (evt: Event): void => {
    const change = (evt as CustomEvent<{ kind: string, cell?: string }>).detail
    if (change.kind === 'release' && change.cell != null) void this.refresh(change.cell)
    // A node record means a (re)connected full node: fetch what earlier attempts could not.
    if (change.kind === 'node') for (const cell of this.view.cells()) if (!this.byCell.has(cell)) void this.refresh(cell)
  }

  constructor (libp2p: Libp2p, view: FleetView, fullNodes: () => string[]) {
    super()
    this.libp2p = libp2p
    this.view = view
    this.fullNodes = fullNodes
    view.addEventListener('change', this.onChange)
  }

  close (): void {
    this.view.removeEventListener('change', this.onChange)
  }

  policy (cell: string): BiologyPolicy | undefined {
    return this.byCell.get(cell)?.policy
  }

  /** Fetch the policy of the cell's current release if not known yet; failures retry on the next change. */
  async refresh (cell: string): Promise<void> {
    const release = this.view.release(cell)
    if (release == null || this.byCell.get(cell)?.digest === release.digest || this.pending.has(release.digest)) return
    if (!this.byCell.has(cell) && this.byCell.size >= MAX_CELLS) return
    this.pending.add(release.digest)
    try {
      for (const id of this.fullNodes().slice(0, 4)) {
        try {
          const bytes = await fetchArtifact(this.libp2p, peerIdFromString(id), release.digest, { signal: AbortSignal.timeout(15_000) })
          const { manifest } = unpackArtifact(bytes)
          this.byCell.set(cell, { digest: release.digest, policy: parseManifest(manifest, { file: `${cell}/Cell.toml` }).biology })
          this.dispatchEvent(new CustomEvent('policy', { detail: { cell } }))
          return
        } catch (err) {
          log('policy of %s from %s: %e', cell, id, err)
        }
      }
    } finally {
      this.pending.delete(release.digest)
    }
  }
}
