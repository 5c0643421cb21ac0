// An aborted WebSocket dial closes its socket (core/mesh/websockets-dial.ts): @libp2p/websockets 10
// threw on abort and left the connection open, unowned, which held stopped nodes' processes alive
// for a minute in the soak. The server side here is a real TCP server; the client is the real
// transport, dialled the way libp2p's dial queue does (a multiaddr and an abort signal).
import { createHash } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { defaultLogger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { openWebSocket, webSocketsClosingAborted } from './websockets-dial.ts'

const servers: Server[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((resolve) => { s.close(() => { resolve() }) })
})

/** A TCP server; `answer` false: it accepts and never says a word (the upgrade hangs), true: it completes a WebSocket handshake. */
async function server (answer: boolean): Promise<{ port: number, accepted: Promise<Socket> }> {
  let accept!: (s: Socket) => void
  const accepted = new Promise<Socket>((resolve) => { accept = resolve })
  const s = createServer((socket) => {
    accept(socket)
    socket.on('error', () => {})
    if (!answer) return
    let head = ''
    let upgraded = false
    socket.on('data', (chunk) => {
      // After the handshake the only frame a client sends here is its close: answer by closing.
      if (upgraded) { socket.end(); return }
      head += chunk.toString('latin1')
      const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1]
      if (!head.includes('\r\n\r\n') || key === undefined) return
      const accepting = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
      upgraded = true
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accepting}\r\n\r\n`)
    })
  })
  servers.push(s)
  await new Promise<void>((resolve) => { s.listen(0, '127.0.0.1', resolve) })
  return { port: (s.address() as { port: number }).port, accepted }
}

const closed = async (socket: Socket, withinMs: number): Promise<void> => {
  if (socket.destroyed || socket.readyState === 'closed') return
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => { reject(new Error(`the dialler's socket was still open ${withinMs} ms after its dial or connection ended`)) }, withinMs)
    socket.once('close', () => { clearTimeout(deadline); resolve() })
  })
}

describe('WebSocket dials that close what they open', () => {
  it('an aborted dial through the libp2p transport rejects by name and closes its socket', async () => {
    const { port, accepted } = await server(false)
    const transport = webSocketsClosingAborted()({ logger: defaultLogger() } as never)
    const controller = new AbortController()
    const dial = transport.dial(multiaddr(`/ip4/127.0.0.1/tcp/${port}/ws`), { signal: controller.signal, upgrader: {} } as never)
    dial.catch(() => {})
    const socket = await accepted
    controller.abort(new Error('the dial queue timed out'))
    await expect(dial).rejects.toMatchObject({ name: 'ConnectionFailedError', message: expect.stringMatching(/dial aborted \(the dial queue timed out\)/) })
    await closed(socket, 5_000)
  })

  it('a dial whose upgrade fails after the socket opened closes the socket', async () => {
    const { port, accepted } = await server(true)
    const transport = webSocketsClosingAborted()({ logger: defaultLogger() } as never)
    const upgrader = { upgradeOutbound: async () => { throw new Error('encryption failed') } }
    await expect(transport.dial(multiaddr(`/ip4/127.0.0.1/tcp/${port}/ws`), { signal: AbortSignal.timeout(10_000), upgrader } as never)).rejects.toThrow('encryption failed')
    await closed(await accepted, 5_000)
  })

  it('a reset (close with code 1006, which WebSocket forbids) closes the socket instead of throwing', async () => {
    const { port, accepted } = await server(true)
    const ws = await openWebSocket(`ws://127.0.0.1:${port}`)
    expect(() => { ws.close(1006) }).not.toThrow()
    await closed(await accepted, 5_000)
  })

  it('opens against a server that answers, and fails by name where nothing listens', async () => {
    const { port, accepted } = await server(true)
    const ws = await openWebSocket(`ws://127.0.0.1:${port}`, { signal: AbortSignal.timeout(10_000) })
    expect(ws.readyState).toBe(WebSocket.OPEN)
    expect(ws.binaryType).toBe('arraybuffer')
    const socket = await accepted
    ws.close()
    await closed(socket, 5_000)

    const nobody = await server(false)
    await new Promise<void>((resolve) => { servers.pop()!.close(() => { resolve() }) })
    await expect(openWebSocket(`ws://127.0.0.1:${nobody.port}`)).rejects.toMatchObject({ name: 'ConnectionFailedError', message: expect.stringMatching(/the connection failed|closed before it opened/) })
  })

  it('refuses at once when the dial was aborted before it started', async () => {
    const controller = new AbortController()
    controller.abort(new Error('stopping'))
    await expect(openWebSocket('ws://127.0.0.1:9', { signal: controller.signal })).rejects.toThrow('stopping')
  })
})
