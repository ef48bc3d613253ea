// One client request and its answer, written straight to the socket (see front.ts for why not
// node:http's server). It talks to its connection (connection.ts) through ExchangeOwner, so that
// the two do not import each other.

import { Buffer } from 'node:buffer'
import { STATUS_CODES } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'
import { clientGone } from '../../errors.js'
import type { ProxyError } from '../../errors.js'
import { neverUnhandled } from './emitters.js'
import { rawHeader } from './headers.js'
import type { ResponseHead } from './headers.js'
import { framingProblem } from './framing.js'

/** Bodies up to this size leave with their head in one copied Buffer (see Exchange.write). */
const SMALL_BODY = 4096

/**
 * `host[:port]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a name of unreserved characters (or %-escapes),
 * or a bracketed IPv6 literal, and an optional port. No spaces, commas, `@`, `/` or `?`: a Host
 * that names two hosts, or smuggles userinfo or a path, is a 400, never copied into X-Forwarded-Host.
 */
const HOST = /^(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/

/** Why a request is refused before it is routed: status, code, message. */
export interface Refusal {
  readonly status: number
  readonly code: string
  readonly message: string
}

/**
 * What an Exchange needs of the connection it came on. An interface rather than the Connection
 * class: the connection makes exchanges, and an exchange importing it back would close a cycle.
 */
export interface ExchangeOwner {
  readonly socket: Socket
  /** The connection is TLS. */
  readonly secure: boolean
  readonly closed: boolean
  /** The listener is shutting down. */
  readonly draining: boolean
  /** No request after the ones read so far will be served on this connection. */
  readonly lastRead: boolean
  /** Pipelined requests wait behind the one in flight. */
  readonly queued: boolean
  /** The body's reader wants more: let the client send again. */
  bodyWanted(): void
  /** `ex` wrote its last byte. */
  answered(ex: Exchange, close: boolean): void
  /** A new UUID v4 for a request that came without a sane X-Request-Id. */
  newRequestId(): string
}

/** A request's body as a stream; reading it is what lets the client send more (backpressure). */
class RequestBody extends Readable {
  readonly #conn: ExchangeOwner
  constructor(conn: ExchangeOwner) {
    super()
    this.#conn = conn
    neverUnhandled(this)
  }
  override _read(): void {
    this.#conn.bodyWanted()
  }
}

/**
 * One request and its answer. The request side is read-only data plus `body`; the answer side
 * writes the head once (`writeHead`/`writeResponseHead`), then body chunks, then `end()`.
 */
export class Exchange {
  readonly method: string
  /** The request target; a route's rewrite (lib/http/routes.ts) replaces it before it is forwarded. */
  url: string
  readonly httpMinor: number
  /** As received: [name, value, ...]. */
  readonly rawHeaders: string[]
  /** The headers the request path reads every time, found in one pass (Host: the first one). */
  readonly host: string | undefined
  readonly connection: string | undefined
  readonly expect: string | undefined
  /** The Content-Length llhttp framed the body by, as a number; -1: none (chunked, or no body). */
  readonly contentLength: number
  readonly remoteAddress: string
  /** The connection is TLS (X-Forwarded-Proto: https). */
  readonly secure: boolean
  /** Set when the request must be answered with an error instead of being routed. */
  refusal: Refusal | null = null
  /** The request body, or null when the request has none. */
  readonly body: RequestBody | null
  /** Called once if the client goes away before the answer is complete. */
  onAbort: (() => void) | null = null
  /** Called when the client socket drained after `write` returned false. */
  onDrain: (() => void) | null = null
  statusCode = 0
  /** Body bytes written to the client (the access log's bytesOut). */
  bytesOut = 0
  headersSent = false
  /** The whole answer went to the socket. */
  finished = false
  requestComplete = false
  readonly #conn: ExchangeOwner
  readonly #keepAlive: boolean
  #close = false
  #chunked = false
  #noBody = false
  #pendingHead: string | null = null

  #headers: IncomingHttpHeaders | null = null
  #requestId: string | null = null

  constructor(conn: ExchangeOwner, method: string, url: string, minor: number, raw: string[], keepAlive: boolean) {
    this.#conn = conn
    this.method = method
    this.url = url
    this.httpMinor = minor
    this.rawHeaders = raw
    let host: string | undefined
    let hosts = 0
    let connection: string | undefined
    let expect: string | undefined
    let length: string | undefined
    let chunked = false
    // Only names of these lengths can be one of the five; the rest are not even lower-cased.
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!
      const v = raw[i + 1]!
      switch (n.length) {
        case 4:
          if (n.toLowerCase() === 'host') {
            host ??= v
            hosts++
          }
          break
        case 6:
          if (n.toLowerCase() === 'expect') expect = v
          break
        case 10:
          if (n.toLowerCase() === 'connection') connection = connection === undefined ? v : `${connection}, ${v}`
          break
        case 14:
          if (n.toLowerCase() === 'content-length') length = v
          break
        case 17:
          if (n.toLowerCase() === 'transfer-encoding') chunked = true
          break
      }
    }
    this.host = host
    this.connection = connection
    this.expect = expect
    // The parser took only digits (and refused two lengths, or a length with chunked): this is the number.
    this.contentLength = chunked || length === undefined ? -1 : Number(length)
    // What llhttp is lenient about and the portable parser refuses (a Transfer-Encoding list with
    // an empty element, a length past 2^53-1) is refused here too: one answer on both paths.
    // Only heads with a framing field pay for the second look.
    const framing = chunked || length !== undefined ? framingProblem(raw) : null
    this.remoteAddress = conn.socket.remoteAddress ?? ''
    this.secure = conn.secure
    this.#keepAlive = keepAlive
    this.body = chunked || this.contentLength > 0 ? new RequestBody(conn) : null
    // RFC 9112 §3.2: a request with no Host (HTTP/1.1), more than one, or one that is not
    // host[:port] is a 400.
    if (framing !== null) this.refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: framing }
    else if (hosts > 1) this.refusal = BAD_HOST_TWICE
    else if (host === undefined ? minor >= 1 : !HOST.test(host)) this.refusal = BAD_HOST
  }

  /** All headers, names lower-cased, repeats joined with ", " (Host: the first one); built when first asked. */
  get headers(): IncomingHttpHeaders {
    return (this.#headers ??= headerObject(this.rawHeaders))
  }

  get destroyed(): boolean {
    return this.#conn.closed
  }

  /** The access log's and the metrics' protocol (a getter: nothing per request). */
  get protocol(): 'http/1.1' {
    return 'http/1.1'
  }

  /** The listener's port the client connected to (X-Forwarded-Port). */
  get localPort(): number {
    return this.#conn.socket.localPort ?? 0
  }

  /**
   * The client's X-Request-Id when it is sane (1 to 128 visible ASCII characters), else one made
   * here; made once, on first use. It goes upstream, into the access log and into error bodies.
   */
  get requestId(): string {
    if (this.#requestId !== null) return this.#requestId
    const id = rawHeader(this.rawHeaders, 'x-request-id')
    return (this.#requestId = id !== undefined && SANE_REQUEST_ID.test(id) ? id : this.#conn.newRequestId())
  }

  /** Writes the head of an upstream's answer, choosing the framing toward this client. */
  writeResponseHead(head: ResponseHead): void {
    const n = head.contentLength
    // The length goes out as the number the answer is framed by, never as the upstream wrote it.
    this.#head(head.status, head.text, n < 0 ? head.lines : `${head.lines}content-length: ${n}\r\n`, n >= 0)
  }

  /** Writes the head of an answer the proxy makes itself. */
  writeHead(status: number, headers: Readonly<Record<string, string | number>>, close = false): void {
    let lines = ''
    let length = false
    for (const name in headers) {
      if (name === 'content-length') length = true
      lines += `${name}: ${headers[name]}\r\n`
    }
    if (close) this.#close = true
    this.#head(status, '', lines, length)
  }

  #head(status: number, text: string, lines: string, length: boolean): void {
    if (this.headersSent || this.#conn.closed) return
    this.headersSent = true
    this.statusCode = status
    // No body: HEAD, 204, 304 (RFC 9110 §6.4.1); the Content-Length an upstream gave stays.
    this.#noBody = this.method === 'HEAD' || status === 204 || status === 304
    if (!this.#noBody && !length) {
      // Unknown length: chunked to HTTP/1.1 clients, to 1.0 ones delimited by closing.
      if (this.httpMinor >= 1) {
        this.#chunked = true
        lines += 'transfer-encoding: chunked\r\n'
      } else this.#close = true
    }
    // The body may not all be read yet (an answer that came before the request's end): the
    // connection cannot be reused, as nginx does not either without reading the rest.
    // Shutting down: the last answer on a connection says close (one queued behind it still
    // gets its own answer, the 503 the server gives late requests).
    // After the last request the connection reads (Connection: close, a refused one...), too.
    const last = (this.#conn.draining || this.#conn.lastRead) && !this.#conn.queued
    if (!this.#keepAlive || last || (!this.requestComplete && this.body !== null)) this.#close = true
    if (this.#close) lines += 'connection: close\r\n'
    else if (this.httpMinor === 0) lines += 'connection: keep-alive\r\n'
    // Held until the first body chunk or the end, so that head and body leave in one writev.
    this.#pendingHead = `HTTP/1.1 ${status} ${text || STATUS_CODES[status] || 'Unknown'}\r\n${lines}\r\n`
  }

  /**
   * True while the socket still holds bytes written to it (a write went asynchronous): a Buffer
   * passed to `write` may then still be referenced. False right after a write: the kernel took it all.
   */
  get writePending(): boolean {
    return this.#conn.socket.writableLength > 0
  }

  /** False means: the socket's buffer is full, wait for `onDrain`. */
  write(chunk: Buffer): boolean {
    if (!this.headersSent) this.writeHead(200, {})
    if (this.#noBody || this.#conn.closed || this.finished) return true
    this.bytesOut += chunk.length
    const s = this.#conn.socket
    const head = this.#pendingHead
    if (head === null && !this.#chunked) return s.write(chunk)
    if (head !== null && !this.#chunked && chunk.length <= SMALL_BODY) {
      // The common small answer: head and body copied into one Buffer and written once, which
      // costs less than a corked writev through the stream's buffering.
      this.#pendingHead = null
      const out = Buffer.allocUnsafe(head.length + chunk.length)
      out.write(head, 0, 'latin1')
      chunk.copy(out, head.length)
      return s.write(out)
    }
    // Several pieces (the head, chunk framing): corked, so they go out in one writev.
    s.cork()
    if (head !== null) {
      this.#pendingHead = null
      s.write(head, 'latin1')
    }
    if (this.#chunked) s.write(`${chunk.length.toString(16)}\r\n`, 'latin1')
    s.write(chunk)
    if (this.#chunked) s.write('\r\n', 'latin1')
    s.uncork()
    return !s.writableNeedDrain
  }

  end(body?: string): void {
    if (this.finished || this.#conn.closed) return
    const bytes = body === undefined || body.length === 0 ? null : Buffer.from(body)
    if (!this.headersSent) this.writeHead(200, { 'content-length': bytes === null ? 0 : bytes.length })
    if (bytes !== null) this.write(bytes)
    const tail = this.#chunked ? '0\r\n\r\n' : ''
    if (this.#pendingHead !== null) this.#conn.socket.write(this.#pendingHead + tail, 'latin1')
    else if (tail !== '') this.#conn.socket.write(tail, 'latin1')
    this.#pendingHead = null
    this.finished = true
    this.#conn.answered(this, this.#close)
  }

  /** Cuts the connection: the way to tell a client its answer is incomplete. */
  destroy(): void {
    this.#conn.socket.destroy()
  }

  /**
   * The body cannot be read to its end (too slow, too large): whoever reads it gets `err`, whose
   * statusCode (408, 413) is what the client is answered if nothing was sent yet.
   */
  failBody(err: ProxyError): void {
    if (this.body !== null && !this.requestComplete && !this.body.destroyed) this.body.destroy(err)
  }

  /** The client went away (or the connection was cut) before the answer was complete. */
  aborted(): void {
    if (this.body !== null && !this.requestComplete) this.body.destroy(clientGone('client aborted the request body'))
    const cb = this.onAbort
    this.onAbort = null
    if (!this.finished) cb?.()
  }
}

const SANE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/

const BAD_HOST: Refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: 'a request needs one Host header of the form host[:port]' }
const BAD_HOST_TWICE: Refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: 'more than one Host header' }

function headerObject(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const had = out[name]
    if (had === undefined) out[name] = raw[i + 1]!
    else if (name !== 'host' && name !== 'content-length') out[name] = `${had}, ${raw[i + 1]!}`
  }
  return out
}
