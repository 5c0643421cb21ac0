// libp2p's datastore for every mesh: the in-memory store libp2p uses by default, keeping its own
// compact copy of each value. kad-dht writes a provider record's time as a few varint bytes taken
// with Buffer.allocUnsafe, a view into Node's shared 64 KiB buffer pool (Buffer.poolSize is 64 KiB
// on Node 24): stored as they are, each record kept its whole 64 KiB slab alive until the record
// expired (48 h). A fleet that snapshots a claim every 30 s provides a few blobs each time and grew
// by about 1 MiB a minute on every node (`npm run soak`: 34 MiB in 544 slabs after 40 minutes, found
// in a heap snapshot). A copy costs a few bytes once per put; in browsers there is no pool and the copy
// is the same few bytes.
import { MemoryDatastore } from 'datastore-core'
import type { Key } from 'interface-datastore'
import type { AbortOptions } from '@libp2p/interface'

export class CompactMemoryDatastore extends MemoryDatastore {
  put (key: Key, val: Uint8Array, options?: AbortOptions): Key | Promise<Key> {
    // Uint8Array.prototype.slice: Buffer#slice would return another view of the same memory.
    return super.put(key, Uint8Array.prototype.slice.call(val), options)
  }
}
