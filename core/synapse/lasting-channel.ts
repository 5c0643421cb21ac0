// A caller's channel that outlives its credentials: the server checks a caller's chain at the
// handshake only and closes the channel when that chain expires (ChannelExpiredError), so a caller
// holding one channel for long moves to a new one when its own chain rotates (before the old one
// expires) and, should the server close it for expiry anyway, reopens and sends the call again
// (nothing ran on the closed one). The mesh does the same for its cached channels.
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Channel } from './channel.ts'
import { ChannelExpiredError } from './errors.ts'
import type { Synapse } from './synapse.ts'
import type { SynapseCallOptions } from './types.ts'

export class LastingChannel {
  private channel: Promise<Channel> | undefined
  /** Channels opened so far (the first one included). */
  opened = 0

  private readonly synapse: Synapse
  private readonly target: PeerId | Multiaddr
  readonly cell: string

  constructor (synapse: Synapse, target: PeerId | Multiaddr, cell: string) {
    this.synapse = synapse
    this.target = target
    this.cell = cell
  }

  /** The channel a call would use now, opened or replaced if needed. */
  async current (options: { signal?: AbortSignal } = {}): Promise<Channel> {
    const pending = this.channel
    if (pending !== undefined) {
      const ch = await pending.catch(() => undefined)
      if (ch !== undefined && this.synapse.current(ch)) return ch
      ch?.closeWhenIdle()
      if (this.channel !== pending) return await this.current(options)
    }
    const next = this.synapse.open(this.target, this.cell, options)
    this.channel = next
    this.opened++
    next.catch(() => { if (this.channel === next) this.channel = undefined })
    return await next
  }

  async call (method: string, payload: Uint8Array, options: SynapseCallOptions = {}): Promise<Uint8Array> {
    const ch = await this.current(options)
    try {
      return await ch.call(method, payload, options)
    } catch (err) {
      if (!(err instanceof ChannelExpiredError)) throw err
      // The server closed it for expiry before this end rotated (a clock jump, a late renewal): once more.
      return await (await this.current(options)).call(method, payload, options)
    }
  }

  async close (): Promise<void> {
    const pending = this.channel
    this.channel = undefined
    await (await pending?.catch(() => undefined))?.close()
  }
}
