// Host uids for strict replicas when the node runs as root: each replica gets a uid of its own from
// a range no account uses, so it owns nothing on the host (not even what root owns, as a
// user-namespace mapping of root would), and RLIMIT_NPROC counts only its own processes.
import { randomInt } from 'node:crypto'
import { CapsidStartError } from './errors.ts'

/** Above the ranges Debian gives accounts (system < 1000, users < 60000, nobody 65534, subuids 100000–165535). */
export const REPLICA_UID_BASE = 200_000
export const REPLICA_UID_COUNT = 65_536

const inUse = new Set<number>()

/** A free uid (also used as the gid). Random, so that two nodes on one host rarely pick the same. */
export function allocateReplicaUid (): number {
  if (inUse.size >= REPLICA_UID_COUNT) throw new CapsidStartError(`all ${REPLICA_UID_COUNT} replica uids are in use`)
  let uid = REPLICA_UID_BASE + randomInt(REPLICA_UID_COUNT)
  while (inUse.has(uid)) uid = uid + 1 >= REPLICA_UID_BASE + REPLICA_UID_COUNT ? REPLICA_UID_BASE : uid + 1
  inUse.add(uid)
  return uid
}

export function releaseReplicaUid (uid: number): void {
  inUse.delete(uid)
}
