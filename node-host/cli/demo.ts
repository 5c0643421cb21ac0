// `npm start`: a local fleet of three full nodes on loopback with embedded defaults (dir storage, no
// config), the example cells published under a freshly made authority key, one call, and the command
// to call the cell from another shell. It also serves the dashboard (node-host/http) and prints its
// URL; the page runs its own light peer and is fed only by its own gossip subscription and calls.
// Ctrl-C drains the replicas and stops everything.
//
// Grants for the page: a tab makes its own peer key, so its id is unknown up front. The demo's
// dashboard server therefore signs a caller grant for whatever peer id a tab posts to `/grant`,
// with the demo's throwaway authority key. Anyone who can reach that port may call the demo's cells,
// so the server listens on 127.0.0.1 only, and answers only requests that name it in Host (no DNS
// rebinding), come from its own page's origin and carry the per-run secret that page was served
// (node-host/http/static-server.ts): a local demo convenience, never a production flow (there the
// authority runs `cell grant caller <peer-id>` and the page imports the token).
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../keys/index.ts'
import { FullNode } from '../full-node.ts'
import { createClient, waitForReplicas, waitForView } from '../client.ts'
import { Publisher } from '../publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { serveDashboard, webSocketAddrs, type DashboardServer } from '../http/static-server.ts'
import { denoBinary } from '../webtransport/sidecar.ts'
import { snapshotName } from './snapshots.ts'

const root = join(import.meta.dirname, '..', '..')
const NODES = 3
/** Caller grants the demo page receives are short: the demo is meant to be restarted. */
const PAGE_GRANT_MS = 12 * 3_600_000

function say (line = ''): void {
  process.stdout.write(line + '\n')
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cell-demo-'))
  const nodes: FullNode[] = []
  let client: Mesh | undefined
  let dashboard: DashboardServer | undefined
  let stopping = false
  const stop = async (why: string): Promise<void> => {
    if (stopping) return
    stopping = true
    say(`\n${why}: draining replicas and stopping ${nodes.length} nodes…`)
    await dashboard?.close().catch(() => {})
    await client?.stop().catch(() => {})
    // Every node stops at once and the demo's data goes with it: no final snapshot can be pinned by
    // another node, so none is waited for.
    await Promise.all(nodes.map(async n => await n.stop({ handoverSafeMs: 0 }).catch(() => {})))
    await rm(dir, { recursive: true, force: true })
    say('stopped cleanly')
  }
  const stopped = new Promise<void>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void stop(sig).then(resolve) })
  })

  try {
    const authority = await generateAuthority()
    const keyPath = join(dir, 'authority.key')
    await writeAuthorityKey(keyPath, authority)
    say(`authority ${authorityIdOf(authority.publicKey)} (key in ${keyPath})`)

    for (let i = 0; i < NODES; i++) {
      const bootstrap = i === 0 ? [] : [nodes[0].addresses()[0]]
      // WebTransport for the browser tabs too, where the deno package installed its binary.
      const node = await FullNode.create({ dataDir: join(dir, `node-${i + 1}`), bootstrap, authorityKeys: [authority], listen: { webtransport: denoBinary() !== undefined ? 0 : false } })
      await node.start()
      nodes.push(node)
      say(`node ${i + 1}  ${node.peerId}`)
      for (const a of node.addresses()) say(`        ${a}`)
    }

    client = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority, listen: true })
    const publisher = new Publisher(client)
    for (const cell of ['billing', 'ledger']) {
      const r = await publisher.publish(join(root, 'examples', cell), '1.0.0', authority, { setAuthority: true })
      say(`published ${r.cell}@${r.version}  sha256 ${r.digest.slice(0, 16)}…  ${r.ready} replica(s) ready`)
    }

    await waitForReplicas(client, 'billing')
    const billing = client.remote<{ charge: (req: { amount: number, currency?: string }) => Promise<unknown> }>('billing')
    const result = await billing.charge({ amount: 5, currency: 'EUR' })
    say(`\nbilling.charge({ amount: 5 }) → ${JSON.stringify(result)}`)

    // The stateful example: one append into its claim volume, then its first snapshot, held by two
    // other nodes (a node that dies takes nothing acknowledged before it with it).
    await waitForReplicas(client, 'ledger')
    const entry = await client.call<{ seq: number }>('ledger', 'append', { account: 'demo', amount: 5, memo: 'first entry' }, { timeoutMs: 15_000 })
    const owner = nodes.find(n => n.volumes.manager?.claims().some(c => c.claimId === 'ledger/0'))
    const volume = owner?.volumes.manager?.claims().find(c => c.claimId === 'ledger/0')
    say(`ledger.append(…) → entry ${entry.seq} in volume ledger/0 (epoch ${volume?.epoch ?? '?'}) on node ${owner !== undefined ? nodes.indexOf(owner) + 1 : '?'}, ${owner?.volumes.storage.zfs !== undefined ? 'a ZFS dataset' : 'a directory (start nodes with --zfs-pool for ZFS)'}`)
    const c = client
    const safe = await waitForView(c, () => c.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0', { timeoutMs: 30_000 }).catch(() => undefined)
    if (safe !== undefined) say(`first snapshot ${snapshotName('ledger', safe.takenMs)} (OCI tag ${safe.tag}), held by ${c.view.snapshotHolders(safe).length} other node(s): npx cell snapshots ledger`)
    else say('ledger has no snapshot held by two other nodes yet: npx cell snapshots ledger shows where they stand')

    dashboard = await serveDashboard({
      port: Number(process.env.CELL_DASHBOARD_PORT ?? 0),
      config: () => ({ bootstrap: nodes.flatMap(n => webSocketAddrs(n.addresses())).slice(0, 8), trust: [authorityIdOf(authority.publicKey)] }),
      issueGrant: async (peerId, options) => {
        const now = Date.now()
        const grant = await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + PAGE_GRANT_MS }, options)
        return encodeGrantToken(grant)
      }
    })
    say(`\ndashboard ${dashboard.url}  (the tab joins the fleet itself; local demo: it is handed a caller grant)`)
    // `npm run edge` (edge-host/dev.ts) finds the running demo by this file: the nodes' WebSocket
    // addresses and the authority key that signs the edge's caller grant. Removed with `dir` on stop.
    await writeFile(join(dir, 'fleet.json'), JSON.stringify({ bootstrap: nodes.flatMap(n => webSocketAddrs(n.addresses())).slice(0, 8), trust: [authorityIdOf(authority.publicKey)], authorityKey: keyPath }))
    say('HTTP through a Cloudflare edge worker in front of this fleet: npm run edge (another shell)')

    const bootstrap = nodes[0].addresses()[0]
    say('\nCall it from another shell:')
    say(`  CELL_BOOTSTRAP=${bootstrap} \\`)
    say(`    npx cell call billing charge '{"amount":12}' --key ${keyPath}`)
    say('\nThe fleet keeps running; press Ctrl-C to stop it.')
  } catch (err) {
    process.stderr.write(`${(err as Error).name}: ${(err as Error).message}\n`)
    await stop('error')
    process.exitCode = 1
    return
  }
  await stopped
}

await main()
