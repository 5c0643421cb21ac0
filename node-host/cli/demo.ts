// `npm start`: a local fleet of three full nodes on loopback with embedded defaults (dir storage, no
// config), the example cells published under a freshly made authority key, one call, and the command
// to call the cell from another shell. Ctrl-C drains the replicas and stops everything.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../keys/index.ts'
import { FullNode } from '../full-node.ts'
import { createClient, waitForReplicas } from '../client.ts'
import { Publisher } from '../publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'

const root = join(import.meta.dirname, '..', '..')
const NODES = 3

function say (line = ''): void {
  process.stdout.write(line + '\n')
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cell-demo-'))
  const nodes: FullNode[] = []
  let client: Mesh | undefined
  let stopping = false
  const stop = async (why: string): Promise<void> => {
    if (stopping) return
    stopping = true
    say(`\n${why}: draining replicas and stopping ${nodes.length} nodes…`)
    await client?.stop().catch(() => {})
    await Promise.all(nodes.map(async n => await n.stop().catch(() => {})))
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
      const node = await FullNode.create({ dataDir: join(dir, `node-${i + 1}`), bootstrap, authorityKeys: [authority] })
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
