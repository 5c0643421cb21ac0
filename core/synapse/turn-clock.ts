// A monotonic clock read once per turn of the event loop's job queue. The elapsed time a server hands
// `handler.settled` (the call meter's latency histogram) took two clock reads per call, about 40 ns
// each on the bench machine (clock_gettime without a vDSO fast path): most of what metrics added to
// an unsampled call. Calls arrive in batches (the frames of one transport chunk are decoded in one
// synchronous run) and their answers are written in batches (one write for all that a microtask
// checkpoint produced), so one reading serves every call of a batch: the time the batch was
// received, and the time its answers went to the writer. The cached reading is dropped by a
// microtask, so it never outlives the synchronous run and the microtasks queued before it.

/** `read` wrapped so that every call within one synchronous run (up to the next microtask) shares one reading. */
export function turnCached (read: () => number): () => number {
  let cached = 0
  let fresh = false
  const drop = (): void => { fresh = false }
  return () => {
    if (!fresh) {
      cached = read()
      fresh = true
      queueMicrotask(drop)
    }
    return cached
  }
}
