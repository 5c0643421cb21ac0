// ROTATE-EXPIRE (issue 14 point 6). Two real Mesh nodes over real libp2p TCP on 127.0.0.1 share one
// injected fake clock (core/testing ManualClock): what is faked is the Clock port only — the
// certificates' windows, the verifiers' "now", the session renewer's and the host-grant renewer's
// timers (Credentials, node-host SelfGrants) and the synapse timers; sockets, Noise, yamux and
// signatures are real. Host grants last GRANT_MS and are re-issued at half-life (SelfGrants, as
// `cell up --authority` does), session certs last SESSION_MS and are renewed at half-life
// (Credentials). The fake clock moves STEP_MS at a time through CELL_ROTATE_MINUTES (default 10,
// about 5 s of real time); at every step a fresh channel is opened (each end checks
// the other's chain: the server the caller's, the client the server's host grant) and called, and a
// long-lived channel is called too. 0 calls may fail; grants and sessions must have rotated.
import { afterAll, describe, expect, it } from 'vitest'
import { tcp } from '@libp2p/tcp'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Mesh } from '../../core/mesh/index.ts'
import { Credentials, generateAuthority, decodeChain, DEFAULT_CLOCK_SKEW_MS, type AuthorityKey } from '../../core/identity/index.ts'
import { ManualClock } from '../../core/testing/manual-clock.ts'
import { SelfGrants } from '../../node-host/self-grants.ts'
import { testHandler } from '../bench/nodes.ts'

const MINUTES = Number(process.env.CELL_ROTATE_MINUTES ?? 10)
// Lifetimes of seconds, but above the verifiers' clock-skew tolerance (30 s), so a chain that is not
// rotated is refused within the run: a session after SESSION_MS + 30 s, a grant after GRANT_MS + 30 s.
const SESSION_MS = 20_000
const GRANT_MS = 50_000
const STEP_MS = 1_000

interface Side { mesh: Mesh, credentials: Credentials, grants: SelfGrants }

async function side (clock: ManualClock, authority: AuthorityKey, trusted: Set<string>, server: boolean): Promise<Side> {
  const key = await generateKeyPair('Ed25519')
  const credentials = new Credentials({ peerKey: key, clock, sessionLifetimeMs: SESSION_MS })
  const grants = new SelfGrants({ keys: [authority], credentials, clock, validityMs: GRANT_MS, checkMs: STEP_MS })
  await grants.renew()
  await credentials.refresh()
  credentials.start()
  grants.start()
  const mesh = await Mesh.create({
    privateKey: key,
    transports: [tcp()],
    listen: server ? ['/ip4/127.0.0.1/tcp/0'] : [],
    credentials,
    trusted,
    clock,
    dht: false,
    ...(server ? { handler: testHandler() } : {})
  })
  await mesh.start()
  return { mesh, credentials, grants }
}

describe('ROTATE-EXPIRE', () => {
  const stops: Array<() => Promise<void>> = []
  afterAll(async () => { await Promise.all(stops.map(async s => { await s() })) })

  it(`calls succeed through ${MINUTES} fake minutes of ${SESSION_MS / 1000} s sessions and ${GRANT_MS / 1000} s host grants`, async () => {
    expect(SESSION_MS).toBeLessThan(MINUTES * 60_000)
    const clock = new ManualClock(Date.now())
    const authority = await generateAuthority()
    const trusted = new Set([authority.id])
    const server = await side(clock, authority, trusted, true)
    const client = await side(clock, authority, trusted, false)
    for (const s of [server, client]) stops.push(async () => { s.grants.stop(); s.credentials.stop(); await s.mesh.stop() })
    const address = server.mesh.libp2p.getMultiaddrs()[0]
    const synapse = client.mesh.libp2p.services.synapse
    // The server closes a channel when the chain its caller presented expires (ChannelExpiredError);
    // a lasting channel moves to a new one when its own chain rotates, as the mesh's cached ones do.
    const longLived = synapse.lasting(address, 'billing')
    await longLived.current()

    const failures: string[] = []
    const chains = { server: new Set<string>(), client: new Set<string>() }
    const grantEnds = { server: new Set<number>(), client: new Set<number>() }
    let calls = 0
    const started = clock.now()
    const steps = MINUTES * 60_000 / STEP_MS
    const echo = new TextEncoder().encode('ping')
    for (let step = 0; step < steps; step++) {
      clock.advance(STEP_MS)
      for (const [name, s] of [['server', server], ['client', client]] as const) {
        try {
          const chain = s.credentials.currentChain(authority.id)
          chains[name].add(chain.join(','))
          grantEnds[name].add(decodeChain(chain)[0].notAfterMs)
        } catch (err) {
          failures.push(`t+${(clock.now() - started) / 1000} s ${name} has no chain to present: ${(err as Error).name}: ${(err as Error).message}`)
        }
      }
      // A fresh channel: both handshakes check the chains presented now.
      try {
        const channel = await synapse.open(address, 'billing', { signal: AbortSignal.timeout(10_000) })
        await channel.call('echo', echo, { timeoutMs: 10_000 })
        await channel.close()
      } catch (err) {
        failures.push(`t+${(clock.now() - started) / 1000} s fresh channel: ${(err as Error).name}: ${(err as Error).message}`)
      }
      try {
        await longLived.call('echo', echo, { timeoutMs: 10_000 })
      } catch (err) {
        failures.push(`t+${(clock.now() - started) / 1000} s long-lived channel: ${(err as Error).name}: ${(err as Error).message}`)
      }
      calls += 2
    }
    const elapsedMs = clock.now() - started
    console.log(`ROTATE-EXPIRE: ${elapsedMs / 60_000} fake minutes, ${calls} calls (${steps} fresh handshakes), ${failures.length} failed; ` +
      `server presented ${chains.server.size} chains under ${grantEnds.server.size} host grants (${server.grants.renewals} grant renewals), ` +
      `client ${chains.client.size} chains under ${grantEnds.client.size} grants; session renewal failures ${server.credentials.renewalFailures + client.credentials.renewalFailures}; ` +
      `the long-lived channel was reopened ${longLived.opened - 1} times`)
    expect(failures).toEqual([])
    // It moved with the client's chain: at least once per session lifetime (else the server would have closed it).
    expect(longLived.opened - 1).toBeGreaterThanOrEqual(Math.floor(elapsedMs / (SESSION_MS + DEFAULT_CLOCK_SKEW_MS)))
    // Rotation happened, many times over: at least one session per half-life and one grant per half grant-life.
    const halfSessions = Math.floor(elapsedMs / (SESSION_MS / 2))
    const halfGrants = Math.floor(elapsedMs / (GRANT_MS / 2))
    expect(chains.server.size).toBeGreaterThanOrEqual(halfSessions - 1)
    expect(chains.client.size).toBeGreaterThanOrEqual(halfSessions - 1)
    expect(grantEnds.server.size).toBeGreaterThanOrEqual(halfGrants - 1)
    expect(server.grants.renewals).toBeGreaterThanOrEqual(halfGrants - 1)
    // Without rotation the first chain would have been refused long before the end.
    expect(elapsedMs).toBeGreaterThan(GRANT_MS + DEFAULT_CLOCK_SKEW_MS)
  })
})
