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

function joinSends (connection: MessageStream): MessageStream {
  const send = connection.send.bind(connection)
  connection.send = (data: Sendable): boolean => send(data instanceof Uint8Array || data.byteLength > JOIN_MAX_BYTES ? data : data.subarray())
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
