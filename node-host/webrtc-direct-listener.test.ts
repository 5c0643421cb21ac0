// STUN binding requests with made-up ufrags against a real WebRTC-direct listener (node-datachannel):
// each one the listener takes makes a native peer connection (a thread, a descriptor) for up to 10 s.
// The first case is the attack on @libp2p/webrtc alone; the others show the bound
// (node-host/webrtc-direct-listener.ts): one source past its share and all sources past the total
// are dropped before any native object exists, and an honest peer still connects meanwhile, also
// while a flood keeps every slot busy (stale connections in progress lose their slot). The
// listener runs in a child process (test/reliability/webrtc-direct-target.ts): node-datachannel in a
// vitest worker thread crashed the whole run.
import { afterEach, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { createSocket, type Socket } from 'node:dgram'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { boundWebRTCDirectListener } from './webrtc-direct-listener.ts'
import { stunRequest } from '../test/reliability/stun.ts'
import { nodeBin, projectRoot } from '../test/integration/processes.ts'
import { until } from '../test/integration/fleet-links.ts'

const closers: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of closers.splice(0).reverse()) await c() })

/** Sends `n` requests with fresh ufrags from `from` to `port`, and resolves once the listener answered each it took (it answers only those). */
async function flood (port: number, from: string, n: number): Promise<{ answeredUfrags: () => number }> {
  const udp: Socket = createSocket('udp4')
  closers.push(async () => { udp.close() })
  const answered = new Set<string>()
  udp.on('message', (msg: Buffer) => { answered.add(msg.subarray(8, 20).toString('hex')) })
  await new Promise<void>(resolve => { udp.bind(0, from, resolve) })
  for (let i = 0; i < n; i++) udp.send(stunRequest(), port, '127.0.0.1')
  return { answeredUfrags: () => answered.size }
}

interface Target { child: ChildProcess, port: number, lines: string[], refused: (reason?: string) => number, threads: () => Promise<number>, dial: () => Promise<string> }

async function target (args: string[]): Promise<Target> {
  const child = spawn(nodeBin, [join(projectRoot, 'test', 'reliability', 'webrtc-direct-target.ts'), ...args], { cwd: projectRoot, stdio: ['pipe', 'pipe', 'pipe'] })
  closers.push(async () => { child.kill('SIGKILL') })
  const lines: string[] = []
  let buffered = ''
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString()
    const parts = buffered.split('\n')
    buffered = parts.pop()!
    lines.push(...parts)
  })
  let err = ''
  child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000) })
  await until(() => lines.some(l => l.startsWith('listening ')) || child.exitCode !== null, () => 'the listener to start', 30_000, 20).catch((e: Error) => { throw new Error(`${e.message}; stderr: ${err}`) })
  if (child.exitCode !== null) throw new Error(`the listener process exited: ${err}`)
  const port = Number(lines.find(l => l.startsWith('listening '))!.match(/\/udp\/(\d+)\//)![1])
  return {
    child,
    port,
    lines,
    refused: (reason) => lines.filter(l => l.startsWith('refused ') && (reason === undefined || l === `refused ${reason}`)).length,
    threads: async () => (await readdir(`/proc/${child.pid}/task`)).length,
    dial: async () => {
      const before = lines.filter(l => l.startsWith('dial ')).length
      child.stdin!.write('dial\n')
      await until(() => lines.filter(l => l.startsWith('dial ')).length > before, () => 'the dial to end', 15_000, 20)
      return lines.filter(l => l.startsWith('dial ')).at(-1)!
    }
  }
}

describe('WebRTC-direct: STUN requests with made-up ufrags', () => {
  it('the attack on @libp2p/webrtc alone: each request is a native peer connection (a thread) for seconds', async () => {
    const t = await target(['plain'])
    const before = await t.threads()
    const f = await flood(t.port, '127.0.0.2', 60)
    // Every request is answered (a peer connection was made for it), and native threads pile up.
    await until(() => f.answeredUfrags() === 60, () => 'the listener to answer every request', 5_000, 20)
    await until(async () => await t.threads() - before >= 30, () => 'native threads to pile up', 5_000, 20)
  }, 30_000)

  it('drops a source past its share and all sources past the total; an honest peer connects meanwhile', async () => {
    // No eviction here (staleMs past the test): the counts below are of refusals alone.
    const t = await target(['bound', '4', '10', '60000'])
    const before = await t.threads()
    const first = await flood(t.port, '127.0.0.2', 60)
    await until(() => t.refused() === 56, () => 'the 56 requests past the share to be dropped', 5_000, 20)
    expect(t.refused('TooManyPendingFromHost')).toBe(56)
    // The 4 it took are answered (their connectivity checks go on until the 10 s deadline); the rest never were.
    await until(() => first.answeredUfrags() >= 4, () => 'the 4 taken requests to be answered', 5_000, 20)
    // An honest dialer from another address gets one of the 6 slots left.
    expect(await t.dial()).toBe('dial ok')
    // Three more sources take the rest of the total (4 + 4 + 2, the honest one done); a fifth is dropped as over it.
    await flood(t.port, '127.0.0.3', 4)
    await flood(t.port, '127.0.0.4', 4)
    await until(() => t.refused() === 56 + 2, () => 'the total to be reached', 5_000, 20)
    await flood(t.port, '127.0.0.5', 3)
    await until(() => t.refused('TooManyPending') === 5, () => 'the requests past the total to be dropped', 5_000, 20)
    // The flood made at most its share of native objects, not one per request: of the first source's
    // 60 requests only the 4 taken were ever answered.
    expect(first.answeredUfrags()).toBe(4)
    expect(await t.threads() - before).toBeLessThan(30)
  }, 40_000)

  it('a flood that keeps every slot busy gives way to an honest peer: a connection in progress that has not connected after staleMs loses its slot', async () => {
    // Three sources fill the total (4 + 4 + 2; none of them ever connects, like forged sources) and
    // send again every 2 s while an honest peer dials. Without eviction (staleMs past the 10 s
    // deadline: the second listener) every slot stays taken until the deadline and the dial fails.
    const burst = async (port: number): Promise<void> => {
      await flood(port, '127.0.0.2', 4)
      await flood(port, '127.0.0.3', 4)
      await flood(port, '127.0.0.4', 2)
    }
    const run = async (staleMs: number): Promise<{ dial: string, evicted: number }> => {
      const t = await target(['bound', '4', '10', String(staleMs)])
      await burst(t.port)
      const timer = setInterval(() => { void burst(t.port) }, 2_000)
      try {
        return { dial: await t.dial(), evicted: t.refused('Evicted') }
      } finally {
        clearInterval(timer)
      }
    }
    const kept = await run(500)
    expect(kept.dial).toBe('dial ok')
    expect(kept.evicted).toBeGreaterThan(0)
    const without = await run(60_000)
    console.log(`with staleMs 500: ${kept.dial}, ${kept.evicted} evicted; without: ${without.dial}`)
    expect(without.dial).toMatch(/^dial failed/)
    expect(without.evicted).toBe(0)
  }, 60_000)

  it('refuses limits that are not positive integers', () => {
    // Checked before the transport is made (no native code in this worker: see the top of the file).
    expect(() => boundWebRTCDirectListener(() => ({}), { total: 0 })).toThrow(/total must be a positive integer/)
  })
})
