// A fleet whose nodes disagree on the dissemination mode (docs/biology.md "Scale") used to split in
// silence. Now each side reports the other: in-process full nodes of real libp2p (two per-cell nodes,
// one fleet-mode node, a per-cell client), and two real `cell up` processes started with different
// --dissemination, whose output says what is wrong and what to do.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { MEMBERS_TOPIC, type Dissemination } from '../../core/fleet/index.ts'
import { DisseminationMismatchError } from '../../core/fleet/errors.ts'
import { until } from '../../core/fleet/testing.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient } from '../../node-host/client.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { TestFleet } from './test-fleet.ts'
import { cell, cellRun, fleetLogs, stopProc, type Proc } from './processes.ts'

const short = (id: string): string => `…${id.slice(-6)}`
const TEXT = /^node …\w{6} disseminates per (fleet|cell), this node per (fleet|cell): they do not see each other's replicas; start every node and client of a fleet with the same --dissemination \(or CELL_DISSEMINATION; docs\/biology\.md, "Scale"\)$/

describe('a fleet of mixed dissemination modes', () => {
  const fleet = new TestFleet()
  const procs: Proc[] = []
  let root = ''
  afterAll(async () => {
    await Promise.all(procs.map(async p => await stopProc(p)))
    await fleet.stop()
    if (root !== '') await rm(root, { recursive: true, force: true, maxRetries: 5 })
  }, 60_000)

  it('in process: per-cell nodes and a fleet-mode node report each other; nodes and a client of the same mode do not', async () => {
    const authority = await generateAuthority()
    const dir = await fleet.start('cell-mixed-', 0, {})
    const reports = new Map<FullNode, DisseminationMismatchError[]>()
    // Listened to before start: peers connect while a node starts.
    const start = async (name: string, dissemination: Dissemination, bootstrap: string[]): Promise<FullNode> => {
      const node = await FullNode.create({ heartbeatMs: 500, tickMs: 250, listen: { webrtc: false }, authorityKeys: [authority], dissemination, dataDir: join(dir, name), bootstrap })
      fleet.nodes.push(node)
      reports.set(node, [])
      node.mesh.gossip.addEventListener('dissemination-mismatch', (evt) => { reports.get(node)!.push((evt as CustomEvent<DisseminationMismatchError>).detail) })
      await node.start()
      return node
    }
    const a = await start('a', 'per-cell', [])
    const b = await start('b', 'per-cell', [a.addresses()[0]])
    const f = await start('f', 'fleet', [a.addresses()[0]])
    const client = await createClient({ bootstrap: [a.addresses()[0]], authorityKey: authority, dissemination: 'per-cell' })
    fleet.clients.push(client)
    const reported = (node: FullNode): string[] => reports.get(node)!.map(e => e.peerId)
    const seen = (): string => [a, b, f].map(n => `${short(n.peerId)} reported ${reported(n).map(short).join(' ') || 'nobody'}`).join('; ')
    const heartbeats = [a, b, f].map(n => n.mesh.gossip)

    // a and f are connected (f joined through a): each reports the other, within a few heartbeats.
    await until(`a and f report each other (${seen()})`, () => reported(a).includes(f.peerId) && reported(f).includes(a.peerId), heartbeats, 'heartbeat', 15_000)
    const [aboutF] = reports.get(a)!.filter(e => e.peerId === f.peerId)
    expect(aboutF).toBeInstanceOf(DisseminationMismatchError)
    expect(aboutF.message).toMatch(TEXT)
    expect(aboutF.message).toContain(`node ${short(f.peerId)} disseminates per fleet, this node per cell`)
    expect(reports.get(f)!.find(e => e.peerId === a.peerId)?.message).toContain(`node ${short(a.peerId)} disseminates per cell, this node per fleet`)

    // The per-cell client and b are known subscribers of a's record topic; two more heartbeats of
    // every node after that, nobody of the same mode has been reported, and nobody twice.
    const aPubsub = a.mesh.libp2p.services.pubsub
    const subscribed = (id: string): boolean => aPubsub.getSubscribers(MEMBERS_TOPIC).some(p => p.toString() === id)
    await until('a sees the client and b subscribed to the members topic', () => subscribed(client.peerId.toString()) && subscribed(b.peerId), aPubsub as unknown as EventTarget, 'subscription-change', 15_000)
    const ticks = heartbeats.map(g => g.stats().ticks)
    await until('two more heartbeats everywhere', () => heartbeats.every((g, i) => g.stats().ticks >= ticks[i] + 2), heartbeats, 'heartbeat', 15_000)
    expect(reported(a), seen()).toEqual([f.peerId])
    expect(reported(b).filter(id => id !== f.peerId), seen()).toEqual([])
    // f rightly reports whichever per-cell peers it is connected to: the nodes, and the client too (it reaches f).
    expect(reported(f).filter(id => id !== a.peerId && id !== b.peerId && id !== client.peerId.toString()), seen()).toEqual([])
    expect(new Set(reported(f)).size).toBe(reported(f).length)
    expect(a.mesh.gossip.mismatches().map(p => p.peerId)).toEqual([f.peerId])
    // The gauge on a's /metrics registry.
    expect(await a.metrics.text()).toMatch(/^cell_dissemination_mismatch_peers 1$/m)

    // f leaves: a's entry is cleared at its next heartbeat, and nothing is reported anew.
    await f.stop()
    await until('a forgets f', () => a.mesh.gossip.mismatches().length === 0, a.mesh.gossip, 'heartbeat', 15_000)
    expect(await a.metrics.text()).toMatch(/^cell_dissemination_mismatch_peers 0$/m)
    expect(reported(a)).toEqual([f.peerId])
  })

  it('two `cell up` processes started with different --dissemination print the other node\'s mode and what to do', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-mixed-up-'))
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, await generateAuthority())
    const up = (name: string, mode: Dissemination, bootstrap?: string): Proc => {
      const p = cell(['up', '--data', join(root, name), '--authority', keyPath, '--dissemination', mode, ...(bootstrap !== undefined ? ['--bootstrap', bootstrap] : [])])
      procs.push(p)
      return p
    }
    const perCell = up('p', 'per-cell')
    const [, bootstrap, perCellId] = await perCell.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/(\w+))/, 30_000)
    const fleetMode = up('f', 'fleet', bootstrap)
    const fleetId = (await fleetMode.waitFor(/^cell node (\w+)$/m, 30_000))[1]
    try {
      const onPerCell = await perCell.waitFor(new RegExp(`^node …${fleetId.slice(-6)} disseminates per fleet, this node per cell: .*$`, 'm'), 20_000)
      const onFleet = await fleetMode.waitFor(new RegExp(`^node …${perCellId.slice(-6)} disseminates per cell, this node per fleet: .*$`, 'm'), 20_000)
      expect(onPerCell[0]).toMatch(TEXT)
      expect(onFleet[0]).toMatch(TEXT)
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${fleetLogs([perCell, fleetMode])}`)
    }
    // `cell status` (a per-cell operator client joining through the per-cell node) names the mixed fleet.
    const status = await cellRun(['status', '--bootstrap', bootstrap, '--key', keyPath], 30_000, { CELL_HOME: join(root, 'home'), CELL_DISSEMINATION: 'per-cell' })
    expect(status.code, status.stderr).toBe(0)
    expect(status.stdout).toMatch(new RegExp(`^  node …${perCellId.slice(-6)} is connected to \\d+ node\\(s\\) that disseminate per fleet, unlike itself \\([^)]*…${fleetId.slice(-6)}[^)]*\\): they do not see each other's replicas; start every node and client of a fleet with the same --dissemination$`, 'm'))
    // Once per appearance: over both processes' whole lives, one line each.
    await stopProc(fleetMode)
    await stopProc(perCell)
    expect(perCell.stdout().match(/disseminates per fleet/g)).toHaveLength(1)
    expect(fleetMode.stdout().match(/disseminates per cell/g)).toHaveLength(1)
  })
})
