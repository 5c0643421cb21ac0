// What a batch costs beside its calls: `node test/bench/batch-cost.ts [ms per figure, 3000]`.
// 1. A plain TCP ping-pong between two Node processes on 127.0.0.1 (no libp2p, 64 bytes, one in
//    flight): the CPU time per round trip in each process, which is what the kernel and the event
//    loop charge for one write, one wake-up and one read on this machine.
// 2. Synapse calls at 1, 16, 64 and 512 in flight (all of a window's calls go out in one write and
//    come back in one), and the least-squares fit of CPU per call = a + B / window: B is the fixed
//    CPU per batch round trip (both ends), a the CPU per call. This is why calls at 64 in flight
//    cost more per call than at 512 (docs/performance.md, "Why the full path stays near a quarter").
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { synapseCallsAtWindows } from './bench-runner.ts'

if (process.argv[2] === '--echo-server') {
  const server = createServer((socket) => {
    socket.setNoDelay(true)
    socket.on('data', (chunk) => { socket.write(chunk) })
  })
  server.listen(0, '127.0.0.1', () => { process.send?.((server.address() as AddressInfo).port) })
} else {
  const durationMs = Number(process.argv[2] ?? 3000)
  const TICK_US = 1e6 / 100
  const ticks = (pid: number): number => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  }
  const child = fork(fileURLToPath(import.meta.url), ['--echo-server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('echo server did not start within 10 s')) }, 10_000)
      child.once('message', (m: number) => { clearTimeout(timer); resolve(m) })
    })
    const socket = connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const payload = Buffer.alloc(64, 7)
    const roundTrips = async (ms: number): Promise<{ n: number, elapsed: number, clientUs: number, serverUs: number }> => {
      const server0 = ticks(child.pid ?? 0)
      const cpu0 = process.cpuUsage()
      const start = performance.now()
      let n = 0
      let received = 0
      await new Promise<void>((resolve) => {
        const onData = (chunk: Buffer): void => {
          received += chunk.byteLength
          if (received < payload.byteLength) return
          received = 0
          n++
          if (performance.now() - start >= ms) { socket.off('data', onData); resolve(); return }
          socket.write(payload)
        }
        socket.on('data', onData)
        socket.write(payload)
      })
      const elapsed = performance.now() - start
      const cpu = process.cpuUsage(cpu0)
      return { n, elapsed, clientUs: (cpu.user + cpu.system) / n, serverUs: (ticks(child.pid ?? 0) - server0) * TICK_US / n }
    }
    await roundTrips(300)
    const tcp = await roundTrips(durationMs)
    socket.destroy()
    console.log(`plain TCP ping-pong, 64 B, 1 in flight: ${Math.round(tcp.n / (tcp.elapsed / 1000)).toLocaleString('en')} round trips/s, CPU per round trip: client ${tcp.clientUs.toFixed(1)} µs, server ${tcp.serverUs.toFixed(1)} µs`)
  } finally {
    child.kill('SIGTERM')
  }
  const windows = [1, 16, 64, 512]
  const figures = await synapseCallsAtWindows(windows, durationMs)
  for (const f of figures) console.log(`${f.name.padEnd(28)} ${Math.round(f.perSec).toLocaleString('en').padStart(9)} /s  CPU per call (client + server) ${(f.cpuUsPerOp ?? NaN).toFixed(2)} µs  (${f.confirmed} of ${f.ops} answered)`)
  // Least squares of y = a + B x with x = 1 / window, over the windows above 1 (one in flight is
  // dominated by the wake-ups the fit is about, but also by timers and idle loops).
  const pts = figures.map((f, i) => ({ x: 1 / windows[i], y: f.cpuUsPerOp ?? NaN })).filter((_, i) => windows[i] > 1)
  const mx = pts.reduce((s, p) => s + p.x, 0) / pts.length
  const my = pts.reduce((s, p) => s + p.y, 0) / pts.length
  const B = pts.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / pts.reduce((s, p) => s + (p.x - mx) ** 2, 0)
  const a = my - B * mx
  console.log(`fit over 16, 64, 512 in flight: CPU per call ≈ ${a.toFixed(2)} µs + ${B.toFixed(0)} µs per batch round trip / calls in flight (at 64 the batch's share is ${(100 * (B / 64) / (a + B / 64)).toFixed(0)} %, at 512 ${(100 * (B / 512) / (a + B / 512)).toFixed(0)} %)`)
}
