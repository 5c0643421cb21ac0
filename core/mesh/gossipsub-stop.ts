// gossipsub 17's stop() leaves its next heartbeat scheduled: `runHeartbeat` re-arms
// `status.heartbeatTimeout` every beat, and stop() replaces `status` without clearing it. The timer
// then fires once on the stopped service (harmlessly), but until it does it holds the event loop:
// every one-shot `cell call`, `cell status` or stopped node lingered up to one heartbeat (1 s) after
// its work was done. This wraps the service so that stopping it also clears that timer.
import { gossipsub, type GossipSub, type GossipsubOpts } from '@libp2p/gossipsub'

type GossipsubComponents = Parameters<ReturnType<typeof gossipsub>>[0]
interface HeartbeatStatus { status?: { heartbeatTimeout?: ReturnType<typeof setTimeout> } }

export function gossipsubStoppingCleanly (init: Partial<GossipsubOpts>): (components: GossipsubComponents) => GossipSub {
  const factory = gossipsub(init)
  return (components) => {
    const service = factory(components)
    // The GossipSub interface hides the Startable half of the class libp2p calls.
    const startable = service as unknown as { stop: () => Promise<void> } & HeartbeatStatus
    const stop = startable.stop.bind(service)
    startable.stop = async () => {
      // Read before stopping: stop() swaps `status` for one without the handle, synchronously, so no
      // heartbeat can re-arm after this point (a running one sees the stopped status and stops).
      const pending = startable.status?.heartbeatTimeout
      try {
        await stop()
      } finally {
        if (pending !== undefined) clearTimeout(pending)
      }
    }
    return service
  }
}
