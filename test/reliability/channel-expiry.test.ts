// Attack: a caller whose certificate chain expires keeps its synapse channel open and calls on it.
// The server checked the chain at the handshake only; it must close the channel when the chain's
// earliest notAfter (plus the verifier's skew) passes and refuse every later call by name
// (ChannelExpiredError, nothing ran). Real Mesh nodes over real libp2p TCP on 127.0.0.1 share an
// injected fake clock (core/testing ManualClock); the attacker holds one grant it never renews.
import { afterAll, describe, expect, it } from 'vitest'
import { tcp } from '@libp2p/tcp'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Mesh } from '../../core/mesh/index.ts'
import { ChannelClosedError, ChannelExpiredError, type Channel } from '../../core/synapse/index.ts'
import { Credentials, generateAuthority, DEFAULT_CLOCK_SKEW_MS, type AuthorityKey } from '../../core/identity/index.ts'
import { ManualClock } from '../../core/testing/manual-clock.ts'
import type { Clock } from '../../core/ports.ts'
import { SelfGrants } from '../../node-host/self-grants.ts'
import { testHandler } from '../bench/nodes.ts'

const GRANT_MS = 50_000
const SESSION_MS = 20_000

async function node (clock: Clock, authority: AuthorityKey, server: boolean, renew: boolean): Promise<{ mesh: Mesh, stop: () => Promise<void> }> {
  const key = await generateKeyPair('Ed25519')
  const credentials = new Credentials({ peerKey: key, clock, sessionLifetimeMs: SESSION_MS })
  const grants = new SelfGrants({ keys: [authority], credentials, clock, validityMs: GRANT_MS, checkMs: 1_000 })
  await grants.renew()
  await credentials.refresh()
  if (renew) { credentials.start(); grants.start() }
  const mesh = await Mesh.create({
    privateKey: key,
    transports: [tcp()],
    listen: server ? ['/ip4/127.0.0.1/tcp/0'] : [],
    credentials,
    trusted: new Set([authority.id]),
    clock,
    dht: false,
    ...(server ? { handler: testHandler() } : {})
  })
  await mesh.start()
  // Mesh.start starts the renewer; an attacker that does not renew stops it again.
  if (!renew) credentials.stop()
  return { mesh, stop: async () => { grants.stop(); credentials.stop(); await mesh.stop() } }
}

function chainOf (err: unknown): string {
  const names: string[] = []
  for (let e: unknown = err; e instanceof Error && names.length < 4; e = e.cause) names.push(e.name)
  return names.join(' caused by ')
}

async function closedWithin (ch: Channel, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    ch.closed,
    new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`channel still open ${ms} ms after its chain expired`)) }, ms) })
  ]).finally(() => { clearTimeout(timer) })
}

describe('CHANNEL-EXPIRY: a caller keeps a channel open past its chain', () => {
  const stops: Array<() => Promise<void>> = []
  afterAll(async () => { await Promise.all(stops.map(async s => { await s() })) })

  it('is closed by the server and every later call is refused with ChannelExpiredError', async () => {
    const clock = new ManualClock(Date.now())
    const authority = await generateAuthority()
    const server = await node(clock, authority, true, true)
    const attacker = await node(clock, authority, false, false)
    stops.push(server.stop, attacker.stop)
    const address = server.mesh.libp2p.getMultiaddrs()[0]
    const synapse = attacker.mesh.libp2p.services.synapse
    const echo = new TextEncoder().encode('ping')
    // Three channels opened while the chain is valid; the session cert (20 s) is the earliest expiry.
    const waited = await synapse.open(address, 'billing')
    const raced = await synapse.open(address, 'billing')
    const inflight = await synapse.open(address, 'billing')
    for (const ch of [waited, raced, inflight]) expect(new TextDecoder().decode(await ch.call('echo', echo))).toBe('ping')

    // Just before the expiry the server still answers.
    clock.advance(SESSION_MS + DEFAULT_CLOCK_SKEW_MS - 2_000)
    expect(new TextDecoder().decode(await raced.call('echo', echo))).toBe('ping')
    const serverSessions = server.mesh.libp2p.services.synapse.stats().server.channels

    clock.advance(3_000)
    // A call sent at once races the server's close. Answered by the server's frame check: refused with
    // ChannelExpiredError (nothing ran). In flight when the close arrived: ChannelClosedError (it
    // may have run, as for any channel that ends under a call) caused by ChannelExpiredError.
    const racedErr = await raced.call('echo', echo).then(() => undefined, (err: unknown) => err)
    const expiredNamed = racedErr instanceof ChannelExpiredError ||
      (racedErr instanceof ChannelClosedError && racedErr.cause instanceof ChannelClosedError && racedErr.cause.cause instanceof ChannelExpiredError) ||
      (racedErr instanceof ChannelClosedError && racedErr.cause instanceof ChannelExpiredError)
    expect(expiredNamed, `raced call failed with ${String(racedErr)}`).toBe(true)
    // After the close arrived, calls fail locally by the same name (nothing is sent, nothing ran).
    await closedWithin(waited, 5_000)
    expect(waited.expired).toBe(true)
    const waitedErr = await waited.call('echo', echo).then(() => undefined, (err: unknown) => err)
    expect(waitedErr).toBeInstanceOf(ChannelExpiredError)
    await closedWithin(inflight, 5_000)
    // The server let go of all three sessions.
    expect(server.mesh.libp2p.services.synapse.stats().server.channels).toBe(serverSessions - 3)
    console.log(`CHANNEL-EXPIRY: calls after expiry ${chainOf(racedErr)} (raced the close) and ${(waitedErr as Error).name} (after it)`)
  })

  it('a call on an expired channel is refused by the server even before its close timer fires', async () => {
    const clock = new ManualClock(Date.now())
    // The server's timers never fire: only its check of each frame against the chain's expiry is left.
    const frozen: Clock = { now: () => clock.now(), setTimeout: () => 0, clearTimeout: () => {} }
    const authority = await generateAuthority()
    const server = await node(frozen, authority, true, false)
    const attacker = await node(clock, authority, false, false)
    stops.push(server.stop, attacker.stop)
    const ch = await attacker.mesh.libp2p.services.synapse.open(server.mesh.libp2p.getMultiaddrs()[0], 'billing')
    const echo = new TextEncoder().encode('ping')
    expect(new TextDecoder().decode(await ch.call('echo', echo))).toBe('ping')
    clock.advance(SESSION_MS + DEFAULT_CLOCK_SKEW_MS + 1_000)
    const err = await ch.call('echo', echo).then(() => undefined, (e: unknown) => e)
    expect(err, `call after expiry: ${chainOf(err)}`).toBeInstanceOf(ChannelExpiredError)
    await closedWithin(ch, 5_000)
    expect(ch.expired).toBe(true)
  })

  it('an expiry beyond what one timer can hold (30-day grant, no session) still closes the channel', async () => {
    const clock = new ManualClock(Date.now())
    const authority = await generateAuthority()
    const server = await node(clock, authority, true, true)
    const key = await generateKeyPair('Ed25519')
    const credentials = new Credentials({ peerKey: key, clock, sessions: false })
    const grants = new SelfGrants({ keys: [authority], credentials, clock })
    await grants.renew()
    const mesh = await Mesh.create({ privateKey: key, transports: [tcp()], listen: [], credentials, trusted: new Set([authority.id]), clock, dht: false })
    await mesh.start()
    stops.push(server.stop, async () => { await mesh.stop() })
    const ch = await mesh.libp2p.services.synapse.open(server.mesh.libp2p.getMultiaddrs()[0], 'billing')
    const echo = new TextEncoder().encode('ping')
    clock.advance(25 * 24 * 3600_000)
    expect(new TextDecoder().decode(await ch.call('echo', echo))).toBe('ping')
    clock.advance(5 * 24 * 3600_000 + DEFAULT_CLOCK_SKEW_MS + 1_000)
    await closedWithin(ch, 5_000)
    await expect(ch.call('echo', echo)).rejects.toBeInstanceOf(ChannelExpiredError)
  })
})
