// Provider records stored by kad-dht are compact (core/mesh/compact-datastore.ts). kad-dht writes a
// provider's time as a few varint bytes from Buffer.allocUnsafe, a view of Node's shared 64 KiB pool
// (Node 24): stored as they were, every provider record kept a 64 KiB slab alive for the record's
// 48 hours, and a fleet snapshotting a claim every 30 s grew by about 1 MiB a minute on every node.
// Two real meshes on loopback: one provides blobs, the other stores the records; every value in
// both datastores must own its memory (its buffer is its own size). With libp2p's plain
// MemoryDatastore (passed in place of the mesh's own) the same check finds 64 KiB buffers.
import { describe, it, expect, afterEach } from 'vitest'
import { MemoryDatastore } from 'datastore-core'
import type { Mesh } from '../../core/mesh/index.ts'
import { generateAuthority, type AuthorityKey } from '../../core/identity/index.ts'
import { startHostMesh } from '../integration/host-mesh.ts'
import { artifactCid } from '../../node-host/artifacts/artifact-exchange.ts'

const meshes: Mesh[] = []
afterEach(async () => { await Promise.all(meshes.splice(0).map(async m => await m.stop())) })

async function fullNode (authority: AuthorityKey, bootstrap: string[], plainStore: boolean): Promise<Mesh> {
  const { mesh } = await startHostMesh(authority, bootstrap, plainStore ? { libp2p: { datastore: new MemoryDatastore() } } : {})
  meshes.push(mesh)
  return mesh
}

/** Provider records in `mesh`'s datastore: how many, and the bytes their values keep alive. */
async function providerRecords (mesh: Mesh): Promise<{ count: number, keptBytes: number, ownBytes: number }> {
  let count = 0
  let keptBytes = 0
  let ownBytes = 0
  for await (const { value } of mesh.datastore.query({ prefix: '/dht/provider' })) {
    count++
    keptBytes += value.buffer.byteLength
    ownBytes += value.byteLength
  }
  return { count, keptBytes, ownBytes }
}

async function provideBetweenTwo (plainStore: boolean): Promise<{ provider: Awaited<ReturnType<typeof providerRecords>>, holder: Awaited<ReturnType<typeof providerRecords>> }> {
  const authority = await generateAuthority()
  const a = await fullNode(authority, [], plainStore)
  const b = await fullNode(authority, [a.libp2p.getMultiaddrs()[0].toString()], plainStore)
  const deadline = Date.now() + 20_000
  // kad-dht's routing table is not in its public interface; the test reads its size.
  const tableSize = (m: Mesh): number => (m.libp2p.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
  while (tableSize(a) === 0 || tableSize(b) === 0) {
    if (Date.now() > deadline) throw new Error('the two nodes never found each other in the DHT')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const digests = Array.from({ length: 8 }, (_, i) => i.toString(16).padStart(64, '0'))
  for (const d of digests) await b.libp2p.contentRouting.provide(artifactCid(d), { signal: AbortSignal.timeout(10_000) })
  // The records reach the other node (ADD_PROVIDER) once each provide's query has run.
  let holder = await providerRecords(a)
  while (holder.count < digests.length) {
    if (Date.now() > deadline) throw new Error(`the other node holds ${holder.count} of ${digests.length} provider records`)
    await new Promise(resolve => setTimeout(resolve, 50))
    holder = await providerRecords(a)
  }
  return { provider: await providerRecords(b), holder }
}

describe('provider records in the mesh datastore', () => {
  it('keep only their own bytes alive on the provider and on the node that stores them', async () => {
    const { provider, holder } = await provideBetweenTwo(false)
    expect(provider.count).toBe(8)
    expect(holder.count).toBe(8)
    expect(provider.keptBytes).toBe(provider.ownBytes)
    expect(holder.keptBytes).toBe(holder.ownBytes)
    expect(holder.keptBytes).toBeLessThan(8 * 16)
  }, 60_000)

  it('(libp2p\'s plain MemoryDatastore, for contrast: each record\'s few bytes hold a pooled buffer)', async () => {
    const { holder } = await provideBetweenTwo(true)
    expect(holder.count).toBe(8)
    expect(holder.keptBytes).toBeGreaterThan(holder.ownBytes * 100)
  }, 60_000)
})
