// The HTTP/2 connection preface (RFC 9113 §3.4), as the plaintext listener's first read may show
// it: a client with prior knowledge of h2c starts with these 24 bytes, which no HTTP/1.1 request
// begins with (PRI is not a method anyone serves, and HTTP/2.0 not a version HTTP/1.1 parses).

import { Buffer } from 'node:buffer'

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/**
 * What the first bytes of a connection say: `h2` (the whole preface is there), `h1` (they differ
 * from it somewhere), or `more` (all of them are its beginning: wait for the next read). Looks at
 * no more than 24 bytes, so an HTTP/1.1 request costs the comparison of its first byte or few.
 */
export function prefaceVerdict(first: Buffer): 'h2' | 'h1' | 'more' {
  const n = Math.min(first.length, PREFACE.length)
  for (let i = 0; i < n; i++) if (first[i] !== PREFACE[i]) return 'h1'
  return n === PREFACE.length ? 'h2' : 'more'
}
