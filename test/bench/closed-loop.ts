// The benches' closed loop: `window` workers each issue one request after another, for a fixed
// count of requests (`quick`) or until `durationMs` has passed. `request` answers whether the reply
// was the one expected (counted as confirmed).
export interface LoopResult { issued: number, confirmed: number, ms: number }

export async function closedLoop (o: { quick: boolean, durationMs: number }, window: number, count: number, request: () => Promise<boolean>): Promise<LoopResult> {
  const start = performance.now()
  const end = start + o.durationMs
  let issued = 0
  let confirmed = 0
  const worker = async (): Promise<void> => {
    while (o.quick ? issued < count : performance.now() < end) {
      issued++
      if (await request()) confirmed++
    }
  }
  await Promise.all(Array.from({ length: window }, worker))
  return { issued, confirmed, ms: performance.now() - start }
}
