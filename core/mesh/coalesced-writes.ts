// Noise hands the transport each encrypted message as a list of chunks (length prefix, ciphertext
// pieces, tag) and @libp2p/tcp writes every chunk with its own socket.write(): four syscalls for
// one yamux frame, which at the full call path's rates was the largest single cost of a node
// (issue 15: write syscalls, not encryption). This wrapper joins a list into one buffer before the
// transport sees it, so one message is one write. One copy of bytes that were just encrypted,
// against three syscalls saved.
//
// It also gives the secured connection a reader of Noise messages that does not copy them
// (noise-framing.ts).
import type { ConnectionEncrypter, MessageStream, SecureConnectionOptions, SecuredConnection } from '@libp2p/interface'
import { useNoiseMessageDecoder } from './noise-framing.ts'

type Factory<C> = (components: C) => ConnectionEncrypter
type Sendable = Parameters<MessageStream['send']>[0]

/**
 * Lists up to this size are joined: one Noise message with its 2-byte length (Noise's largest is
 * 65,535 bytes). Past it a list holds several messages, each large: they go as they are. Joining a
 * large message costs a copy, but sending it as it comes cost a 2-byte write (its length) before
 * it: a syscall, and a TCP segment the other end wakes up for.
 */
const JOIN_MAX_BYTES = 2 + 0xffff

/**
 * Joins of at least this size reuse one buffer per connection (see joinSends); smaller ones come
 * from the runtime's own small-buffer pool (Node's Buffer pool below 4 KiB).
 */
const REUSE_MIN_BYTES = 4 * 1024

/** What joinSends reads of a transport that writes to a Node-style socket (@libp2p/tcp's connection). */
interface SocketLike { writableLength: number }

function socketOf (connection: MessageStream): SocketLike | undefined {
  const socket = (connection as { socket?: Partial<SocketLike> }).socket
  return socket !== null && typeof socket === 'object' && typeof socket.writableLength === 'number' ? socket as SocketLike : undefined
}

/**
 * A large join (a batch of calls or answers, a 64 kB one-way batch) reuses the connection's buffer
 * when the last one left it: each fresh one was a buffer outside the JavaScript heap, and a one-way
 * sender allocating those (with the slab and the cipher's output) at 0.2 GB/s had V8 run a full
 * garbage collection about every 100 ms, a quarter of its time (issue 15). The buffer is reused
 * only once the write took all of it at once: nothing queued in the stream (writeBufferLength) nor
 * in the socket (writableLength), in which case Node keeps no reference to it (it does only for a
 * write that goes on asynchronously). A transport without such a socket allocates per join.
 */
export function joinSends (connection: MessageStream): MessageStream {
  const send = connection.send.bind(connection)
  const socket = socketOf(connection)
  let spare: Uint8Array | undefined
  connection.send = (data: Sendable): boolean => {
    if (data instanceof Uint8Array || data.byteLength > JOIN_MAX_BYTES) return send(data)
    const n = data.byteLength
    if (socket === undefined || n < REUSE_MIN_BYTES) return send(data.subarray())
    let buffer = spare
    spare = undefined
    if (buffer === undefined || buffer.byteLength < n) buffer = new Uint8Array(Math.min(JOIN_MAX_BYTES, Math.max(n, 2 * (buffer?.byteLength ?? REUSE_MIN_BYTES))))
    let o = 0
    for (const chunk of data) { buffer.set(chunk, o); o += chunk.byteLength }
    const ok = send(buffer.subarray(0, n))
    if (connection.writeBufferLength === 0 && socket.writableLength === 0) spare = buffer
    return ok
  }
  return connection
}

/** `connectionEncrypters: [coalescedWrites(noise())]`: the encrypter as before, one transport write per message. */
export function coalescedWrites<C> (factory: Factory<C>): Factory<C> {
  return (components: C): ConnectionEncrypter => {
    const inner = factory(components)
    return {
      protocol: inner.protocol,
      async secureInbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
        const secured = await inner.secureInbound(joinSends(connection), options)
        useNoiseMessageDecoder(secured.connection)
        return secured
      },
      async secureOutbound (connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
        const secured = await inner.secureOutbound(joinSends(connection), options)
        useNoiseMessageDecoder(secured.connection)
        return secured
      }
    }
  }
}
