const encoder = new TextEncoder()

/**
 * The UTF-8 bytes of `text`. An ASCII text of at most `byHandUpTo` characters is copied by hand into
 * an array V8 keeps on its heap: TextEncoder.encode allocates an external buffer per call, which
 * showed in the call path's profiles (traceparents in frames, typed calls' JSON payloads; issue 15).
 * Longer texts, or any with a character past ASCII, go through TextEncoder.
 */
export function utf8Bytes (text: string, byHandUpTo: number): Uint8Array {
  if (text.length > byHandUpTo) return encoder.encode(text)
  const out = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c > 0x7f) return encoder.encode(text)
    out[i] = c
  }
  return out
}
