// The light peer's persistent state (port) and its IndexedDB adapter through `idb`: the tab's peer
// key (so a reload keeps its identity), trust settings, imported grant tokens and the last fleet
// view (raw signed frames to re-verify, plus a plain summary to show at once even after the
// records' ttl has passed — marked stale by the peer until live gossip arrives).
import { openDB, type IDBPDatabase } from 'idb'
import { CellError } from '../core/errors.ts'
import type { NodeRecord, InstanceRecord } from '../core/fleet/index.ts'

/** The browser's IndexedDB could not be opened or written (private mode, quota, blocked upgrade). */
export class KeystoreUnavailableError extends CellError { static override readonly errorName = 'KeystoreUnavailableError' }

export interface CachedNode { record: NodeRecord, lastSeenMs: number }
export interface CachedInstance { record: InstanceRecord, lastSeenMs: number }
export interface CachedCell { cell: string, version: string, authority: string }

/** What the tab last knew of the fleet. */
export interface CachedFleet {
  savedMs: number
  nodes: CachedNode[]
  instances: CachedInstance[]
  cells: CachedCell[]
  /** FleetView.snapshot() frames: merged back on load so releases (no ttl) are known at once. */
  frames: Uint8Array[]
}

export interface StoredState {
  /** libp2p protobuf encoding of the ed25519 peer key. */
  peerKey?: Uint8Array
  trust: string[]
  grantTokens: string[]
  fleet?: CachedFleet
}

/** Port: where a light peer keeps its state. Same shape in tests (memory) and tabs (IndexedDB). */
export interface LightPeerStore {
  load (options?: { signal?: AbortSignal }): Promise<StoredState>
  savePeerKey (bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>
  saveTrust (trust: string[], options?: { signal?: AbortSignal }): Promise<void>
  saveGrantTokens (tokens: string[], options?: { signal?: AbortSignal }): Promise<void>
  saveFleet (fleet: CachedFleet, options?: { signal?: AbortSignal }): Promise<void>
  close (): void
}

export const LIMITS = {
  trust: 64,
  grantTokens: 16,
  cachedNodes: 256,
  cachedInstances: 2048,
  cachedCells: 256,
  frames: 512
} as const

const STORE = 'state'
const KEYS = { peerKey: 'peer-key', trust: 'trust', grantTokens: 'grant-tokens', fleet: 'fleet' } as const

/** Clamps what is written so a corrupted or hostile view cannot grow the database without bound. */
export function boundFleet (fleet: CachedFleet): CachedFleet {
  return {
    savedMs: fleet.savedMs,
    nodes: fleet.nodes.slice(0, LIMITS.cachedNodes),
    instances: fleet.instances.slice(0, LIMITS.cachedInstances),
    cells: fleet.cells.slice(0, LIMITS.cachedCells),
    frames: fleet.frames.slice(0, LIMITS.frames)
  }
}

/** IndexedDB adapter: one object store, one key per concern, so each write is small and atomic. */
export class IdbLightPeerStore implements LightPeerStore {
  readonly name: string
  private db?: Promise<IDBPDatabase>

  constructor (name = 'cell-light-peer') {
    this.name = name
  }

  private async open (): Promise<IDBPDatabase> {
    this.db ??= openDB(this.name, 1, {
      upgrade (db) { if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE) }
    }).catch((err: unknown) => {
      this.db = undefined
      throw new KeystoreUnavailableError(`IndexedDB "${this.name}" cannot be opened: ${(err as Error)?.message}`, { cause: err })
    })
    return await this.db
  }

  private async put (key: string, value: unknown, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    const db = await this.open()
    try {
      await db.put(STORE, value, key)
    } catch (err) {
      throw new KeystoreUnavailableError(`IndexedDB write of "${key}" failed: ${(err as Error)?.message}`, { cause: err })
    }
  }

  async load (options: { signal?: AbortSignal } = {}): Promise<StoredState> {
    options.signal?.throwIfAborted()
    const db = await this.open()
    const tx = db.transaction(STORE, 'readonly')
    const [peerKey, trust, grantTokens, fleet] = await Promise.all([
      tx.store.get(KEYS.peerKey), tx.store.get(KEYS.trust), tx.store.get(KEYS.grantTokens), tx.store.get(KEYS.fleet)
    ])
    await tx.done
    return {
      peerKey: peerKey instanceof Uint8Array ? peerKey : undefined,
      trust: Array.isArray(trust) ? trust.filter((t): t is string => typeof t === 'string').slice(0, LIMITS.trust) : [],
      grantTokens: Array.isArray(grantTokens) ? grantTokens.filter((t): t is string => typeof t === 'string').slice(0, LIMITS.grantTokens) : [],
      fleet: isCachedFleet(fleet) ? boundFleet(fleet) : undefined
    }
  }

  async savePeerKey (bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.put(KEYS.peerKey, bytes, options.signal)
  }

  async saveTrust (trust: string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.put(KEYS.trust, trust.slice(0, LIMITS.trust), options.signal)
  }

  async saveGrantTokens (tokens: string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.put(KEYS.grantTokens, tokens.slice(-LIMITS.grantTokens), options.signal)
  }

  async saveFleet (fleet: CachedFleet, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.put(KEYS.fleet, boundFleet(fleet), options.signal)
  }

  close (): void {
    void this.db?.then(db => { db.close() }, () => {})
    this.db = undefined
  }
}

/** In-memory adapter for unit tests and pages that must not persist anything. */
export class MemoryLightPeerStore implements LightPeerStore {
  state: StoredState = { trust: [], grantTokens: [] }
  async load (): Promise<StoredState> { return structuredClone(this.state) }
  async savePeerKey (bytes: Uint8Array): Promise<void> { this.state.peerKey = bytes.slice() }
  async saveTrust (trust: string[]): Promise<void> { this.state.trust = trust.slice(0, LIMITS.trust) }
  async saveGrantTokens (tokens: string[]): Promise<void> { this.state.grantTokens = tokens.slice(-LIMITS.grantTokens) }
  async saveFleet (fleet: CachedFleet): Promise<void> { this.state.fleet = structuredClone(boundFleet(fleet)) }
  close (): void {}
}

function isCachedFleet (v: unknown): v is CachedFleet {
  const f = v as CachedFleet
  return f != null && typeof f.savedMs === 'number' && Array.isArray(f.nodes) && Array.isArray(f.instances) &&
    Array.isArray(f.cells) && Array.isArray(f.frames) && f.frames.every(x => x instanceof Uint8Array)
}
