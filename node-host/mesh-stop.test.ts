// A stopped mesh leaves no timer of gossipsub holding the event loop: gossipsub 17 re-arms its
// heartbeat every beat and its stop() forgot the armed one, so every one-shot `cell call` lingered
// up to a heartbeat (1 s) after printing its answer (core/mesh/gossipsub-stop.ts).
import { createHook } from 'node:async_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { createClient } from './client.ts'

interface TimerHandle { hasRef: () => boolean, _destroyed?: boolean }

describe('stopping a mesh', () => {
  it('clears gossipsub\'s armed heartbeat, so a one-shot command exits when its work is done', async () => {
    const timers = new Set<TimerHandle>()
    const hook = createHook({
      init (_id, type, _trigger, resource) {
        if (type === 'Timeout' && (new Error().stack ?? '').includes('@libp2p/gossipsub')) timers.add(resource as TimerHandle)
      }
    })
    Error.stackTraceLimit = 40
    hook.enable()
    try {
      // Nothing listens at the bootstrap address: the mesh starts, fails to dial, and runs alone.
      const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const mesh = await createClient({ bootstrap: [`/ip4/127.0.0.1/tcp/9/p2p/${nobody.toString()}`] })
      // Wait for a heartbeat to run and re-arm the next one (the first runs 100 ms after start).
      await new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => { reject(new Error('no gossipsub heartbeat within 5 s')) }, 5000)
        mesh.libp2p.services.pubsub.addEventListener('gossipsub:heartbeat', () => { clearTimeout(deadline); resolve() }, { once: true })
      })
      await new Promise<void>((resolve) => { setTimeout(resolve, 0) })
      const armed = [...timers].filter(t => t.hasRef() && t._destroyed !== true)
      expect(armed.length).toBeGreaterThan(0)
      await mesh.stop()
      const left = [...timers].filter(t => t.hasRef() && t._destroyed !== true)
      expect(left).toEqual([])
    } finally {
      hook.disable()
      Error.stackTraceLimit = 10
    }
  }, 20_000)
})
