// Real libp2p nodes for synapse tests and the bench: TCP + Noise + yamux on 127.0.0.1.
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type { Connection, Libp2p, NewStreamOptions, Stream } from '@libp2p/interface'
import { synapse } from '../../core/synapse/index.ts'
import { coalescedWrites } from '../../core/mesh/coalesced-writes.ts'
import { lazyWindowUpdates } from '../../core/mesh/lazy-window-updates.ts'
import { nodeNoiseCrypto } from '../../node-host/noise-crypto.ts'
import type { Synapse, SynapseComponents, SynapseInit, SynapseHandler, Principal } from '../../core/synapse/index.ts'
import { UnknownAuthorityError } from '../../core/identity/errors.ts'

export type SynapseNode = Libp2p<{ synapse: Synapse }>

/** `wrap` lets a test interpose on what libp2p hands the service (e.g. to count stream writes). */
export async function createSynapseNode (init: SynapseInit, wrap?: (components: SynapseComponents) => SynapseComponents): Promise<SynapseNode> {
  const factory = synapse(init)
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [coalescedWrites(noise({ crypto: nodeNoiseCrypto }))],
    streamMuxers: [lazyWindowUpdates(yamux())],
    services: { synapse: (components: SynapseComponents) => factory(wrap === undefined ? components : wrap(components)) }
  })
}

/** Wraps the connection manager so every synapse stream counts its send() calls into `counter`. */
export function countingWrites (counter: { writes: number }): (components: SynapseComponents) => SynapseComponents {
  return (components) => ({
    registrar: components.registrar,
    logger: components.logger,
    connectionManager: {
      async openConnection (peer, options) {
        const connection = await components.connectionManager.openConnection(peer, options)
        const newStream = connection.newStream.bind(connection)
        return Object.assign(Object.create(connection) as Connection, {
          async newStream (protocols: string | string[], opts?: NewStreamOptions): Promise<Stream> {
            const stream = await newStream(protocols, opts)
            const send = stream.send.bind(stream)
            stream.send = (data) => { counter.writes++; return send(data) }
            return stream
          }
        })
      }
    }
  })
}

/** core/identity's trust refusal, re-exported for the synapse tests that register it on the wire. */
export { UnknownAuthorityError }

export const DUMMY_CREDENTIALS = new Uint8Array([0xce, 0x11, 1, 2, 3])

export function acceptingAuth (): Pick<SynapseInit, 'authenticate' | 'authenticateServer' | 'credentialsFor'> {
  return {
    authenticate: async ({ remotePeerId }): Promise<Principal> => ({ peerId: remotePeerId, authority: 'dummy', roles: ['caller'] }),
    authenticateServer: async ({ remotePeerId }): Promise<Principal> => ({ peerId: remotePeerId, authority: 'dummy', roles: ['host'] }),
    credentialsFor: () => DUMMY_CREDENTIALS
  }
}

/** An in-process handler: `echo`, `fail` (throws a named error), `hang` (never resolves), `count` messages. */
export function testHandler (): SynapseHandler & { messages: Uint8Array[], aborted: Array<{ method: string, reason: unknown }> } {
  const messages: Uint8Array[] = []
  const aborted: Array<{ method: string, reason: unknown }> = []
  return {
    messages,
    aborted,
    async call (ctx) {
      switch (ctx.method) {
        case 'echo': return ctx.payload.slice()
        case 'fail': throw new UnknownAuthorityError(`no trust for ${new TextDecoder().decode(ctx.payload)}`)
        case 'hang':
          return await new Promise((_resolve, reject) => {
            ctx.signal.addEventListener('abort', () => {
              aborted.push({ method: ctx.method, reason: ctx.signal.reason })
              reject(ctx.signal.reason)
            }, { once: true })
          })
        default: throw new Error(`no method ${ctx.method}`)
      }
    },
    message (ctx) {
      messages.push(ctx.payload.slice())
    },
    async * stream (ctx) {
      const n = new DataView(ctx.payload.buffer, ctx.payload.byteOffset, ctx.payload.byteLength).getUint32(0)
      for (let i = 0; i < n; i++) {
        const item = new Uint8Array(4)
        new DataView(item.buffer).setUint32(0, i)
        yield item
      }
    }
  }
}
