// What a caller knows of stateful claims: the highest epoch it has seen of each (`<cell>/<ordinal>`),
// from the replicas' heartbeats. Epochs only go up, so a replica heard at a lower epoch than one
// seen before was fenced: it is not routed to, and an answer it sends after the caller saw the
// higher epoch is refused (StaleEpochAnswerError). Owners fence themselves on their own lease too;
// this is the caller's half, and it does not depend on the old owner's clock.
import type { InstanceRecord } from '../fleet/index.ts'

/** Claims remembered by one caller (oldest forgotten first). */
export const MAX_CLAIM_EPOCHS = 4096

export class ClaimEpochs {
  private readonly epochs = new Map<string, number>()
  private readonly max: number

  constructor (max = MAX_CLAIM_EPOCHS) {
    this.max = max
  }

  get size (): number { return this.epochs.size }

  /** The highest epoch seen of `<cell>/<ordinal>` (0: none). */
  epoch (cell: string, ordinal: number): number {
    return this.epochs.get(`${cell}/${ordinal}`) ?? 0
  }

  /** Learns the epochs of `instances` (any state: a starting replica at a higher epoch counts). */
  note (instances: readonly InstanceRecord[]): void {
    for (const i of instances) {
      if (i.claim === undefined) continue
      const key = `${i.cell}/${i.claim.ordinal}`
      const known = this.epochs.get(key)
      if (known !== undefined && known >= i.claim.epoch) continue
      if (known === undefined && this.epochs.size >= this.max) this.epochs.delete(this.epochs.keys().next().value as string)
      this.epochs.set(key, i.claim.epoch)
    }
  }

  /** Was `i` fenced: its claim seen at a higher epoch? (Stateless replicas never are.) */
  stale (i: InstanceRecord): boolean {
    return i.claim !== undefined && i.claim.epoch < this.epoch(i.cell, i.claim.ordinal)
  }

  /** `instances` less the fenced ones, after learning from them. */
  current (instances: readonly InstanceRecord[]): InstanceRecord[] {
    this.note(instances)
    return instances.filter(i => !this.stale(i))
  }

  /**
   * Is an answer from a call sent to `target` one to refuse? Yes when `target`'s claim has since been
   * seen at a higher epoch and `nowReady` (the cell's current ready replicas) shows none on the same
   * node that could have answered instead (a node routes a call to any local replica of the cell).
   */
  lateAnswer (target: InstanceRecord, nowReady: readonly InstanceRecord[]): boolean {
    if (target.claim === undefined) return false
    this.note(nowReady)
    if (!this.stale(target)) return false
    return !nowReady.some(i => i.nodeId === target.nodeId && !this.stale(i))
  }
}
