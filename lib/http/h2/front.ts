// The client-facing HTTP/2 front: sockets the listener found speaking HTTP/2 (TLS with ALPN h2,
// or a plain one that began with the connection preface, h2c) are handed to a node:http2 server
// that never listens itself (`server.emit('connection', socket)`, the pattern node:http2's own
// secure server and its allowHTTP1 fallback rest on). Each stream is translated and checked
// (translate.ts), then goes through the same request path as an HTTP/1.1 request, as an
// H2Exchange (stream-exchange.ts): routed, balanced, retried and answered by the same code.
//
// Why node:http2 and not our own framing: nghttp2 is the HTTP/2 implementation nginx, Apache and
// curl use; HPACK, flow control and the stream state machine are where a new implementation
// would be wrong. What the proxy adds is its own rules on what a request may carry (translate.ts),
// its limits, and a place where a session is set up (setUpSession), where defences against
// floods and rapid resets plug in.

import type { Buffer } from 'node:buffer'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { DEFAULT_LIMITS } from '../../limits.js'
import type { FrontLimits } from '../../limits.js'
import type { ClientExchange } from '../client-side.js'
import { MAX_HEADER_BYTES } from '../h1/headers.js'
import type { Refusal } from '../h1/exchange.js'
import { guardSession, h2ServerSettings } from './front-guard.js'
import { H2Exchange } from './stream-exchange.js'
import type { StreamOrigin, StreamOwner } from './stream-exchange.js'
import { translateRequest } from './translate.js'
import type { Refused } from './translate.js'

/** A session with no stream open for this long is closed (GOAWAY); nginx's keepalive_timeout is 75 s. */
export const H2_IDLE_TIMEOUT_MS = 60_000

export interface H2Handlers {
  /** A stream whose head passed translation: route and answer it. */
  request(ex: ClientExchange): void
  /** A stream refused before routing (malformed, too large, CONNECT): answer it. */
  refuse(ex: ClientExchange, refusal: Refusal): void
}

export interface H2FrontOptions {
  readonly limits?: FrontLimits
  /** Told what a handler threw (the stream got a 502, or was reset). */
  readonly onHandlerError?: (err: unknown, kind: 'request' | 'session') => void
}

/** What setUpSession needs: the limits the session is held to. */
export interface H2SessionConfig {
  readonly limits: FrontLimits
  readonly idleTimeoutMs: number
}

/**
 * The one place a new client session is set up: every session passes here once, before any of its
 * streams is served. Defences that watch a session's frames (rapid reset, floods) plug in here.
 */
export function setUpSession(session: http2.ServerHttp2Session, config: H2SessionConfig): void {
  // A session's own errors (a protocol error, a reset socket) end that session only; out of the
  // event, as destroying inside a node:http2 handler can abort the process (nodejs/node#64850).
  session.on('error', () => setImmediate(() => session.destroy()))
  // Rapid reset, SETTINGS/PING/PRIORITY floods and idle sessions (front-guard.ts). Header lists
  // past the limit are translate.ts's to refuse, with a 431 rather than a reset.
  guardSession(session, { idleTimeoutMs: config.idleTimeoutMs, refuseLargeHeaderLists: false })
}

/** The settings the front advertises and the bounds node:http2 holds it to (front-guard.ts, each explained there). */
function serverOptions(limits: FrontLimits): http2.ServerOptions {
  return {
    ...h2ServerSettings(limits),
    // Our own check is translate.ts's; nghttp2 refuses what it must before it.
    strictFieldWhitespaceValidation: true,
  } as http2.ServerOptions
}

export class H2Front implements StreamOwner {
  readonly #handlers: H2Handlers
  readonly #limits: FrontLimits
  readonly #server: http2.Http2Server
  readonly #sessions = new Set<http2.ServerHttp2Session>()
  /** Streams whose body is being read: the sweep holds each to clientBodyTimeoutMs. */
  readonly #reading = new Set<H2Exchange>()
  readonly #sweeper: NodeJS.Timeout
  readonly #onHandlerError: ((err: unknown, kind: 'request' | 'session') => void) | undefined
  readonly #config: H2SessionConfig
  #closing = false

  constructor(handlers: H2Handlers, options: H2FrontOptions = {}) {
    this.#handlers = handlers
    this.#limits = options.limits ?? DEFAULT_LIMITS
    this.#onHandlerError = options.onHandlerError
    this.#config = { limits: this.#limits, idleTimeoutMs: H2_IDLE_TIMEOUT_MS }
    this.#server = http2.createServer(serverOptions(this.#limits))
    this.#server.on('session', this.#onSession)
    this.#server.on('stream', this.#onStream)
    // A session that failed before 'session' or while it was set up: that session alone.
    this.#server.on('sessionError', () => {})
    this.#server.on('error', (err) => this.#onHandlerError?.(err, 'session'))
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(1_000, Math.max(50, this.#limits.clientBodyTimeoutMs / 4))).unref()
  }

  get maxBodyBytes(): number {
    return this.#limits.maxBodyBytes
  }

  /** Sessions open (for tests and close()). */
  get sessions(): number {
    return this.#sessions.size
  }

  /** A socket that speaks HTTP/2, with the bytes the listener read of it already (the preface). */
  accept(socket: Socket, head: Buffer | null): void {
    if (this.#closing) {
      socket.destroy()
      return
    }
    // The plain listener keeps half-open sockets for HTTP/1.1 (a request, then the client's FIN,
    // then the answer); HTTP/2 has no such use, and node:http2 never ends its side on the client's
    // FIN, so a client that left held its socket until the idle timeout (the h2 fuzz family found
    // 4,600 of them). As node:http2's own server has it: the client's FIN ends ours.
    socket.allowHalfOpen = false
    // Given back to the stream, where node:http2 reads what is buffered when it takes the socket;
    // paused first, or a flowing socket would emit the bytes again to nobody.
    if (head !== null && head.length > 0) {
      socket.pause()
      socket.unshift(head)
    }
    this.#server.emit('connection', socket)
  }

  reading(ex: H2Exchange, on: boolean): void {
    if (on) this.#reading.add(ex)
    else this.#reading.delete(ex)
  }

  readonly #onSession = (session: http2.ServerHttp2Session): void => {
    this.#sessions.add(session)
    session.once('close', () => this.#sessions.delete(session))
    try {
      setUpSession(session, this.#config)
    } catch (err) {
      this.#onHandlerError?.(err, 'session')
      session.destroy()
    }
  }

  readonly #onStream = (stream: http2.ServerHttp2Stream, _headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]): void => {
    // A client's reset, a session torn down: 'close' follows, and the exchange learns it there.
    stream.on('error', () => {})
    const session = stream.session
    let ex: H2Exchange | null = null
    try {
      const t = translateRequest(raw, { maxHeaderListBytes: MAX_HEADER_BYTES, maxHeaders: this.#limits.maxHeaders })
      ex = new H2Exchange(stream, t.ok ? t.value : null, raw, origin(session), this)
      if (!t.ok) this.#handlers.refuse(ex, refusalOf(t))
      else if (this.#limits.maxBodyBytes > 0 && ex.contentLength > this.#limits.maxBodyBytes) this.#handlers.refuse(ex, BODY_TOO_LARGE)
      else this.#handlers.request(ex)
    } catch (err) {
      // The last-resort guard: a 502 if nothing went out, else the stream is reset; the session
      // and its other streams go on.
      this.#onHandlerError?.(err, 'request')
      if (ex === null || ex.headersSent) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
      else {
        try {
          ex.writeHead(502, { 'content-type': 'application/json' })
          ex.end(JSON.stringify({ error: 'ZP_ERR_INTERNAL', message: 'internal error', requestId: ex.requestId }))
        } catch {
          stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
        }
      }
    }
  }

  #sweep(): void {
    const now = performance.now()
    const ms = this.#limits.clientBodyTimeoutMs
    for (const ex of this.#reading) {
      if (ex.destroyed) this.#reading.delete(ex)
      else if (!ex.bodyHeld && now - ex.bodyAt > ms) {
        this.#reading.delete(ex)
        ex.bodyTimedOut(ms)
      }
    }
  }

  /** Stops taking sockets and sends every session a GOAWAY: streams open finish, no new ones start. */
  close(): Promise<void> {
    this.#closing = true
    const all = [...this.#sessions].map((s) => new Promise<void>((resolve) => (s.closed || s.destroyed ? resolve() : s.once('close', () => resolve()))))
    for (const s of this.#sessions) if (!s.closed && !s.destroyed) s.close()
    return Promise.all(all).then(() => undefined)
  }

  /** Cuts every session still open. */
  destroyAll(): void {
    for (const s of this.#sessions) s.destroy()
    clearInterval(this.#sweeper)
  }
}

function origin(session: http2.Http2Session | undefined): StreamOrigin {
  const socket = session?.socket
  return {
    protocol: session?.encrypted === true ? 'h2' : 'h2c',
    remoteAddress: socket?.remoteAddress ?? '',
    localPort: socket?.localPort ?? 0,
  }
}

/** A refused head as the status the HTTP/1.1 front gives the same fault. */
function refusalOf(r: Refused): Refusal {
  switch (r.reason) {
    case 'connect':
      return CONNECT_REFUSED
    case 'too-many-headers':
    case 'header-list-too-large':
      return { status: 431, code: 'ZP_ERR_HEADERS_TOO_LARGE', message: r.message }
    default:
      return { status: 400, code: 'ZP_ERR_BAD_REQUEST', message: `malformed request (${r.reason}: ${r.message})` }
  }
}

const CONNECT_REFUSED: Refusal = { status: 405, code: 'ZP_ERR_BAD_REQUEST', message: 'CONNECT is not served here' }
const BODY_TOO_LARGE: Refusal = { status: 413, code: 'ZP_ERR_BODY_TOO_LARGE', message: 'request body too large' }
