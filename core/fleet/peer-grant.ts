// The grant gate of protocols that hand mesh data to whoever asks (`/cell/fleet-sync/1`,
// `/cell/artifact/1`): a requester puts its credential chain in the request; the server verifies
// it against the authorities it trusts before serving a byte. Any role (host, caller, operator)
// will do: the point is membership of a trusted fleet, not a particular permission. A refusal
// travels as a one-byte code so the requester can throw the same named error the server saw.
import { logger } from '@libp2p/logger'
import { systemClock, type Clock } from '../ports.ts'
import {
  decodeChain, verifyCertificates, MAX_CHAIN_BYTES, TrustError, MalformedRecordError, UnknownAuthorityError,
  BadSignatureError, CertificateExpiredError, CertificateNotYetValidError, WrongSubjectError, TruncatedChainError,
  WrongRoleError, WrongCellScopeError, type VerifiedChain, type Role
} from '../identity/index.ts'

const log = logger('cell:fleet:grant')

/** Largest chain a request may carry (core/identity's own chain limit). */
export const MAX_REQUEST_CHAIN_BYTES = MAX_CHAIN_BYTES

/** The slice of core/identity's Credentials the gate presents from. */
export interface GrantCredentialsPort {
  authorities: () => string[]
  currentChain: (authorityId: string) => Uint8Array
}

export interface PeerGrantGateInit {
  /** Authority ids whose grants admit a requester. Read on every check, so it may change live. */
  trusted: ReadonlySet<string>
  /** This node's own grants, presented when it is the requester. */
  credentials?: GrantCredentialsPort
  clock?: Clock
  skewMs?: number
  /** Told each requester admitted, with the chain as verified (the mesh vouches for its connections). */
  onAdmitted?: (remotePeerId: string, verified: VerifiedChain) => void
}

export interface PeerGrantStats { admitted: number, refused: number }

/** Refusal codes on the wire, in both protocols. 0 is reserved; unknown codes decode to TrustError. */
const REFUSALS: Array<[number, new (message: string, options?: { cause?: unknown }) => Error]> = [
  [1, TruncatedChainError],
  [2, UnknownAuthorityError],
  [3, CertificateExpiredError],
  [4, CertificateNotYetValidError],
  [5, WrongSubjectError],
  [6, BadSignatureError],
  [7, WrongRoleError],
  [8, WrongCellScopeError],
  [9, MalformedRecordError]
]

/** The wire code of a refusal (match by class, most specific first). */
export function refusalCode (err: unknown): number {
  for (const [code, cls] of REFUSALS) if (err instanceof cls) return code
  return 0xff
}

/** The named error a requester throws for a refusal code it received from `peer`. */
export function refusalError (code: number, what: string): Error {
  const cls = REFUSALS.find(([c]) => c === code)?.[1] ?? TrustError
  return new cls(`${what} refused this peer's grant (${cls.name})`)
}

/** Is `err` a trust decision (as opposed to an abort or a bug)? */
export function isRefusal (err: unknown): boolean {
  return err instanceof TrustError || err instanceof MalformedRecordError
}

export class PeerGrantGate {
  private readonly trusted: ReadonlySet<string>
  private readonly credentials: GrantCredentialsPort | undefined
  private readonly clock: Clock
  private readonly skewMs: number | undefined
  private readonly onAdmitted: PeerGrantGateInit['onAdmitted']
  private readonly counters: PeerGrantStats = { admitted: 0, refused: 0 }

  constructor (init: PeerGrantGateInit) {
    this.trusted = init.trusted
    this.credentials = init.credentials
    this.clock = init.clock ?? systemClock
    this.skewMs = init.skewMs
    this.onAdmitted = init.onAdmitted
  }

  stats (): PeerGrantStats {
    return { ...this.counters }
  }

  /**
   * The chain to present: the grant of `preferred` if held, else one from an authority this node
   * trusts itself (fleets share their trust), else any; empty when none is usable yet.
   */
  chain (preferred?: string): Uint8Array {
    const creds = this.credentials
    if (creds == null) return new Uint8Array(0)
    const held = creds.authorities()
    const order = [
      ...(preferred != null && held.includes(preferred) ? [preferred] : []),
      ...held.filter(a => a !== preferred && this.trusted.has(a)),
      ...held.filter(a => a !== preferred && !this.trusted.has(a))
    ]
    for (const authority of order) {
      try {
        return creds.currentChain(authority)
      } catch (err) {
        // No current session under this authority yet (renewal started) or the grant expired.
        log('no chain under %s: %s', authority, (err as Error).name)
      }
    }
    return new Uint8Array(0)
  }

  /**
   * Admits `remotePeerId` if `chainBytes` chains it to a trusted authority under any one role that
   * every link carries; throws a TrustError subclass or MalformedRecordError otherwise (counted).
   */
  async check (chainBytes: Uint8Array, remotePeerId: string, options: { signal?: AbortSignal } = {}): Promise<VerifiedChain> {
    options.signal?.throwIfAborted()
    try {
      if (chainBytes.length === 0) throw new TruncatedChainError('no grant presented')
      if (chainBytes.length > MAX_REQUEST_CHAIN_BYTES) throw new MalformedRecordError(`chain exceeds ${MAX_REQUEST_CHAIN_BYTES} bytes`)
      const links = decodeChain(chainBytes)
      // "Any role": verifyCertificates wants one role on every link; the first role all links share will do.
      let shared: Role[] = links[0]?.roles ?? []
      for (const link of links) shared = shared.filter(r => link.roles.includes(r))
      if (links.length > 0 && shared.length === 0) throw new WrongRoleError('no role is carried by every link of the chain')
      const verified = await verifyCertificates(links, {
        remotePeerId,
        trusted: this.trusted,
        requiredRole: shared[0] ?? 'caller',
        nowMs: this.clock.now(),
        skewMs: this.skewMs,
        signal: options.signal
      })
      this.counters.admitted++
      try { this.onAdmitted?.(remotePeerId, verified) } catch {}
      return verified
    } catch (err) {
      if (isRefusal(err)) {
        this.counters.refused++
        log('refused %s: %s: %s', remotePeerId, (err as Error).name, (err as Error).message)
      }
      throw err
    }
  }
}
