// Unsigned LEB128 varints limited to 32 bits: every length and id on the wire fits, and the
// limit lets the decoder reject a run of continuation bytes after 5 bytes instead of looping.

export const MAX_VARINT_BYTES = 5
export const MAX_U32 = 0xffff_ffff

export function varintLength (value: number): number {
  if (value < 0x80) return 1
  if (value < 0x4000) return 2
  if (value < 0x20_0000) return 3
  if (value < 0x1000_0000) return 4
  return 5
}

/** Writes `value` (0 ≤ value ≤ 2³²−1) at `offset`; returns the offset after it. */
export function writeVarint (buf: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    buf[offset++] = (value & 0x7f) | 0x80
    value = Math.floor(value / 128)
  }
  buf[offset++] = value
  return offset
}
