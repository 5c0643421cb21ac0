// Releases this node has accepted: the signed record (verified by the fleet view against the trusted
// authorities), the packaged artifact fetched from a provider and verified against the signed digest,
// and the Cell.toml inside it. Only a release that passes all three may run in a capsid.
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import type { Libp2p } from '@libp2p/interface'
import { CellError } from '../core/errors.ts'
import { manifestNotices, parseManifest, type Manifest } from '../core/manifest/index.ts'
import { unpackArtifact } from '../core/manifest/packaged.ts'
import type { ReleaseRecord } from '../core/fleet/index.ts'
import { CellNameConflictError } from '../core/mesh/errors.ts'
import { ArtifactStore, writeWhole } from './ribosome/index.ts'
import { artifactCid, findAndFetchArtifact, ProviderPenalties } from './artifacts/artifact-exchange.ts'

const log = logger('cell:releases')

/** The manifest packed in an artifact names another cell or authority than the signed release. */
export class ReleaseManifestMismatchError extends CellError { static override readonly errorName = 'ReleaseManifestMismatchError' }

export interface PreparedRelease {
  cell: string
  version: string
  digest: string
  seq: number
  authority: string
  manifest: Manifest
  codePath: string
}

/**
 * The code capsids import for `digest`: `<dir>/<digest>.mjs`, kept when it already holds exactly
 * `code`, else written whole (writeWhole). A file left short by a full disk or a crash is replaced,
 * never run; a write that fails leaves nothing behind and the prepare fails.
 */
export async function writeCodeFile (dir: string, digest: string, code: Uint8Array): Promise<string> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${digest}.mjs`)
  const existing = await readFile(path).catch(() => undefined)
  if (existing !== undefined && Buffer.compare(existing, code) === 0) return path
  return await writeWhole(dir, `${digest}.mjs`, code)
}

/**
 * Releases kept per cell: the newest by seq, as many as the node's intent file remembers prepared
 * (full-node.ts), so a restarted node's history is the one it had and no artifact it kept is left
 * without a release. One leaving takes its artifact and code file with it (`forget`).
 */
export const KEPT_RELEASES = 8
const MAX_CELLS = 1024
/** Directory entries one sweep looks at (per directory). */
const MAX_SWEPT_NAMES = 100_000

export class ReleaseStore extends EventTarget {
  readonly artifacts: ArtifactStore
  private readonly codeDir: string
  private readonly history = new Map<string, PreparedRelease[]>()
  private readonly inFlight = new Map<string, Promise<PreparedRelease>>()
  /** Artifact providers that stalled, refused or forged recently: later fetches try others first. */
  private readonly providerPenalties = new ProviderPenalties()
  /** Artifact fetches for `prepare` (read by the node's metrics). */
  readonly fetchStats = { fetched: 0, fetchFailures: 0, fetchedBytes: 0, local: 0 }

  constructor (dataDir: string) {
    super()
    this.artifacts = new ArtifactStore(join(dataDir, 'artifacts'))
    this.codeDir = join(dataDir, 'code')
  }

  cells (): string[] {
    return [...this.history.keys()]
  }

  /** Accepted releases of a cell, oldest first. */
  releases (cell: string): PreparedRelease[] {
    return this.history.get(cell) ?? []
  }

  latest (cell: string): PreparedRelease | undefined {
    const list = this.history.get(cell)
    return list?.[list.length - 1]
  }

  byDigest (cell: string, digest: string): PreparedRelease | undefined {
    return this.history.get(cell)?.find(r => r.digest === digest)
  }

  /**
   * Whether a replica of this node still runs (or starts) from `digest` (set by the full node): its
   * artifact is kept when its release leaves the history.
   */
  inUse: (digest: string) => boolean = () => false
  /** Artifacts deleted because their release left its cell's history. */
  forgotten = 0

  /**
   * A release that left its cell's history (the KEPT_RELEASES newest by seq): its artifact and code
   * file go unless a running replica uses them (no kept release can: `prepare` holds each digest once,
   * and a digest names its cell). Without this a node that runs for weeks under a CI publishing many
   * times a day fills its disk with old artifacts.
   */
  private async forget (old: PreparedRelease): Promise<void> {
    if (this.inUse(old.digest)) return
    try {
      await this.artifacts.delete(old.digest)
      await rm(old.codePath, { force: true })
      this.forgotten++
      log('release %s@%s (%s) left the history: artifact deleted', old.cell, old.version, old.digest.slice(0, 12))
    } catch (err) {
      log.error('deleting the artifact of %s@%s: %e', old.cell, old.version, err)
    }
  }

  /** Files `sweep` deleted: artifacts and code files no kept release names, and temp files of writes cut short. */
  swept = 0

  /**
   * Deletes what a node no longer needs from `artifacts/` and `code/`: files written before
   * `beforeMs` (this process's start: nothing a prepare of this run wrote) whose digest neither a
   * kept release, `keep` (the releases the intent file remembers) nor a running replica names, and
   * temp files a write cut short left. Those are left by a node stopped between forgetting a
   * release and deleting its artifact, or by a prepare refused after its fetch under older code.
   */
  async sweep (keep: (digest: string) => boolean, beforeMs: number): Promise<number> {
    const named = new Set<string>()
    for (const list of this.history.values()) for (const r of list) named.add(r.digest)
    let removed = 0
    for (const dir of [this.artifacts.rootDir, this.codeDir]) {
      const names = await readdir(dir).catch(() => [] as string[])
      for (const name of names.slice(0, MAX_SWEPT_NAMES)) {
        const digest = /^([0-9a-f]{64})\.mjs$/.exec(name)?.[1]
        const temp = /^\.[0-9a-f]{64}\.mjs\.[0-9a-f]+\.tmp$/.test(name)
        if (digest === undefined && !temp) continue
        if (digest !== undefined && (named.has(digest) || keep(digest) || this.inUse(digest) || this.inFlight.has(digest))) continue
        const path = join(dir, name)
        const info = await stat(path).catch(() => undefined)
        if (info === undefined || !info.isFile() || info.mtimeMs >= beforeMs) continue
        await rm(path, { force: true }).then(() => { removed++ }, (err: Error) => { log.error('sweeping %s: %s', path, err.message) })
      }
    }
    this.swept += removed
    if (removed > 0) log('swept %d artifact and code file(s) no kept release names', removed)
    return removed
  }

  /** Serve artifacts we hold to peers. */
  async get (digest: string): Promise<Uint8Array | undefined> {
    return await this.artifacts.get(digest).catch(() => undefined)
  }

  /** Store a packaged artifact we built ourselves (publisher side) and announce it in the DHT. */
  async hold (node: Libp2p, bytes: Uint8Array): Promise<string> {
    const digest = await this.artifacts.put(bytes)
    void node.contentRouting.provide(artifactCid(digest), { signal: AbortSignal.timeout(30_000) }).catch((err) => { log('provide %s: %e', digest.slice(0, 12), err) })
    return digest
  }

  /** Fetch (or find locally), verify and unpack the artifact of a verified release record. */
  async prepare (node: Libp2p, release: ReleaseRecord, options: { signal?: AbortSignal } = {}): Promise<PreparedRelease> {
    const known = this.byDigest(release.cell, release.digest)
    if (known != null) return known
    let pending = this.inFlight.get(release.digest)
    if (pending == null) {
      pending = this.doPrepare(node, release, options).finally(() => this.inFlight.delete(release.digest))
      this.inFlight.set(release.digest, pending)
    }
    return await pending
  }

  private async doPrepare (node: Libp2p, release: ReleaseRecord, options: { signal?: AbortSignal }): Promise<PreparedRelease> {
    // A cell name is bound to the authority whose releases this node holds for it: another trusted
    // authority's release of the same name is a conflict, never a new version of the cell.
    const holder = this.history.get(release.cell)?.[0]?.authority
    if (holder !== undefined && holder !== release.authority) {
      throw new CellNameConflictError(`cell "${release.cell}" is held for authority ${holder.slice(0, 12)}…; a release signed by ${release.authority.slice(0, 12)}… is refused`)
    }
    let bytes = await this.artifacts.get(release.digest, options).catch(() => undefined)
    let fetchedNow = false
    if (bytes == null) {
      // Connected peers first (the publisher is usually one of them), then the DHT's providers.
      try {
        bytes = await findAndFetchArtifact(node, release.digest, {
          signal: options.signal, timeoutMs: 20_000, hint: node.getPeers().slice(0, 8), authority: release.authority, penalties: this.providerPenalties
        })
      } catch (err) {
        this.fetchStats.fetchFailures++
        throw err
      }
      this.fetchStats.fetched++
      this.fetchStats.fetchedBytes += bytes.byteLength
      await this.artifacts.put(bytes, options)
      fetchedNow = true
    } else {
      this.fetchStats.local++
    }
    let manifest: Manifest
    let codePath: string
    try {
      const unpacked = unpackArtifact(bytes)
      manifest = parseManifest(unpacked.manifest, { file: `${release.cell}@${release.version}/Cell.toml` })
      if (manifest.name !== release.cell) throw new ReleaseManifestMismatchError(`artifact's Cell.toml names cell "${manifest.name}", the release is for "${release.cell}"`)
      if (manifest.authority.ed25519 !== release.authority) throw new ReleaseManifestMismatchError(`artifact's Cell.toml names authority ${manifest.authority.ed25519.slice(0, 12)}…, the release is signed by ${release.authority.slice(0, 12)}…`)
      codePath = await writeCodeFile(this.codeDir, release.digest, unpacked.code)
    } catch (err) {
      // An artifact fetched for a release it does not fit is not kept (each retry would add none, but
      // nothing would ever delete it), unless a kept release or a replica uses the same bytes.
      if (fetchedNow && !this.inUse(release.digest) && ![...this.history.values()].some(list => list.some(r => r.digest === release.digest))) {
        await this.artifacts.delete(release.digest).catch(() => {})
      }
      throw err
    }
    const prepared: PreparedRelease = { cell: release.cell, version: release.version, digest: release.digest, seq: release.seq, authority: release.authority, manifest, codePath }
    let list = this.history.get(release.cell)
    if (list != null && list.some(r => r.authority !== release.authority)) throw new CellNameConflictError(`cell "${release.cell}" is held for another authority`)
    if (list == null) {
      if (this.history.size >= MAX_CELLS) throw new CellError(`node tracks ${MAX_CELLS} cells already`)
      list = []
      this.history.set(release.cell, list)
      // Once per cell: keys its Cell.toml sets that this node ignores (e.g. otlp_trace), and why.
      for (const notice of manifestNotices(manifest)) log('%s@%s: %s', release.cell, release.version, notice)
    }
    list.push(prepared)
    list.sort((a, b) => a.seq - b.seq)
    if (list.length > KEPT_RELEASES) {
      for (const old of list.splice(0, list.length - KEPT_RELEASES)) if (old.digest !== release.digest) await this.forget(old)
    }
    // Become a provider too, so the next node fetches from whoever is closest.
    void node.contentRouting.provide(artifactCid(release.digest), { signal: AbortSignal.timeout(30_000) }).catch(() => {})
    log('release %s@%s (%s) prepared', release.cell, release.version, release.digest.slice(0, 12))
    this.dispatchEvent(new CustomEvent('release', { detail: prepared }))
    return prepared
  }
}
