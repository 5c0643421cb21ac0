// Issue 10 in one process: the example ledger cell on 4 full nodes (dir driver), real claim register,
// real snapshots (OCI layouts), real pins over libp2p. The owner of ledger/0 snapshots, two other
// nodes pin the snapshot, and a planned stop of the owner hands the claim over: the new owner
// restores the final snapshot and every acknowledged append is still there. Without the volume
// manager (a plain directory per replica) the balance after the move is 0. Then the whole fleet
// stops and the owner, the last node up, does not wait for pins no node is left to make.
import { describe, it, expect, afterAll } from 'vitest'
import { generateAuthority, issueGrant } from '../../core/identity/index.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'

import { createClient, waitForView } from '../../node-host/client.ts'
import { TestFleet } from './test-fleet.ts'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { requestRestore } from '../../node-host/volumes/restore-protocol.ts'
import { statusSource } from '../../node-host/introspect/serve-introspection.ts'
import { describeClaimVoters, voterVerdict } from '../../node-host/volumes/voter-health.ts'

describe('a stateful cell handed over by a planned stop', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('keeps every acknowledged append, restored on another node from the final snapshot', async () => {
    const key = await generateAuthority()
    const storage = { tuning: { firstSnapshotMs: 500, handoverSafeMs: 20_000 } }
    await fleet.start('cell-stateful-', 4, { authorityKeys: [key], storage, drainGraceMs: 2_000 })
    const operator = await fleet.publishDirLedger(key)

    const acked: number[] = []
    for (let i = 1; i <= 20; i++) {
      await operator.call('ledger', 'append', { account: 'ada', amount: i }, { timeoutMs: 10_000 })
      acked.push(i)
    }
    const owner = nodes.find(n => n.replicas.list('ledger').some(r => r.state === 'ready'))!
    expect(owner).toBeDefined()
    const claim = owner.volumes.manager!.claims()[0]
    expect(claim.claimId).toBe('ledger/0')
    // A snapshot of the owner's becomes safe: two other nodes pinned it.
    await waitForView(operator, () => operator.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0', { timeoutMs: 30_000 })

    // Planned stop of the owner: final snapshot, hand-over, restore elsewhere. Three nodes are up to
    // pin the final snapshot: the owner waits until two did.
    await owner.stop()
    expect(owner.volumes.manager!.counters).toMatchObject({ handovers: 1, unsafeHandovers: 0 })
    const others = nodes.filter(n => n !== owner)
    const next = await waitForView(operator, () => others.find(n => n.replicas.list('ledger').some(r => r.state === 'ready')), 'ledger ready on another node', { timeoutMs: 60_000 })
    const moved = next.volumes.manager!.claims()[0]
    expect(moved.claimId).toBe('ledger/0')
    expect(moved.epoch).toBeGreaterThan(claim.epoch)
    expect(moved.restoredFrom).toMatch(/^snapshot-e\d+-/)
    // The new owner's status report names the claim's voters as its view has them: the stopped
    // node, if the rendezvous hash made it one, gone (and what that means for the claim), the rest live.
    const voters = await waitForView(operator, () => {
      const c = statusSource(next).cell('ledger').claims?.find(x => x.claimId === 'ledger/0')
      return c !== undefined && c.voters.every(v => v.live === (v.peerId !== owner.peerId)) ? c : undefined
    }, 'the new owner\'s view of the claim\'s voters', { timeoutMs: 20_000 })
    expect(voters.epoch).toBe(moved.epoch)
    expect(voters.voters.map(v => v.peerId).sort()).toEqual([...moved.voters].sort())
    const ownerWasVoter = moved.voters.includes(owner.peerId)
    expect(voterVerdict(voters.voters)).toBe(ownerWasVoter ? 'at-risk' : 'ok')
    if (ownerWasVoter) expect(describeClaimVoters(voters, id => id, ms => `${ms} ms`)).toContain(`voter ${owner.peerId} (gone `)
    // Callers learn the claim's epoch from heartbeats: the operator routes only to the new epoch.
    const heard = await waitForView(operator, () => operator.replicas('ledger').find(i => i.claim?.epoch === moved.epoch), 'the new owner\'s heartbeat with its epoch', { timeoutMs: 15_000 })
    expect(heard.claim).toEqual({ ordinal: 0, epoch: moved.epoch })
    expect(operator.claimEpoch('ledger', 0)).toBe(moved.epoch)
    const balance = await operator.call<{ balance: number, entries: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 15_000 })
    expect(balance.entries).toBe(acked.length)
    expect(balance.balance).toBe(acked.reduce((a, b) => a + b, 0))

    // cell restore: back to a snapshot of 20 entries after 5 more appends, on the owner, same epoch.
    const back = await waitForView(operator, () => operator.view.safeSnapshots('ledger/0').find(s => s.epoch === moved.epoch), 'a safe snapshot at the new epoch', { timeoutMs: 30_000 })
    for (let i = 21; i <= 25; i++) await operator.call('ledger', 'append', { account: 'ada', amount: i }, { timeoutMs: 10_000 })
    const ownerId = next.peerId
    // A caller-only grant is refused by name; the authority's operator grant restores.
    const callerKey = await generateKeyPair('Ed25519')
    const now = Date.now()
    const callerGrant = await issueGrant(key, { subject: peerIdFromPrivateKey(callerKey).toString(), roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 })
    const caller = await createClient({ bootstrap: [next.addresses()[0]], privateKey: callerKey, grant: callerGrant })
    clients.push(caller)
    await waitForView(caller, () => caller.libp2p.getPeers().some(p => p.toString() === ownerId) ? true : undefined, 'the caller connected to the owner', { timeoutMs: 20_000 })
    const refused = await requestRestore(caller.libp2p, peerIdFromString(ownerId), caller.credentialsFor('ledger'), { cell: 'ledger', tag: back.tag }).catch((err: Error) => err)
    expect((refused as Error).name, (refused as Error).message).toBe('NotAuthorizedError')
    const answer = await requestRestore(operator.libp2p, peerIdFromString(ownerId), operator.credentialsFor('ledger'), { cell: 'ledger', tag: back.tag }, { signal: AbortSignal.timeout(120_000) })
    expect(answer.t, JSON.stringify(answer)).toBe('restored')
    expect(answer.epoch).toBe(moved.epoch)
    // The new replica answers once it is up (calls meanwhile were refused by name, nothing ran).
    let after: { entries: number } | undefined
    const until = Date.now() + 60_000
    while (after === undefined && Date.now() < until) after = await operator.call<{ entries: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 10_000 }).catch(() => undefined)
    expect(after?.entries).toBe(20)

    // The whole fleet stops, the owner last: once no node is left that could pin its final
    // snapshot it stops at once, instead of waiting out the 20 s it would wait for pins, and keeps
    // the claim (no hand-over: its copy is the newest, and nodes started before it wait for it).
    await Promise.all(nodes.filter(n => n !== next).map(async n => await n.stop()))
    // Every other voter is gone now: the claim can neither renew nor move, and the owner says so.
    const alone = performance.now()
    const last = await waitForView(operator, () => {
      const c = next.volumes.claimVoters().find(x => x.claimId === 'ledger/0')
      return c !== undefined && c.voters.every(v => v.live === (v.peerId === next.peerId)) ? c : undefined
    }, 'the owner seeing the other voters gone', { timeoutMs: 10_000, tickMs: 100 })
    expect(voterVerdict(last.voters)).toBe('stuck')
    process.stdout.write(`stateful handover: the owner saw every other voter gone ${Math.round(performance.now() - alone)} ms after they stopped (the first owner was ${ownerWasVoter ? '' : 'not '}a voter)\n`)
    const stopping = performance.now()
    await next.stop()
    const stopMs = performance.now() - stopping
    process.stdout.write(`stateful handover: the last node (the owner) stopped in ${Math.round(stopMs)} ms\n`)
    expect(stopMs).toBeLessThan(10_000)
    expect(next.volumes.manager!.counters).toMatchObject({ keptForReturn: 1, unsafeHandovers: 0 })
  }, 240_000)
})
