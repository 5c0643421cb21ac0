// Inbound connections that fail to become libp2p connections (random bytes, a half multistream or
// Noise handshake, a stalled upgrade) are thrown away inside the transports' listeners with nothing
// but a debug log. Hosts that want to count them (node-host's cell_listener_garbage_total) hand
// MeshInit.onInboundFailure; the transports are wrapped so each listener's upgrader reports every
// failed inbound upgrade with the transport's name, then rethrows so libp2p handles it as before.
import type { CreateListenerOptions, Transport, Upgrader } from '@libp2p/interface'

/** Told the transport (its tag without the npm scope: `tcp`, `websockets`, `webrtc-direct`, …) and the error of each failed inbound upgrade. */
export type InboundFailureHook = (transport: string, err: unknown) => void

type TransportFactory = (components: unknown) => Transport

function transportName (t: Transport): string {
  const tag = (t as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag]
  return typeof tag === 'string' ? tag.replace(/^@[^/]+\//, '') : 'unknown'
}

function reportingUpgrader (upgrader: Upgrader, name: string, onFailure: InboundFailureHook): Upgrader {
  const inbound = upgrader.upgradeInbound.bind(upgrader) as (...args: unknown[]) => Promise<void>
  return {
    upgradeInbound: (async (...args: unknown[]) => {
      try {
        await inbound(...args)
      } catch (err) {
        // A throwing hook must not change how libp2p sees the failure.
        try { onFailure(name, err) } catch {}
        throw err
      }
    }) as Upgrader['upgradeInbound'],
    upgradeOutbound: upgrader.upgradeOutbound.bind(upgrader),
    createInboundAbortSignal: upgrader.createInboundAbortSignal.bind(upgrader),
    getStreamMuxers: upgrader.getStreamMuxers.bind(upgrader),
    getConnectionEncrypters: upgrader.getConnectionEncrypters.bind(upgrader)
  }
}

/** The same transport factories, whose listeners report failed inbound upgrades to `onFailure`. */
export function reportInboundFailures<T> (factories: T[], onFailure: InboundFailureHook): T[] {
  return factories.map(factory => ((components: unknown) => {
    const transport = (factory as TransportFactory)(components)
    const createListener = transport.createListener.bind(transport)
    transport.createListener = (options: CreateListenerOptions) => createListener({ ...options, upgrader: reportingUpgrader(options.upgrader, transportName(transport), onFailure) })
    return transport
  }) as T)
}
