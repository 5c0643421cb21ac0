import { describe, it, expect } from 'vitest'
import { installWorkerdShims } from './workerd-shims.ts'

describe('workerd shims', () => {
  it('fill in BroadcastChannel and WebSocket.prototype.bufferedAmount only where missing', () => {
    class BareSocket {}
    const bare: { BroadcastChannel?: unknown, WebSocket?: { prototype: object } } = { WebSocket: BareSocket }
    installWorkerdShims(bare)
    const Channel = bare.BroadcastChannel as new (name: string) => { name: string, postMessage: (m: unknown) => void, close: () => void }
    const channel = new Channel('mortice')
    expect(channel.name).toBe('mortice')
    expect(() => { channel.postMessage({ lock: 1 }); channel.close() }).not.toThrow()
    // Without it, @libp2p/websockets waits for a 'drain' after every send (undefined < limit is false).
    expect((new BareSocket() as { bufferedAmount?: number }).bufferedAmount).toBe(0)

    class RealChannel {}
    class RealSocket { get bufferedAmount (): number { return 42 } }
    const full: { BroadcastChannel?: unknown, WebSocket?: { prototype: object } } = { BroadcastChannel: RealChannel, WebSocket: RealSocket }
    installWorkerdShims(full)
    expect(full.BroadcastChannel).toBe(RealChannel)
    expect(new RealSocket().bufferedAmount).toBe(42)
  })
})
