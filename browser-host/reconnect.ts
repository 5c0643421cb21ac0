// Keeps a light peer connected to at least one full node: core/mesh's PeerKeeper with a target of
// one. A tab that slept, lost its network or whose full node died re-dials another known full node
// (from the fleet view, the cached fleet or the bootstrap list) with backoff and jitter. Gossipsub
// keeps its topic subscriptions across connections and announces them to each new peer, so
// re-dialing is all that resubscribing takes; fleet sync then pulls a fresh snapshot.
import type { Libp2p } from '@libp2p/interface'
import type { Clock, Random } from '../core/ports.ts'
import { PeerKeeper, type KeeperStats } from '../core/mesh/peer-keeper.ts'

export interface ReconnectInit {
  libp2p: Libp2p
  clock: Clock
  random: Random
  /** Multiaddrs (with /p2p/) of full nodes worth dialing, best first. */
  candidates: () => string[]
  /** Whether a connected peer counts as a full node (not another tab). */
  isFullNode: (peerId: string) => boolean
  minBackoffMs?: number
  maxBackoffMs?: number
  /** Periodic re-check even without events (a sleeping tab misses close events). */
  checkMs?: number
  dialTimeoutMs?: number
  /** Most peers tried per round. */
  maxDialsPerRound?: number
  onReconnect?: (peerId: string, addr: string) => void
}

export type ReconnectStats = KeeperStats

export class Reconnector {
  private readonly keeper: PeerKeeper

  constructor (init: ReconnectInit) {
    const { isFullNode, onReconnect, ...rest } = init
    // A tab keeps one full node; it dials several per round only when they keep failing.
    this.keeper = new PeerKeeper({ ...rest, keep: 1, maxDialsPerRound: init.maxDialsPerRound ?? 1, isFleetPeer: isFullNode })
    if (onReconnect !== undefined) {
      this.keeper.addEventListener('reconnect', (evt) => {
        const { peerId, addr } = (evt as CustomEvent<{ peerId: string, addr: string }>).detail
        onReconnect(peerId, addr)
      })
    }
  }

  get stats (): ReconnectStats {
    return this.keeper.stats
  }

  start (): void { this.keeper.start() }
  stop (): void { this.keeper.stop() }
  /** Re-check now (the page calls this on `online` and `visibilitychange`). */
  nudge (): void { this.keeper.nudge() }
  connectedFullNodes (): string[] { return this.keeper.connectedFleetPeers() }
}
