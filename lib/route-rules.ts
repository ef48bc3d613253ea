// The parts of a route that look at one request: header rules, methods, the path rewrite and the
// split between services. Pure functions of their inputs, so config checking (lib/config.ts) and
// the router use the same code and a table the config accepted cannot fail here.

import { RE2JS } from 're2js'
import { hash32 } from '../strategies/consistent-hash.js'

/** Most header rules in one route's match: each costs a lookup (and maybe a scan) per request. */
export const MAX_HEADER_RULES = 16
/** Longest `exact` or `prefix` value of a header rule, in characters. */
export const MAX_HEADER_VALUE_CHARS = 1024
/** Longest `regex` of a header rule, in characters; RE2 also refuses repeat counts over 1000. */
export const MAX_REGEX_CHARS = 256
/**
 * Most instructions a header rule's regex may compile to (Envoy's safe_regex refuses over 100 by
 * default). RE2's time is linear in the value but also grows with the program: `(?:[a-z]{1,30}){1,30}z`
 * (1802 instructions, 22 characters) took 160 ms on one 16 KiB header, so a client could stall the
 * event loop with every request; at 200 the worst measured was under 1 ms.
 */
export const MAX_REGEX_PROGRAM = 200
/** Most methods in one route's match. */
export const MAX_METHODS = 16
/** Largest weight of one service in a split; weights are relative (90 and 10 are 90 % and 10 %). */
export const MAX_SPLIT_WEIGHT = 100
/** Most services in one split. */
export const MAX_SPLIT_TARGETS = 16

/** Exactly one of the three is given (the config checks it). */
export interface HeaderRule {
  readonly exact?: string | undefined
  readonly prefix?: string | undefined
  readonly regex?: string | undefined
}

/** Where a split's stable key comes from: a request header, or the client's address. */
export type HashKey = { readonly header: string } | { readonly clientAddress: true }

export interface Rewrite {
  /** Drop the matched pathPrefix (a `/` stays). */
  readonly stripPrefix?: boolean | undefined
  /** Put this in place of the matched pathPrefix. */
  readonly prefix?: string | undefined
}

/**
 * A header rule's regex in the RE2 engine (re2js): matching is linear in the value's length
 * whatever the pattern, and backtracking constructs (backreferences, lookaround) do not exist in
 * its syntax, so a pattern cannot make routing cost grow beyond linear (ReDoS). The whole value
 * must match, as in Envoy's safe_regex. Throws with RE2's own message when the pattern is bad.
 */
export function compileRegex(pattern: string): (value: string) => boolean {
  if (pattern.length > MAX_REGEX_CHARS) throw new Error(`at most ${MAX_REGEX_CHARS} characters`)
  const re = RE2JS.compile(pattern)
  const size = re.programSize()
  if (size > MAX_REGEX_PROGRAM) throw new Error(`compiles to ${size} instructions, more than ${MAX_REGEX_PROGRAM} (every request pays for each: use smaller repeat counts)`)
  return (value) => re.testExact(value)
}

/** Why a regex is refused (RE2 syntax, length), or null when it compiles. */
export function regexProblem(pattern: string): string | null {
  try {
    compileRegex(pattern)
    return null
  } catch (err) {
    return (err as Error).message
  }
}

/** `header:<name>` or `client-address` (the consistent-hash strategy's spelling), or null. */
export function parseHashKey(text: string): HashKey | null {
  if (text === 'client-address') return { clientAddress: true }
  const m = /^header:([!#$%&'*+.^_`|~0-9A-Za-z-]{1,256})$/.exec(text)
  return m ? { header: m[1]!.toLowerCase() } : null
}

/** What a route needs of a request: the front's Exchange has all of it. */
export interface RouteRequest {
  readonly method: string
  readonly url: string
  readonly host: string | undefined
  readonly remoteAddress: string
  /** Names lower-cased, repeats joined with ", "; read only when a rule needs a header. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
}

export function headerValue(req: RouteRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/** One header rule as a predicate over the header's value (absent: no match). */
export function headerTest(rule: HeaderRule): (value: string) => boolean {
  const { exact, prefix, regex } = rule
  if (exact !== undefined) return (v) => v === exact
  if (prefix !== undefined) return (v) => v.startsWith(prefix)
  if (regex !== undefined) return compileRegex(regex)
  throw new TypeError('a header rule needs exact, prefix or regex')
}

/**
 * A rewrite of the matched `prefix` as nginx's `proxy_pass http://up/v2/;` in `location /api/`
 * does: the part of the path after the prefix is kept and appended to the replacement ('' for
 * stripPrefix). A trailing `/` of the prefix belongs to the rest, so `/api` and `/api/` rewrite
 * `/api/x` alike. The query string is kept as it came; percent-encoding is never decoded (an
 * encoded slash stays one). The result is an origin-form target: it starts with one `/`, never
 * `//` (which some servers would read as an authority).
 */
export function rewritePath(url: string, prefix: string, rewrite: Rewrite): string {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  const query = q === -1 ? '' : url.slice(q)
  const cut = prefix.endsWith('/') ? prefix.length - 1 : prefix.length
  let rest = path.slice(cut)
  // A dot segment in the rest would climb out of the replacement at the instance (`/api/../admin`
  // rewritten to `/v2/../admin` is `/admin` there): resolved here, so the rest stays below it.
  if (DOT_SEGMENT.test(rest)) rest = withoutDotSegments(rest)
  const replacement = rewrite.prefix ?? ''
  let out = replacement.endsWith('/') && rest.startsWith('/') ? replacement + rest.slice(1) : replacement + rest
  if (out === '') out = '/'
  else if (out.charCodeAt(0) !== 47) out = `/${out}`
  let lead = 0
  while (out.charCodeAt(lead + 1) === 47) lead++
  return out.slice(lead) + query
}

/**
 * The path a route matches against, as the servers behind a proxy read it, or null when they would
 * not agree on it (the request then gets no route). nginx and Envoy's normalize_path are the model:
 * percent-encoded unreserved characters decoded (`/%61pi` is `/api`, RFC 3986 §6.2.2.2), other
 * escapes kept with upper-case hex (§6.2.2.1), `//` merged (nginx's merge_slashes, Tomcat, Go's
 * path.Clean), dot segments resolved (`/x/../api` is `/api`), and (as servlet containers read a path)
 * `;parameters` dropped from each segment, so `/api;x/y` is `/api/y`. Refused, as Jetty's
 * ambiguous-URI checks and Tomcat refuse them, because one server family reads them one way and
 * another the other: a `#` (HAProxy's CVE-2023-45539), a `\` (a `/` to the WHATWG URL parser that
 * Node servers use, a letter to others), `%00`, a leading `//` (an authority to WHATWG), a dot
 * segment with parameters (`..;/`, a `..` only to Tomcat), and a `..` after a merged `//` (WHATWG
 * and RFC 3986 pop the empty segment, nginx and Go what is before it). An encoded slash stays one
 * escape here; Router.match checks that reading it as a `/` would not change the route. One pass
 * over the path; a path with none of `%\;#` nor `//` or `/.` (nearly every request) is returned as
 * is, without a copy.
 */
export function routingPath(path: string): string | null {
  if (!SPECIAL.test(path)) return path
  const n = path.length
  if (n > 1 && path.charCodeAt(0) === 47 && path.charCodeAt(1) === 47) return null
  const out: string[] = []
  let merged = false
  let at = path.charCodeAt(0) === 47 ? 1 : 0
  for (;;) {
    let end = path.indexOf('/', at)
    const last = end === -1
    if (last) end = n
    const name = segmentName(path, at, end)
    if (name === null) return null
    if (name === '..') {
      if (merged) return null
      out.pop()
    }
    if (name === '.' || name === '..' || (name === '' && !last)) {
      if (name === '') merged = true
      // A dot segment at the end leaves the path ending in `/`, as RFC 3986's algorithm does.
      if (last) out.push('')
    } else out.push(name)
    if (last) break
    at = end + 1
  }
  return `/${out.join('/')}`
}

/** What sends a path the slow way: an escape, a character servers disagree on, `//`, `/.`. */
const SPECIAL = /[%\\;#]|\/[./]/

/**
 * One segment, `path[from, to)`, as routingPath reads it: unreserved escapes decoded, other hex in
 * upper case, `;parameters` dropped; null when it holds what servers read differently.
 */
function segmentName(path: string, from: number, to: number): string | null {
  let name = ''
  let run = from
  let i = from
  for (; i < to; i++) {
    const c = path.charCodeAt(i)
    if (c === 59 /* ; */) break
    if (c === 92 /* \ */ || c === 35 /* # */) return null
    if (c !== 37 /* % */ || i + 2 >= to) continue
    const hi = hexValue(path.charCodeAt(i + 1))
    const lo = hexValue(path.charCodeAt(i + 2))
    if (hi < 0 || lo < 0) continue
    const byte = hi * 16 + lo
    if (byte === 0) return null
    const upper = `%${HEX[hi]}${HEX[lo]}`
    const normal = UNRESERVED[byte] === 1 ? String.fromCharCode(byte) : upper
    i += 2
    // An escape already in its normal form stays in the run: no piece, no copy.
    if (normal === upper && path.charCodeAt(i - 1) === upper.charCodeAt(1) && path.charCodeAt(i) === upper.charCodeAt(2)) continue
    name += path.slice(run, i - 2) + normal
    run = i + 1
  }
  name += path.slice(run, i)
  if (i < to) {
    // Parameters: dropped as Tomcat does, but a dot segment with them is a `..` to Tomcat alone.
    if (name === '.' || name === '..') return null
    for (let k = i; k < to; k++) {
      const c = path.charCodeAt(k)
      if (c === 92 || c === 35 || (c === 37 && path.startsWith('00', k + 1))) return null
    }
  }
  return name
}

const HEX = '0123456789ABCDEF'

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  const l = c | 0x20
  return l >= 97 && l <= 102 ? l - 87 : -1
}

/** 1 for the bytes RFC 3986 §2.3 calls unreserved: A-Z a-z 0-9 - . _ ~ */
const UNRESERVED = new Uint8Array(128).map((_, b) => Number(/[A-Za-z0-9._~-]/.test(String.fromCharCode(b))))

/** A `.` or `..` segment, percent-encoded or not (servers decode `%2e` before resolving them). */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?=\/|$)/i

/** RFC 3986 §5.2.4 remove_dot_segments on an absolute path, `%2e` read as `.`; never above `/`. */
function withoutDotSegments(path: string): string {
  const segments = path.split('/').slice(1)
  const out: string[] = []
  segments.forEach((s, i) => {
    const dots = /^(?:\.|%2e){1,2}$/i.test(s) ? s.replace(/%2e/gi, '.').length : 0
    if (dots === 0) return void out.push(s)
    if (dots === 2) out.pop()
    // A dot segment at the end leaves the path ending in `/`, as the RFC's algorithm does.
    if (i === segments.length - 1) out.push('')
  })
  return `/${out.join('/')}`
}

/** A split's choice for one key, in [0, 1): the consistent-hash strategy's hash, so similar keys spread. */
export function hashUnit(key: string): number {
  return hash32(key) / 0x1_0000_0000
}

/** The target at `unit` (0 <= unit < 1) of the weights' cumulative range; weight 0 is never chosen. */
export function pickWeighted<T>(targets: readonly { readonly target: T; readonly weight: number }[], total: number, unit: number): T {
  let at = Math.floor(unit * total)
  for (const t of targets) {
    if (at < t.weight) return t.target
    at -= t.weight
  }
  // Only a unit of 1 or more (a broken random source) gets here: the last weighted target.
  for (let i = targets.length - 1; i >= 0; i--) if (targets[i]!.weight > 0) return targets[i]!.target
  return targets[0]!.target
}
