// Request IDs for requests that come without a sane X-Request-Id: RFC 9562 UUIDs of version 4.
//
// Why not crypto.randomUUID() per request: it validates its options, keeps its own batch of random
// bytes and builds each UUID from 20 concatenated pieces, a string V8 then flattens again when the
// upstream head is written; on the small GET that showed in the profile. Here a batch of IDs is
// formatted at once, byte by byte through a lookup table, into one Latin-1 string, and each ID is a
// substring of it (V8 makes a slice of a flat string: no copy, nothing to flatten later).

import { Buffer } from 'node:buffer'
import { randomFillSync } from 'node:crypto'

/** IDs made per refill of random bytes (Node's randomUUID batches 128 too). */
const BATCH = 128
const UUID_BYTES = 16
/** `xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx` */
const UUID_CHARS = 36

/** The two hex digits of each byte value, as their two character codes (low byte first). */
const HEX_PAIRS = (() => {
  const digits = '0123456789abcdef'
  const pairs = new Uint16Array(256)
  for (let i = 0; i < 256; i++) pairs[i] = digits.charCodeAt(i >> 4) | (digits.charCodeAt(i & 15) << 8)
  return pairs
})()

/**
 * Hands out UUIDv4 strings. Every ID takes 16 bytes of its own from the CSPRNG (randomFillSync,
 * which never repeats bytes the way a reused buffer would), 122 of them random: as collision-safe
 * as randomUUID(). One per listener (no module state); not shared across worker processes, which
 * each draw their own random bytes.
 */
export class RequestIds {
  readonly #random = Buffer.allocUnsafeSlow(BATCH * UUID_BYTES)
  readonly #text = Buffer.allocUnsafeSlow(BATCH * UUID_CHARS)
  /** The current batch's IDs back to back. */
  #batch = ''
  /** The next ID's index in the batch; BATCH: the batch is used up. */
  #next = BATCH

  /** A new UUID v4, lower-case hex. */
  next(): string {
    if (this.#next === BATCH) this.#refill()
    const at = UUID_CHARS * this.#next++
    return this.#batch.substring(at, at + UUID_CHARS)
  }

  #refill(): void {
    const r = randomFillSync(this.#random)
    const t = this.#text
    for (let k = 0; k < BATCH; k++) {
      const i = k * UUID_BYTES
      // RFC 9562 §5.4: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8.
      r[i + 6] = (r[i + 6]! & 0x0f) | 0x40
      r[i + 8] = (r[i + 8]! & 0x3f) | 0x80
      let o = k * UUID_CHARS
      for (let j = 0; j < UUID_BYTES; j++) {
        if (j === 4 || j === 6 || j === 8 || j === 10) t[o++] = 0x2d
        const pair = HEX_PAIRS[r[i + j]!]!
        t[o++] = pair & 0xff
        t[o++] = pair >> 8
      }
    }
    this.#batch = t.toString('latin1')
    this.#next = 0
  }
}
