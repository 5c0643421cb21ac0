// Established inbound connections from peers that are not fleet members ("guests": tabs, `cell call`
// clients, a node whose record has not arrived yet, or anyone with a fresh key pair).
//
// libp2p refuses every inbound connection once it holds maxConnections (300 by default) and its
// pruner only runs when a connection opens past that cap, which inbound ones never do. A peer id
// costs nothing, so one host that completed a Noise handshake under a fresh key every 210 ms, under
// the 5-per-second rate limit, held all 300 in 67 s and the node refused every other peer, fleet
// members included, for as long as it kept them open (measured on `cell up`: 3 of 3 honest dials
// refused). Now:
//
// - libp2p's cap is the guest budget plus MEMBER_RESERVE, so guests alone never reach it: a member
//   (a node whose signed, granted record the view holds, or a bootstrap peer) can always connect.
// - One remote host (an IPv4 address, an IPv6 /64) keeps at most `perHost` guest connections: the
//   connection past it is closed as soon as it opens (GuestConnectionsError 'TooManyGuestsFromHost').
// - Guests in all keep at most `total`: past it, the oldest guest connection of the host holding the
//   most is closed ('TooManyGuests'), so many hosts that fill the budget lose their own connections
//   first and a guest from a host with few keeps its place.
//
// - A guest that proved a grant from an authority this node trusts (a caller grant in its synapse
//   handshake, any grant in a fleet-sync or artifact request: `vouch`) is not held to the per-host
//   limit, and its connections are closed to make room only when no anonymous guest is left: hosts
//   that fill the budget with fresh keys push out each other and other anonymous guests, not the
//   fleet's own callers (a tab or `cell call` with a grant) or a node that is joining.
//
// Membership and vouches are read at each decision, not remembered per connection: a node that
// connected before its record arrived stops counting as a guest as soon as the view holds it.
import type { Connection, Libp2p } from '@libp2p/interface'
import { CellError } from '../errors.ts'
import { hostKey, positiveLimits, remoteHost } from './inbound-failures.ts'
import type { AuthenticatePort } from '../synapse/types.ts'

/** Default guest limits: per remote host (IPv4 address, IPv6 /64) and in all. */
export const GUEST_CONNECTIONS = { perHost: 32, total: 256 } as const
/** Connections libp2p admits beyond the guest budget: room that only members can take. */
export const MEMBER_RESERVE = 128

/** Why a guest connection was closed. */
export type GuestRefusal = 'TooManyGuestsFromHost' | 'TooManyGuests'

/** A guest connection closed to keep the per-host or total guest budget. */
export class GuestConnectionsError extends CellError {
  static override readonly errorName = 'GuestConnectionsError'
  readonly reason: GuestRefusal
  constructor (reason: GuestRefusal, message: string) {
    super(message)
    this.reason = reason
  }
}

export interface GuestLimits {
  perHost: number
  total: number
}

export interface GuestAdmissionInit {
  libp2p: Pick<Libp2p, 'getConnections' | 'addEventListener' | 'removeEventListener'>
  /** Whether a peer is a fleet member (never counted, never closed). Read at every decision. */
  isMember: (peerId: string) => boolean
  limits?: Partial<GuestLimits>
  /** Told each guest connection closed, with the host it came from. */
  onClosed?: (reason: GuestRefusal, host: string, peerId: string) => void
  /** The clock vouches expire on (ms); default Date.now. */
  now?: () => number
}

/**
 * The host key of a remote address: the IPv4 address, the first 64 bits of an IPv6 address (one
 * subscriber's prefix), a DNS name as it is; for a relayed connection, the relay's host. Undefined
 * when the address names no host (memory transports in tests).
 */
export function guestHost (conn: Pick<Connection, 'remoteAddr'>): string | undefined {
  const host = remoteHost(conn)
  return host === undefined ? undefined : hostKey(host)
}

/**
 * The synapse server's caller check, telling `vouch` of each caller it admitted under a trusted
 * authority's grant (a public cell's anonymous caller, authority '', is not vouched for).
 */
export function vouchingCallers (authenticate: AuthenticatePort, vouch: (peerId: string, untilMs: number | undefined) => void): AuthenticatePort {
  return async (req, options) => {
    const principal = await authenticate(req, options)
    if (principal.authority !== '') {
      try { vouch(principal.peerId, principal.expiresMs) } catch {}
    }
    return principal
  }
}

/** Callers remembered as vouched for (oldest forgotten first past this). */
export const MAX_VOUCHED_CALLERS = 4096

/** What GuestAdmission holds now: open guest connections, anonymous and vouched for; peers vouched for; connections it closed. */
export interface GuestStats {
  anonymous: number
  vouched: number
  vouchedPeers: number
  closed: number
  /** The limits in force. */
  limits: GuestLimits
}

/** Guest connections by host, oldest first within each host: anonymous ones and vouched callers'. */
export interface GuestCensus {
  anonymous: Map<string, Connection[]>
  vouched: Map<string, Connection[]>
}

/** Connections in a census map. */
function connections (byHost: Map<string, Connection[]>): number {
  let n = 0
  for (const list of byHost.values()) n += list.length
  return n
}

/** Keeps guest connections within GuestLimits by closing the newest of a full host or the oldest of the fullest host. */
export class GuestAdmission {
  readonly limits: GuestLimits
  private readonly onOpen = (evt: CustomEvent<Connection>): void => { this.admit(evt.detail) }
  private closedCount = 0
  private readonly init: GuestAdmissionInit
  /** Peer id → until when (ms) a trusted authority's caller grant vouches for it. */
  private readonly vouchedUntil = new Map<string, number>()

  constructor (init: GuestAdmissionInit) {
    this.init = init
    this.limits = positiveLimits('guest connection', { ...GUEST_CONNECTIONS, ...init.limits })
  }

  start (): void { this.init.libp2p.addEventListener('connection:open', this.onOpen) }
  stop (): void { this.init.libp2p.removeEventListener('connection:open', this.onOpen) }

  /**
   * A peer proved a grant from an authority this node trusts (a synapse handshake, a fleet-sync or
   * artifact request), valid until `untilMs` (on init.now's clock; undefined: the grant's end is
   * unknown, an hour). Its guest connections pass the per-host limit and are closed to make room
   * only when no anonymous guest is left to close.
   */
  vouch (peerId: string, untilMs: number | undefined): void {
    const now = this.now()
    this.vouchedUntil.delete(peerId)
    if (this.vouchedUntil.size >= MAX_VOUCHED_CALLERS) {
      for (const [id, until] of this.vouchedUntil) if (until <= now) this.vouchedUntil.delete(id)
      if (this.vouchedUntil.size >= MAX_VOUCHED_CALLERS) this.vouchedUntil.delete(this.vouchedUntil.keys().next().value!)
    }
    this.vouchedUntil.set(peerId, untilMs ?? now + 3_600_000)
  }

  /** Whether a vouch for `peerId` holds now. */
  isVouched (peerId: string): boolean {
    const until = this.vouchedUntil.get(peerId)
    if (until === undefined) return false
    if (until > this.now()) return true
    this.vouchedUntil.delete(peerId)
    return false
  }

  /** Open guest connections, peers vouched for (expired ones go when next read or when room is needed), connections closed, limits. */
  stats (): GuestStats {
    const { anonymous, vouched } = this.census()
    return { anonymous: connections(anonymous), vouched: connections(vouched), vouchedPeers: this.vouchedUntil.size, closed: this.closedCount, limits: { ...this.limits } }
  }

  /** Open inbound guest connections by host, anonymous and vouched apart. */
  census (): GuestCensus {
    const anonymous = new Map<string, Connection[]>()
    const vouched = new Map<string, Connection[]>()
    for (const c of this.init.libp2p.getConnections()) {
      if (c.direction !== 'inbound' || c.status !== 'open') continue
      const peer = c.remotePeer.toString()
      if (this.init.isMember(peer)) continue
      const host = guestHost(c)
      if (host === undefined) continue
      const into = this.isVouched(peer) ? vouched : anonymous
      const list = into.get(host)
      if (list === undefined) into.set(host, [c])
      else list.push(c)
    }
    for (const m of [anonymous, vouched]) for (const list of m.values()) list.sort((a, b) => a.timeline.open - b.timeline.open)
    return { anonymous, vouched }
  }

  /** Decides on a connection that just opened; also what the 'connection:open' listener calls. */
  admit (conn: Connection): void {
    const peer = conn.remotePeer.toString()
    if (conn.direction !== 'inbound' || this.init.isMember(peer)) return
    const host = guestHost(conn)
    if (host === undefined) return
    const { anonymous, vouched } = this.census()
    const vouchedPeer = this.isVouched(peer)
    // Counted whether or not libp2p's connection manager saw the event first and lists it already.
    const own = vouchedPeer ? vouched : anonymous
    const mine = own.get(host)
    if (mine === undefined) own.set(host, [conn])
    else if (!mine.includes(conn)) mine.push(conn)
    if (!vouchedPeer && (anonymous.get(host)?.length ?? 0) > this.limits.perHost) {
      this.close(conn, host, 'TooManyGuestsFromHost', `host ${host} already holds ${this.limits.perHost} guest connections (not fleet members)`)
      return
    }
    if (connections(anonymous) + connections(vouched) <= this.limits.total) return
    // Anonymous guests make room first; callers vouched for only when none is left.
    const pool = anonymous.size > 0 ? anonymous : vouched
    let fullest: [string, Connection[]] | undefined
    for (const entry of pool) if (fullest === undefined || entry[1].length > fullest[1].length) fullest = entry
    if (fullest === undefined) return
    this.close(fullest[1][0], fullest[0], 'TooManyGuests', `guest connections past ${this.limits.total}: the oldest of host ${fullest[0]}, which holds the most (${fullest[1].length}), is closed`)
  }

  private now (): number { return this.init.now?.() ?? Date.now() }

  private close (conn: Connection, host: string, reason: GuestRefusal, message: string): void {
    this.closedCount++
    conn.abort(new GuestConnectionsError(reason, message))
    try { this.init.onClosed?.(reason, host, conn.remotePeer.toString()) } catch {}
  }
}
