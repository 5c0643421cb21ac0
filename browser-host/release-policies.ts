// The policy of each cell (replica bounds, canary weight, surge, grace) lives in the Cell.toml packed
// into its artifact, whose sha256 the authority signed. A light peer fetches that artifact once per
// release from a connected full node, verifies the digest, and reads the policy from it — so the
// dashboard and the canary split use the author's numbers, not defaults. A Node client does the
// same on demand, for the cells it calls only (`want`).
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import type { FleetView } from '../core/fleet/index.ts'
import { parseManifest, type BiologyPolicy } from '../core/manifest/index.ts'
import { unpackArtifact } from '../core/manifest/packaged.ts'
import { fetchArtifact } from '../node-host/artifacts/artifact-exchange.ts'

const log = logger('cell:light:policies')
const MAX_CELLS = 256
/** A release whose artifact no full node gave is asked for again after this long, not at every change of the view. */
const RETRY_AFTER_MS = 30_000

export interface ReleasePoliciesOptions {
  /** Only cells asked for with `want` (a client that calls a few cells of a large fleet); default every cell of the view. */
  onDemand?: boolean
  now?: () => number
  /** How an artifact is fetched from a full node (default: `/cell/artifact/1`, digest verified); tests. */
  fetch?: (peer: string, digest: string, signal: AbortSignal) => Promise<Uint8Array>
}
export class ReleasePolicies extends EventTarget {
  private readonly libp2p: Libp2p
  private readonly view: FleetView
  private readonly fullNodes: () => string[]
  private readonly byCell = new Map<string, { digest: string, policy: BiologyPolicy }>()
  private readonly pending = new Set<string>()
  /** Digests no full node gave, and when to ask again (at most MAX_CELLS, oldest dropped). */
  private readonly failedUntil = new Map<string, number>()
  /** On demand: the cells `want` was asked for twice (at most MAX_CELLS), and those asked once. */
  private readonly wanted: Set<string> | undefined
  private readonly askedOnce = new Set<string>()
  private readonly now: () => number
  private readonly fetch: (peer: string, digest: string, signal: AbortSignal) => Promise<Uint8Array>
  private readonly onChange = (evt: Event): void => {
    const change = (evt as CustomEvent<{ kind: string, cell?: string }>).detail
    if (change.kind === 'release' && change.cell != null && (this.wanted === undefined || this.wanted.has(change.cell))) void this.refresh(change.cell)
    // A node record means a (re)connected full node: fetch what earlier attempts could not.
    if (change.kind === 'node') for (const cell of this.wanted ?? this.view.cells()) if (!this.byCell.has(cell)) void this.refresh(cell)
  }

  constructor (libp2p: Libp2p, view: FleetView, fullNodes: () => string[], options: ReleasePoliciesOptions = {}) {
    super()
    this.libp2p = libp2p
    this.view = view
    this.fullNodes = fullNodes
    this.wanted = options.onDemand === true ? new Set() : undefined
    this.now = options.now ?? Date.now
    this.fetch = options.fetch ?? (async (peer, digest, signal) => await fetchArtifact(this.libp2p, peerIdFromString(peer), digest, { signal }))
    view.addEventListener('change', this.onChange)
  }

  /**
   * The policy of `cell` as far as known, and (on demand) from the second ask on followed: fetched
   * then, and again for each new release of the cell. A one-shot caller (`cell call`) never fetches
   * an artifact (up to 16 MiB) for a split it does not make. Cheap enough for every call.
   */
  want (cell: string): BiologyPolicy | undefined {
    const wanted = this.wanted
    if (wanted !== undefined && !wanted.has(cell) && wanted.size < MAX_CELLS) {
      if (this.askedOnce.delete(cell)) {
        wanted.add(cell)
        void this.refresh(cell)
      } else if (this.askedOnce.size < MAX_CELLS) {
        this.askedOnce.add(cell)
      }
    }
    return this.byCell.get(cell)?.policy
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
    if ((this.failedUntil.get(release.digest) ?? 0) > this.now()) return
    // None connected yet: the next node record (a connection) asks again.
    const sources = this.fullNodes().slice(0, 4)
    if (sources.length === 0) return
    this.pending.add(release.digest)
    try {
      for (const id of sources) {
        try {
          const bytes = await this.fetch(id, release.digest, AbortSignal.timeout(15_000))
          const { manifest } = unpackArtifact(bytes)
          this.byCell.set(cell, { digest: release.digest, policy: parseManifest(manifest, { file: `${cell}/Cell.toml` }).biology })
          this.dispatchEvent(new CustomEvent('policy', { detail: { cell } }))
          return
        } catch (err) {
          log('policy of %s from %s: %e', cell, id, err)
        }
      }
      this.failedUntil.delete(release.digest)
      if (this.failedUntil.size >= MAX_CELLS) this.failedUntil.delete(this.failedUntil.keys().next().value as string)
      this.failedUntil.set(release.digest, this.now() + RETRY_AFTER_MS)
    } finally {
      this.pending.delete(release.digest)
    }
  }
}
