import { describe, expect, it } from 'vitest'
import { Key } from 'interface-datastore'
import { CompactMemoryDatastore } from './compact-datastore.ts'

describe('the mesh datastore', () => {
  it('keeps its own compact copy of a value handed in as a view of a larger buffer', async () => {
    const store = new CompactMemoryDatastore()
    const slab = new Uint8Array(64 * 1024)
    const view = slab.subarray(100, 106)
    view.set([1, 2, 3, 4, 5, 6])
    await store.put(new Key('/dht/provider/a/b'), view)
    slab.fill(9)
    const stored = await store.get(new Key('/dht/provider/a/b'))
    expect([...stored]).toEqual([1, 2, 3, 4, 5, 6])
    expect(stored.buffer.byteLength).toBe(6)
    // Batches and putMany go through put.
    const batch = store.batch()
    batch.put(new Key('/b'), slab.subarray(0, 3))
    await batch.commit()
    expect((await store.get(new Key('/b'))).buffer.byteLength).toBe(3)
  })
})
