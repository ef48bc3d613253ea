// One rule per framing case, on both parser paths (issue 21 item 12). llhttp and the portable
// parser (./portable.ts) differ where llhttp is lenient; the proxy answers alike on both because
// the portable parser refuses these inputs itself and, on the native path, the code around llhttp
// applies the same rule to what llhttp took: the front (requests) and the upstream side (answers)
// through `framingProblem`, H1Parser (./parser.ts) through `trailerProblem`. The strict answer is
// the one taken, with its reason beside it.

import { TOKEN } from './headers.js'

/**
 * The largest Content-Length either path frames a body by: a JavaScript number holds every length
 * up to it exactly, and the proxy writes the length it frames by. llhttp takes up to 2^64-1, and
 * the length the front would write upstream could then differ from the one llhttp counts. Leading
 * zeros are fine (RFC 9110 §8.6: 1*DIGIT; nginx reads them as well): the value is what is bounded,
 * as nginx bounds it by off_t (ngx_atoof, a 400 past it), and the head limit bounds the digits.
 */
export const MAX_CONTENT_LENGTH = Number.MAX_SAFE_INTEGER

/**
 * The most bytes of one chunk's extensions, counted as Node counts them since CVE-2024-22019
 * (node_http_parser.cc, kMaxChunkExtensionsSize): the names and values, quotes included, not the
 * `;` and `=` between them. Over it: HPE_CHUNK_EXTENSIONS_OVERFLOW, a 400, on both paths.
 */
export const MAX_CHUNK_EXTENSION_BYTES = 16 * 1024

/**
 * The codings of one Transfer-Encoding field value (SP around each allowed), or null when an
 * element is empty (`,chunked`, `chunked,`, a blank value) or not a token.
 *
 * Why strict where RFC 9110 §5.6.1 tells recipients to skip empty list elements: this is the
 * field that frames a request, and every reading of it that differs between two hops is a
 * smuggling hole. llhttp takes empty elements before the last coding but not after it, and a
 * blank value for "no body" (the body then parsed as the next request); nginx takes exactly
 * `chunked` and nothing else (501). A list with an empty element is refused on both paths.
 */
export function transferCodings(value: string): string[] | null {
  const codings = value.split(',')
  for (let i = 0; i < codings.length; i++) {
    const t = trimSp(codings[i]!)
    if (t === '') return null
    for (let k = 0; k < t.length; k++) if (TOKEN[t.charCodeAt(k)] !== 1) return null
    codings[i] = t
  }
  return codings
}

/**
 * Why the framing fields of a head llhttp took break a rule the portable parser keeps, or null:
 * a Transfer-Encoding list with an empty element or a coding after chunked, a Content-Length
 * past MAX_CONTENT_LENGTH.
 * `raw` is [name, value, ...] as parsed; called only for heads with one of these fields.
 */
export function framingProblem(raw: readonly string[]): string | null {
  let chunked = false
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!
    if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') {
      const codings = transferCodings(raw[i + 1]!)
      if (codings === null) return 'Transfer-Encoding has an empty or malformed element'
      // A coding after chunked (RFC 9112 §6.1: chunked is applied once, and last): llhttp refuses
      // it in a request and reads such an answer to the connection's end; refused both ways.
      for (const t of codings) {
        if (chunked) return 'Transfer-Encoding has a coding after chunked'
        chunked = t.length === 7 && t.toLowerCase() === 'chunked'
      }
    } else if (n.length === 14 && n.toLowerCase() === 'content-length') {
      if (!(Number(raw[i + 1]) <= MAX_CONTENT_LENGTH)) return `Content-Length over ${MAX_CONTENT_LENGTH}`
    }
  }
  return null
}

/**
 * Fields a trailer section may not carry: the ones that frame a message or speak for its
 * connection (RFC 9110 §6.5.1: they are needed before the content, and §7.6.1's connection
 * options are for the hop, never the content). llhttp applies some of them as if they were in
 * the head (`Connection: close` in a trailer ends the connection after the message, so a request
 * pipelined behind it is refused while the one before is served); ignoring them is then not
 * possible on that path, so both refuse the message: a 400 (a 502 for an answer).
 */
const REFUSED_IN_TRAILERS = new Set(['content-length', 'transfer-encoding', 'connection', 'proxy-connection', 'upgrade', 'keep-alive'])

/** A trailer section may not carry a field of this (lower-case) name. */
export function refusedInTrailers(lower: string): boolean {
  return REFUSED_IN_TRAILERS.has(lower)
}

/** The first trailer name of `raw` ([name, value, ...]) a trailer section may not carry, or null. */
export function trailerProblem(raw: readonly string[]): string | null {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!.toLowerCase()
    if (REFUSED_IN_TRAILERS.has(n)) return n
  }
  return null
}

function trimSp(s: string): string {
  let a = 0
  let b = s.length
  while (a < b && s.charCodeAt(a) === 32) a++
  while (b > a && s.charCodeAt(b - 1) === 32) b--
  return a === 0 && b === s.length ? s : s.slice(a, b)
}
