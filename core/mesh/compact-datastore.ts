// libp2p's datastore for every mesh: the in-memory store libp2p uses by default, keeping its own
// compact copy of each value, and bounding what other peers can make it keep.
//
// Compact: kad-dht writes a provider record's time as a few varint bytes taken with
// Buffer.allocUnsafe, a view into Node's shared 64 KiB buffer pool (Buffer.poolSize is 64 KiB on
// Node 24): stored as they are, each record kept its whole 64 KiB slab alive until the record
// expired (48 h). A fleet that snapshots a claim every 30 s provides a few blobs each time and grew
// by about 1 MiB a minute on every node (`npm run soak`: 34 MiB in 544 slabs after 40 minutes, found
// in a heap snapshot). A copy costs a few bytes once per put; in browsers there is no pool and the copy
// is the same few bytes.
//
// Bounded: a full node runs kad-dht in server mode, so any peer that completes a Noise handshake
// (no grant needed: the DHT is how peers find artifacts and each other) may store provider records
// (ADD_PROVIDER, one per content id, kept 48 h) and value records (PUT_VALUE: `/pk/` records, valid
// for any freshly made key). Stored as they came, a peer sending made-up content ids grew every
// node's memory without end. Provider records are capped in all, and those of peers outside the
// fleet (not a granted node in the view) per peer and as a group: when full, an outsider's oldest
// record goes first, then another fleet node's; this node's own are never dropped (it would stop
// providing). Value records are capped and the oldest goes. What was dropped or refused is counted.
// The peer store (`/peers/<cid>`) keeps an entry for every peer id ever connected or heard of and
// prunes one only when something reads it after 6 h: a peer dialling in under ever new ids grew it
// without end. Past maxPeers the least recently updated entry of a peer outside the fleet goes.
import { MemoryDatastore } from 'datastore-core'
import { Key } from 'interface-datastore'
import type { AbortOptions } from '@libp2p/interface'
import { peerIdFromCID } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { base32 } from 'multiformats/bases/base32'

/** kad-dht's default datastore prefix (`${prefix}/provider/<cid>/<peer id>`, `${prefix}/record/<key>`). */
const PROVIDER_PREFIX = '/dht/provider/'
const RECORD_PREFIX = '/dht/record/'
/** libp2p's peer store: `/peers/<peer id as a base32 CID>`. */
const PEER_PREFIX = '/peers/'
/** Entries looked at for one eviction from the peer store (fleet members are skipped). */
const PEER_EVICTION_TRIES = 64

export interface DatastoreBounds {
  /** This node's peer id: its own provider records are never dropped. */
  selfId?: string
  /** Whether a peer is a member of the fleet (a granted node in the view). Default: nobody. */
  isMember?: (peerId: string) => boolean
  /** Provider records in all (default 65,536: some 25 MiB). */
  maxProviders?: number
  /** Provider records of peers outside the fleet, together (default 16,384). */
  maxOutsiderProviders?: number
  /** Provider records of one peer outside the fleet (default 1,024). */
  maxProvidersPerOutsider?: number
  /** Value records (default 1,024). */
  maxRecords?: number
  /** Peer store entries (default 8,192; fleet members and this node are never dropped). */
  maxPeers?: number
}

export interface DatastoreStats {
  providers: number
  outsiderProviders: number
  records: number
  /** Provider records not stored: their peer's or the outsiders' share was full. */
  providersRefused: number
  /** Provider records dropped to make room (oldest first). */
  providersEvicted: number
  /** Value records dropped to make room (oldest first). */
  recordsEvicted: number
  peers: number
  /** Peer store entries dropped to make room (least recently updated first). */
  peersEvicted: number
}

type Owner = 'self' | 'member' | 'outsider'

export class CompactMemoryDatastore extends MemoryDatastore {
  private readonly bounds: Required<Omit<DatastoreBounds, 'selfId'>> & { selfId: string | undefined }
  /** Provider keys by owner class, each in insertion order (refreshed keys move to the end), with their peer. */
  private readonly providers: Record<Owner, Map<string, string>> = { self: new Map(), member: new Map(), outsider: new Map() }
  private readonly perOutsider = new Map<string, number>()
  /** Value record keys in insertion order. */
  private readonly records = new Set<string>()
  /** Peer store keys, least recently written first. */
  private readonly peers = new Set<string>()
  private evictedPeers = 0
  private refused = 0
  private evictedProviders = 0
  private evictedRecords = 0

  constructor (bounds: DatastoreBounds = {}) {
    super()
    this.bounds = {
      selfId: bounds.selfId,
      isMember: bounds.isMember ?? (() => false),
      maxProviders: bounds.maxProviders ?? 65_536,
      maxOutsiderProviders: bounds.maxOutsiderProviders ?? 16_384,
      maxProvidersPerOutsider: bounds.maxProvidersPerOutsider ?? 1024,
      maxRecords: bounds.maxRecords ?? 1024,
      maxPeers: bounds.maxPeers ?? 8192
    }
  }

  put (key: Key, val: Uint8Array, options?: AbortOptions): Key | Promise<Key> {
    const k = key.toString()
    if (k.startsWith(PROVIDER_PREFIX)) {
      // Not stored: kad-dht's handler answers nothing either way, and the record was a hint.
      if (!this.admitProvider(k)) return key
    } else if (k.startsWith(RECORD_PREFIX)) {
      this.admitRecord(k)
    } else if (k.startsWith(PEER_PREFIX)) {
      this.admitPeer(k)
    }
    // Uint8Array.prototype.slice: Buffer#slice would return another view of the same memory.
    return super.put(key, Uint8Array.prototype.slice.call(val), options)
  }

  delete (key: Key, options?: AbortOptions): void {
    super.delete(key, options)
    this.forget(key.toString())
  }

  stats (): DatastoreStats {
    return {
      providers: this.providerCount(),
      outsiderProviders: this.providers.outsider.size,
      records: this.records.size,
      providersRefused: this.refused,
      providersEvicted: this.evictedProviders,
      recordsEvicted: this.evictedRecords,
      peers: this.peers.size,
      peersEvicted: this.evictedPeers
    }
  }

  private admitProvider (k: string): boolean {
    const peer = k.slice(k.lastIndexOf('/') + 1)
    const owner: Owner = peer === this.bounds.selfId ? 'self' : this.bounds.isMember(peer) ? 'member' : 'outsider'
    const known = this.providers[owner]
    if (known.has(k)) {
      // A refresh: same record, newer time; it is now the newest.
      known.delete(k)
      known.set(k, peer)
      return true
    }
    // Kept under another class (the peer joined or left the fleet since): counted again as new.
    this.forget(k)
    if (owner === 'outsider') {
      if ((this.perOutsider.get(peer) ?? 0) >= this.bounds.maxProvidersPerOutsider) return this.refuse(k)
      // The outsiders' share full: their oldest goes (one outsider cannot take it all: per-peer cap).
      if (this.providers.outsider.size >= this.bounds.maxOutsiderProviders && !this.evictOldest('outsider')) return this.refuse(k)
    }
    // All full: an outsider's oldest goes; for a fleet member (or this node) another member's oldest
    // if no outsider's is left. An outsider never pushes out a member's record.
    if (this.providerCount() >= this.bounds.maxProviders && !this.evictOldest('outsider') && (owner === 'outsider' || !this.evictOldest('member')) && owner !== 'self') return this.refuse(k)
    known.set(k, peer)
    // The per-outsider map holds only peers with records here: bounded by the outsiders' share.
    if (owner === 'outsider') this.perOutsider.set(peer, (this.perOutsider.get(peer) ?? 0) + 1)
    return true
  }

  /** Not stored; an older copy of the same record (kept under another class) goes too. */
  private refuse (k: string): false {
    this.refused++
    super.delete(keyOf(k))
    return false
  }

  private admitRecord (k: string): void {
    if (this.records.has(k)) {
      this.records.delete(k)
    } else {
      while (this.records.size >= this.bounds.maxRecords) {
        const oldest = this.records.values().next().value as string
        this.records.delete(oldest)
        super.delete(keyOf(oldest))
        this.evictedRecords++
      }
    }
    this.records.add(k)
  }

  private admitPeer (k: string): void {
    if (this.peers.delete(k)) {
      this.peers.add(k)
      return
    }
    if (this.peers.size >= this.bounds.maxPeers) {
      // The least recently written entry of a peer outside the fleet; members and this node move
      // to the back. (Members are at most the view's 4096 nodes: some entry is an outsider's.)
      for (let i = 0; i < PEER_EVICTION_TRIES && this.peers.size > 0; i++) {
        const oldest = this.peers.values().next().value as string
        this.peers.delete(oldest)
        const id = peerIdOfKey(oldest)
        if (id !== undefined && (id === this.bounds.selfId || this.bounds.isMember(id))) {
          this.peers.add(oldest)
          continue
        }
        super.delete(keyOf(oldest))
        this.evictedPeers++
        break
      }
    }
    this.peers.add(k)
  }

  private evictOldest (owner: Owner): boolean {
    const known = this.providers[owner]
    const first = known.entries().next()
    if (first.done === true) return false
    const [k] = first.value
    super.delete(keyOf(k))
    this.forget(k)
    this.evictedProviders++
    return true
  }

  private forget (k: string): void {
    if (k.startsWith(RECORD_PREFIX)) {
      this.records.delete(k)
      return
    }
    if (k.startsWith(PEER_PREFIX)) {
      this.peers.delete(k)
      return
    }
    if (!k.startsWith(PROVIDER_PREFIX)) return
    for (const owner of ['self', 'member', 'outsider'] as const) {
      const peer = this.providers[owner].get(k)
      if (peer === undefined) continue
      this.providers[owner].delete(k)
      if (owner === 'outsider') this.decrementOutsider(peer)
      return
    }
  }

  private decrementOutsider (peer: string): void {
    const n = (this.perOutsider.get(peer) ?? 0) - 1
    if (n <= 0) this.perOutsider.delete(peer)
    else this.perOutsider.set(peer, n)
  }

  private providerCount (): number {
    return this.providers.self.size + this.providers.member.size + this.providers.outsider.size
  }
}

/** The peer id (base58 string) of a peer store key, or undefined for one that does not parse. */
function peerIdOfKey (k: string): string | undefined {
  try {
    return peerIdFromCID(CID.parse(k.slice(PEER_PREFIX.length), base32)).toString()
  } catch {
    return undefined
  }
}

/** The key a stored string came from (already clean). */
function keyOf (k: string): Key {
  return new Key(k, false)
}
