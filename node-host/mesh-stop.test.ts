// A stopped mesh leaves no timer of libp2p's holding the event loop, so a one-shot command exits
// when its work is done:
//  - gossipsub 17 re-arms its heartbeat every beat and its stop() forgot the armed one: every
//    `cell call` lingered up to a heartbeat (1 s) after printing its answer (core/mesh/gossipsub-stop.ts);
//  - libp2p's address manager arms a 1 s debounced peer-store update on every transport close, the
//    ones `libp2p.stop()` causes included, and never clears it: every command that listens
//    (`cell publish`, `cell rollback`) exited a second late (clearAddressUpdate in core/mesh/mesh.ts).
import { createHook } from 'node:async_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { generateAuthority } from '../core/identity/index.ts'
import { createClient } from './client.ts'

interface TimerHandle { hasRef: () => boolean, _destroyed?: boolean, _idleTimeout?: number }

/** Timers created while `fn` runs whose stack passes through `from` (a path fragment). */
async function timersDuring (from: RegExp, fn: (timers: Map<TimerHandle, string>) => Promise<void>): Promise<void> {
  const timers = new Map<TimerHandle, string>()
  const hook = createHook({
    init (_id, type, _trigger, resource) {
      if (type !== 'Timeout') return
      const stack = new Error().stack ?? ''
      if (from.test(stack)) timers.set(resource as TimerHandle, stack)
    }
  })
  Error.stackTraceLimit = 40
  hook.enable()
  try {
    await fn(timers)
  } finally {
    hook.disable()
    Error.stackTraceLimit = 10
  }
}

/** Timers neither fired nor cleared; only those holding the event loop unless `unrefToo`. */
const armed = (timers: Map<TimerHandle, string>, unrefToo = false): string[] =>
  [...timers].filter(([t]) => (unrefToo || t.hasRef()) && t._destroyed !== true && (t._idleTimeout ?? 0) > 0).map(([t, stack]) => `${t._idleTimeout} ms: ${stack.split('\n').slice(6, 10).join(' | ')}`)

describe('stopping a mesh', () => {
  it('clears gossipsub\'s armed heartbeat, so a one-shot command exits when its work is done', async () => {
    await timersDuring(/@libp2p\/gossipsub/, async (timers) => {
      // Nothing listens at the bootstrap address: the mesh starts, fails to dial, and runs alone.
      const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const mesh = await createClient({ bootstrap: [`/ip4/127.0.0.1/tcp/9/p2p/${nobody.toString()}`] })
      // Wait for a heartbeat to run and re-arm the next one (the first runs 100 ms after start).
      await new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => { reject(new Error('no gossipsub heartbeat within 5 s')) }, 5000)
        mesh.libp2p.services.pubsub.addEventListener('gossipsub:heartbeat', () => { clearTimeout(deadline); resolve() }, { once: true })
      })
      await new Promise<void>((resolve) => { setTimeout(resolve, 0) })
      expect(armed(timers).length).toBeGreaterThan(0)
      await mesh.stop()
      expect(armed(timers)).toEqual([])
    })
  }, 20_000)

  it('leaves no libp2p timer armed after a listening client stops (the address manager\'s included)', async () => {
    await timersDuring(/node_modules\/(libp2p|@libp2p)\//, async (timers) => {
      const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const mesh = await createClient({ bootstrap: [`/ip4/127.0.0.1/tcp/9/p2p/${nobody.toString()}`], listen: true })
      expect(mesh.libp2p.getMultiaddrs().length).toBeGreaterThan(0)
      await mesh.stop()
      // Timers of 0 ms queued by the stop itself fire on this turn.
      await new Promise<void>((resolve) => { setTimeout(resolve, 0) })
      const left = armed(timers)
      expect(left, left.join('\n')).toEqual([])
    })
  }, 20_000)

  it('stops what the client started beside the mesh: its grant renewer', async () => {
    await timersDuring(/self-grants\.ts/, async (timers) => {
      const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      const mesh = await createClient({ bootstrap: [`/ip4/127.0.0.1/tcp/9/p2p/${nobody.toString()}`], authorityKey: await generateAuthority() })
      // Its timer does not hold the event loop (unref), but a stopped client must not renew.
      expect(armed(timers, true).length).toBeGreaterThan(0)
      await mesh.stop()
      expect(armed(timers, true)).toEqual([])
    })
  }, 20_000)
})
