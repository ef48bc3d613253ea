// HTTP/2 header blocks to and from what the proxy forwards, by RFC 9113 §8.2 and §8.3. Pure
// functions over [name, value, ...] lists (node:http2's rawHeaders shape), no I/O.
//
// Why this is checked here although nghttp2 checks much of it too: the downgrade to HTTP/1.1 is
// where request smuggling lives (a CR or LF in a value becomes a header line of its own, a
// `transfer-encoding` or a second length reframes the body), so the proxy states its own rules in
// one place, tested as classes of input, and does not lean on a library's defaults that an option
// (`strictFieldWhitespaceValidation`, `maxHeaderListPairs`) or a version can change.
//
// Each refusal names a reason; the caller maps it to 400 (the client sent it) or 502 (the
// instance did) with `refusalError`.

import { METHODS } from 'node:http'
import { ProxyError, UpstreamError } from '../../errors.js'
import { FIELD, HOP_BY_HOP, MAX_HEADER_BYTES, ResponseHead, TOKEN } from '../h1/headers.js'
import { DEFAULT_LIMITS } from '../../limits.js'
import type { HeadModel } from '../transport.js'
import { reasonPhrase, renderH1Lines } from '../transport.js'

export type RefusalReason =
  | 'header-list-too-large'
  | 'too-many-headers'
  | 'invalid-name'
  | 'uppercase-name'
  | 'invalid-value'
  | 'pseudo-unknown'
  | 'pseudo-repeated'
  | 'pseudo-after-regular'
  | 'pseudo-missing'
  | 'pseudo-in-trailers'
  | 'connection-specific'
  | 'te-not-trailers'
  | 'connect'
  | 'invalid-method'
  | 'bad-scheme'
  | 'bad-path'
  | 'bad-authority'
  | 'authority-missing'
  | 'authority-mismatch'
  | 'host-repeated'
  | 'content-length-invalid'
  | 'bad-status'

export interface Refused {
  readonly ok: false
  readonly reason: RefusalReason
  readonly message: string
}

export type Translated<T> = { readonly ok: true; readonly value: T } | Refused

/** Bounds on one header block (RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE counting). */
export interface HeaderLimits {
  /** Sum of name + value + 32 per field, pseudo-headers included (default the HTTP/1.1 head limit, MAX_HEADER_BYTES). */
  readonly maxHeaderListBytes: number
  /** Most regular fields (default limits.maxHeaders, 100). */
  readonly maxHeaders: number
}

export const DEFAULT_HEADER_LIMITS: HeaderLimits = { maxHeaderListBytes: MAX_HEADER_BYTES, maxHeaders: DEFAULT_LIMITS.maxHeaders }

/** RFC 9113 §8.2.2: these never appear in HTTP/2; a block that carries one is malformed. */
export const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'])

/** RFC 9113 §8.2.3: each field is counted with 32 bytes of overhead. */
const FIELD_OVERHEAD = 32

/** A Content-Length value: 1 to 15 digits (a safe integer), as the HTTP/1.1 side takes it. */
const LENGTH = /^[0-9]{1,15}$/

function refuse(reason: RefusalReason, message: string): Refused {
  return { ok: false, reason, message }
}

/** The error a refusal becomes: 400 when the client sent the block, 502 when the instance did. */
export function refusalError(r: Refused, side: 'client' | 'instance'): ProxyError {
  return side === 'client'
    ? new ProxyError('ZP_ERR_BAD_REQUEST', `malformed HTTP/2 request (${r.reason}: ${r.message})`, { statusCode: 400 })
    : new UpstreamError('reset', `malformed HTTP/2 response from upstream (${r.reason}: ${r.message})`, false)
}

/** Why a regular field name is refused, or null: tchars only, lower case only (§8.2.1). */
function nameProblem(name: string): Refused | null {
  if (name.length === 0) return refuse('invalid-name', 'empty field name')
  let upper = false
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c > 0xff || TOKEN[c] !== 1) return refuse('invalid-name', `field name ${JSON.stringify(name)}`)
    if (c >= 0x41 && c <= 0x5a) upper = true
  }
  return upper ? refuse('uppercase-name', `field name ${JSON.stringify(name)}`) : null
}

/**
 * Why a value is refused, or null. §8.2.1 forbids NUL, CR and LF, and whitespace at either end;
 * the HTTP/1.1 side's own field rule (FIELD: no other control byte, no DEL, nothing past 0xff)
 * is applied as well, so a value that crosses is one the HTTP/1.1 path would have taken.
 */
function valueProblem(name: string, value: string): Refused | null {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c > 0xff || FIELD[c] !== 1) return refuse('invalid-value', `value of ${name} holds character 0x${c.toString(16)}`)
  }
  const first = value.charCodeAt(0)
  const last = value.charCodeAt(value.length - 1)
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return refuse('invalid-value', `value of ${name} starts or ends with whitespace`)
  return null
}

/**
 * Why a regular field of a received block (request, response or trailers) is refused, or null:
 * its name, its value, `count` (this field's number in the block) past the limit, a
 * connection-specific name (§8.2.2), checked in that order.
 */
function fieldProblem(name: string, value: string, count: number, limits: HeaderLimits): Refused | null {
  const badName = nameProblem(name)
  if (badName !== null) return badName
  const bad = valueProblem(name, value)
  if (bad !== null) return bad
  if (count > limits.maxHeaders) return refuse('too-many-headers', `more than ${limits.maxHeaders} fields`)
  if (CONNECTION_SPECIFIC.has(name)) return refuse('connection-specific', `${name} is connection-specific`)
  return null
}

/** Adds a field to the running size; a refusal once past the bound. */
function sizeProblem(size: number, limits: HeaderLimits): Refused | null {
  return size > limits.maxHeaderListBytes ? refuse('header-list-too-large', `header list over ${limits.maxHeaderListBytes} bytes`) : null
}

/** A request as the forwarding policy takes it (the shape of an HTTP/1.1 exchange's head). */
export interface ForwardRequest {
  readonly method: string
  readonly path: string
  readonly scheme: 'http' | 'https'
  /** From :authority, or Host when that was absent; lower-cased. */
  readonly authority: string
  /** [name, value, ...]: `host` first, then the regular fields in order, cookies joined (§8.2.3). */
  readonly headers: readonly string[]
  /** The declared Content-Length (-1: none); the body's DATA is held to it (lengthMismatch). */
  readonly contentLength: number
  /** The client sent `te: trailers`: it takes trailers in the answer. */
  readonly trailers: boolean
}

/** Methods a client may send (see translateRequest). */
const CLIENT_METHODS: ReadonlySet<string> = new Set(METHODS)

const REQUEST_PSEUDO = new Set([':method', ':path', ':scheme', ':authority', ':protocol'])

/**
 * An HTTP/2 request header block (rawHeaders order) as a forwarding request, or why it is
 * malformed (§8.3.1): exactly one :method, :path and :scheme, each at most once and before every
 * regular field, :authority and Host agreeing, no CONNECT (extended or not), no
 * connection-specific field, `te` only `trailers`, names lower-case tchars, values without CR, LF,
 * NUL or other control bytes, the list within the HTTP/1.1 head limit.
 */
export function translateRequest(raw: readonly string[], limits: HeaderLimits = DEFAULT_HEADER_LIMITS): Translated<ForwardRequest> {
  const pseudo = new Map<string, string>()
  const headers: string[] = ['host', '']
  let host: string | undefined
  let cookie = -1
  let contentLength = -1
  let trailers = false
  let regular = 0
  let size = 0
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    size += name.length + value.length + FIELD_OVERHEAD
    const big = sizeProblem(size, limits)
    if (big !== null) return big
    if (name.charCodeAt(0) === 0x3a) {
      if (regular > 0) return refuse('pseudo-after-regular', `${name} after a regular field`)
      if (!REQUEST_PSEUDO.has(name)) return refuse('pseudo-unknown', `pseudo-header ${JSON.stringify(name)}`)
      if (pseudo.has(name)) return refuse('pseudo-repeated', `${name} twice`)
      const bad = valueProblem(name, value)
      if (bad !== null) return bad
      pseudo.set(name, value)
      continue
    }
    const bad = fieldProblem(name, value, ++regular, limits)
    if (bad !== null) return bad
    if (name === 'te') {
      if (value.toLowerCase() !== 'trailers') return refuse('te-not-trailers', `te: ${value}`)
      trailers = true
      continue
    }
    if (name === 'host') {
      if (host !== undefined) return refuse('host-repeated', 'host twice')
      host = value
      continue
    }
    if (name === 'content-length') {
      if (!LENGTH.test(value)) return refuse('content-length-invalid', `content-length: ${value}`)
      const n = Number(value)
      if (contentLength >= 0 && n !== contentLength) return refuse('content-length-invalid', 'two different content-length values')
      contentLength = n
      continue
    }
    if (name === 'cookie') {
      // §8.2.3: split crumbs are joined with "; " for an HTTP/1.1 hop, which allows one Cookie.
      if (cookie >= 0) headers[cookie] = `${headers[cookie]!}; ${value}`
      else {
        cookie = headers.length + 1
        headers.push(name, value)
      }
      continue
    }
    headers.push(name, value)
  }
  const method = pseudo.get(':method')
  if (method === undefined) return refuse('pseudo-missing', 'no :method')
  // CONNECT tunnels (and RFC 8441's extended CONNECT) are not proxied over HTTP/2 yet.
  if (method === 'CONNECT') return refuse('connect', 'CONNECT is not supported')
  if (pseudo.has(':protocol')) return refuse('pseudo-unknown', ':protocol without extended CONNECT')
  if (!isToken(method)) return refuse('invalid-method', `method ${JSON.stringify(method)}`)
  // The methods the HTTP/1.1 front takes (llhttp's list, node:http's METHODS): a request is
  // forwarded by the same rules whichever protocol it came in on, and an HTTP/1.1 instance's
  // parser refuses any other (the h2 fuzz family sent a flipped-bit `GDT` upstream).
  if (!CLIENT_METHODS.has(method)) return refuse('invalid-method', `method ${JSON.stringify(method)} is not one the proxy forwards`)
  const scheme = pseudo.get(':scheme')
  const path = pseudo.get(':path')
  if (scheme === undefined) return refuse('pseudo-missing', 'no :scheme')
  if (path === undefined) return refuse('pseudo-missing', 'no :path')
  if (scheme !== 'http' && scheme !== 'https') return refuse('bad-scheme', `:scheme ${JSON.stringify(scheme)}`)
  if (!isRequestTarget(path, method)) return refuse('bad-path', `:path ${JSON.stringify(path)}`)
  const authority = pseudo.get(':authority')
  if (authority === undefined && host === undefined) return refuse('authority-missing', 'neither :authority nor host')
  if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase()) return refuse('authority-mismatch', ':authority and host differ')
  const named = (authority ?? host)!.toLowerCase()
  if (!isAuthority(named)) return refuse('bad-authority', `authority ${JSON.stringify(named)}`)
  headers[1] = named
  return { ok: true, value: { method, path, scheme, authority: named, headers, contentLength, trailers } }
}

function isToken(s: string): boolean {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 0xff || TOKEN[c] !== 1) return false
  }
  return true
}

/**
 * An origin-form target (`/` and visible ASCII, no space), or `*` for OPTIONS (§8.3.1): what an
 * HTTP/1.1 request line can carry without a byte of it being read as something else.
 */
function isRequestTarget(path: string, method: string): boolean {
  if (path === '*') return method === 'OPTIONS'
  if (path.charCodeAt(0) !== 0x2f) return false
  for (let i = 1; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f || c === 0x23) return false
  }
  return true
}

/** host[:port] without userinfo (§8.3.1 forbids it) and nothing a Host line could be split by. */
function isAuthority(s: string): boolean {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f || c === 0x40 || c === 0x2f || c === 0x3f || c === 0x23 || c === 0x5c) return false
  }
  return true
}

/**
 * An HTTP/1.1 answer's head (as the model) as an HTTP/2 response header block: `:status` first,
 * names lower-cased, hop-by-hop fields dropped (they mean nothing on a stream), the length
 * written from the framing number. A value no HTTP/2 peer may get is refused (the instance's
 * fault: 502).
 */
export function h2ResponseHeaders(model: HeadModel): Translated<string[]> {
  if (!Number.isInteger(model.status) || model.status < 200 || model.status > 999) return refuse('bad-status', `status ${model.status}`)
  const out: string[] = [':status', String(model.status)]
  const h = model.headers
  for (let i = 0; i + 1 < h.length; i += 2) {
    const name = h[i]!.toLowerCase()
    if (HOP_BY_HOP.has(name) || name === 'content-length') continue
    const badName = nameProblem(name)
    if (badName !== null) return badName
    const value = h[i + 1]!
    const bad = valueProblem(name, value)
    if (bad !== null) return bad
    out.push(name, value)
  }
  if (model.contentLength >= 0 && model.status !== 204 && model.status !== 304) out.push('content-length', String(model.contentLength))
  return { ok: true, value: out }
}

/**
 * An instance's HTTP/2 response header block as the model and today's ResponseHead (HTTP/1.1
 * lines, with the standard reason phrase): one `:status`, first, three digits, final (a 1xx is
 * handled before this); the same field rules as a request; content-length values agreeing.
 */
export function translateResponse(raw: readonly string[], limits: HeaderLimits = DEFAULT_HEADER_LIMITS): Translated<{ model: HeadModel; head: ResponseHead }> {
  let status = -1
  let regular = 0
  let size = 0
  let contentLength = -1
  const headers: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    size += name.length + value.length + FIELD_OVERHEAD
    const big = sizeProblem(size, limits)
    if (big !== null) return big
    if (name.charCodeAt(0) === 0x3a) {
      if (regular > 0) return refuse('pseudo-after-regular', `${name} after a regular field`)
      if (name !== ':status') return refuse('pseudo-unknown', `pseudo-header ${JSON.stringify(name)} in a response`)
      if (status >= 0) return refuse('pseudo-repeated', ':status twice')
      if (!/^[0-9]{3}$/.test(value)) return refuse('bad-status', `:status ${JSON.stringify(value)}`)
      status = Number(value)
      continue
    }
    const bad = fieldProblem(name, value, ++regular, limits)
    if (bad !== null) return bad
    if (name === 'content-length') {
      if (!LENGTH.test(value)) return refuse('content-length-invalid', `content-length: ${value}`)
      const n = Number(value)
      if (contentLength >= 0 && n !== contentLength) return refuse('content-length-invalid', 'two different content-length values')
      contentLength = n
      continue
    }
    if (HOP_BY_HOP.has(name)) continue
    headers.push(name, value)
  }
  if (status < 0) return refuse('pseudo-missing', 'no :status')
  // 101 does not exist in HTTP/2 (§8.6); interim answers never reach here.
  if (status < 200) return refuse('bad-status', `final :status ${status}`)
  const model: HeadModel = { status, headers, contentLength }
  return { ok: true, value: { model, head: new ResponseHead(status, reasonPhrase(status), renderH1Lines(headers), contentLength, headers) } }
}

/**
 * A trailer block, either way: no pseudo-header (§8.1), the same field rules, connection-specific
 * fields refused, and fields that frame, route or are hop-by-hop dropped (RFC 9110 §6.5.1).
 */
export function translateTrailers(raw: readonly string[], limits: HeaderLimits = DEFAULT_HEADER_LIMITS): Translated<string[]> {
  const out: string[] = []
  let size = 0
  let count = 0
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!
    const value = raw[i + 1]!
    size += name.length + value.length + FIELD_OVERHEAD
    const big = sizeProblem(size, limits)
    if (big !== null) return big
    if (name.charCodeAt(0) === 0x3a) return refuse('pseudo-in-trailers', `${name} in trailers`)
    const bad = fieldProblem(name, value, ++count, limits)
    if (bad !== null) return bad
    if (HOP_BY_HOP.has(name) || name === 'content-length' || name === 'host') continue
    out.push(name, value)
  }
  return { ok: true, value: out }
}

/**
 * A forwarding request's headers (forward.ts's [name, value, ...] list) as an HTTP/2 request
 * header object for node:http2: the pseudo-headers first, Host folded into :authority, names
 * lower-cased, hop-by-hop fields dropped but `te: trailers`, repeated names kept as arrays.
 */
export function h2RequestHeaders(method: string, path: string, headers: readonly string[], scheme: 'http' | 'https', authority: string): Translated<Record<string, string | string[]>> {
  if (method === 'CONNECT') return refuse('connect', 'CONNECT is not supported')
  if (!isToken(method)) return refuse('invalid-method', `method ${JSON.stringify(method)}`)
  if (!isRequestTarget(path, method)) return refuse('bad-path', `path ${JSON.stringify(path)}`)
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>
  out[':method'] = method
  out[':scheme'] = scheme
  out[':path'] = path
  let named = authority
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase()
    const value = headers[i + 1]!
    const badName = nameProblem(name)
    if (badName !== null) return badName
    const bad = valueProblem(name, value)
    if (bad !== null) return bad
    if (name === 'host') {
      named = value
      continue
    }
    if (name === 'te') {
      if (value.toLowerCase() === 'trailers') out.te = 'trailers'
      continue
    }
    if (HOP_BY_HOP.has(name) || name === 'content-length') continue
    const had = out[name]
    if (had === undefined) out[name] = value
    else if (Array.isArray(had)) had.push(value)
    else out[name] = [had, value]
  }
  if (!isAuthority(named)) return refuse('bad-authority', `authority ${JSON.stringify(named)}`)
  out[':authority'] = named
  return { ok: true, value: out }
}

/**
 * RFC 9113 §8.1.1: a Content-Length that disagrees with the DATA is a stream error. `declared`
 * -1: none (nothing to check); `received` the DATA bytes so far; `ended`: END_STREAM seen. 'over'
 * as soon as more came than declared, 'under' when the stream ended short; null while in order.
 * (The caller leaves out answers that have no body whatever they declare: HEAD, 204, 304.)
 */
export function lengthMismatch(declared: number, received: number, ended: boolean): 'over' | 'under' | null {
  if (declared < 0) return null
  if (received > declared) return 'over'
  if (ended && received < declared) return 'under'
  return null
}
