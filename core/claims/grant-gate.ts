// Who may propose to or vote on a claim: a peer holding a valid HOST grant, covering the claim's
// cell, from one of the cell's authorities (the authorities that claim the cell: its own plus the
// ones its releases name). A voter checks the proposer's chain on every request; a proposer checks
// each voter's chain on every answer, so a stranger can neither mint an epoch nor cast a vote.
// Verified chains are cached (by exact bytes) until they expire, so the signatures are checked once.
import { logger } from '@libp2p/logger'
import { systemClock, type Clock } from '../ports.ts'
import { verifyChain, MalformedRecordError, TrustError, TruncatedChainError, UnknownAuthorityError } from '../identity/index.ts'
import type { GrantCredentialsPort } from '../fleet/peer-grant.ts'

const log = logger('cell:claims:grant')
const MAX_CACHE = 1024
/** A verified chain is checked again after this long even if it is valid for longer (revocation by trust set). */
const RECHECK_MS = 60_000

export interface ClaimGrantGate {
  /** This node's chain to present for `cell` (empty when it holds no usable grant). */
  chain: (cell: string) => Uint8Array
  /** Throws a TrustError subclass or MalformedRecordError unless `chain` admits `peerId` as a host of `cell`. */
  check: (chain: Uint8Array, peerId: string, cell: string, options?: { signal?: AbortSignal }) => Promise<void>
}

export interface HostGrantGateInit {
  /** The authorities of `cell` this node trusts (read on every check, so it may change live). */
  authoritiesOf: (cell: string) => ReadonlySet<string>
  /** This node's grants; `currentChain(authority)` throws when none is usable. */
  credentials?: GrantCredentialsPort
  clock?: Clock
  skewMs?: number
}

export interface ClaimGrantStats { admitted: number, refused: number }

export class HostGrantGate implements ClaimGrantGate {
  private readonly init: HostGrantGateInit
  private readonly clock: Clock
  private readonly cache = new Map<string, { chain: Uint8Array, untilMs: number }>()
  private readonly counters: ClaimGrantStats = { admitted: 0, refused: 0 }

  constructor (init: HostGrantGateInit) {
    this.init = init
    this.clock = init.clock ?? systemClock
  }

  stats (): ClaimGrantStats {
    return { ...this.counters }
  }

  chain (cell: string): Uint8Array {
    const creds = this.init.credentials
    if (creds == null) return new Uint8Array(0)
    const wanted = this.init.authoritiesOf(cell)
    for (const authority of creds.authorities()) {
      if (!wanted.has(authority)) continue
      try {
        return creds.currentChain(authority)
      } catch (err) {
        log('no chain under %s: %s', authority, (err as Error).name)
      }
    }
    return new Uint8Array(0)
  }

  async check (chain: Uint8Array, peerId: string, cell: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted()
    const nowMs = this.clock.now()
    const trusted = this.init.authoritiesOf(cell)
    const key = `${peerId}|${cell}`
    const known = this.cache.get(key)
    if (known !== undefined && known.untilMs > nowMs && equalBytes(known.chain, chain)) {
      this.counters.admitted++
      return
    }
    try {
      if (chain.length === 0) throw new TruncatedChainError('no grant presented')
      if (trusted.size === 0) throw new UnknownAuthorityError(`no trusted authority claims cell ${cell}`)
      const verified = await verifyChain(chain, { remotePeerId: peerId, trusted, requiredRole: 'host', cell, nowMs, skewMs: this.init.skewMs, signal: options.signal })
      if (this.cache.size >= MAX_CACHE) this.cache.delete(this.cache.keys().next().value as string)
      this.cache.set(key, { chain: chain.slice(), untilMs: Math.min(verified.notAfterMs, nowMs + RECHECK_MS) })
      this.counters.admitted++
    } catch (err) {
      if (err instanceof TrustError || err instanceof MalformedRecordError) {
        this.counters.refused++
        log('refused %s for %s: %s', peerId, cell, (err as Error).name)
      }
      throw err
    }
  }
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
