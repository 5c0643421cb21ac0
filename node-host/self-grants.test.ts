import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Credentials, generateAuthority } from '../core/identity/index.ts'
import { ManualClock } from '../core/testing/manual-clock.ts'
import { SelfGrants, SELF_GRANT_MS } from './self-grants.ts'

describe('self-issued host grants', () => {
  it('are issued at once and renewed once less than half of their validity is left, on the injected clock', async () => {
    const clock = new ManualClock(Date.now())
    const key = await generateAuthority()
    const credentials = new Credentials({ peerKey: await generateKeyPair('Ed25519'), clock })
    const grants = new SelfGrants({ keys: [key], credentials, clock, checkMs: 3_600_000 })
    await grants.renew()
    const first = credentials.grantFor(key.id)!
    expect(first.notAfterMs - clock.now()).toBe(SELF_GRANT_MS)
    grants.start()
    // 14 days on: more than half left, nothing renewed.
    for (let h = 0; h < 14 * 24; h++) { clock.advance(3_600_000); await Promise.resolve() }
    await grants.renew()
    expect(credentials.grantFor(key.id)!.notAfterMs).toBe(first.notAfterMs)
    // Past the half-life: the hourly check issues a new one, valid for another 30 days.
    for (let h = 0; h < 2 * 24 + 1; h++) {
      clock.advance(3_600_000)
      for (let i = 0; i < 20; i++) await Promise.resolve()
    }
    await expect.poll(() => credentials.grantFor(key.id)!.notAfterMs, { timeout: 5_000 }).toBeGreaterThan(first.notAfterMs)
    expect(grants.renewals).toBeGreaterThanOrEqual(1)
    // Without renewal (the old behaviour) the grant would be past its end after 30 days.
    clock.advance(16 * 86_400_000)
    expect(credentials.grantFor(key.id)!.notAfterMs).toBeGreaterThan(clock.now())
    grants.stop()
  })
})
