// AUTHORITY-REJECT (issue 14 point 3). Attack chains of every kind (attack-chains.ts) go through
// callerAuthenticator (core/mesh/handshake-auth.ts): the very function Mesh.create hands its synapse
// service as `authenticate`, which a HELLO reaches in core/synapse/session.ts; it runs
// makeVerifier → verifyChain (core/identity/chain.ts). 0 may be accepted, every valid chain must be.
// Then a few dozen attacks over real libp2p connections to a real Mesh show that path is wired: each
// is refused with its named error in REJECT, counted by the server, while honest callers get answers.
// Counts: CELL_AUTHORITY_ATTACKS (default 2,000 in npm test; `npm run reliability` uses 10,000) and
// CELL_AUTHORITY_VALID (default 200; 1,000 in `npm run reliability`).
import { afterAll, describe, expect, it } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { callerAuthenticator, serverAuthenticator } from '../../core/mesh/handshake-auth.ts'
import { PeerGrantGate } from '../../core/fleet/peer-grant.ts'
import { Mesh } from '../../core/mesh/index.ts'
import { Credentials, encodeChain, issueGrant } from '../../core/identity/index.ts'
import * as identityErrors from '../../core/identity/errors.ts'
import { synapse, WireErrorRegistry, SYNAPSE_ERROR_CLASSES, type Synapse, type SynapseComponents, type WireErrorClass } from '../../core/synapse/index.ts'
import { testHandler } from '../bench/nodes.ts'
import { isNamedCellError } from '../fuzz/named-error.ts'
import { ATTACK_KINDS, attack, attackWorld, presenter, validChain, type Presenter } from './attack-chains.ts'

const ATTACKS = Number(process.env.CELL_AUTHORITY_ATTACKS ?? 2_000)
const VALID = Number(process.env.CELL_AUTHORITY_VALID ?? 200)
const NOW = 1_800_000_000_000

function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const fixedClock = { now: () => NOW, setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms), clearTimeout: (h: unknown) => { clearTimeout(h as ReturnType<typeof setTimeout>) } }

describe('AUTHORITY-REJECT', () => {
  const stops: Array<() => Promise<void>> = []
  afterAll(async () => { await Promise.all(stops.map(async s => { await s() })) })

  it(`refuses ${ATTACKS} attack chains by name through the handshake's authenticator and accepts ${VALID} valid ones`, async () => {
    const rnd = mulberry32(14)
    const world = await attackWorld(NOW)
    const trusted = new Set(world.trusted.map(a => a.id))
    const authenticate = callerAuthenticator({ trusted, clock: fixedClock })
    const signal = new AbortController().signal
    const presenters: Presenter[] = []
    for (let i = 0; i < 32; i++) presenters.push(await presenter())

    const table = new Map<string, { count: number, errors: Record<string, number> }>()
    const accepted: string[] = []
    const wrongError: string[] = []
    const started = performance.now()
    for (let i = 0; i < ATTACKS; i++) {
      const kind = ATTACK_KINDS[i % ATTACK_KINDS.length]
      const p = presenters[Math.floor(rnd() * presenters.length)]
      const at = await attack(kind, world, p, rnd)
      const row = table.get(`${kind}/${at.variant}`) ?? { count: 0, errors: {} }
      table.set(`${kind}/${at.variant}`, row)
      row.count++
      try {
        await authenticate({ remotePeerId: p.peerId, cell: world.cell, credentials: at.chain }, { signal })
        accepted.push(`${kind}/${at.variant}`)
      } catch (err) {
        const name = (err as Error).name
        row.errors[name] = (row.errors[name] ?? 0) + 1
        if (!isNamedCellError(err) || !at.expect.some(cls => err instanceof cls)) wrongError.push(`${kind}/${at.variant}: ${name}: ${(err as Error).message}`)
      }
    }
    const attackMs = performance.now() - started
    const refusedValid: string[] = []
    for (let i = 0; i < VALID; i++) {
      const p = presenters[i % presenters.length]
      const chain = await validChain(world, p, rnd)
      try {
        const principal = await authenticate({ remotePeerId: p.peerId, cell: world.cell, credentials: chain }, { signal })
        expect(principal.peerId).toBe(p.peerId)
      } catch (err) {
        refusedValid.push(`${(err as Error).name}: ${(err as Error).message}`)
      }
    }
    const lines = [...table].sort().map(([k, r]) => `  ${k.padEnd(48)} ${String(r.count).padStart(5)}  ${Object.entries(r.errors).map(([n, c]) => `${n} ${c}`).join(', ')}`)
    console.log(`AUTHORITY-REJECT: ${ATTACKS} attacks in ${(attackMs / 1000).toFixed(1)} s, ${accepted.length} accepted; ${VALID} valid, ${VALID - refusedValid.length} accepted\n${lines.join('\n')}`)
    expect(accepted).toEqual([])
    expect(wrongError).toEqual([])
    expect(refusedValid).toEqual([])
    // Every kind and, at the full count, every variant was tried.
    for (const kind of ATTACK_KINDS) expect([...table.keys()].some(k => k.startsWith(`${kind}/`)), kind).toBe(true)
  })

  it(`the client's check of a server's host chain and the fleet protocols' grant gate refuse the same attacks (${Math.round(ATTACKS / 4)} each)`, async () => {
    const rnd = mulberry32(21)
    const world = await attackWorld(NOW)
    const trusted = new Set(world.trusted.map(a => a.id))
    const signal = new AbortController().signal
    // serverAuthenticator: what a caller's mesh runs on the HELLO_ACK (host role; the cell's release
    // authority when the view holds one, else the trusted set, as here).
    const checkServer = serverAuthenticator({ trusted, clock: fixedClock, releaseAuthority: () => undefined })
    // PeerGrantGate: /cell/fleet-sync/1, /cell/artifact/1, /cell/metrics/1 (any role, no cell scope).
    const gate = new PeerGrantGate({ trusted, clock: fixedClock })
    const presenters: Presenter[] = []
    for (let i = 0; i < 16; i++) presenters.push(await presenter())
    const accepted: string[] = []
    const unnamed: string[] = []
    const n = Math.round(ATTACKS / 4)
    let gated = 0
    for (let i = 0; i < n; i++) {
      const p = presenters[i % presenters.length]
      const kind = ATTACK_KINDS[i % ATTACK_KINDS.length]
      const asServer = await attack(kind, world, p, rnd, 'host')
      await checkServer({ remotePeerId: p.peerId, cell: world.cell, credentials: asServer.chain }, { signal }).then(
        () => { accepted.push(`server ${kind}/${asServer.variant}`) },
        (err: unknown) => { if (!asServer.expect.some(cls => err instanceof cls)) unnamed.push(`server ${kind}/${asServer.variant}: ${(err as Error).name}`) })
      // Any role admits at the gate, and it serves no particular cell: role and scope attacks do not apply.
      if (kind === 'wrong-role' || kind === 'wrong-scope') continue
      const asPeer = await attack(kind, world, p, rnd)
      gated++
      await gate.check(asPeer.chain, p.peerId, { signal }).then(
        () => { accepted.push(`gate ${kind}/${asPeer.variant}`) },
        (err: unknown) => { if (!asPeer.expect.some(cls => err instanceof cls)) unnamed.push(`gate ${kind}/${asPeer.variant}: ${(err as Error).name}`) })
    }
    for (let i = 0; i < Math.round(VALID / 4); i++) {
      const p = presenters[i % presenters.length]
      expect((await checkServer({ remotePeerId: p.peerId, cell: world.cell, credentials: await validChain(world, p, rnd, 'host') }, { signal }))?.peerId).toBe(p.peerId)
      expect((await gate.check(await validChain(world, p, rnd), p.peerId, { signal })).subject).toBe(p.peerId)
    }
    expect(accepted).toEqual([])
    expect(unnamed).toEqual([])
    expect(gate.stats().refused).toBe(gated)
  })

  it('the same refusals over real libp2p connections to a real Mesh, while honest callers are answered', async () => {
    const rnd = mulberry32(7)
    const world = await attackWorld(Date.now())
    const trusted = new Set(world.trusted.map(a => a.id))
    const serverKey = await generateKeyPair('Ed25519')
    const server = await Mesh.create({
      privateKey: serverKey,
      transports: [tcp()],
      listen: ['/ip4/127.0.0.1/tcp/0'],
      credentials: new Credentials({ peerKey: serverKey }),
      trusted,
      dht: false,
      handler: testHandler(),
      // Every test peer dials from 127.0.0.1: lift the per-host inbound rate limit (5/s by default).
      libp2p: { connectionManager: { inboundConnectionThreshold: 1000 } }
    })
    await server.start()
    stops.push(async () => { await server.stop() })
    const address = server.libp2p.getMultiaddrs()[0]
    const errors = (): WireErrorRegistry => new WireErrorRegistry([
      ...SYNAPSE_ERROR_CLASSES,
      ...(Object.values(identityErrors) as unknown[]).filter((v): v is WireErrorClass => typeof v === 'function')
    ])
    /** A client peer with `p`'s key that presents whatever `chain()` holds at the time. */
    const client = async (p: Presenter, chain: () => Uint8Array): Promise<Libp2p<{ synapse: Synapse }>> => {
      const factory = synapse({
        errors: errors(),
        authenticate: async ({ remotePeerId }) => ({ peerId: remotePeerId, authority: '', roles: [] }),
        authenticateServer: async () => undefined,
        credentialsFor: chain
      })
      const node = await createLibp2p({
        privateKey: p.key,
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        services: { synapse: (components: SynapseComponents) => factory(components) }
      })
      stops.push(async () => { await node.stop() })
      return node
    }

    const before = server.libp2p.services.synapse.stats().server.rejected
    let current: Uint8Array = new Uint8Array(0)
    const attackers: Array<{ p: Presenter, node: Libp2p<{ synapse: Synapse }> }> = []
    for (let i = 0; i < 4; i++) {
      const p = await presenter()
      attackers.push({ p, node: await client(p, () => current) })
    }
    const perKind = 4
    let refused = 0
    for (const kind of ATTACK_KINDS) {
      for (let i = 0; i < perKind; i++) {
        const { p, node } = attackers[(i + refused) % attackers.length]
        const at = await attack(kind, world, p, rnd)
        current = at.chain
        const outcome = await node.services.synapse.open(address, world.cell).then(
          async (channel) => { await channel.close(); return undefined },
          (err: unknown) => err
        )
        expect(outcome, `${kind}/${at.variant} was accepted over libp2p`).toBeDefined()
        // The server's refusal arrives in REJECT and is rebuilt as the same named class.
        expect(at.expect.some(cls => outcome instanceof cls) || at.expect.some(cls => (outcome as Error).name === cls.name), `${kind}/${at.variant}: ${(outcome as Error).name}`).toBe(true)
        refused++
      }
    }
    expect(server.libp2p.services.synapse.stats().server.rejected - before).toBe(refused)

    // Honest callers with valid chains (granted by either trusted authority) get answers.
    for (let i = 0; i < 4; i++) {
      const p = await presenter()
      const chain = await validChain(world, p, rnd)
      const node = await client(p, () => chain)
      const channel = await node.services.synapse.open(address, world.cell)
      const answer = await channel.call('echo', new TextEncoder().encode(`hi ${i}`), { timeoutMs: 5_000 })
      expect(new TextDecoder().decode(answer)).toBe(`hi ${i}`)
      await channel.close()
    }
    // A grant that is valid for the real clock but issued here again for the last attacker, to show
    // the refusals above were about the chains, not the peers.
    const last = attackers[0]
    const grant = await issueGrant(world.trusted[0], { subject: last.p.peerId, roles: ['caller'], notBeforeMs: Date.now() - 60_000, notAfterMs: Date.now() + 3_600_000 })
    current = encodeChain([grant])
    const channel = await last.node.services.synapse.open(address, world.cell)
    expect(new TextDecoder().decode(await channel.call('echo', new TextEncoder().encode('ok'), { timeoutMs: 5_000 }))).toBe('ok')
    await channel.close()
    expect(refused).toBe(ATTACK_KINDS.length * perKind)
  })
})
