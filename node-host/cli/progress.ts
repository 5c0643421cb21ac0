// Progress of a long wait (`cell publish`, `cell rollback`) on a terminal: one line rewritten in
// place, "publishing billing@1.2.0: replicas ready 1/2, 12 s", cleared when the wait ends. Nothing is
// written when the stream is not a TTY (a pipe, a log file, a test), so scripts read only results.

export interface ProgressStream {
  isTTY?: boolean
  write: (text: string) => unknown
}

export interface ProgressInit {
  /** What is being waited for, e.g. "publishing billing@1.2.0". */
  label: string
  /** Ready replicas now. */
  ready: () => number
  /** Ready replicas wanted; 0 shows nothing. */
  want: number
  stream?: ProgressStream
  intervalMs?: number
  now?: () => number
}

export interface Progress {
  /** Clears the line; idempotent. */
  stop: () => void
}

export function progressLine (label: string, ready: number, want: number, elapsedMs: number): string {
  return `${label}: replicas ready ${Math.min(ready, want)}/${want}, ${Math.floor(elapsedMs / 1000)} s`
}

export function startProgress (init: ProgressInit): Progress {
  const stream = init.stream ?? process.stderr
  if (stream.isTTY !== true || init.want <= 0) return { stop: () => {} }
  const now = init.now ?? Date.now
  const started = now()
  const draw = (): void => { stream.write(`\r\x1b[2K${progressLine(init.label, init.ready(), init.want, now() - started)}`) }
  draw()
  const timer = setInterval(draw, init.intervalMs ?? 500)
  let stopped = false
  return {
    stop: () => {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      stream.write('\r\x1b[2K')
    }
  }
}
