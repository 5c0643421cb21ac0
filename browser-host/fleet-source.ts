// The light peer as the dashboard's FleetSource (dashboard/src/source.ts): the page reads the tab's
// own FleetView and calls through the tab's own mesh, so nothing but gossip and calls feeds it.
// The dashboard's interface is matched structurally (only its types are shared), so browser-host
// does not import the dashboard.
import type { Dissemination, FleetView } from '../core/fleet/index.ts'
import type { FleetGossip } from '../core/fleet/gossip.ts'
import { DisseminationMismatchError } from '../core/fleet/errors.ts'
import type { CallOptions } from '../core/cell.ts'
import { systemClock, type Clock } from '../core/ports.ts'
import { describeError } from './describe-error.ts'
import type { LightPeer } from './light-peer.ts'

export type LightPeerSourceStatus = 'connecting' | 'live' | 'stale' | 'error'

/** The parts of a LightPeer the adapter reads; a real LightPeer satisfies it. */
export type LightPeerLike = Pick<LightPeer, 'peerId' | 'mesh' | 'call' | 'fleet' | 'fullNodes' | 'addEventListener' | 'removeEventListener'> & Partial<Pick<LightPeer, 'policies' | 'callRouted'>>

/** The part of the tab's FleetGossip the warnings read (core/fleet/dissemination-watch.ts). */
export type MismatchGossip = Pick<FleetGossip, 'dissemination' | 'mismatches' | 'addEventListener' | 'removeEventListener'>

/** Mismatch messages listed in the warnings at most; the other peers are counted in one more line. */
export const MAX_LISTED_MISMATCHES = 3
export interface LightPeerSourceOptions {
  /** How often connection state is re-read (connections drop without a fleet event); default 1000 ms. */
  checkMs?: number
  clock?: Clock
}

/**
 * Status, derived from the light peer:
 * - connecting: no record from a live peer yet and nothing cached to show;
 * - stale: showing the cached view of a previous visit, or no full node is connected any more
 *   (the reconnector is working on it);
 * - live: gossip has refreshed the view and at least one full node is connected;
 * - error: set by the page (`fail`) when the peer could not be created or started.
 */
export class LightPeerSource extends EventTarget {
  readonly peer: LightPeerLike
  readonly view: FleetView
  private current: LightPeerSourceStatus = 'connecting'
  private reason?: string
  private wasLive = false
  private failed = false
  private closed = false
  private timer: unknown
  private readonly clock: Clock
  private readonly checkMs: number
  private readonly recheck = (): void => { this.refresh() }
  private readonly gossip: MismatchGossip | undefined
  private currentWarnings: string[] = []
  /** A report or a heartbeat of the gossip: the peers of the other mode are read again. */
  private readonly onGossip = (): void => { this.readWarnings() }

  constructor (peer: LightPeerLike, options: LightPeerSourceOptions = {}) {
    super()
    this.peer = peer
    this.view = peer.mesh.view
    this.clock = options.clock ?? systemClock
    this.checkMs = Math.max(100, options.checkMs ?? 1_000)
    peer.addEventListener('fleet', this.recheck)
    peer.addEventListener('reconnect', this.recheck)
    // The gossip checks its peers' modes once a heartbeat: re-read then (a peer that left clears its
    // warning) and on each report. No gossip (a bare test double): no warnings.
    this.gossip = peer.mesh.gossip as MismatchGossip | undefined
    this.gossip?.addEventListener('dissemination-mismatch', this.onGossip)
    this.gossip?.addEventListener('heartbeat', this.onGossip)
    this.refresh()
    this.schedule()
  }

  get peerId (): string {
    return this.peer.peerId
  }

  get status (): LightPeerSourceStatus {
    return this.current
  }

  get statusReason (): string | undefined {
    return this.reason
  }

  /** Peer ids of the full nodes this tab is connected to (the dashboard's topology draws them). */
  connections (): string[] {
    return this.peer.fullNodes()
  }

  /** The cell's replica bounds, canary weight, surge and grace, from its signed artifact's Cell.toml. */
  policy (cell: string): { minReplicas: number, maxReplicas: number, canaryWeight: number, maxSurge: number, healthGraceMs: number, update?: string } | undefined {
    return this.peer.policies?.policy(cell)
  }

  async callRouted (cell: string, method: string, request: unknown, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<{ result: unknown, route?: { nodeId: string, instanceId: string, version: string, digest: string } }> {
    if (this.peer.callRouted == null) return { result: await this.call(cell, method, request, options) }
    return await this.peer.callRouted(cell, method, request, { signal: options.signal, timeoutMs: options.timeoutMs })
  }

  async call (cell: string, method: string, request: unknown, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<unknown> {
    const callOptions: CallOptions = { signal: options.signal, timeoutMs: options.timeoutMs }
    return await this.peer.call(cell, method, request, callOptions)
  }

  /**
   * What this tab may be missing, in words: one line per connected full node of the other
   * dissemination mode (the gossip's DisseminationMismatchError message), the first
   * MAX_LISTED_MISMATCHES of them and then "and N more", and a last line on how the page sets the
   * tab's mode; a 'warnings' event fires on every change.
   */
  warnings (): string[] {
    return [...this.currentWarnings]
  }

  /** Marks the source failed (e.g. the peer did not start); the dashboard shows the reason. */
  fail (err: unknown): void {
    this.failed = true
    this.set('error', describeError(err))
  }

  /** Stops the periodic check and the listeners; the peer itself is the page's to stop. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.clock.clearTimeout(this.timer)
    this.peer.removeEventListener('fleet', this.recheck)
    this.peer.removeEventListener('reconnect', this.recheck)
    this.gossip?.removeEventListener('dissemination-mismatch', this.onGossip)
    this.gossip?.removeEventListener('heartbeat', this.onGossip)
  }

  private readWarnings (): void {
    if (this.gossip === undefined || this.closed) return
    const peers = this.gossip.mismatches()
    const ours = this.gossip.dissemination
    // The words of the gossip's report (DisseminationMismatchError), also for a peer whose report
    // the gossip's per-minute budget still holds back.
    const lines = peers.slice(0, MAX_LISTED_MISMATCHES).map(p => new DisseminationMismatchError(p.peerId, p.theirs, ours, { self: 'this tab' }).message)
    const more = peers.length - lines.length
    if (more > 0) lines.push(`and ${more} more connected node${more === 1 ? '' : 's'} of the other dissemination mode`)
    // The messages speak to a node's operator (--dissemination); a tab takes its mode from its page.
    if (peers.length > 0) lines.push(pageHint(peers[0].theirs))
    if (lines.length === this.currentWarnings.length && lines.every((l, i) => l === this.currentWarnings[i])) return
    this.currentWarnings = lines
    this.dispatchEvent(new Event('warnings'))
  }

  private schedule (): void {
    if (this.closed) return
    this.timer = this.clock.setTimeout(() => {
      this.refresh()
      this.schedule()
    }, this.checkMs)
  }

  private refresh (): void {
    // Also here: a stopped gossip (its watch cleared) has no more heartbeats to clear the warnings.
    this.readWarnings()
    if (this.failed) return
    // `fleet().stale` turns false once and stays so; reading it builds lists, so stop once live.
    if (!this.wasLive) {
      const summary = this.peer.fleet()
      if (summary.stale) {
        if (summary.nodes.length > 0 || summary.cells.length > 0) this.set('stale', 'showing the fleet saved on a previous visit until gossip refreshes it')
        else this.set('connecting', undefined)
        return
      }
      this.wasLive = true
    }
    if (this.peer.fullNodes().length === 0) this.set('stale', 'no full node is connected')
    else this.set('live', undefined)
  }

  private set (status: LightPeerSourceStatus, reason: string | undefined): void {
    if (status === this.current && reason === this.reason) return
    this.current = status
    this.reason = reason
    this.dispatchEvent(new Event('status'))
  }
}

/** How a dashboard page sets its tab's mode (browser-host/page-config.ts). */
function pageHint (theirs: Dissemination): string {
  return `This tab's mode comes from its page: set "dissemination": "${theirs}" in cell-config.json, or add ?dissemination=${theirs} to the link, if that is the fleet's mode.`
}

/** Wraps a light peer for `mountDashboard(el, lightPeerSource(peer))`. */
export function lightPeerSource (peer: LightPeerLike, options?: LightPeerSourceOptions): LightPeerSource {
  return new LightPeerSource(peer, options)
}
