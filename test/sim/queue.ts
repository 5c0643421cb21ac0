// A binary min-heap of timed events. Ties break on insertion order, so a run is a pure function of
// its seed.

interface Entry {
  atMs: number
  seq: number
  fn: () => void
}

export class EventQueue {
  private readonly heap: Entry[] = []
  private seq = 0

  get size (): number {
    return this.heap.length
  }

  push (atMs: number, fn: () => void): void {
    const e = { atMs, seq: this.seq++, fn }
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i], h[p])) break
      ;[h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }

  peekMs (): number {
    return this.heap.length === 0 ? Infinity : this.heap[0].atMs
  }

  pop (): Entry | undefined {
    const h = this.heap
    if (h.length === 0) return undefined
    const top = h[0]
    const last = h.pop() as Entry
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && before(h[l], h[m])) m = l
        if (r < h.length && before(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}

function before (a: Entry, b: Entry): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)
}
