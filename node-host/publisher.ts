// `cell publish`: bundle the cell, pack it with its Cell.toml, sign the release with the authority key,
// provide the artifact in the DHT, then gossip the release. The fleet does the rest.
import { logger } from '@libp2p/logger'
import { CellError } from '../core/errors.ts'
import { offersStorageClass, storageDriversOfRoles } from '../core/biology/storage-class.ts'
import { NoStorageClassError } from './storage/errors.ts'
import { parseManifest, type Manifest } from '../core/manifest/index.ts'
import { packArtifact } from '../core/manifest/packaged.ts'
import { signRelease, encodeRelease, authorityIdOf, sha256Hex, type AuthorityKey } from '../core/identity/index.ts'
import { isVersion } from '../core/manifest/version.ts'
import type { Mesh } from '../core/mesh/index.ts'
import { buildCell, readManifestSource } from './ribosome/index.ts'
import { artifactCid, serveArtifacts } from './artifacts/artifact-exchange.ts'
import { waitForReplicas, waitForView } from './client.ts'
import { finalPrepareReport, waitForPrepareReport, formatPrepareReport, ReleaseNotReadyError, type NodePrepareStatus } from './prepare-report.ts'

const log = logger('cell:publish')

export class AuthorityMismatchError extends CellError { static override readonly errorName = 'AuthorityMismatchError' }
export class InvalidVersionArgumentError extends CellError { static override readonly errorName = 'InvalidVersionArgumentError' }

export interface PackagedCell {
  manifest: Manifest
  /** Cell.toml packed with the bundle: the bytes the release's digest covers. */
  artifact: Uint8Array
  digest: string
  /** The bundled entry module and the size of the code alone. */
  entry: string
  codeBytes: number
}

/** Build and pack a cell directory; the packed bytes are what the release's digest covers. */
export async function packageCell (dir: string, options: { signal?: AbortSignal, authority?: string } = {}): Promise<PackagedCell> {
  const read = await readManifestSource(dir, options)
  const source = options.authority != null ? withAuthority(read.source, options.authority) : read.source
  const manifest = parseManifest(source, { file: read.file })
  const built = await buildCell(dir, { main: manifest.main, signal: options.signal })
  const artifact = packArtifact(source, built.artifact)
  return { manifest, artifact, digest: await sha256Hex(artifact), entry: built.entry, codeBytes: built.artifact.byteLength }
}

/**
 * The demo and tests publish the example cells under a key they generate: rewrite the
 * `ed25519 = "..."` line of `[cell.authority]` (the manifest parser then validates the result).
 */
export function withAuthority (source: string, authority: string): string {
  const replaced = source.replace(/^(\s*ed25519\s*=\s*)"[0-9a-fA-F]*"/m, `$1"${authority}"`)
  if (replaced === source && !source.includes(authority)) throw new AuthorityMismatchError('Cell.toml has no [cell.authority] ed25519 line to set')
  return replaced
}

export interface PublishResult {
  cell: string
  version: string
  digest: string
  seq: number
  ready: number
  /** Per full node: prepared the release, failed (and why), still preparing, or not reported. */
  nodes: NodePrepareStatus[]
}

export interface PublishOptions {
  /** Ready replicas of the new release to wait for (default 1, 0 returns at once). */
  waitReplicas?: number
  timeoutMs?: number
  signal?: AbortSignal
  /** Publish under `key` whatever Cell.toml names (the demo and tests use the example cells this way). */
  setAuthority?: boolean
  /** Once replicas are ready, how long the other nodes get to report whether they prepared it (default 10 s). */
  reportMs?: number
}

/** Publishes releases from one client peer, which serves their artifacts until it stops. */
export class Publisher {
  private readonly mesh: Mesh
  private readonly holding = new Map<string, Uint8Array>()
  private serving?: Promise<void>

  constructor (mesh: Mesh) {
    this.mesh = mesh
  }

  async publish (dir: string, version: string, key: AuthorityKey, options: PublishOptions = {}): Promise<PublishResult> {
    this.serving ??= serveArtifacts(this.mesh.libp2p, { get: async (d) => this.holding.get(d) })
    await this.serving
    return await publishCell(this.mesh, dir, version, key, options, this.holding)
  }
}

async function publishCell (mesh: Mesh, dir: string, version: string, key: AuthorityKey, options: PublishOptions, holding: Map<string, Uint8Array>): Promise<PublishResult> {
  if (!isVersion(version)) throw new InvalidVersionArgumentError(`"${version}" is not a semantic version (MAJOR.MINOR.PATCH)`)
  const authority = authorityIdOf(key.publicKey)
  const pkg = await packageCell(dir, { signal: options.signal, authority: options.setAuthority === true ? authority : undefined })
  if (pkg.manifest.authority.ed25519 !== authority) {
    throw new AuthorityMismatchError(`Cell.toml names authority ${pkg.manifest.authority.ed25519}, but the key signs as ${authority}`)
  }
  // Serve the artifact and become its provider before anyone hears of the release.
  if (holding.size >= 64) holding.delete(holding.keys().next().value as string)
  holding.set(pkg.digest, pkg.artifact)
  await waitForView(mesh, () => mesh.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs: 15_000 })
  // Provide in the background: nodes ask their connected peers (this one among them) before the DHT,
  // so the release need not wait for the provider record to settle.
  const providing = mesh.libp2p.contentRouting.provide(artifactCid(pkg.digest), { signal: AbortSignal.timeout(20_000) }).catch((err) => { log('provide failed: %e', err) })
  // Sequence numbers only grow: above anything the fleet has seen for this cell, and above the clock.
  // Releases and desired-version records share the sequence, so a rollback signed on a clock that
  // runs ahead of ours must not make this release lose to it.
  // Per authority: records of another authority claiming the same name never raise (or lock) ours.
  // (Above a retire record too: publishing brings a retired cell back.)
  const seen = Math.max(mesh.view.releaseOf(authority, pkg.manifest.name)?.seq ?? 0, mesh.view.desiredOf(authority, pkg.manifest.name)?.seq ?? 0, mesh.view.retiredOf(authority, pkg.manifest.name)?.seq ?? 0)
  const seq = Math.max(seen + 1, Date.now())
  const signed = await signRelease({ cell: pkg.manifest.name, version, digest: pkg.digest, seq, createdMs: Date.now() }, key)
  await waitForView(mesh, () => mesh.libp2p.services.pubsub.getSubscribers('/cell/fleet-releases/1').length > 0 ? true : undefined, 'a fleet node subscribed to releases', { timeoutMs: 15_000 })
  await mesh.gossip.publishRelease(encodeRelease(signed))
  log('published %s@%s %s seq %d', pkg.manifest.name, version, pkg.digest, seq)
  let ready = 0
  const cell = pkg.manifest.name
  // A stateful cell whose storage class no node offers would wait for replicas forever: say why now.
  if (pkg.manifest.storage !== undefined && (options.waitReplicas ?? 1) > 0) noStorageClass(mesh, cell, version, pkg.manifest.storage.class)
  if ((options.waitReplicas ?? 1) > 0) {
    try {
      ready = (await waitForReplicas(mesh, cell, { digest: pkg.digest, authority, count: options.waitReplicas ?? 1, timeoutMs: options.timeoutMs ?? 60_000, signal: options.signal })).length
    } catch (err) {
      options.signal?.throwIfAborted()
      // Per-cell: pulls the nodes' records first (their prepared lists are not gossiped), briefly.
      const nodes = await finalPrepareReport(mesh, cell, pkg.digest, { timeoutMs: Math.min(options.reportMs ?? 10_000, 5_000), authority })
      throw new ReleaseNotReadyError(`${cell}@${version} was published, but ${(err as Error).message}\n${formatPrepareReport(nodes)}`, nodes, { cause: err })
    }
  } else {
    await providing
  }
  // Replicas are ready somewhere: give every node a few heartbeats to say whether it prepared it.
  const nodes = await waitForPrepareReport(mesh, cell, pkg.digest, { timeoutMs: (options.waitReplicas ?? 1) > 0 ? (options.reportMs ?? 10_000) : 0, authority, signal: options.signal })
  return { cell, version, digest: pkg.digest, seq, ready, nodes }
}

/** Throws NoStorageClassError when no full node in view offers `storageClass`, naming what they offer. */
function noStorageClass (mesh: Mesh, cell: string, version: string, storageClass: string): void {
  const nodes = mesh.view.nodes().filter(n => n.roles.includes('full'))
  if (nodes.length === 0 || nodes.some(n => offersStorageClass(n.roles, storageClass))) return
  const offered = [...new Set(nodes.flatMap(n => storageDriversOfRoles(n.roles)))].sort()
  log.error('%s@%s was published, but none of the %d full node(s) in view offers storage class "%s"', cell, version, nodes.length, storageClass)
  throw new NoStorageClassError(storageClass, offered)
}
