// `cell up` processes, each in a network namespace of its own with a veth on a bridge in the test's
// namespace, and a second bridge with no way to the first: moving a node's link there cuts it off
// (`cut`), moving it back heals (`heal`). The test's own address is on the first bridge, so the
// test reaches the nodes that were not cut. Names and the /24 come from the process id and a
// per-test tag, so two tests (or two runs) never share a namespace, bridge or address. Needs root.
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import { cell, stopProc, type Proc } from './processes.ts'

const run = promisify(execFile)

function ip (args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

export interface NetnsFleetInit {
  /** Two lowercase letters naming this test's links and namespaces (`sp`: stateful partition). */
  tag: string
  /** Second octet of the fleet's 10.x.y.0/24 (distinct per test). */
  octet: number
  count: number
}

export class NetnsFleet {
  readonly nodes: Proc[] = []
  readonly ids: string[] = []
  /** Each node's TCP listen address (`/ip4/…/tcp/…/p2p/…`). */
  readonly addresses: string[] = []
  /** Each node's metrics URL, reachable inside its namespace (see `metrics`). */
  readonly metricsUrls: string[] = []
  private readonly init: NetnsFleetInit
  private readonly id = process.pid % 200

  constructor (init: NetnsFleetInit) {
    this.init = init
  }

  get subnet (): string { return `10.${this.init.octet}.${this.id}` }
  ns (i: number): string { return `cell${this.init.tag}${this.id}n${i}` }
  ipOf (i: number): string { return `${this.subnet}.${10 + i}` }
  private outer (i: number): string { return `${this.init.tag}o${this.id}n${i}` }
  private get bridgeA (): string { return `${this.init.tag}a${this.id}` }
  private get bridgeB (): string { return `${this.init.tag}b${this.id}` }

  /** Namespaces, links and bridges; the test's address is `<subnet>.1` on the bridge nodes start on. */
  create (): void {
    this.teardown()
    for (const b of [this.bridgeA, this.bridgeB]) { ip(['link', 'add', b, 'type', 'bridge']); ip(['link', 'set', b, 'up']) }
    ip(['addr', 'add', `${this.subnet}.1/24`, 'dev', this.bridgeB])
    for (let i = 0; i < this.init.count; i++) {
      ip(['netns', 'add', this.ns(i)])
      ip(['link', 'add', this.outer(i), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns(i)])
      ip(['link', 'set', this.outer(i), 'master', this.bridgeB])
      ip(['link', 'set', this.outer(i), 'up'])
      ip(['-n', this.ns(i), 'addr', 'add', `${this.ipOf(i)}/24`, 'dev', 'eth0'])
      ip(['-n', this.ns(i), 'link', 'set', 'eth0', 'up'])
      ip(['-n', this.ns(i), 'link', 'set', 'lo', 'up'])
    }
  }

  /**
   * Starts `cell up` on every node (node 0 first, the rest bootstrapping from it) and waits for each
   * to print its id, TCP address and metrics URL.
   */
  async start (args: (i: number) => string[], env: Record<string, string> = {}): Promise<void> {
    const up = (i: number, bootstrap?: string): Proc => {
      const p = cell(['up', '--host', this.ipOf(i), ...args(i), ...(bootstrap !== undefined ? ['--bootstrap', bootstrap] : [])], env, { netns: this.ns(i) })
      this.nodes.push(p)
      return p
    }
    const tcp = (i: number): RegExp => new RegExp(`listening (/ip4/${this.ipOf(i).replace(/\./g, '\\.')}/tcp/\\d+/p2p/\\w+)`)
    const first = up(0)
    const bootstrap = (await first.waitFor(tcp(0), 60_000))[1]
    for (let i = 1; i < this.init.count; i++) up(i, bootstrap)
    for (const [i, p] of this.nodes.entries()) {
      this.ids.push((await p.waitFor(/cell node (\w+)/, 60_000))[1])
      this.addresses.push((await p.waitFor(tcp(i), 60_000))[1])
      this.metricsUrls.push((await p.waitFor(/metrics (http:\/\/\S+\/metrics)/, 60_000))[1])
    }
  }

  /** Moves the links of `indices` to the bridge with no way to the rest (and no test address). */
  cut (indices: readonly number[]): void {
    for (const i of indices) ip(['link', 'set', this.outer(i), 'master', this.bridgeA])
  }

  /** Every link back on the common bridge. */
  heal (): void {
    for (let i = 0; i < this.init.count; i++) ip(['link', 'set', this.outer(i), 'master', this.bridgeB])
  }

  /** Node `i`'s Prometheus text, fetched inside its namespace (reachable whatever the cut), within 3 s. */
  async metrics (i: number): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', this.ns(i), 'curl', '-sf', '--max-time', '3', this.metricsUrls[i]], { timeout: 5_000, maxBuffer: 8 * 1024 * 1024 })
    return stdout
  }

  async stop (): Promise<void> {
    for (const p of this.nodes) if (p.child.signalCode === null && p.child.exitCode === null) p.child.kill('SIGCONT')
    await Promise.all(this.nodes.map(async p => await stopProc(p, 20_000)))
    this.teardown()
  }

  teardown (): void {
    for (let i = 0; i < this.init.count; i++) {
      try { ip(['netns', 'del', this.ns(i)]) } catch {}
      try { ip(['link', 'del', this.outer(i)]) } catch {}
    }
    for (const b of [this.bridgeA, this.bridgeB]) { try { ip(['link', 'del', b]) } catch {} }
  }
}

/** The value of an unlabelled series (or one with exactly `labels`) in Prometheus text. */
export function metricValue (text: string, name: string, labels = ''): number | undefined {
  const prefix = labels === '' ? `${name} ` : `${name}{${labels}} `
  const line = text.split('\n').find(l => l.startsWith(prefix))
  return line === undefined ? undefined : Number(line.slice(prefix.length).trim().split(' ')[0])
}
