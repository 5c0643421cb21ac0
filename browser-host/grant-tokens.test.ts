// A tab open for days asks its page host for a grant again at each grant's half-life
// (dashboard/src/fleet-main.ts). Each renewal replaces its issuer's older token in what the tab
// keeps for its next visit, and ended tokens go, instead of the list growing by one per renewal.
import { describe, expect, it } from 'vitest'
import { generateAuthority, issueGrant, encodeGrantToken, type AuthorityKey } from '../core/identity/index.ts'
import { ManualClock } from '../core/testing/manual-clock.ts'
import { createLightPeer } from './light-peer.ts'
import { MemoryLightPeerStore } from './keystore.ts'

describe('a tab\'s grant tokens', () => {
  it('keep one token per issuer across renewals, and drop ended ones', async () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 12, 0, 0))
    const store = new MemoryLightPeerStore()
    const peer = await createLightPeer({ bootstrap: [], store, start: false, clock })
    const grant = async (from: AuthorityKey, ms: number): Promise<string> => encodeGrantToken(await issueGrant(from, { subject: peer.peerId, roles: ['caller'], notBeforeMs: clock.now() - 60_000, notAfterMs: clock.now() + ms }))
    const [host, other] = [await generateAuthority(), await generateAuthority()]
    const otherToken = await grant(other, 3_600_000)
    await peer.importGrant(otherToken)
    let last = ''
    for (let i = 0; i < 10; i++) {
      last = await grant(host, 60_000)
      await peer.importGrant(last)
      clock.advance(30_000)
    }
    expect((await store.load()).grantTokens).toEqual([otherToken, last])
    // Another hour on, the other issuer's token has ended: the next renewal drops it.
    clock.advance(3_600_000)
    last = await grant(host, 60_000)
    await peer.importGrant(last)
    expect((await store.load()).grantTokens).toEqual([last])
    await peer.stop()
  })
})
