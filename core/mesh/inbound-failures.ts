// Inbound connections before they are libp2p connections. Two jobs, both by wrapping each
// transport's listener's upgrader:
//
// 1. Failures are reported. Inbound connections that fail to become libp2p connections (random bytes,
//    a half multistream or Noise handshake, a stalled upgrade) are thrown away inside the transports'
//    listeners with nothing but a debug log. Hosts that want to count them (node-host's
//    cell_listener_garbage_total) hand MeshInit.onInboundFailure: every failed inbound upgrade is
//    reported with the transport's name, then rethrown so libp2p handles it as before.
// 2. One remote host holds at most a few upgrades in progress. libp2p admits 10 inbound upgrades in
//    progress in all (maxIncomingPendingConnections) and 5 new connections per host per second, and an
//    upgrade may take 10 s before it times out. So one host that opened a silent TCP connection every
//    quarter second, under the rate limit, held every slot for good, and the node refused every
//    other peer's inbound connection (measured: 10 of 10 honest dials refused). Now a host past
//    `perHost` upgrades in progress is refused at once (InboundUpgradeSlotsError) and the guard keeps
//    64 in all (the mesh sets libp2p's own cap a little above, so the guard decides), so it takes 8
//    hosts, not one, to fill the slots.
// 3. A slot held by a stalled upgrade goes to a newer connection. Eight hosts (eight IPv6 /64s)
//    holding 8 silent connections each still filled all 64 for the 10 s of the upgrade timeout, and
//    refreshed them. Now a connection refused for a full host or total aborts the oldest upgrade in
//    progress there that is older than `staleMs` (3 s; an honest upgrade takes a few round trips)
//    and takes its slot (the aborted one is reported as InboundUpgradeEvictedError): to keep
//    everyone out, a flood must now refill all 64 slots every 3 s.
import type { CreateListenerOptions, Listener, MultiaddrConnection, Transport, Upgrader } from '@libp2p/interface'
import { CellError } from '../errors.ts'

/** Told the transport (its tag without the npm scope: `tcp`, `websockets`, `webrtc-direct`, …) and the error of each failed inbound upgrade. */
export type InboundFailureHook = (transport: string, err: unknown) => void

/** Default cap on inbound upgrades in progress from one remote host (honest peers: 0–2 at a time). */
export const INBOUND_UPGRADES_PER_HOST = 8
/** Inbound upgrades in progress in all, as the guard keeps them (libp2p's own default is 10). */
export const INBOUND_UPGRADES_TOTAL = 64
/** What the mesh adds to INBOUND_UPGRADES_TOTAL for libp2p's own cap: the guard gives a slot back slightly before libp2p counts the upgrade done. */
export const LIBP2P_PENDING_HEADROOM = 16

/** An inbound connection refused because its host already has `perHost` upgrades in progress. */
export class InboundUpgradeSlotsError extends CellError {
  static override readonly errorName = 'InboundUpgradeSlotsError'
}

/** An inbound upgrade aborted after `staleMs` in progress: its slot went to a newer connection. */
export class InboundUpgradeEvictedError extends CellError {
  static override readonly errorName = 'InboundUpgradeEvictedError'
}

/** Default age past which an upgrade in progress gives its slot to a new connection refused for a full host or total. */
export const INBOUND_UPGRADE_STALE_MS = 3_000

export interface InboundGuardInit {
  onFailure?: InboundFailureHook
  /** Upgrades in progress one remote host may hold (default INBOUND_UPGRADES_PER_HOST). */
  perHost?: number
  /** Upgrades in progress in all (default INBOUND_UPGRADES_TOTAL; libp2p's own cap must be at least this). */
  total?: number
  /** Age past which an upgrade in progress gives its slot to a new connection refused for a full host or total (default INBOUND_UPGRADE_STALE_MS). */
  staleMs?: number
}

type TransportFactory = (components: unknown) => Transport

function transportName (t: Transport): string {
  const tag = (t as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag]
  return typeof tag === 'string' ? tag.replace(/^@[^/]+\//, '') : 'unknown'
}

/** The remote host of an inbound connection (its IP or DNS name), or undefined when its address names none. */
export function remoteHost (maConn: Pick<MultiaddrConnection, 'remoteAddr'>): string | undefined {
  try {
    const first = maConn.remoteAddr.getComponents()[0]
    return first !== undefined && /^(ip4|ip6|dns|dns4|dns6)$/.test(first.name) ? first.value : undefined
  } catch {
    return undefined
  }
}

/**
 * The key a remote host is counted under: an IPv4 address as it is, an IPv6 address by its first 64
 * bits (one subscriber holds a whole /64, so counting single addresses would give it 2^64 shares),
 * an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) as its
 * IPv4 address; anything else (a DNS name) as it is.
 */
export function hostKey (host: string): string {
  if (!host.includes(':')) return host
  const bare = host.split('%')[0].toLowerCase()
  const mapped = bare.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/)
  if (mapped !== null) return mapped[1]
  if (bare.includes('.')) return bare
  const [head, tail] = bare.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t]
  return `${groups.slice(0, 4).map(g => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/** Why InboundSlots refused a slot: the host holds its share, or all hosts together hold the total. */
export type SlotRefusal = 'TooManyPendingFromHost' | 'TooManyPending'

/**
 * Connections in progress per remote host (`hostKey`: an IPv6 /64 is one host), and in all when
 * `total` is given: the upgrader wrapper below shares one between every listener of a node (a host
 * may use TCP and WebSockets); the node's WebSockets and WebRTC-direct listeners keep their own for
 * what comes before the upgrade.
 */
export class InboundSlots {
  private readonly byHost = new Map<string, number>()
  private used = 0
  readonly perHost: number
  readonly total: number
  constructor (perHost: number = INBOUND_UPGRADES_PER_HOST, total: number = Number.POSITIVE_INFINITY) {
    if (!Number.isInteger(perHost) || perHost < 1) throw new RangeError(`inbound upgrades per host must be a positive integer, not ${perHost}`)
    if (total !== Number.POSITIVE_INFINITY && (!Number.isInteger(total) || total < 1)) throw new RangeError(`inbound connections in progress in all must be a positive integer, not ${total}`)
    this.perHost = perHost
    this.total = total
  }

  /** Takes a slot for `host` and returns undefined, or returns why not. The map holds only hosts with a slot taken. */
  tryTake (host: string): SlotRefusal | undefined {
    host = hostKey(host)
    const n = this.byHost.get(host) ?? 0
    if (n >= this.perHost) return 'TooManyPendingFromHost'
    if (this.used >= this.total) return 'TooManyPending'
    this.byHost.set(host, n + 1)
    this.used++
    return undefined
  }

  /** Takes a slot for `host`, or throws InboundUpgradeSlotsError. */
  take (host: string): void {
    const refused = this.tryTake(host)
    if (refused !== undefined) throw new InboundUpgradeSlotsError(this.explain(refused, host, 'inbound connections being upgraded'))
  }

  /** Why `host` was refused, in words; `what` names the connections counted (e.g. "inbound connections being upgraded"). */
  explain (refused: SlotRefusal, host: string, what: string): string {
    return refused === 'TooManyPendingFromHost'
      ? `${hostKey(host)} already has ${this.inUse(host)} ${what} (at most ${this.perHost} per host)`
      : `${this.used} ${what} (at most ${this.total} in all)`
  }

  give (host: string): void {
    host = hostKey(host)
    const n = this.byHost.get(host)
    if (n === undefined) return
    if (n <= 1) this.byHost.delete(host); else this.byHost.set(host, n - 1)
    this.used--
  }

  inUse (host?: string): number {
    return host !== undefined ? this.byHost.get(hostKey(host)) ?? 0 : this.used
  }
}

/**
 * The oldest entry of `inProgress` (oldest first, as a Map keeps insertion order) that started at
 * least `staleMs` before `nowMs`, belongs to `host` when one is given (same hostKey), and passes
 * `eligible`; undefined when none does. The listeners' guards give its slot to a newer connection.
 */
export function oldestStale<K, E extends { host: string, startedMs: number }> (inProgress: Map<K, E>, host: string | undefined, staleMs: number, nowMs: number, eligible?: (key: K, entry: E) => boolean): [K, E] | undefined {
  const key = host === undefined ? undefined : hostKey(host)
  for (const entry of inProgress) {
    if (nowMs - entry[1].startedMs < staleMs) return undefined // the rest are younger
    if (key !== undefined && hostKey(entry[1].host) !== key) continue
    if (eligible !== undefined && !eligible(entry[0], entry[1])) continue
    return entry
  }
  return undefined
}

interface UpgradeInProgress {
  host: string
  startedMs: number
  /** Its slot went to a newer connection: its end gives none back and reports InboundUpgradeEvictedError. */
  evicted: boolean
}

function guardedUpgrader (upgrader: Upgrader, name: string, slots: InboundSlots, inProgress: Map<MultiaddrConnection, UpgradeInProgress>, staleMs: number, onFailure: InboundFailureHook | undefined): Upgrader {
  const inbound = upgrader.upgradeInbound.bind(upgrader) as (maConn: MultiaddrConnection, ...rest: unknown[]) => Promise<void>
  /** Aborts the oldest upgrade in progress (of `host`, or of any host) older than staleMs; whether there was one. */
  const evictStale = (host: string | undefined): boolean => {
    const now = Date.now()
    const stale = oldestStale(inProgress, host, staleMs, now)
    if (stale === undefined) return false
    const [maConn, e] = stale
    e.evicted = true
    inProgress.delete(maConn)
    slots.give(e.host)
    maConn.abort(new InboundUpgradeEvictedError(`${e.host}: an upgrade in progress for ${now - e.startedMs} ms, aborted for a newer connection`))
    return true
  }
  return {
    upgradeInbound: (async (maConn: MultiaddrConnection, ...rest: unknown[]) => {
      const host = remoteHost(maConn)
      let entry: UpgradeInProgress | undefined
      try {
        if (host !== undefined) {
          let refused = slots.tryTake(host)
          if (refused !== undefined && evictStale(refused === 'TooManyPendingFromHost' ? host : undefined)) refused = slots.tryTake(host)
          if (refused !== undefined) throw new InboundUpgradeSlotsError(slots.explain(refused, host, 'inbound connections being upgraded'))
          entry = { host, startedMs: Date.now(), evicted: false }
          inProgress.set(maConn, entry)
        }
        try {
          await inbound(maConn, ...rest)
        } finally {
          if (entry !== undefined && !entry.evicted) {
            inProgress.delete(maConn)
            slots.give(entry.host)
          }
        }
      } catch (err) {
        const reported = entry?.evicted === true ? new InboundUpgradeEvictedError(`${entry.host}: an upgrade in progress for more than ${staleMs} ms, aborted for a newer connection`, { cause: err }) : err
        // A throwing hook must not change how libp2p sees the failure.
        try { onFailure?.(name, reported) } catch {}
        throw err
      }
    }) as Upgrader['upgradeInbound'],
    upgradeOutbound: upgrader.upgradeOutbound.bind(upgrader),
    createInboundAbortSignal: upgrader.createInboundAbortSignal.bind(upgrader),
    getStreamMuxers: upgrader.getStreamMuxers.bind(upgrader),
    getConnectionEncrypters: upgrader.getConnectionEncrypters.bind(upgrader)
  }
}

/**
 * `factory` with each listener it creates made by `wrap`, which gets the listener's options, the
 * transport's own createListener and the transport (the wrappers here and in node-host bound or
 * watch what a listener accepts).
 */
export function wrapListeners<T> (factory: T, wrap: (options: CreateListenerOptions, create: (options: CreateListenerOptions) => Listener, transport: Transport) => Listener): T {
  return ((components: unknown) => {
    const transport = (factory as TransportFactory)(components)
    const create = transport.createListener.bind(transport)
    transport.createListener = (options: CreateListenerOptions) => wrap(options, create, transport)
    return transport
  }) as T
}

/** `limits` if each is a positive integer, else a RangeError naming `what` and the limit. */
export function positiveLimits<L extends Record<string, number>> (what: string, limits: L): L {
  for (const [k, v] of Object.entries(limits)) if (!Number.isInteger(v) || v < 1) throw new RangeError(`${what} limit ${k} must be a positive integer, not ${v}`)
  return limits
}

/**
 * The same transport factories, whose listeners cap inbound upgrades in progress per remote host
 * (one InboundSlots shared by all of them) and report failed inbound upgrades to `onFailure`.
 */
export function guardInbound<T> (factories: T[], init: InboundGuardInit = {}): T[] {
  const slots = new InboundSlots(init.perHost, init.total ?? INBOUND_UPGRADES_TOTAL)
  const staleMs = init.staleMs ?? INBOUND_UPGRADE_STALE_MS
  if (!Number.isFinite(staleMs) || staleMs <= 0) throw new RangeError(`inbound upgrade staleMs must be a positive number, not ${staleMs}`)
  /** Upgrades in progress on every listener of the node, oldest first. */
  const inProgress = new Map<MultiaddrConnection, UpgradeInProgress>()
  return factories.map(factory => wrapListeners(factory, (options, create, transport) =>
    create({ ...options, upgrader: guardedUpgrader(options.upgrader, transportName(transport), slots, inProgress, staleMs, init.onFailure) })))
}
