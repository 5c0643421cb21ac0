// The log server's view of a full node's replicas: their rings (through each capsid) and the events
// that mean "something new": a line, a replica turning ready, a replica exiting.
import type { ReplicaSet, ReplicaInfo } from '../replica-set.ts'
import type { LogReplica, LogSource } from './log-protocol.ts'
import type { LogLine } from '../capsid/log-ring.ts'

/**
 * A replica that died before it was ready has no capsid to read from; its last stderr lines (kept
 * for the heartbeat) are what it said: the reason it could not start is what a reader wants.
 */
function startFailure (r: ReplicaInfo): LogLine[] {
  return (r.stderrTail ?? []).map((line, i) => ({ stream: 'stderr', line, atMs: r.endedMs ?? r.startedMs, seq: i + 1 }))
}

export function replicaLogSource (replicas: ReplicaSet): LogSource {
  return {
    replicas: (cell) => replicas.list(cell).map((r: ReplicaInfo): LogReplica => ({
      instanceId: r.instanceId,
      version: r.version,
      state: r.state,
      startedMs: r.startedMs,
      ...(r.endedMs !== undefined ? { endedMs: r.endedMs } : {}),
      ...(r.exitReason !== undefined ? { exitReason: r.exitReason } : {}),
      since: (seq, max) => r.capsid?.logsSince(seq, max) ?? startFailure(r).slice(Math.max(0, seq), Math.max(0, seq) + max)
    })),
    watch: (wake) => {
      const watched = new Set<EventTarget>()
      const follow = (target: EventTarget | undefined): void => {
        if (target === undefined || watched.has(target)) return
        watched.add(target)
        target.addEventListener('log', wake)
      }
      for (const r of replicas.list()) follow(r.capsid)
      const onReady = (evt: Event): void => {
        follow((evt as CustomEvent<ReplicaInfo>).detail.capsid)
        wake()
      }
      const onExit = (evt: Event): void => {
        // An exited capsid says nothing more; stop listening so a long follow holds no dead replicas.
        const capsid = (evt as CustomEvent<{ info: ReplicaInfo }>).detail.info.capsid
        if (capsid !== undefined) { capsid.removeEventListener('log', wake); watched.delete(capsid) }
        wake()
      }
      replicas.addEventListener('ready', onReady)
      replicas.addEventListener('exit', onExit)
      return () => {
        replicas.removeEventListener('ready', onReady)
        replicas.removeEventListener('exit', onExit)
        for (const t of watched) t.removeEventListener('log', wake)
        watched.clear()
      }
    }
  }
}
