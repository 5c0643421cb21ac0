// The WebRTC-direct port a full node asks for when any port will do: free for UDP, not only for TCP.
import { describe, expect, it } from 'vitest'
import { createSocket, type Socket } from 'node:dgram'
import { freeUdpPort, withFreeWebrtcPort } from './listen-ports.ts'

async function bindUdp (port: number): Promise<Socket> {
  const sock = createSocket('udp4')
  await new Promise<void>((resolve, reject) => { sock.once('error', reject); sock.bind(port, '127.0.0.1', () => { resolve() }) })
  return sock
}

describe('the WebRTC-direct listen port', () => {
  it('keeps a given port or false, and fills "any port" with one free for UDP', async () => {
    expect(await withFreeWebrtcPort({ webrtc: 4242 })).toEqual({ webrtc: 4242 })
    expect(await withFreeWebrtcPort({ webrtc: false, tcp: 1 })).toEqual({ webrtc: false, tcp: 1 })
    for (const ports of [{}, { webrtc: 0 }]) {
      const chosen = await withFreeWebrtcPort(ports)
      expect(chosen.webrtc).toBeGreaterThan(0)
      // Free for UDP: a socket can take it now.
      const sock = await bindUdp(chosen.webrtc as number)
      sock.close()
    }
  })

  it('never picks a port a UDP socket holds (@libp2p/webrtc maps port 0 with get-port, which checks TCP only)', async () => {
    const held: Socket[] = []
    try {
      for (let i = 0; i < 32; i++) held.push(await bindUdp(0))
      const heldPorts = new Set(held.map(s => s.address().port))
      for (let i = 0; i < 32; i++) expect(heldPorts.has(await freeUdpPort('127.0.0.1'))).toBe(false)
    } finally {
      for (const s of held) s.close()
    }
  })
})
