// Bounded line buffer for a replica's stdout/stderr: splits a byte stream into lines, truncates
// overlong lines and keeps only the newest `capacity` of them. Every line gets the next sequence
// number of its ring (1, 2, …): a reader that remembers the last one it saw (`cell logs -f` after a
// broken stream) asks for what came after it, with no gap and no duplicate while the ring holds it.
export interface LogLine {
  stream: 'stdout' | 'stderr'
  line: string
  atMs: number
  /** Position in this ring's whole history, from 1; consecutive lines differ by one. */
  seq: number
}

export class LogRing {
  private readonly lines: LogLine[] = []
  private readonly capacity: number
  private readonly maxLineChars: number
  private readonly partial = { stdout: '', stderr: '' }
  private readonly decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
  // Kept apart so a chatty stdout cannot push the crash reason out of the buffer.
  private readonly stderrLines: string[] = []
  private readonly stderrCapacity = 50
  dropped = 0
  /** Sequence number of the newest line (0 before the first). */
  lastSeq = 0

  constructor (capacity = 1000, maxLineChars = 8192) {
    this.capacity = capacity
    this.maxLineChars = maxLineChars
  }

  /** Feed a chunk; returns the complete lines it finished, for per-line events. */
  push (stream: 'stdout' | 'stderr', chunk: Uint8Array, atMs = Date.now()): LogLine[] {
    let text = this.partial[stream] + this.decoders[stream].decode(chunk, { stream: true })
    const out: LogLine[] = []
    let nl: number
    while ((nl = text.indexOf('\n')) !== -1) {
      out.push(this.add(stream, text.slice(0, nl), atMs))
      text = text.slice(nl + 1)
    }
    // An unterminated line longer than the limit is cut into pieces rather than held forever.
    while (text.length > this.maxLineChars) {
      out.push(this.add(stream, text.slice(0, this.maxLineChars), atMs))
      text = text.slice(this.maxLineChars)
    }
    this.partial[stream] = text
    return out
  }

  /** Flush unterminated tails (on process exit). */
  end (atMs = Date.now()): LogLine[] {
    const out: LogLine[] = []
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = this.partial[stream] + this.decoders[stream].decode()
      this.partial[stream] = ''
      if (rest !== '') out.push(this.add(stream, rest, atMs))
    }
    return out
  }

  private add (stream: 'stdout' | 'stderr', line: string, atMs: number): LogLine {
    const entry = { stream, line: line.length > this.maxLineChars ? line.slice(0, this.maxLineChars) : line, atMs, seq: ++this.lastSeq }
    this.lines.push(entry)
    if (stream === 'stderr') {
      this.stderrLines.push(entry.line)
      if (this.stderrLines.length > this.stderrCapacity) this.stderrLines.shift()
    }
    if (this.lines.length > this.capacity) {
      this.lines.shift()
      this.dropped++
    }
    return entry
  }

  stderrTail (n = 20): string[] {
    return this.stderrLines.slice(Math.max(0, this.stderrLines.length - n))
  }

  /**
   * The lines after `seq` still held, oldest first, at most `max` (the oldest of them); the first
   * one's seq says whether older ones were already dropped (it is then above `seq + 1`).
   */
  since (seq: number, max = this.capacity): LogLine[] {
    const first = this.lastSeq - this.lines.length + 1
    const from = Math.max(0, Math.floor(seq) + 1 - first)
    return this.lines.slice(from, from + Math.max(0, max))
  }

  tail (n = this.capacity, stream?: 'stdout' | 'stderr'): LogLine[] {
    const src = stream === undefined ? this.lines : this.lines.filter(l => l.stream === stream)
    return src.slice(Math.max(0, src.length - n))
  }
}
