// Text from bytes someone else wrote (a config file, a secret file, a fleet table): strict UTF-8.
// Buffer#toString('utf8') replaces a bad sequence with U+FFFD and goes on, so a stray Latin-1 byte
// in a token or a path would silently become another value; here it is an error naming where.

import { isUtf8 } from 'node:buffer'
import type { Buffer } from 'node:buffer'

/**
 * The first byte offset at which `buf` stops being well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or -1. One pass, no allocation.
 */
export function firstBadUtf8(buf: Uint8Array): number {
  const n = buf.length
  let i = 0
  while (i < n) {
    const b = buf[i]!
    if (b < 0x80) {
      i++
      continue
    }
    // Continuation bytes after a lead byte, and the least code point that many may encode.
    const need = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0
    if (need === 0) return i
    const min = need === 1 ? 0x80 : need === 2 ? 0x800 : 0x10000
    let cp = b & (0x3f >> need)
    for (let k = 1; k <= need; k++) {
      const c = buf[i + k]
      if (c === undefined || (c & 0xc0) !== 0x80) return i
      cp = (cp << 6) | (c & 0x3f)
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i
    i += need + 1
  }
  return -1
}

/** `buf` as text, or an Error saying at which byte and line it is not UTF-8. */
export function strictUtf8(buf: Buffer): string {
  if (isUtf8(buf)) return buf.toString('utf8')
  const at = firstBadUtf8(buf)
  let line = 1
  for (let i = 0; i < at; i++) if (buf[i] === 0x0a) line++
  throw new Error(`not UTF-8 at byte ${at} (line ${line})`)
}
