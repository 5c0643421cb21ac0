// Session certs live minutes and are renewed at half their lifetime, leaving the second half as
// slack for a slow or failed renewal. The timing math is a pure function; the renewer only turns
// it into timers on the injected Clock, so tests drive it with a fake clock.
import { logger } from '@libp2p/logger'
import type { Clock } from '../ports.ts'
import type { SignalOptions } from './authority.ts'
import type { Certificate } from './certificate.ts'

const log = logger('cell:identity:renewal')

/** The instant a certificate should be replaced: halfway through its validity window. */
export function renewAtMs (cert: Pick<Certificate, 'notBeforeMs' | 'notAfterMs'>): number {
  return cert.notBeforeMs + Math.floor((cert.notAfterMs - cert.notBeforeMs) / 2)
}

export function needsRenewal (cert: Pick<Certificate, 'notBeforeMs' | 'notAfterMs'> | undefined, nowMs: number): boolean {
  return cert == null || nowMs >= renewAtMs(cert)
}

export interface SessionRenewerInit {
  clock: Clock
  /** Issues a fresh session certificate. */
  renew: (options: SignalOptions) => Promise<Certificate>
  /** Certificate already held, if any. */
  initial?: Certificate
  /** Delay before retrying a failed renewal; default 5 s. */
  retryMs?: number
}

/**
 * Keeps `current` fresh: renews at half-life, retries failures every `retryMs`, and emits
 * `renewed` (CustomEvent<Certificate>) and `renewal-failed` (CustomEvent<unknown>).
 */
export class SessionRenewer extends EventTarget {
  current: Certificate | undefined
  /** Renewals that failed (each is retried). */
  failures = 0
  private readonly clock: Clock
  private readonly renewFn: SessionRenewerInit['renew']
  private readonly retryMs: number
  private timer: unknown
  private controller: AbortController | undefined
  private inflight: Promise<Certificate> | undefined

  constructor (init: SessionRenewerInit) {
    super()
    this.clock = init.clock
    this.renewFn = init.renew
    this.retryMs = Math.max(1, init.retryMs ?? 5_000)
    this.current = init.initial
  }

  get running (): boolean {
    return this.controller != null
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    this.schedule(this.current == null ? 0 : renewAtMs(this.current) - this.clock.now())
  }

  stop (): void {
    if (this.controller == null) return
    this.controller.abort()
    this.controller = undefined
    this.clearTimer()
  }

  /** Renews now (sharing any renewal already in flight). */
  async renewNow (options: SignalOptions = {}): Promise<Certificate> {
    options.signal?.throwIfAborted()
    this.inflight ??= this.runRenewal().finally(() => { this.inflight = undefined })
    return await this.inflight
  }

  private async runRenewal (): Promise<Certificate> {
    const controller = this.controller
    const cert = await this.renewFn({ signal: controller?.signal })
    this.current = cert
    // Reschedule before notifying, so listeners always observe the renewer's next state.
    if (controller != null && this.controller === controller) this.schedule(renewAtMs(cert) - this.clock.now())
    this.dispatchEvent(new CustomEvent('renewed', { detail: cert }))
    return cert
  }

  private schedule (delayMs: number): void {
    this.clearTimer()
    this.timer = this.clock.setTimeout(() => { this.onTimer() }, Math.max(0, delayMs))
  }

  private onTimer (): void {
    this.timer = undefined
    const controller = this.controller
    if (controller == null) return
    this.renewNow().catch(err => {
      if (this.controller !== controller) return
      this.failures++
      log.error('session renewal failed, retrying in %d ms - %e', this.retryMs, err)
      this.schedule(this.retryMs)
      this.dispatchEvent(new CustomEvent('renewal-failed', { detail: err }))
    })
  }

  private clearTimer (): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = undefined
  }
}
