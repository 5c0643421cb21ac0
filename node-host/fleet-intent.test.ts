// The fleet-intent store on a real temp directory; the restart behaviour it enables is shown end to
// end by test/integration/restart.test.ts (real `cell up` processes). Before the store (only
// sequence-floors.json), records, halts, ports and peers were not kept: every round-trip case here
// fails on the old code (nothing to import, and nothing of a release survived a restart).
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { createSocket } from 'node:dgram'
import { join } from 'node:path'
import { loadFleetIntent, MalformedFleetIntentError, INTENT_FILE } from './fleet-intent.ts'
import { reuseListenPorts, listeningPorts } from './listen-ports.ts'

describe('fleet-intent store', () => {
  let dir = ''
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cell-intent-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('keeps signed records, floors, halts, ports and peers across a reload', async () => {
    const a = await loadFleetIntent(dir)
    a.putRecord('release', 'auth billing', new Uint8Array([1, 2, 3]))
    a.putRecord('release', 'auth billing', new Uint8Array([4, 5]))
    a.putRecord('desired', 'auth versioned', new Uint8Array([9]))
    a.putRecord('retire', 'auth versioned', new Uint8Array([7, 7]))
    a.release.accept({ cell: 'auth billing', seq: 42 })
    a.retire.accept({ cell: 'auth versioned', seq: 43 })
    a.setHalts([{ cell: 'burner', version: '1.0.0', digest: 'ab'.repeat(32), atMs: 5, reason: 'crashes', nodeId: 'self' }])
    a.setListen({ tcp: 4001, ws: 4002 })
    a.setPeers(['/ip4/127.0.0.1/tcp/4003/p2p/x'])
    await a.flush()
    const b = await loadFleetIntent(dir)
    expect(b.records('release')).toEqual([{ key: 'auth billing', signed: new Uint8Array([4, 5]) }])
    expect(b.records('desired')).toEqual([{ key: 'auth versioned', signed: new Uint8Array([9]) }])
    expect(b.release.highestSeq('auth billing')).toBe(42)
    // Retire records and their floor (issue 8 §6): a retired cell stays retired across a restart.
    expect(b.records('retire')).toEqual([{ key: 'auth versioned', signed: new Uint8Array([7, 7]) }])
    expect(b.retire.highestSeq('auth versioned')).toBe(43)
    expect(b.halts()).toEqual([{ cell: 'burner', version: '1.0.0', digest: 'ab'.repeat(32), atMs: 5, reason: 'crashes', nodeId: 'self' }])
    expect(b.listen()).toEqual({ tcp: 4001, ws: 4002 })
    expect(b.peers()).toEqual(['/ip4/127.0.0.1/tcp/4003/p2p/x'])
  })

  it('bounds the records it keeps, forgetting the least recently updated', async () => {
    const a = await loadFleetIntent(dir)
    for (let i = 0; i < 4100; i++) a.putRecord('release', `auth c${i}`, new Uint8Array([i & 255]))
    a.putRecord('release', 'auth huge', new Uint8Array(64 * 1024))
    const keys = a.records('release').map(r => r.key)
    expect(keys).toHaveLength(4096)
    expect(keys[0]).toBe('auth c4')
    expect(keys).not.toContain('auth huge')
  })

  it('takes the replay floors of a node that ran before the store (sequence-floors.json)', async () => {
    await writeFile(join(dir, 'sequence-floors.json'), JSON.stringify({ release: [['auth billing', 7]], desired: [['auth billing', 9]] }))
    const a = await loadFleetIntent(dir)
    expect(a.release.highestSeq('auth billing')).toBe(7)
    expect(a.desired.highestSeq('auth billing')).toBe(9)
  })

  it('refuses a corrupt file by name instead of forgetting the floors', async () => {
    await writeFile(join(dir, INTENT_FILE), '{"version":1,"floors":{"release":[["x",-1]]')
    await expect(loadFleetIntent(dir)).rejects.toBeInstanceOf(MalformedFleetIntentError)
  })

  it('skips records of a kind it does not know (written by a newer node)', async () => {
    const a = await loadFleetIntent(dir)
    a.putRecord('release', 'auth billing', new Uint8Array([1]))
    await a.flush()
    const file = JSON.parse(await readFile(join(dir, INTENT_FILE), 'utf8'))
    file.records['future-kind'] = [['auth billing', 'AQ==']]
    await writeFile(join(dir, INTENT_FILE), JSON.stringify(file))
    const b = await loadFleetIntent(dir)
    expect(b.records('release')).toHaveLength(1)
  })
})

describe('listen ports', () => {
  let held: Server | undefined
  afterEach(async () => { await new Promise<void>(resolve => held?.close(() => { resolve() }) ?? resolve()) })

  it('reuses a free remembered port, lets a flag win, and falls back with a note when one is taken', async () => {
    held = createServer()
    await new Promise<void>(resolve => held!.listen(0, '127.0.0.1', resolve))
    const taken = (held.address() as { port: number }).port
    const free = await new Promise<number>((resolve) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => { resolve(p) }) }) })
    const out = await reuseListenPorts({ webrtc: false, ws: 0 }, { tcp: taken, ws: free })
    expect(out.ports.tcp).toBeUndefined()
    expect(out.ports.ws).toBe(0)
    expect(out.notes).toEqual([`tcp port ${taken} (used last time) is taken; listening on a fresh port`])
    const again = await reuseListenPorts({}, { tcp: free })
    expect(again.ports.tcp).toBe(free)
  })

  it('reads the ports a node listens on from its multiaddrs', () => {
    expect(listeningPorts(['/ip4/127.0.0.1/tcp/4001/p2p/x', '/ip4/127.0.0.1/tcp/4002/ws/p2p/x', '/ip4/127.0.0.1/udp/4003/webrtc-direct/certhash/u/p2p/x', '/ip4/127.0.0.1/udp/4004/quic-v1/webtransport/certhash/a/certhash/b/p2p/x']))
      .toEqual({ tcp: 4001, ws: 4002, webrtc: 4003, webtransport: 4004 })
  })

  it('reuses the last WebTransport port when any port is asked for, and none when it is off', async () => {
    const free = await new Promise<number>((resolve) => { const s = createSocket('udp4'); s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => { resolve(p) }) }) })
    expect((await reuseListenPorts({ webtransport: 0 }, { webtransport: free })).ports.webtransport).toBe(free)
    expect((await reuseListenPorts({ webtransport: 4433 }, { webtransport: free })).ports.webtransport).toBe(4433)
    expect((await reuseListenPorts({ webtransport: false }, { webtransport: free })).ports.webtransport).toBe(false)
    expect((await reuseListenPorts({}, { webtransport: free })).ports.webtransport).toBeUndefined()
  })
})
