// What a node presents in a synapse handshake: for each authority that granted it, the chain
// [grant, session]. The node signs its own short session certs with its libp2p key and renews
// them lazily once past half-life, so the expensive part (a signature) happens at most once per
// half-lifetime per authority, not per handshake.
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { systemClock, type Clock } from '../ports.ts'
import type { SignalOptions } from './authority.ts'
import { issueSession, type Certificate } from './certificate.ts'
import { encodeChain } from './chain.ts'
import { CertificateExpiredError, MalformedRecordError, NoGrantError, WrongSubjectError } from './errors.ts'
import { needsRenewal, renewAtMs } from './renewal.ts'

const log = logger('cell:identity:credentials')

export interface CredentialsInit {
  /** The node's libp2p ed25519 key: the subject of its grants. */
  peerKey: Ed25519PrivateKey
  clock?: Clock
  /** Session certificate lifetime; default 10 minutes. */
  sessionLifetimeMs?: number
  /** Present [grant, session] (default) or the bare [grant]. */
  sessions?: boolean
  /** Most authorities whose grants are held; default 16. */
  maxAuthorities?: number
  /** After a failed proactive renewal, retry after this long; default 5 s. */
  retryMs?: number
}

interface Held {
  grant: Certificate
  session?: Certificate
  chain?: Uint8Array
  /** The chain was issued under an earlier grant of this authority: present it, but renew now. */
  stale?: boolean
  pending?: Promise<Uint8Array>
}

export class Credentials {
  readonly peerId: string
  private readonly peerKey: Ed25519PrivateKey
  private readonly clock: Clock
  private readonly sessionLifetimeMs: number
  private readonly sessions: boolean
  private readonly maxAuthorities: number
  private readonly retryMs: number
  private readonly held = new Map<string, Held>()
  private timer: unknown
  private running = false
  /** Background renewals that failed (each is logged and retried). */
  renewalFailures = 0

  constructor (init: CredentialsInit) {
    this.peerKey = init.peerKey
    this.peerId = peerIdFromPrivateKey(init.peerKey).toString()
    this.clock = init.clock ?? systemClock
    this.sessionLifetimeMs = init.sessionLifetimeMs ?? 10 * 60_000
    this.sessions = init.sessions ?? true
    this.maxAuthorities = Math.max(1, init.maxAuthorities ?? 16)
    this.retryMs = Math.max(1, init.retryMs ?? 5_000)
  }

  /** Holds a grant from its authority, replacing an older one; the subject must be this node. */
  addGrant (grant: Certificate): void {
    if (grant.kind !== 'grant') throw new MalformedRecordError(`expected a grant, got a ${grant.kind}`)
    if (grant.subject !== this.peerId) throw new WrongSubjectError(`grant is for ${grant.subject}, this node is ${this.peerId}`)
    const existing = this.held.get(grant.issuer)
    if (existing != null && existing.grant.notAfterMs > grant.notAfterMs) return
    // A renewed grant replaces the old one, but the chain issued under the old grant stays the one
    // presented until a session under the new grant is signed: dropping it left a gap in which every
    // handshake failed with CertificateExpiredError (found by test/reliability/rotate-expire.test.ts).
    const now = this.clock.now()
    const keep = existing?.chain != null && existing.session != null && now < existing.session.notAfterMs && now < existing.grant.notAfterMs
    this.held.set(grant.issuer, keep ? { grant, session: existing.session, chain: existing.chain, stale: true } : { grant })
    if (this.running) this.schedule(0)
    else if (keep && this.sessions) this.renewInBackground(grant.issuer)
    while (this.held.size > this.maxAuthorities) {
      // Drop the grant that expires first: it is the least useful one to keep.
      let victim: string | undefined
      let soonest = Infinity
      for (const [id, h] of this.held) if (h.grant.notAfterMs < soonest) { soonest = h.grant.notAfterMs; victim = id }
      this.held.delete(victim as string)
      log('dropped grant from %s: more than %d authorities', victim, this.maxAuthorities)
    }
  }

  removeGrant (authorityId: string): void {
    this.held.delete(authorityId)
  }

  authorities (): string[] {
    return [...this.held.keys()]
  }

  grantFor (authorityId: string): Certificate | undefined {
    return this.held.get(authorityId)?.grant
  }

  /** The encoded chain to present to a peer trusting `authorityId`; renews the session past half-life. */
  async chainFor (authorityId: string, options: SignalOptions = {}): Promise<Uint8Array> {
    options.signal?.throwIfAborted()
    const held = this.held.get(authorityId)
    if (held == null) throw new NoGrantError(`no grant from authority ${authorityId}`)
    const now = this.clock.now()
    if (now >= held.grant.notAfterMs) throw new CertificateExpiredError(`grant from ${authorityId} expired at ${held.grant.notAfterMs}`)
    if (!this.sessions) {
      held.chain ??= encodeChain([held.grant])
      return held.chain
    }
    if (held.chain != null && held.stale !== true && !needsRenewal(held.session, now)) return held.chain
    held.pending ??= this.renew(held, now, options).finally(() => { held.pending = undefined })
    return await held.pending
  }

  /**
   * Synchronous form for the synapse's CredentialsPort: the chain to present right now. Past
   * half-life it starts a renewal in the background and still returns the current (valid) chain;
   * with no usable session yet it throws NoGrantError / CertificateExpiredError — call
   * `refresh()` or `start()` after adding grants so a chain is always ready.
   */
  currentChain (authorityId: string): Uint8Array {
    const held = this.held.get(authorityId)
    if (held == null) throw new NoGrantError(`no grant from authority ${authorityId}`)
    const now = this.clock.now()
    if (now >= held.grant.notAfterMs) throw new CertificateExpiredError(`grant from ${authorityId} expired at ${held.grant.notAfterMs}`)
    if (!this.sessions) return (held.chain ??= encodeChain([held.grant]))
    if (held.chain == null || held.session == null || now >= held.session.notAfterMs) {
      this.renewInBackground(authorityId)
      throw new CertificateExpiredError(`no current session under ${authorityId} yet`)
    }
    if (held.stale === true || needsRenewal(held.session, now)) this.renewInBackground(authorityId)
    return held.chain
  }

  /** Issues a session for every held grant that has none or is past half-life. */
  async refresh (options: SignalOptions = {}): Promise<void> {
    const now = this.clock.now()
    const due = [...this.held].filter(([, h]) => now < h.grant.notAfterMs && (this.sessions ? h.stale === true || needsRenewal(h.session, now) : false))
    await Promise.all(due.map(async ([id]) => await this.chainFor(id, options)))
  }

  /** Renews proactively on the clock at each session's half-life. Idempotent. */
  start (): void {
    if (this.running) return
    this.running = true
    this.schedule(0)
  }

  stop (): void {
    this.running = false
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = undefined
  }

  /** Timer at the earliest half-life among held sessions; runs after every renewal so it is never stale. */
  private scheduleNextRenewal (): void {
    if (!this.running || !this.sessions) return
    const now = this.clock.now()
    let next = Infinity
    for (const h of this.held.values()) {
      if (h.session != null && now < h.grant.notAfterMs) next = Math.min(next, renewAtMs(h.session))
    }
    if (next !== Infinity) this.schedule(next - now)
  }

  private renewInBackground (authorityId: string): void {
    this.chainFor(authorityId).catch(err => {
      this.renewalFailures++
      log.error('renewing session under %s failed - %e', authorityId, err)
    })
  }

  private schedule (delayMs: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = this.clock.setTimeout(() => { this.tick() }, Math.max(0, delayMs))
  }

  private tick (): void {
    this.timer = undefined
    if (!this.running || !this.sessions) return
    this.refresh().then(() => {
      this.scheduleNextRenewal()
    }, err => {
      this.renewalFailures++
      log.error('session renewal failed, retrying in %d ms - %e', this.retryMs, err)
      if (this.running) this.schedule(this.retryMs)
    })
  }

  private async renew (held: Held, now: number, options: SignalOptions): Promise<Uint8Array> {
    const session = await issueSession(this.peerKey, held.grant, {
      subject: this.peerId,
      roles: held.grant.roles,
      cells: held.grant.cells,
      notBeforeMs: now,
      notAfterMs: now + this.sessionLifetimeMs
    }, options)
    held.session = session
    held.chain = encodeChain([held.grant, session])
    held.stale = false
    this.scheduleNextRenewal()
    log('renewed session under %s until %d', held.grant.issuer, session.notAfterMs)
    return held.chain
  }
}
