// The client-facing HTTP/1.1 listener: sockets from node:net, requests parsed by Node's own
// llhttp (./parser.ts), and answers written straight to the socket.
//
// Why not node:http's server: per request it builds an IncomingMessage and a ServerResponse (two
// streams, an EventEmitter each, a headers object, an outgoing-message state machine) and costs
// more CPU than the rest of the request path together; see bench/ and docs/performance.md's
// notes. A proxy needs much less of it: the request line and headers, the body as a stream, and
// an answer whose head it writes itself. What it keeps of Node's server: the same parser (so the
// same strictness about framing), a header size limit, 100-continue, keep-alive with an idle
// timeout, a deadline for a request's head, pipelined requests answered in order, and Upgrade
// requests handed over with their socket (to ../websocket.ts).

import { Buffer } from 'node:buffer'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { STATUS_CODES } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import tls from 'node:tls'
import type { AddressInfo, Socket } from 'node:net'
import { Readable } from 'node:stream'
import { ProxyError, clientGone } from '../../errors.js'
import { MAX_HEADER_BYTES } from './headers.js'
import type { ResponseHead } from './headers.js'
import { DEFAULT_LIMITS } from './limits.js'
import type { FrontLimits } from './limits.js'
import { framingProblem } from './framing.js'
import { ENGINE } from './engine.js'
import { H1Parser, handleProblem, startReading, stopReading } from './parser.js'
import type { ParseError, ParserEvents } from './parser.js'

/** Node's http server defaults, which users of it and of nginx expect. */
export { MAX_HEADER_BYTES } from './headers.js'
export const KEEP_ALIVE_TIMEOUT_MS = 5_000
export const HEADERS_TIMEOUT_MS = 60_000

/** A TLS handshake must be done within this (Node's default is 120 s: a cheap way to hold sockets). */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

/** Bodies up to this size leave with their head in one copied Buffer (see Exchange.write). */
const SMALL_BODY = 4096

/** What the client side enforces (config: clientBodyTimeoutMs, limits.*), and its defaults. */
export { DEFAULT_LIMITS } from './limits.js'
export type { FrontLimits } from './limits.js'

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

export interface H1Handlers {
  /** A request whose head arrived; it must end in `end()`, `sendError`-like answer or `destroy()`. */
  request(ex: Exchange): void
  /** A request refused before routing (bad Host, version, too many headers, too large): answer it. */
  refuse(ex: Exchange, refusal: Refusal): void
  /**
   * An Upgrade request, with the socket it came on (paused, no longer this parser's) and the bytes
   * the client sent after its head: as node:http's server emits 'upgrade', but the request is an
   * Exchange, so it goes upstream with the headers every request gets (forward.ts).
   */
  upgrade(ex: Exchange, socket: Socket, head: Buffer): void
}

/**
 * An 'error' listener every emitter on the request path gets when it is made, before anyone can
 * destroy it: whoever reads it adds its own and learns of the error that way; once nobody reads
 * it any more (the attempt that held it ended), an error it still emits must not end the process.
 */
export function neverUnhandled(e: { on(event: 'error', fn: (err: Error) => void): unknown }): void {
  e.on('error', ignore)
}

function ignore(): void {}

/** A request's body as a stream; reading it is what lets the client send more (backpressure). */
class RequestBody extends Readable {
  readonly #conn: Connection
  constructor(conn: Connection) {
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
  readonly #conn: Connection
  readonly #keepAlive: boolean
  #close = false
  #chunked = false
  #noBody = false
  #pendingHead: string | null = null

  #headers: IncomingHttpHeaders | null = null
  #requestId: string | null = null

  constructor(conn: Connection, method: string, url: string, minor: number, raw: string[], keepAlive: boolean) {
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
    const raw = this.rawHeaders
    let id: string | undefined
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!
      if (n.length === 12 && n.toLowerCase() === 'x-request-id') {
        id = raw[i + 1]!
        break
      }
    }
    return (this.#requestId = id !== undefined && SANE_REQUEST_ID.test(id) ? id : randomUUID())
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

/** One client connection: parses requests in order and answers them one at a time. */
class Connection implements ParserEvents {
  readonly socket: Socket
  readonly secure: boolean
  readonly #server: H1Server
  readonly #parser: H1Parser
  /** The request being answered. */
  #current: Exchange | null = null
  /** Pipelined requests waiting for it (rare; the socket is paused while any wait). */
  readonly #queue: Exchange[] = []
  /** The request whose body is being parsed. */
  #reading: Exchange | null = null
  #upgrade: Exchange | null = null
  #bodyFull = false
  /** Body bytes of the request being read, and when the last of them came (clientBodyTimeoutMs). */
  #bodyBytes = 0
  bodyAt = 0
  #peerEnded = false
  /** The connection ends after the answer that went out last. */
  #closing = false
  /**
   * A request that ends the connection was read (Connection: close, HTTP/1.0 without keep-alive,
   * or one refused): whatever the client pipelined after it is read and dropped, never served
   * (RFC 9112 §9.6), and its answer still goes out.
   */
  #lastRead = false
  /** A parse error behind requests still being answered: the 400 goes out after their answers. */
  #pendingError: ParseError | null = null
  closed = false
  /** Handed over to an upgrade tunnel: no longer this parser's, never idle. */
  upgraded = false
  /** When the connection last became idle (no request in flight), for the keep-alive timeout. */
  idleSince = performance.now()
  /** When the head of a request started arriving, while it is incomplete. */
  headStartedAt = -1

  constructor(socket: Socket, server: H1Server) {
    this.socket = socket
    this.#server = server
    this.#parser = new H1Parser('request', this, MAX_HEADER_BYTES)
    socket.setNoDelay(true)
    this.secure = socket instanceof tls.TLSSocket
    // A TLS socket is read through its stream, not consumed: parser.ts's rules were checked for
    // plain TCP handles only, and on HTTPS the crypto costs more than the 'data' event saves.
    if (!this.secure && this.#parser.consume(socket, this.#onExecute)) socket.resume() // flowing, so 'end' is emitted
    else {
      socket.on('data', this.#onData)
      // A plain socket Node's parser could have read itself but for its handle's shape: said once.
      if (!this.secure && ENGINE.consumes && !socket.destroyed) server.streamReading(handleProblem(socket))
    }
    socket.on('end', this.#onEnd)
    socket.on('drain', this.#onDrain)
    socket.on('error', this.#onError)
    socket.once('close', this.#onClose)
  }

  get draining(): boolean {
    return this.#server.draining
  }

  /** No request after the ones read so far will be served on this connection. */
  get lastRead(): boolean {
    return this.#lastRead
  }

  /** Pipelined requests wait behind the one in flight. */
  get queued(): boolean {
    return this.#queue.length > 0
  }

  get idle(): boolean {
    return this.#current === null && this.headStartedAt < 0 && !this.upgraded
  }

  /** A request body is being read from the client, and the proxy is not holding it back. */
  get readingBody(): boolean {
    return this.#reading !== null && !this.#bodyFull && this.#queue.length === 0
  }

  /** The client was silent for longer than clientBodyTimeoutMs in the middle of a body. */
  bodyTimedOut(ms: number): void {
    this.#reading?.failBody(new ProxyError('ZP_ERR_CLIENT_TIMEOUT', `request body: nothing received for ${ms} ms`, { statusCode: 408 }))
    // Nothing more is read from a client that stalled mid-body: the connection ends with the answer.
    this.#lastRead = true
  }

  /** Reads parsed by the parser itself (see H1Parser.consume): what it made of one read. */
  readonly #onExecute = (ret: number | ParseError): void => {
    if (typeof ret !== 'number') this.#badRequest(ret)
    else if (this.#upgrade !== null) this.#handOver(this.#parser.currentBuffer().subarray(ret))
    else if (ret > 0) this.#afterRead()
  }

  /** The same for a socket that could not be consumed. */
  readonly #onData = (data: Buffer): void => {
    const n = this.#parser.execute(data)
    if (typeof n !== 'number') this.#badRequest(n)
    else if (this.#upgrade !== null) this.#handOver(data.subarray(n))
    else if (n > 0) this.#afterRead()
  }

  /**
   * After a read: bytes came but no request is in flight or being read, so a head is partly in
   * (the keep-alive sweep then holds it to HEADERS_TIMEOUT_MS). Checked here rather than in a
   * message-begin callback, one fewer call from C++ per request.
   */
  #afterRead(): void {
    if (this.headStartedAt < 0 && this.#current === null && this.#reading === null && !this.#closing && !this.upgraded) this.headStartedAt = performance.now()
  }

  /** The client's FIN came while pipelined requests wait (portable path): handled once they are answered. */
  #endDeferred = false

  readonly #onEnd = (): void => {
    this.#peerEnded = true
    // Reading is stopped while requests wait behind the one in flight. A consumed socket then
    // reads no FIN either; a socket read through its stream (the portable path, TLS) still emits
    // 'end' once its buffer is empty. Either way the FIN is taken in its turn, after the requests
    // sent before it are answered (node:http keeps those answers too), not as a cut request now.
    if (this.#queue.length > 0) {
      this.#endDeferred = true
      return
    }
    const err = this.#parser.finish()
    // The client stopped sending in the middle of a request's body, or of a head with nothing
    // before it to answer: cut. A head cut short behind a request being answered is dropped, and
    // that answer still goes out before the connection ends (as nginx does; answered() ends it).
    if (this.#reading !== null || (err !== null && this.#current === null)) {
      this.socket.destroy()
      return
    }
    if (this.#current === null) this.socket.end()
  }

  readonly #onDrain = (): void => {
    this.#current?.onDrain?.()
  }

  /**
   * A client's reset is not our error: 'close' follows it. But a TLS socket's renegotiation errors
   * (ERR_TLS_RENEGOTIATION_DISABLED, and ERR_TLS_SESSION_ATTACK: Node's 3 per 10 minutes) are
   * emitted on a socket left open, so swallowing them let one connection renegotiate thousands of
   * times: any error closes the connection here.
   */
  readonly #onError = (err: Error): void => {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ERR_TLS_RENEGOTIATION_DISABLED' || code === 'ERR_TLS_SESSION_ATTACK') this.#server.tlsRefused(code, this.socket.remoteAddress)
    this.socket.destroy()
  }

  readonly #onClose = (): void => {
    this.closed = true
    this.#server.forget(this)
    this.#parser.close()
    const all = this.#current === null ? this.#queue : [this.#current, ...this.#queue]
    this.#current = null
    this.#queue.length = 0
    for (const ex of all) ex.aborted()
  }

  onHead(major: number, minor: number, headers: string[], method: string, url: string, _status: number, _text: string, upgrade: boolean, keepAlive: boolean): void {
    this.headStartedAt = -1
    // After the last request on this connection: nothing more is served.
    if (this.#closing || this.#lastRead) return
    const limits = this.#server.limits
    let refusal: Refusal | null = null
    // HTTP/0.9 (a request line without a version, which llhttp takes) and versions above 1.x.
    if (major !== 1) refusal = major === 0 ? BAD_VERSION : UNSUPPORTED_VERSION
    else if (headers.length > limits.maxHeaders * 2) refusal = TOO_MANY_HEADERS
    // A method llhttp parses but this Node names not (QUERY on Node 20): never sent as "undefined".
    else if (method === '') refusal = UNKNOWN_METHOD
    const ex = new Exchange(this, method === '' ? 'GET' : method, url, major === 1 ? minor : 0, headers, keepAlive && refusal === null && !upgrade)
    if (upgrade && refusal === null && ex.refusal === null) {
      // An upgrade is held to the same rules (one sane Host, origin-form), and carries no body:
      // bytes after its head belong to the tunnel, so a length there would frame nothing. CONNECT
      // is not tunnelled; an upgrade pipelined behind requests still being answered is refused in
      // its turn (its answer must not overtake theirs).
      if (method === 'CONNECT') refusal = CONNECT_REFUSED
      else if (this.#current !== null || this.#queue.length > 0) refusal = UPGRADE_PIPELINED
      else if (ex.body !== null || ex.contentLength > 0) refusal = UPGRADE_WITH_BODY
      else if (url.charCodeAt(0) !== 47 /* '/' */) refusal = BAD_TARGET
      else {
        this.#upgrade = ex
        return
      }
    }
    // (Not over a framing refusal: a length past 2^53-1 is a 400 on both parser paths.)
    if (refusal === null && ex.refusal === null && limits.maxBodyBytes > 0 && ex.contentLength > limits.maxBodyBytes) refusal = BODY_TOO_LARGE
    if (refusal !== null) ex.refusal = refusal
    if (ex.refusal !== null || !keepAlive) this.#lastRead = true
    if (ex.body === null) ex.requestComplete = true
    else {
      // The body's clock (clientBodyTimeoutMs, maxBodyBytes) starts only for a request with one.
      this.#reading = ex
      this.#bodyBytes = 0
      this.bodyAt = performance.now()
    }
    if (this.#current === null) this.#start(ex)
    else {
      this.#queue.push(ex)
      stopReading(this.socket)
    }
  }

  onBody(chunk: Buffer): void {
    const ex = this.#reading
    if (ex === null || ex.body === null || ex.body.destroyed) return
    this.bodyAt = performance.now()
    this.#bodyBytes += chunk.length
    const max = this.#server.limits.maxBodyBytes
    if (max > 0 && this.#bodyBytes > max) {
      // A chunked body that grew past the limit (a declared one was refused at its head).
      ex.failBody(new ProxyError('ZP_ERR_BODY_TOO_LARGE', `request body over ${max} bytes`, { statusCode: 413 }))
      this.#lastRead = true
      return
    }
    if (!ex.body.push(chunk) && !this.#bodyFull) {
      this.#bodyFull = true
      stopReading(this.socket)
    }
  }

  onComplete(): void {
    const ex = this.#reading
    if (ex === null) return
    this.#reading = null
    ex.requestComplete = true
    ex.body?.push(null)
    // The body held the client back (its buffer was full) and ended in the same read: nobody will
    // ask for more of it (_read is not called after the end), so reading resumes here, or the
    // connection's next request, and the client's FIN, would never be read.
    if (this.#bodyFull) {
      this.#bodyFull = false
      if (this.#queue.length === 0) startReading(this.socket)
    }
  }

  /** The body's reader wants more: let the client send again. */
  bodyWanted(): void {
    if (!this.#bodyFull) return
    this.#bodyFull = false
    // The time the proxy held the client back is not the client's silence.
    this.bodyAt = performance.now()
    if (this.#queue.length === 0) startReading(this.socket)
  }

  #start(ex: Exchange): void {
    this.#current = ex
    // Not for a request about to be refused: its body would only be read and dropped.
    if (ex.refusal === null && ex.body !== null && ex.httpMinor >= 1 && /^100-continue$/i.test(ex.expect ?? '')) {
      this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1')
    }
    // The last-resort guard: this runs inside the parser's callback, where a throw would end the
    // process (or leave the parser half-run); the handler's own errors are answered here instead.
    try {
      if (ex.refusal !== null) this.#server.handlers.refuse(ex, ex.refusal)
      else this.#server.handlers.request(ex)
    } catch (err) {
      this.#server.handlerFailed(ex, err)
    }
  }

  /** `ex` wrote its last byte. */
  answered(ex: Exchange, close: boolean): void {
    if (ex !== this.#current) return
    this.#current = null
    // A client that half-closed still gets the answers to what it sent before its FIN (as
    // node:http does); the connection ends after the last of them.
    if (close || (this.#peerEnded && this.#queue.length === 0) || !ex.requestComplete) {
      this.#closing = true
      this.socket.end()
      if (!ex.requestComplete) {
        // Answered before the request's body was all in (an upstream that refused it early):
        // the rest is read and dropped until the client ends too, or the idle sweep closes it.
        ex.body?.destroy()
        this.#bodyFull = false
        startReading(this.socket)
      }
      return
    }
    const next = this.#queue.shift()
    if (next !== undefined) {
      if (this.#queue.length === 0 && !this.#bodyFull) startReading(this.socket)
      this.#start(next)
      if (this.#queue.length === 0 && this.#endDeferred) {
        this.#endDeferred = false
        this.#onEnd()
      }
      return
    }
    if (this.#pendingError !== null) {
      // Every request before the malformed one is answered; now the 400 for it.
      this.#closing = true
      this.#answerError(this.#pendingError)
      return
    }
    this.idleSince = performance.now()
  }

  /**
   * A request the parser refused: answered (400, 431) and the connection closed. Requests before
   * it are answered first (as nginx does with a pipelined request followed by garbage); after the
   * last request of a connection, what follows is read and dropped.
   */
  #badRequest(err: ParseError): void {
    this.#parser.close()
    // What the client sends from here is read and dropped (not left unread: closing a socket
    // with unread bytes resets it, and the answers still going out would be lost).
    this.socket.off('data', this.#onData)
    this.socket.on('data', ignore)
    startReading(this.socket)
    if (this.#closing || this.#lastRead) return
    if (this.#reading !== null) {
      // In the middle of a body (a bad chunk, a Transfer-Encoding llhttp refused after the head):
      // the rest cannot be framed. The request fails with a 400 if nothing was answered yet (or
      // its connection is cut), and nothing after it is read.
      const ex = this.#reading
      this.#reading = null
      this.#lastRead = true
      ex.failBody(new ProxyError('ZP_ERR_BAD_REQUEST', `malformed request body (${err.code})`, { statusCode: 400 }))
      return
    }
    if (this.#current !== null) {
      this.#pendingError = err
      return
    }
    this.#closing = true
    this.#answerError(err)
  }

  #answerError(err: ParseError): void {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    const code = status === 431 ? 'ZP_ERR_HEADERS_TOO_LARGE' : 'ZP_ERR_BAD_REQUEST'
    const body = JSON.stringify({ error: code, message: `malformed request (${err.code})`, requestId: randomUUID() })
    this.socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      'latin1',
    )
  }

  /** An Upgrade request: the socket leaves this parser for whoever tunnels it. */
  #handOver(head: Buffer): void {
    const ex = this.#upgrade!
    this.upgraded = true
    this.socket.off('data', this.#onData)
    this.socket.off('end', this.#onEnd)
    this.socket.off('drain', this.#onDrain)
    // Rule 4 of parser.ts: unconsumed before anyone else reads the socket (close() does it first).
    this.#parser.close()
    // Not flowing until the tunnel reads it (node:http's server does the same: readableFlowing =
    // null before 'upgrade').
    this.socket.pause()
    const written = this.socket.bytesWritten
    try {
      this.#server.handlers.upgrade(ex, this.socket, head)
    } catch (err) {
      this.#server.upgradeFailed(this.socket, written, err)
    }
  }
}

const BAD_VERSION: Refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: 'not an HTTP/1.x request line' }
const UNSUPPORTED_VERSION: Refusal = { status: 505, code: 'ZP_ERR_BAD_REQUEST', message: 'only HTTP/1.0 and HTTP/1.1 are served here' }
const UNKNOWN_METHOD: Refusal = { status: 501, code: 'ZP_ERR_BAD_REQUEST', message: 'method not implemented' }
const CONNECT_REFUSED: Refusal = { status: 405, code: 'ZP_ERR_BAD_REQUEST', message: 'CONNECT is not served here' }
const UPGRADE_PIPELINED: Refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: 'an upgrade request must not be pipelined' }
const UPGRADE_WITH_BODY: Refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: 'an upgrade request carries no body' }
const BAD_TARGET: Refusal = { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: 'request target must be a path (origin-form)' }
const TOO_MANY_HEADERS: Refusal = { status: 431, code: 'ZP_ERR_HEADERS_TOO_LARGE', message: 'too many header fields' }
const BODY_TOO_LARGE: Refusal = { status: 413, code: 'ZP_ERR_BODY_TOO_LARGE', message: 'request body too large' }

export interface FrontOptions {
  readonly limits?: FrontLimits
  /** HTTPS only: the listener's certificate and key. */
  readonly tls?: tls.SecureContextOptions
  /** Told once, with the reason, when sockets are read through their stream for their handle's shape. */
  readonly onStreamReading?: (reason: string) => void
  /** Told what a handler threw (the request got a 502, or its connection was cut). */
  readonly onHandlerError?: (err: unknown, kind: 'request' | 'upgrade') => void
  /** Told when a client's TLS renegotiation was refused and its connection closed. */
  readonly onTlsRefused?: (code: string, client: string | undefined) => void
}

export class H1Server {
  readonly handlers: H1Handlers
  readonly limits: FrontLimits
  readonly #server: net.Server
  readonly #connections = new Set<Connection>()
  /** TCP sockets of a TLS listener whose handshake is not done yet. */
  readonly #handshaking = new Set<Socket>()
  readonly #sweeper: NodeJS.Timeout
  readonly #onStreamReading: ((reason: string) => void) | undefined
  readonly #onHandlerError: ((err: unknown, kind: 'request' | 'upgrade') => void) | undefined
  readonly #onTlsRefused: ((code: string, client: string | undefined) => void) | undefined
  #streamReadingTold = false
  draining = false

  constructor(handlers: H1Handlers, options: FrontOptions = {}) {
    const { limits = DEFAULT_LIMITS, tls: secure } = options
    this.handlers = handlers
    this.limits = limits
    this.#onStreamReading = options.onStreamReading
    this.#onHandlerError = options.onHandlerError
    this.#onTlsRefused = options.onTlsRefused
    // allowHalfOpen: a client that sends its request and then shuts down its sending side still
    // gets its answer (node:http does the same).
    const accept = (socket: Socket): void => {
      this.#connections.add(new Connection(socket, this))
    }
    if (secure === undefined) this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, accept)
    else {
      // HTTPS only on this port; ALPN says http/1.1 (a client asking for h2 alone is refused).
      const server = tls.createServer(
        { ...secure, allowHalfOpen: true, noDelay: true, ALPNProtocols: ['http/1.1'], handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS },
        (socket) => {
          this.#handshaking.delete(socket)
          // Client-initiated renegotiation refused, as nginx does: each one is a full handshake's
          // CPU for the server (CVE-2011-1473). TLS 1.3 has none; this is for 1.2 clients.
          socket.disableRenegotiation()
          accept(socket)
        },
      )
      // Sockets still in their handshake are no Connection yet: tracked so close() cuts them too
      // (a client that refused our certificate leaves a half-open one behind).
      server.on('connection', (raw: Socket) => {
        this.#handshaking.add(raw)
        raw.once('close', () => this.#handshaking.delete(raw))
      })
      // A failed handshake (plain HTTP, an untrusting client) is the client's problem: its socket
      // is closed, nothing else happens (with a listener here, closing it is ours to do).
      server.on('tlsClientError', (_err, socket) => socket.destroy())
      this.#server = server
    }
    // Once a second: idle keep-alive connections past their timeout, and heads that take too
    // long to arrive (slowloris), are closed. One timer for all instead of one per socket.
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(1_000, Math.max(50, limits.clientBodyTimeoutMs / 4))).unref()
  }

  /** A plain socket is read through its stream (see Connection): the first reason is passed on, once. */
  streamReading(reason: string | null): void {
    if (reason === null || this.#streamReadingTold) return
    this.#streamReadingTold = true
    this.#onStreamReading?.(reason)
  }

  /**
   * A request handler threw: a 502 if nothing of the answer went out yet, else the connection is
   * cut (a truncated answer rather than a wrong one), and whoever listens is told the cause.
   */
  handlerFailed(ex: Exchange, err: unknown): void {
    this.#onHandlerError?.(err, 'request')
    if (ex.finished || ex.destroyed) return
    if (ex.headersSent) {
      ex.destroy()
      return
    }
    const body = JSON.stringify({ error: 'ZP_ERR_INTERNAL', message: 'internal error', requestId: ex.requestId })
    ex.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': ex.requestId }, true)
    ex.end(body)
  }

  /** The same for an upgrade handler, which owns the raw socket: a 502 if it wrote nothing yet. */
  upgradeFailed(socket: Socket, writtenBefore: number, err: unknown): void {
    this.#onHandlerError?.(err, 'upgrade')
    if (socket.destroyed) return
    if (socket.bytesWritten !== writtenBefore || !socket.writable) {
      socket.destroy()
      return
    }
    socket.once('finish', () => socket.destroy())
    socket.end('HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\ncontent-length: 0\r\n\r\n', 'latin1')
  }

  tlsRefused(code: string, client: string | undefined): void {
    this.#onTlsRefused?.(code, client)
  }

  forget(conn: Connection): void {
    this.#connections.delete(conn)
  }

  #sweep(): void {
    const now = performance.now()
    const bodyMs = this.limits.clientBodyTimeoutMs
    for (const c of this.#connections) {
      if (c.headStartedAt >= 0 && now - c.headStartedAt > HEADERS_TIMEOUT_MS) c.socket.destroy()
      else if (c.idle && now - c.idleSince > KEEP_ALIVE_TIMEOUT_MS) c.socket.destroy()
      else if (c.readingBody && now - c.bodyAt > bodyMs) c.bodyTimedOut(bodyMs)
    }
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject)
        resolve(this.#server.address() as AddressInfo)
      })
    })
  }

  address(): AddressInfo | null {
    return this.#server.address() as AddressInfo | null
  }

  /** New certificate and key for connections from now on (HTTPS listeners only). */
  setSecureContext(options: tls.SecureContextOptions): void {
    if (this.#server instanceof tls.Server) this.#server.setSecureContext(options)
  }

  /** Stops accepting and closes idle connections; resolves once every connection is gone. */
  close(): Promise<void> {
    this.draining = true
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const c of this.#connections) if (c.idle) c.socket.destroy()
    for (const s of this.#handshaking) s.destroy()
    return closed
  }

  /** Cuts every connection still open. */
  destroyAll(): void {
    for (const c of this.#connections) c.socket.destroy()
    clearInterval(this.#sweeper)
  }
}
