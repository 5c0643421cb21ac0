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
// Membership is read at each decision, not remembered: a node that connected before its record
// arrived stops counting as a guest as soon as the view holds it.
import type { Connection, Libp2p } from '@libp2p/interface'
import { CellError } from '../errors.ts'
import { positiveLimits } from './inbound-failures.ts'

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
}

/**
 * The host key of a remote address: the IPv4 address, the first 64 bits of an IPv6 address (one
 * subscriber's prefix), a DNS name as it is; for a relayed connection, the relay's host. Undefined
 * when the address names no host (memory transports in tests).
 */
export function guestHost (conn: Pick<Connection, 'remoteAddr'>): string | undefined {
  let first: { name: string, value?: string } | undefined
  try { first = conn.remoteAddr.getComponents()[0] } catch { return undefined }
  if (first?.value === undefined) return undefined
  if (first.name === 'ip6') return ipv6Prefix64(first.value)
  return /^(ip4|dns|dns4|dns6)$/.test(first.name) ? first.value : undefined
}

function ipv6Prefix64 (addr: string): string {
  const bare = addr.split('%')[0].toLowerCase()
  if (bare.includes('.')) return bare // IPv4-mapped (::ffff:a.b.c.d): the IPv4 address names the host.
  const [head, tail] = bare.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t]
  return `${groups.slice(0, 4).map(g => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/** Keeps guest connections within GuestLimits by closing the newest of a full host or the oldest of the fullest host. */
export class GuestAdmission {
  readonly limits: GuestLimits
  private readonly onOpen = (evt: CustomEvent<Connection>): void => { this.admit(evt.detail) }
  private closedCount = 0
  private readonly init: GuestAdmissionInit

  constructor (init: GuestAdmissionInit) {
    this.init = init
    this.limits = positiveLimits('guest connection', { ...GUEST_CONNECTIONS, ...init.limits })
  }

  start (): void { this.init.libp2p.addEventListener('connection:open', this.onOpen) }
  stop (): void { this.init.libp2p.removeEventListener('connection:open', this.onOpen) }

  /** Guest connections closed so far. */
  get closed (): number { return this.closedCount }

  /** Open inbound guest connections by host, oldest first within each host. */
  guests (): Map<string, Connection[]> {
    const byHost = new Map<string, Connection[]>()
    for (const c of this.init.libp2p.getConnections()) {
      if (c.direction !== 'inbound' || c.status !== 'open' || this.init.isMember(c.remotePeer.toString())) continue
      const host = guestHost(c)
      if (host === undefined) continue
      const list = byHost.get(host)
      if (list === undefined) byHost.set(host, [c])
      else list.push(c)
    }
    for (const list of byHost.values()) list.sort((a, b) => a.timeline.open - b.timeline.open)
    return byHost
  }

  /** Decides on a connection that just opened; also what the 'connection:open' listener calls. */
  admit (conn: Connection): void {
    if (conn.direction !== 'inbound' || this.init.isMember(conn.remotePeer.toString())) return
    const host = guestHost(conn)
    if (host === undefined) return
    const byHost = this.guests()
    const mine = byHost.get(host) ?? []
    if (mine.length > this.limits.perHost) {
      this.close(conn, host, 'TooManyGuestsFromHost', `host ${host} already holds ${this.limits.perHost} guest connections (not fleet members)`)
      return
    }
    let total = 0
    for (const list of byHost.values()) total += list.length
    if (total <= this.limits.total) return
    let fullest: [string, Connection[]] | undefined
    for (const entry of byHost) if (fullest === undefined || entry[1].length > fullest[1].length) fullest = entry
    if (fullest === undefined) return
    this.close(fullest[1][0], fullest[0], 'TooManyGuests', `guest connections past ${this.limits.total}: the oldest of host ${fullest[0]}, which holds the most (${fullest[1].length}), is closed`)
  }

  private close (conn: Connection, host: string, reason: GuestRefusal, message: string): void {
    this.closedCount++
    conn.abort(new GuestConnectionsError(reason, message))
    try { this.init.onClosed?.(reason, host, conn.remotePeer.toString()) } catch {}
  }
}
