// ReleasePolicies on a fake view and fetch: which cells it asks for (every cell, or on demand only
// those wanted), a new release asked for again, and a release no node gave asked for again only
// after 30 s, not at every change of the view. The real fetch over libp2p is in
// test/integration/canary-split.test.ts (a Node client) and the browser and edge suites.
import { describe, expect, it } from 'vitest'
import type { Libp2p } from '@libp2p/interface'
import type { FleetView } from '../core/fleet/index.ts'
import { packArtifact } from '../core/manifest/packaged.ts'
import { ReleasePolicies } from './release-policies.ts'

const manifest = (cell: string, weight: number): string =>
  `[cell]\nname = "${cell}"\n\n[cell.authority]\ned25519 = "${'a'.repeat(64)}"\n\n[cell.biology]\ncanary_weight = ${weight}\n`

class FakeView extends EventTarget {
  readonly releases = new Map<string, { digest: string }>()
  release (cell: string): { digest: string } | undefined { return this.releases.get(cell) }
  cells (): string[] { return [...this.releases.keys()] }
  publish (cell: string, digest: string): void {
    this.releases.set(cell, { digest })
    this.dispatchEvent(new CustomEvent('change', { detail: { kind: 'release', cell } }))
  }

  nodeChanged (): void { this.dispatchEvent(new CustomEvent('change', { detail: { kind: 'node' } })) }
}

function setup (options: { onDemand?: boolean, nodes?: string[] } = {}): { view: FakeView, policies: ReleasePolicies, asked: string[], artifacts: Map<string, Uint8Array>, clock: { ms: number }, settled: () => Promise<void> } {
  const view = new FakeView()
  const asked: string[] = []
  const artifacts = new Map<string, Uint8Array>()
  const clock = { ms: 0 }
  const inFlight = new Set<Promise<unknown>>()
  const policies = new ReleasePolicies({} as unknown as Libp2p, view as unknown as FleetView, () => options.nodes ?? ['n1'], {
    onDemand: options.onDemand,
    now: () => clock.ms,
    fetch: async (_peer, digest) => {
      asked.push(digest)
      const p = Promise.resolve().then(() => { const a = artifacts.get(digest); if (a === undefined) throw new Error('no such artifact'); return a })
      inFlight.add(p)
      void p.finally(() => inFlight.delete(p)).catch(() => {})
      return await p
    }
  })
  const settled = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.allSettled([...inFlight, Promise.resolve()]) }
  return { view, policies, asked, artifacts, clock, settled }
}

describe('ReleasePolicies', () => {
  it('on demand asks only for the cells wanted (from the second ask: a one-shot caller fetches nothing), and again for each new release of them', async () => {
    const { view, policies, asked, artifacts, settled } = setup({ onDemand: true })
    artifacts.set('d1', packArtifact(manifest('billing', 30), new Uint8Array()))
    artifacts.set('d2', packArtifact(manifest('billing', 70), new Uint8Array()))
    artifacts.set('s1', packArtifact(manifest('search', 10), new Uint8Array()))
    view.publish('search', 's1')
    view.publish('billing', 'd1')
    view.nodeChanged()
    await settled()
    expect(asked).toEqual([])
    expect(policies.want('billing')).toBeUndefined()
    await settled()
    expect(asked).toEqual([])
    expect(policies.want('billing')).toBeUndefined()
    await settled()
    expect(policies.want('billing')?.canaryWeight).toBe(30)
    view.publish('billing', 'd2')
    await settled()
    expect(policies.want('billing')?.canaryWeight).toBe(70)
    expect(asked).toEqual(['d1', 'd2'])
  })

  it('without on demand follows every cell of the view', async () => {
    const { view, policies, artifacts, settled } = setup()
    artifacts.set('s1', packArtifact(manifest('search', 10), new Uint8Array()))
    view.publish('search', 's1')
    await settled()
    expect(policies.policy('search')?.canaryWeight).toBe(10)
  })

  it('asks again for a release no node gave only after 30 s, and waits for a node when none is connected', async () => {
    const nodes: string[] = []
    const { view, policies, asked, artifacts, clock, settled } = setup({ onDemand: true, nodes })
    view.publish('billing', 'd1')
    policies.want('billing')
    policies.want('billing')
    view.nodeChanged()
    await settled()
    expect(asked).toEqual([])
    nodes.push('n1', 'n2')
    view.nodeChanged()
    await settled()
    expect(asked).toEqual(['d1', 'd1'])
    for (let i = 0; i < 10; i++) view.nodeChanged()
    clock.ms = 29_999
    view.nodeChanged()
    await settled()
    expect(asked).toHaveLength(2)
    artifacts.set('d1', packArtifact(manifest('billing', 40), new Uint8Array()))
    clock.ms = 30_000
    view.nodeChanged()
    await settled()
    expect(asked).toHaveLength(3)
    expect(policies.want('billing')?.canaryWeight).toBe(40)
  })
})
