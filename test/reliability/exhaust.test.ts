// EXHAUST (issue 14 point 5) against a real `cell up` process on 127.0.0.1, with the `versioned`
// cell published and an honest client (createClient) calling it back to back throughout. Attackers
// in this test process, one phase after another, each bounded in time:
//   connections  CELL_EXHAUST_CONNECTIONS raw TCP connections (a multistream header, then silence),
//                up to 500 open at once;
//   frames       synapse streams announcing a 4 GiB frame, and streams sending a frame that never
//                ends (1 MiB announced, 16 KiB chunks until the node hangs up or 3 s pass);
//   streams      CELL_EXHAUST_STREAMS synapse streams opened over one libp2p connection (HELLO
//                never sent), up to 64 at once;
//   gossip       CELL_EXHAUST_GOSSIP valid-looking, untrusted node records on the fleet topic.
// The node's RSS is read from /proc/<pid>/status every 100 ms: it must stay under 512 MiB; the node
// must not exit; honest calls must succeed ≥ 99 % of the time during the flood.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { createLibp2p, type Libp2p } from 'libp2p'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Connection } from '@libp2p/interface'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { encodeBundles, encodeEnvelope } from '../../core/fleet/codec.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { makeNodeRecord } from '../../core/fleet/testing.ts'
import { FLEET_TOPIC } from '../../core/fleet/records.ts'
import { SYNAPSE_PROTOCOL } from '../../core/synapse/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { cellRun, fleetLogs, startFleet, stopProc, type Proc } from '../integration/processes.ts'
import { stageVersion, CELL, CallLoop } from '../integration/versioned.ts'
import { tcpAddr } from '../integration/fleet-links.ts'

const CONNECTIONS = Number(process.env.CELL_EXHAUST_CONNECTIONS ?? 1_000)
const STREAMS = Number(process.env.CELL_EXHAUST_STREAMS ?? 1_000)
const GOSSIP = Number(process.env.CELL_EXHAUST_GOSSIP ?? 1_000)
const FRAME_STREAMS = 8
const RSS_LIMIT = 512 * 2 ** 20

async function rssOf (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024
}

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const r = await Promise.race([p, new Promise<undefined>(resolve => { timer = setTimeout(() => { resolve(undefined) }, ms) })])
  clearTimeout(timer)
  return r
}

/**
 * The attacker's connection, dialled again until the node takes it (its inbound rate limit of 5 new
 * connections a second per address refuses most of a burst): the time it took is a figure too.
 */
async function connection (attacker: Libp2p, addr: Multiaddr, deadlineMs = 30_000): Promise<{ conn: Connection, refusals: number }> {
  const deadline = Date.now() + deadlineMs
  let refusals = 0
  for (;;) {
    const open = attacker.getConnections().find(c => c.status === 'open')
    if (open !== undefined) return { conn: open, refusals }
    try {
      return { conn: await attacker.dial(addr, { signal: AbortSignal.timeout(5_000) }), refusals }
    } catch (err) {
      refusals++
      if (Date.now() > deadline) throw err
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  }
}

/** Runs `task(i)` for i < count with at most `parallel` at once. */
async function pool (count: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, async () => {
    while (next < count) await task(next++)
  }))
}

describe('EXHAUST: floods against a real cell up', () => {
  let root = ''
  let key: AuthorityKey
  const nodes: Proc[] = []
  let client: Mesh | undefined
  const attackers: Libp2p[] = []

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-exhaust-'))
    key = await generateAuthority()
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    const bootstrap = await startFleet(nodes, root, keyPath, ['e1'])
    const dir = await stageVersion(root, 'v1', authorityIdOf(key.publicKey))
    const r = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--wait', '1', '--timeout', '60'], 90_000)
    expect(r.code, `${r.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    await waitForReplicas(client, CELL, { count: 1, timeoutMs: 60_000 })
  }, 180_000)

  afterAll(async () => {
    for (const a of attackers) { try { await a.stop() } catch {} }
    await client?.stop()
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it(`survives ${CONNECTIONS} connections, ${STREAMS} streams, oversized and endless frames and ${GOSSIP} gossip records`, async () => {
    const node = nodes[0]
    const pid = node.child.pid!
    const addr = multiaddr(tcpAddr(node))
    const port = Number(/\/tcp\/(\d+)/.exec(tcpAddr(node))![1])
    let maxRss = await rssOf(pid)
    const rssAtStart = maxRss
    const sampler = setInterval(() => { void rssOf(pid).then(r => { maxRss = Math.max(maxRss, r) }, () => {}) }, 100)
    const loop = new CallLoop(client!)
    const figures: string[] = []
    let frameEnded = 0
    let frameOpened = 0
    const phase = async (name: string, run: () => Promise<string>): Promise<void> => {
      const calls = loop.calls
      const failed = loop.failures.length
      const started = Date.now()
      const what = await run()
      figures.push(`${name}: ${what} in ${Date.now() - started} ms; honest calls ${loop.calls - calls}, failed ${loop.failures.length - failed}; max RSS so far ${(maxRss / 2 ** 20).toFixed(0)} MiB`)
      expect(node.child.exitCode, `node exited during ${name}: ${node.stderr().slice(-2000)}`).toBeNull()
    }
    try {
      await phase('connections', async () => {
        let opened = 0
        let closedByNode = 0
        const held: Socket[] = []
        await pool(CONNECTIONS, 500, async () => {
          await new Promise<void>((resolve) => {
            const s = connect(port, '127.0.0.1')
            held.push(s)
            s.once('connect', () => { opened++; s.write('\x13/multistream/1.0.0\n'); resolve() })
            s.on('error', () => { resolve() })
            s.once('close', () => { closedByNode++; resolve() })
            setTimeout(resolve, 5_000)
          })
          if (held.length >= 500) for (const s of held.splice(0, 250)) s.destroy()
        })
        for (const s of held) s.destroy()
        return `${opened} of ${CONNECTIONS} TCP connections opened, ${closedByNode} closed by the node while held`
      })

      const attackerKey = await generateKeyPair('Ed25519')
      const attacker = await createLibp2p({
        privateKey: attackerKey,
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux({ maxOutboundStreams: STREAMS + 100 } as never)],
        services: { identify: identify(), pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true }) }
      })
      attackers.push(attacker)

      await phase('frames', async () => {
        let ended = 0
        let opened = 0
        let sentBytes = 0
        await pool(FRAME_STREAMS * 2, FRAME_STREAMS, async (i) => {
          try {
            const s = await (await connection(attacker, addr)).conn.newStream(SYNAPSE_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
            opened++
            const closed = new Promise<true>(resolve => { s.addEventListener('close', () => { resolve(true) }, { once: true }) })
            if (i % 2 === 0) {
              // A frame announcing 2^32 - 1 bytes.
              s.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]))
            } else {
              // 1 MiB announced, then chunks that never complete it past its limit.
              s.send(new Uint8Array([0x80, 0x80, 0x40]))
              const chunk = new Uint8Array(16 * 1024)
              const deadline = Date.now() + 3_000
              while (Date.now() < deadline && s.status === 'open') {
                if (!s.send(chunk)) await withTimeout(new Promise(resolve => { s.addEventListener('drain', resolve, { once: true }) }), 500)
                sentBytes += chunk.length
              }
            }
            if (await withTimeout(closed, 12_000) === true) ended++
            else s.abort(new Error('attacker gives up'))
          } catch { ended++ }
        })
        frameEnded = ended
        frameOpened = opened
        return `${FRAME_STREAMS} oversized and ${FRAME_STREAMS} endless frames (${(sentBytes / 2 ** 20).toFixed(1)} MiB sent), ${opened} opened, ${ended} of ${FRAME_STREAMS * 2} ended by the node`
      })

      await phase('streams', async () => {
        let refused = 0
        let opened = 0
        let dialRefusals = 0
        await pool(STREAMS, 64, async () => {
          try {
            const c = await connection(attacker, addr)
            dialRefusals += c.refusals
            const s = await withTimeout(c.conn.newStream(SYNAPSE_PROTOCOL, { signal: AbortSignal.timeout(5_000) }), 6_000)
            if (s === undefined) { refused++; return }
            opened++
            // Held open without a HELLO: the node's handshake timeout and per-peer caps bound them.
            setTimeout(() => { s.abort(new Error('attacker done')) }, 2_000)
          } catch { refused++ }
        })
        return `${opened} of ${STREAMS} synapse streams opened, ${refused} refused or reset (connection refused ${dialRefusals} times on the way)`
      })

      await phase('gossip', async () => {
        const ps = attacker.services.pubsub as unknown as GossipSub
        ps.subscribe(FLEET_TOPIC)
        const attackerId = peerIdFromPrivateKey(attackerKey).toString()
        await connection(attacker, addr)
        let published = 0
        const started = Date.now()
        for (let seq = 1; seq <= GOSSIP; seq++) {
          const env = await signRecord(attackerKey, 'node', makeNodeRecord(attackerId, { seq, sentMs: Date.now(), startedMs: started }))
          for (const frame of encodeBundles([{ bytes: encodeEnvelope(env), ageMs: 0 }])) {
            await ps.publish(FLEET_TOPIC, frame).then(() => { published++ }, () => {})
          }
          if (seq % 100 === 0) await new Promise(resolve => setTimeout(resolve, 10))
        }
        return `${published} of ${GOSSIP} untrusted records published`
      })
    } finally {
      clearInterval(sampler)
      await loop.stop()
    }
    // Still serving after the floods.
    const after = await client!.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })
    const success = (loop.calls - loop.failures.length) / loop.calls
    console.log(`EXHAUST: ${figures.join('\n  ')}\n  RSS ${(rssAtStart / 2 ** 20).toFixed(0)} MiB at start, max ${(maxRss / 2 ** 20).toFixed(0)} MiB; ` +
      `honest calls ${loop.calls}, failed ${loop.failures.length} (${(100 * success).toFixed(2)} % succeeded)${loop.failures.length > 0 ? `; first failure: ${loop.failures[0]}` : ''}`)
    expect(after).toBe('v1')
    expect(maxRss).toBeLessThan(RSS_LIMIT)
    expect(loop.calls).toBeGreaterThan(50)
    expect(success).toBeGreaterThanOrEqual(0.99)
    expect(frameOpened).toBe(FRAME_STREAMS * 2)
    expect(frameEnded).toBe(FRAME_STREAMS * 2)
  }, 120_000 + (CONNECTIONS + STREAMS + GOSSIP) * 20)
})
