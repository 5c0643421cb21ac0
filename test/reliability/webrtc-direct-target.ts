// A WebRTC-direct listener in its own process, for node-host/webrtc-direct-listener.test.ts:
// node-datachannel is native and takes a vitest worker thread (and with it the whole run) down when
// other workers run beside it, so the native side lives here. Arguments: `bound <perHost> <total> [staleMs]`
// or `plain`. Prints `listening <multiaddr>`, then `refused <reason>` per request the bound drops.
// On stdin, `dial` makes a second libp2p node in this process dial the listener from 127.0.0.1 and
// prints `dial ok` or `dial failed <error>`.
import { createInterface } from 'node:readline'
import { createLibp2p } from 'libp2p'
import { webRTCDirect } from '@libp2p/webrtc'
import { boundWebRTCDirectListener } from '../../node-host/webrtc-direct-listener.ts'

const [mode, perHost, total, staleMs] = process.argv.slice(2)
const transport = mode === 'bound'
  ? boundWebRTCDirectListener(webRTCDirect(), { perHost: Number(perHost), total: Number(total), ...(staleMs !== undefined ? { staleMs: Number(staleMs) } : {}) }, (reason) => { process.stdout.write(`refused ${reason}\n`) })
  : webRTCDirect()
const node = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/udp/0/webrtc-direct'] }, transports: [transport], connectionManager: { inboundConnectionThreshold: 1_000 } })
process.stdout.write(`listening ${node.getMultiaddrs()[0].toString()}\n`)
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() !== 'dial') continue
  const client = await createLibp2p({ transports: [webRTCDirect()] })
  try {
    const conn = await client.dial(node.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
    process.stdout.write(`dial ${conn.status === 'open' ? 'ok' : `failed status ${conn.status}`}\n`)
  } catch (err) {
    process.stdout.write(`dial failed ${(err as Error).name}: ${(err as Error).message}\n`)
  } finally {
    await client.stop()
  }
}
// Parent closed stdin: leave without waiting for native threads to wind down.
process.exit(0)
