// Who may read a node's insides (`cell logs`, `cell status`): a peer whose credential chain roots at
// an authority this node trusts, carries the operator role on every link, and — for a cell — comes
// from an authority that claims that cell (a release, a desired record, or a release this node
// holds). A caller-only grant, a stranger, an expired grant or one from another authority is
// refused with NotAuthorizedError, whose message names the underlying trust decision.
import {
  decodeChain, verifyCertificates, TrustError, MalformedRecordError, WrongRoleError,
  type VerifiedChain
} from '../../core/identity/index.ts'
import { MAX_REQUEST_CHAIN_BYTES } from '../../core/fleet/peer-grant.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import type { RetryRule } from '../../core/errors.ts'

/** The requester may not read this: operator role from an authority that claims the cell required. */
export class NotAuthorizedError extends TrustError {
  static override readonly errorName = 'NotAuthorizedError'
  static override readonly retry: RetryRule = 'never'
}

export interface OperatorGateInit {
  /** Authorities this node trusts (read on every check). */
  trusted: ReadonlySet<string>
  /** Authorities that claim `cell` here (fleet view claimants and the release store's). */
  claimants: (cell: string) => string[]
  clock?: Clock
  skewMs?: number
}

export class OperatorGate {
  private readonly init: OperatorGateInit
  readonly stats = { admitted: 0, refused: 0 }

  constructor (init: OperatorGateInit) {
    this.init = init
  }

  /**
   * Admits `remotePeerId` as an operator (of `cell` when given) or throws NotAuthorizedError. A cell
   * no authority claims here is admitted: the node holds nothing of it to show.
   */
  async check (chainBytes: Uint8Array, remotePeerId: string, cell?: string, options: { signal?: AbortSignal } = {}): Promise<VerifiedChain> {
    try {
      if (chainBytes.length === 0) throw new NotAuthorizedError('no grant presented: the operator role is required')
      if (chainBytes.length > MAX_REQUEST_CHAIN_BYTES) throw new NotAuthorizedError(`a chain of ${chainBytes.length} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
      let verified: VerifiedChain
      try {
        verified = await verifyCertificates(decodeChain(chainBytes), {
          remotePeerId,
          trusted: this.init.trusted,
          requiredRole: 'operator',
          ...(cell !== undefined ? { cell } : {}),
          nowMs: (this.init.clock ?? systemClock).now(),
          skewMs: this.init.skewMs,
          signal: options.signal
        })
      } catch (err) {
        if (err instanceof WrongRoleError) throw new NotAuthorizedError(`the operator role is required (${err.message})`, { cause: err })
        if (err instanceof TrustError || err instanceof MalformedRecordError) throw new NotAuthorizedError(`${err.name}: ${err.message}`, { cause: err })
        throw err
      }
      if (cell !== undefined) {
        const claimants = this.init.claimants(cell)
        if (claimants.length > 0 && !claimants.includes(verified.authority)) {
          throw new NotAuthorizedError(`authority ${verified.authority.slice(0, 12)}… does not claim cell "${cell}" (claimed by ${claimants.map(a => a.slice(0, 12) + '…').join(', ')})`)
        }
      }
      this.stats.admitted++
      return verified
    } catch (err) {
      if (err instanceof NotAuthorizedError) this.stats.refused++
      throw err
    }
  }
}
