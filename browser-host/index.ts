// Public surface of the browser host (the light peer).
export { createLightPeer, BadStoredKeyError, NoBootstrapError } from './light-peer.ts'
export type { LightPeer, LightPeerInit, ConnectionInfo } from './light-peer.ts'
export { IdbLightPeerStore, MemoryLightPeerStore, KeystoreUnavailableError, LIMITS } from './keystore.ts'
export type { LightPeerStore, StoredState, CachedFleet, CachedNode, CachedInstance, CachedCell } from './keystore.ts'
export type { FleetSummary } from './fleet-cache.ts'
export { describeError, errorName } from './describe-error.ts'
export { backoffMs } from './backoff.ts'
export type { ReconnectStats } from './reconnect.ts'
