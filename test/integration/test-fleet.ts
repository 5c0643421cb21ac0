// In-process test fleets: full nodes of real libp2p and real capsids in the test's own process, with
// the short timers the integration suites use, joined through the first node, and everything they
// started (nodes, client meshes, the temp dir) stopped and removed in one call.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Mesh } from '../../core/mesh/index.ts'
import { authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { FullNode, type FullNodeInit } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { projectRoot } from './processes.ts'
import { stageCell } from './stage-cell.ts'

export type TestNodeInit = Omit<FullNodeInit, 'dataDir' | 'bootstrap'>

export class TestFleet {
  readonly nodes: FullNode[] = []
  readonly clients: Mesh[] = []
  root = ''

  /** Makes the temp dir (`prefix`…) and starts `count` nodes `n0`…, each joining through `n0`. */
  async start (prefix: string, count: number, init: TestNodeInit | ((i: number) => TestNodeInit)): Promise<string> {
    this.root = await mkdtemp(join(tmpdir(), prefix))
    for (let i = 0; i < count; i++) {
      const own = typeof init === 'function' ? init(i) : init
      await this.node(`n${i}`, i === 0 ? [] : [this.nodes[0].addresses()[0]], own)
    }
    return this.root
  }

  /** Starts one more node on `<root>/<name>` (an existing data dir restarts that node). */
  async node (name: string, bootstrap: string[], init: TestNodeInit): Promise<FullNode> {
    const node = await FullNode.create({ heartbeatMs: 500, tickMs: 250, listen: { webrtc: false }, ...init, dataDir: join(this.root, name), bootstrap })
    this.nodes.push(node)
    await node.start()
    return node
  }

  /**
   * Publishes the example ledger signed by `key` on the dir driver with a snapshot every 2 s, from an
   * operator client joined through the first node, and waits for its replica: the stateful suites' start.
   */
  async publishDirLedger (key: AuthorityKey): Promise<Mesh> {
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(this.root, 'ledger'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/class = "[a-z]+"/, 'class = "dir"').replace(/snapshot_every = "[^"]+"/, 'snapshot_every = "2s"'))
    const operator = await createClient({ bootstrap: [this.nodes[0].addresses()[0]], authorityKey: key })
    this.clients.push(operator)
    await new Publisher(operator).publish(dir, '1.0.0', key, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    return operator
  }

  /** Stops every client mesh and node (stopping twice is harmless) and removes the temp dir. */
  async stop (): Promise<void> {
    await Promise.all(this.clients.map(async c => await c.stop()))
    await Promise.all(this.nodes.map(async n => await n.stop()))
    // maxRetries: a node's last state write may land while the tree is being removed.
    if (this.root !== '') await rm(this.root, { recursive: true, force: true, maxRetries: 5 })
  }
}

/** Resolves once every node's loop has ticked `n` more times (an event, with a deadline). */
export async function ticks (operator: Mesh, nodes: FullNode[], n: number): Promise<void> {
  const start = nodes.map(x => x.loop.counters.ticks)
  const deadline = Date.now() + n * 2_000 + 10_000
  while (!nodes.every((x, i) => x.loop.counters.ticks >= start[i] + n)) {
    if (Date.now() > deadline) throw new Error(`loops did not tick ${n} times`)
    await waitForView(operator, () => undefined, 'a fleet change', { timeoutMs: 500 }).catch(() => {})
  }
}
