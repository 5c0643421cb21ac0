// The grants a peer issues itself with the authority keys its operator handed it: a full node's host
// grant (`cell up --authority`, 30 days) and a client's caller grant (`createClient({ authorityKey })`,
// 1 hour). A fleet and a client service run longer than that, so they are issued again once less
// than half of their validity is left (checked every `checkMs` on the injected clock). Without
// renewal the node's record would stop counting anywhere after 30 days of uptime, and a client's
// calls would be refused after its first grant's end.
import { logger } from '@libp2p/logger'
import { issueGrant, authorityIdOf, type AuthorityKey, type Credentials, type Role } from '../core/identity/index.ts'
import { Repeater, type Clock } from '../core/ports.ts'

const log = logger('cell:node:grants')
const DAY_MS = 86_400_000
export const SELF_GRANT_MS = 30 * DAY_MS
const CHECK_MS = 3_600_000

export interface SelfGrantsInit {
  keys: readonly AuthorityKey[]
  credentials: Pick<Credentials, 'peerId' | 'grantFor' | 'addGrant'>
  clock: Clock
  validityMs?: number
  checkMs?: number
  /** Roles of the grants issued (default host, caller and operator: a full node's). */
  roles?: Role[]
}

export class SelfGrants {
  private readonly init: SelfGrantsInit
  private repeater?: Repeater
  renewals = 0

  constructor (init: SelfGrantsInit) {
    this.init = init
  }

  /** Issues (or re-issues) every grant whose validity is less than half left; all of them when none is held. */
  async renew (): Promise<void> {
    const { keys, credentials, clock } = this.init
    const validityMs = this.init.validityMs ?? SELF_GRANT_MS
    const now = clock.now()
    for (const key of keys) {
      const held = credentials.grantFor(authorityIdOf(key.publicKey))
      if (held != null && held.notAfterMs - now > validityMs / 2) continue
      credentials.addGrant(await issueGrant(key, { subject: credentials.peerId, roles: this.init.roles ?? ['host', 'caller', 'operator'], notBeforeMs: now - 60_000, notAfterMs: now + validityMs }))
      if (held != null) {
        this.renewals++
        log('renewed the host grant from %s (it ended at %d)', key.id.slice(0, 12), held.notAfterMs)
      }
    }
  }

  start (): void {
    // Never what keeps a process alive: a client script ends when its work does.
    this.repeater ??= new Repeater({ clock: this.init.clock, everyMs: this.init.checkMs ?? CHECK_MS, work: async () => { await this.renew() }, onError: (err) => { log.error('renewing host grants failed: %e', err) }, unref: true })
    this.repeater.start()
  }

  stop (): void {
    this.repeater?.stop()
  }
}
