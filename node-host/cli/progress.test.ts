import { describe, expect, it } from 'vitest'
import { progressLine, startProgress } from './progress.ts'

describe('progress of a long wait', () => {
  it('draws one line in place on a TTY and clears it at the end', async () => {
    const written: string[] = []
    let ready = 0
    let t = 1_000
    const p = startProgress({ label: 'publishing billing@1.0.0', ready: () => ready, want: 2, stream: { isTTY: true, write: (s: string) => written.push(s) }, intervalMs: 5, now: () => t })
    expect(written[0]).toBe('\r\x1b[2Kpublishing billing@1.0.0: replicas ready 0/2, 0 s')
    ready = 1
    t = 13_500
    await new Promise<void>((resolve) => { const check = setInterval(() => { if (written.some(w => w.includes('1/2, 12 s'))) { clearInterval(check); resolve() } }, 2) })
    p.stop()
    p.stop()
    expect(written.at(-1)).toBe('\r\x1b[2K')
    expect(written.filter(w => w === '\r\x1b[2K')).toHaveLength(1)
  })

  it('writes nothing when the stream is not a TTY, or nothing is waited for', () => {
    const written: string[] = []
    startProgress({ label: 'x', ready: () => 0, want: 1, stream: { write: (s: string) => written.push(s) } }).stop()
    startProgress({ label: 'x', ready: () => 0, want: 0, stream: { isTTY: true, write: (s: string) => written.push(s) } }).stop()
    expect(written).toEqual([])
  })

  it('never shows more ready than wanted', () => {
    expect(progressLine('rolling back billing to 1.0.0', 3, 2, 61_999)).toBe('rolling back billing to 1.0.0: replicas ready 2/2, 61 s')
  })
})
