// Snapshot distribution end to end (issue 10 point 4) on four in-process nodes of real libp2p
// (gossipsub fleet, fleet-sync, kad-dht, /cell/snapshot-blob/1), each with a host grant from the
// cell's authority: the owner takes a real snapshot (dir driver, OCI layout) and announces it; the
// two nodes the rendezvous hash chooses fetch every blob, verify, provide and pin it, the third
// does not; every node then sees the snapshot as safe. A fifth node (a new owner) fetches the
// snapshot from the holders alone (the owner stopped) and restores it byte for byte. `cell snapshots`
// lists it as safe with its holders.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Mesh } from '../../core/mesh/index.ts'
import type { SnapshotRecord } from '../../core/fleet/index.ts'
import { encodeRelease, generateAuthority, signRelease, type AuthorityKey } from '../../core/identity/index.ts'
import { startHostMesh } from './host-mesh.ts'
import { DirDriver } from '../../node-host/storage/dir.ts'
import { layoutDirFor, restoreSnapshot, takeSnapshot } from '../../node-host/storage/snapshots.ts'
import { fetchSnapshotBlobs, type SnapshotBlobServer } from '../../node-host/storage/blob-exchange.ts'
import { OciLayout } from '../../node-host/storage/oci-layout.ts'
import type { SnapshotAnnouncer } from '../../node-host/storage/snapshot-records.ts'
import { chooseHolders, startSnapshotDistribution, type SnapshotPinner } from '../../node-host/storage/pins.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { REPO_ROOT } from '../../node-host/cli/cli-harness.ts'
import { execFile } from 'node:child_process'

interface Node { name: string, id: string, mesh: Mesh, dataDir: string, announcer: SnapshotAnnouncer, pinner: SnapshotPinner, server: SnapshotBlobServer, stop: () => Promise<void> }

async function until (test: () => boolean, what: string, timeoutMs: number, step?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    if (step !== undefined) await step()
    if (!test()) await new Promise(resolve => setTimeout(resolve, step !== undefined ? 500 : 50))
  }
}

describe('snapshot pinning across nodes', () => {
  const nodes: Node[] = []
  let root = ''
  afterAll(async () => {
    for (const n of nodes) {
      await n.stop()
      await n.mesh.stop()
    }
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  async function start (name: string, authority: AuthorityKey, bootstrap: string[], pin = true): Promise<Node> {
    const { mesh, privateKey, credentials, trusted } = await startHostMesh(authority, bootstrap)
    const dataDir = join(root, name)
    await mkdir(dataDir, { recursive: true })
    const d = await startSnapshotDistribution({
      mesh, privateKey, credentials, trusted, dataDir, pin,
      announcer: { announceMs: 2_000 },
      pinner: { tickMs: 1_000, retryMs: 1_000, minFreeBytes: 0 }
    })
    const { announcer, pinner, server } = d
    const node = { name, id: credentials.peerId, mesh, dataDir, announcer, pinner, server, stop: d.stop }
    nodes.push(node)
    return node
  }

  it('the owner\'s snapshot becomes safe once the two chosen nodes pinned it, and restores on a new node from them', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-snapshot-pins-'))
    const authority = await generateAuthority()
    const owner = await start('owner', authority, [])
    const first = owner.mesh.libp2p.getMultiaddrs()[0].toString()
    for (const name of ['a', 'b', 'c']) await start(name, authority, [first])
    // The cell's release makes its authority the claimant whose host grants count.
    const release = await signRelease({ cell: 'ledger', version: '1.0.0', digest: 'ab'.repeat(32), seq: 1, createdMs: Date.now() }, authority)
    await owner.mesh.gossip.publishRelease(encodeRelease(release))
    await until(() => nodes.every(n => n.mesh.view.claimants('ledger').length === 1 && n.mesh.view.nodes().length === 4), 'every node seeing the release and the four nodes', 30_000)

    // A real snapshot of the owner's claim volume (dir driver), in its OCI layout.
    const claim = { cell: 'ledger', ordinal: 0 }
    const driver = new DirDriver(join(owner.dataDir, 'volumes'))
    const mount = await driver.create(claim, 64 * 1024 ** 2)
    const entries = randomBytes(256 * 1024)
    await writeFile(join(mount, 'entries.log'), entries)
    await writeFile(join(mount, 'balance'), '42\n')
    const info = await takeSnapshot({ driver, claim, epoch: 1, layoutDir: layoutDirFor(owner.dataDir, claim), nowMs: Date.now() })
    const record: SnapshotRecord = await owner.announcer.announceSnapshot(info)
    expect(record.blobs).toEqual(expect.arrayContaining(info.blobs))

    const chosen = chooseHolders('ledger/0', owner.id, nodes.map(n => n.id), 2)
    expect(chosen).toHaveLength(2)
    const safe = (n: Node): boolean => n.mesh.view.newestSafe('ledger/0')?.tag === record.tag
    await until(() => nodes.every(safe), 'the snapshot to be safe in every view', 60_000)
    for (const n of nodes) expect(n.mesh.view.snapshotHolders(record)).toEqual([...chosen].sort())
    for (const n of nodes.filter(x => x !== owner)) {
      const holds = existsSync(join(layoutDirFor(n.dataDir, claim), 'blobs', 'sha256', info.plain.layerDigest.slice(7)))
      expect({ node: n.name, holds }).toEqual({ node: n.name, holds: chosen.includes(n.id) })
      expect(n.pinner.stats()).toMatchObject({ pinned: chosen.includes(n.id) ? 1 : 0, corruptBlobs: 0, failures: 0 })
    }

    // `cell snapshots` (the real CLI, joining as an operator) shows it safe, held by the chosen two;
    // a cell the fleet knows without snapshots says so.
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, authority)
    const billing = await signRelease({ cell: 'billing', version: '1.0.0', digest: 'cd'.repeat(32), seq: 1, createdMs: Date.now() }, authority)
    await owner.mesh.gossip.publishRelease(encodeRelease(billing))
    // The real launcher in a child process, as cli-harness runs it, with room for a loaded machine.
    const cli = async (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> => await new Promise((resolve, reject) => {
      const env: NodeJS.ProcessEnv = { ...process.env, HOME: root, CELL_BOOTSTRAP: '' }
      delete env.CELL_HOME
      execFile(join(REPO_ROOT, 'node_modules', '.bin', 'node'), [join(REPO_ROOT, 'node-host', 'cli', 'cell.js'), ...args, '--bootstrap', first, '--key', keyPath], { env, timeout: 90_000 }, (err, stdout, stderr) => {
        if (err != null && typeof err.code !== 'number') reject(new Error(`cell ${args.join(' ')} did not exit: ${stderr}`, { cause: err }))
        else resolve({ code: err == null ? 0 : err.code as number, stdout, stderr })
      })
    })
    const listed = await cli(['snapshots', 'ledger', '--output', 'json'])
    expect(listed.stderr).toBe('')
    expect(listed.code).toBe(0)
    const report = JSON.parse(listed.stdout) as { claims: Array<{ claim: string, newestSafe?: string, snapshots: Array<{ tag: string, safe: boolean, owner: string, holders: string[], epoch: number, sizeBytes: number }> }> }
    expect(report.claims).toEqual([{ claim: 'ledger/0', newestSafe: record.tag, snapshots: [expect.objectContaining({ tag: record.tag, safe: true, owner: owner.id, holders: [...chosen].sort(), epoch: 1, sizeBytes: info.sizeBytes })] }])
    const none = await cli(['snapshots', 'billing'])
    expect({ code: none.code, stdout: none.stdout }).toEqual({ code: 0, stdout: 'billing: no snapshots in the fleet (none taken yet, or the cell keeps no state)\n' })

    // A snapshot whose layer the owner's disk truncated: no holder pins it (refused by digest), it never turns safe.
    await writeFile(join(mount, 'entries.log'), randomBytes(300 * 1024))
    const bad = await takeSnapshot({ driver, claim, epoch: 1, layoutDir: layoutDirFor(owner.dataDir, claim), nowMs: Date.now() + 1000 })
    await truncate(join(layoutDirFor(owner.dataDir, claim), 'blobs', 'sha256', bad.plain.layerDigest.slice(7)), 1000)
    const badRecord = await owner.announcer.announceSnapshot(bad)
    const holderNodes = nodes.filter(n => chosen.includes(n.id))
    await until(() => holderNodes.every(n => n.pinner.stats().failures >= 1), 'both holders to refuse the truncated snapshot', 60_000)
    for (const n of nodes) {
      expect(n.mesh.view.snapshots('ledger/0').map(x => x.tag)).toContain(badRecord.tag)
      expect(n.mesh.view.snapshotHolders(badRecord)).toEqual([])
      expect(n.mesh.view.newestSafe('ledger/0')?.tag).toBe(record.tag)
      expect(existsSync(join(layoutDirFor(n.dataDir, claim), 'blobs', 'sha256', bad.plain.layerDigest.slice(7)))).toBe(n === owner)
    }

    // The owner goes away; a new node that will own the claim fetches it from the holders and restores it.
    await owner.stop()
    await owner.mesh.stop()
    nodes.splice(nodes.indexOf(owner), 1)
    // The first holder's copy of the layer rots on its disk (one flipped byte): it is refused by digest
    // and the layer comes from the other holder.
    const rotten = join(layoutDirFor(nodes.find(n => n.id === [...chosen].sort()[0])!.dataDir, claim), 'blobs', 'sha256', info.plain.layerDigest.slice(7))
    const bytes = await readFile(rotten)
    bytes[100] ^= 1
    await writeFile(rotten, bytes)
    const heir = await start('heir', authority, [nodes[0].mesh.libp2p.getMultiaddrs()[0].toString()], false)
    await until(() => heir.mesh.view.newestSafe('ledger/0')?.tag === record.tag, 'the heir to learn the safe snapshot through fleet-sync', 30_000)
    const snapshot = heir.mesh.view.newestSafe('ledger/0')!
    expect(heir.mesh.view.snapshotHolders(snapshot)).toEqual([...chosen].sort())
    // Holders are also found through the DHT alone (they provided every blob once pinned).
    const scratch = OciLayout.open(join(heir.dataDir, 'scratch'))
    await until(() => existsSync(scratch.blobPath(info.plain.configDigest)), 'a blob fetched from a DHT provider', 60_000, async () => {
      await fetchSnapshotBlobs(heir.mesh.libp2p, { claimId: 'ledger/0', digests: [info.plain.configDigest], layout: scratch, chain: heir.mesh.credentialsFor('ledger'), holders: [] }).catch(() => undefined)
    })
    const rottenHolder = nodes.find(n => n.id === [...chosen].sort()[0])!
    const rotFailures = rottenHolder.server.stats.failed
    const layoutDir = await heir.pinner.fetchSnapshot(snapshot)
    // The rotten copy was offered (its holder's server caught the bad hash while sending and broke off).
    expect(rottenHolder.server.stats.failed).toBeGreaterThan(rotFailures)
    const heirDriver = new DirDriver(join(heir.dataDir, 'volumes'))
    const restored = await restoreSnapshot({ driver: heirDriver, claim, layoutDir, tag: snapshot.tag, quotaBytes: 64 * 1024 ** 2, minEpoch: snapshot.epoch })
    expect(restored.via).toBe('plain')
    expect(Buffer.compare(await readFile(join(restored.mountpoint, 'entries.log')), entries)).toBe(0)
    expect(await readFile(join(restored.mountpoint, 'balance'), 'utf8')).toBe('42\n')
    expect(heir.pinner.stats()).toMatchObject({ failures: 0 })
  }, 300_000)
})
