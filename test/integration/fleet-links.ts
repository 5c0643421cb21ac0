// Shared by fleet-stays-whole.test.ts and test/soak/soak.ts: reading a `cell up` node's fleet
// connections from its "peer joined/left" lines, cutting its TCP connections by force with `ss -K`
// (root; works on loopback), and looking at the fleet the way a new user does: a client that joins
// through one node and reports the view it gets.
import { execFileSync } from 'node:child_process'
import { createClient, waitForView } from '../../node-host/client.ts'
import type { AuthorityKey } from '../../core/identity/index.ts'
import type { Proc } from './processes.ts'

/** The fleet-peer count a node last printed, or undefined before its first join line. */
export function fleetPeers (p: Proc): number | undefined {
  const all = [...p.stdout().matchAll(/^peer (?:joined|left) …\w+ \((\d+) fleet peers?\)$/gm)]
  return all.length > 0 ? Number(all[all.length - 1][1]) : undefined
}

/** The node's TCP address with its peer id, from its start lines. */
export function tcpAddr (p: Proc): string {
  const m = /listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/.exec(p.stdout())
  if (m == null) throw new Error('node printed no TCP address')
  return m[1]
}

/** Resolves once `test` holds, polling every `everyMs`, or rejects at the deadline with `what`. */
export async function until (test: () => boolean | Promise<boolean>, what: () => string, timeoutMs: number, everyMs = 100): Promise<number> {
  const started = Date.now()
  while (!(await test())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  return Date.now() - started
}

/**
 * Aborts every established TCP connection of process `pid` (both ends get a reset), as a flaky
 * network, a NAT timeout or a stalled ping would end them. Returns how many sockets were cut.
 */
export function cutConnections (pid: number): number {
  const lines = execFileSync('ss', ['-tnpH', 'state', 'established'], { encoding: 'utf8' }).split('\n')
  let cut = 0
  for (const line of lines) {
    if (!line.includes(`pid=${pid},`)) continue
    const m = /127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)/.exec(line)
    if (m == null) continue
    const [, local, remote] = m
    execFileSync('ss', ['-K', '-tn', `( sport = :${local} and dport = :${remote} ) or ( sport = :${remote} and dport = :${local} )`], { encoding: 'utf8' })
    cut++
  }
  return cut
}

export interface SeenThrough { nodes: string[], releases: Record<string, string> }

/**
 * What a client joining through `addr` sees once the view holds `expectNodes` nodes (or after
 * `timeoutMs`): the node ids and the release version of each of `cells`.
 */
export async function seenThrough (addr: string, key: AuthorityKey, cells: string[], expectNodes: number, timeoutMs = 10_000, release?: Record<string, string>): Promise<SeenThrough> {
  const mesh = await createClient({ bootstrap: [addr], authorityKey: key })
  try {
    const matches = (): boolean => mesh.view.nodes().length >= expectNodes && cells.every(c => release?.[c] === undefined || mesh.view.release(c)?.version === release[c])
    await waitForView(mesh, () => matches() ? true : undefined, `${expectNodes} nodes`, { timeoutMs }).catch(() => {})
    return {
      nodes: mesh.view.nodes().map(n => n.nodeId).sort(),
      releases: Object.fromEntries(cells.map(c => [c, mesh.view.release(c)?.version ?? '-']))
    }
  } finally {
    await mesh.stop()
  }
}
