// One client connection of the HTTP/1.1 front (front.ts): parses requests in order, answers them
// one at a time, and hands an Upgrade's socket over (upgrade-hand-over.ts). It talks to its
// listener through ConnectionOwner, so that the two do not import each other.

import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import { STATUS_CODES } from 'node:http'
import tls from 'node:tls'
import type { Socket } from 'node:net'
import { ProxyError } from '../../errors.js'
import type { FrontLimits } from '../../limits.js'
import { ignore } from './emitters.js'
import { MAX_HEADER_BYTES } from './headers.js'
import { ENGINE } from './engine.js'
import { H1Parser, handleProblem, startReading, stopReading } from './parser.js'
import type { ParseError, ParserEvents } from './parser.js'
import { Exchange } from './exchange.js'
import type { ExchangeOwner, Refusal } from './exchange.js'
import type { RequestIds } from './request-id.js'
import { handOver } from './upgrade-hand-over.js'
import { prefaceVerdict } from './preface.js'

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
  /**
   * A socket that speaks HTTP/2: ALPN chose h2 (`head` null), or a plain one whose first bytes are
   * the connection preface (`head`: the bytes read so far, to be given back to whoever reads it
   * next). It is no longer this front's; absent, such a socket is closed.
   */
  h2?(socket: Socket, head: Buffer | null): void
}

/**
 * What a Connection needs of its listener (H1Server). An interface rather than the class: the
 * listener makes connections, and a connection importing it back would close a cycle.
 */
export interface ConnectionOwner {
  readonly handlers: H1Handlers
  readonly limits: FrontLimits
  /** Plain sockets: look for the HTTP/2 preface in the first read (config h2c). */
  readonly h2c: boolean
  /** The listener is shutting down. */
  readonly draining: boolean
  /** A plain socket is read through its stream: the reason, if any. */
  streamReading(reason: string | null): void
  /** A request handler threw. */
  handlerFailed(ex: Exchange, err: unknown): void
  /** The socket speaks HTTP/2 (see H1Handlers.h2); the connection has let go of it. */
  h2(socket: Socket, head: Buffer | null): void
  /** An upgrade handler threw (its socket was answered or cut already). */
  upgradeFailed(err: unknown): void
  /** A client's TLS renegotiation was refused. */
  tlsRefused(code: string, client: string | undefined): void
  /** The connection closed. */
  forget(conn: Connection): void
  /** Where request IDs come from (one source per listener). */
  readonly requestIds: RequestIds
}

/** One client connection: parses requests in order and answers them one at a time. */
export class Connection implements ParserEvents, ExchangeOwner {
  readonly socket: Socket
  readonly secure: boolean
  readonly #server: ConnectionOwner
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
  /** The first bytes of a plain connection, while they are all the beginning of the HTTP/2 preface. */
  #sniffed: Buffer | null = null

  constructor(socket: Socket, server: ConnectionOwner) {
    this.socket = socket
    this.#server = server
    this.#parser = new H1Parser('request', this, MAX_HEADER_BYTES)
    socket.setNoDelay(true)
    this.secure = socket instanceof tls.TLSSocket
    // h2c: the first read of a plain connection goes through its stream and is compared with the
    // HTTP/2 preface; an HTTP/1.1 one is then parsed as always, and the parser consumes the rest.
    // One 'data' event per connection, not per request; no byte is copied unless the first read
    // is shorter than the preface and all of it matches.
    if (!this.secure && server.h2c) socket.on('data', this.#onFirst)
    else this.#read()
    socket.on('end', this.#onEnd)
    socket.on('drain', this.#onDrain)
    socket.on('error', this.#onError)
    socket.once('close', this.#onClose)
  }

  /** From here on the parser reads the socket: consumed by it, or through its stream. */
  #read(): void {
    const socket = this.socket
    // A TLS socket is read through its stream, not consumed: parser.ts's rules were checked for
    // plain TCP handles only, and on HTTPS the crypto costs more than the 'data' event saves.
    if (!this.secure && this.#parser.consume(socket, this.#onExecute)) socket.resume() // flowing, so 'end' is emitted
    else {
      socket.on('data', this.#onData)
      // A plain socket Node's parser could have read itself but for its handle's shape: said once.
      if (!this.secure && ENGINE.consumes && !socket.destroyed) this.#server.streamReading(handleProblem(socket))
    }
  }

  /** The first read(s) of a plain connection with h2c on: the HTTP/2 preface, or HTTP/1.1. */
  readonly #onFirst = (data: Buffer): void => {
    const seen = this.#sniffed === null ? data : Buffer.concat([this.#sniffed, data])
    const verdict = prefaceVerdict(seen)
    if (verdict === 'more') {
      // A preface that stops coming is held to the head deadline, as a partial request line is.
      this.#sniffed = seen
      if (this.headStartedAt < 0) this.headStartedAt = performance.now()
      return
    }
    this.#sniffed = null
    this.headStartedAt = -1
    this.socket.off('data', this.#onFirst)
    if (verdict === 'h2') {
      this.#toH2(seen)
      return
    }
    // Consumed first, then this read parsed: the parser sees the bytes in the order they came
    // (the consumed handle delivers nothing before this event returns).
    this.#read()
    this.#onData(seen)
  }

  /** The socket leaves this front for the HTTP/2 one, with the bytes read so far. */
  #toH2(head: Buffer): void {
    this.upgraded = true
    this.socket.off('end', this.#onEnd)
    this.socket.off('drain', this.#onDrain)
    this.socket.off('error', this.#onError)
    this.socket.off('close', this.#onClose)
    this.closed = true
    this.#server.forget(this)
    // Never consumed: freed on the next turn (rule 1), nothing else to undo.
    this.#parser.close()
    this.#server.h2(this.socket, head)
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

  newRequestId(): string {
    return this.#server.requestIds.next()
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
    const body = JSON.stringify({ error: code, message: `malformed request (${err.code})`, requestId: this.newRequestId() })
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
    handOver(this.socket, ex, head, this.#server.handlers, (err) => this.#server.upgradeFailed(err))
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
