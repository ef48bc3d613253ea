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
//
// The listener is this file; a connection is connection.ts, a request and its answer exchange.ts,
// the HTTPS listener tls-listener.ts, and an Upgrade's socket leaves through upgrade-hand-over.ts.

import { performance } from 'node:perf_hooks'
import net from 'node:net'
import tls from 'node:tls'
import type { Buffer } from 'node:buffer'
import type { AddressInfo, Socket } from 'node:net'
import { listen } from '../../listen.js'
import { DEFAULT_LIMITS } from '../../limits.js'
import type { FrontLimits } from '../../limits.js'
import { Connection } from './connection.js'
import type { ConnectionOwner, H1Handlers } from './connection.js'
import type { Exchange } from './exchange.js'
import { RequestIds } from './request-id.js'
import { sendError } from './send-error.js'
import { tlsListener } from './tls-listener.js'

/** Node's http server defaults, which users of it and of nginx expect. */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000
export const HEADERS_TIMEOUT_MS = 60_000

export interface FrontOptions {
  readonly limits?: FrontLimits
  /** HTTPS only: the listener's certificate and key. */
  readonly tls?: tls.SecureContextOptions
  /** HTTPS only: the protocols offered in ALPN, in order (default http/1.1 alone); h2 sockets go to `handlers.h2`. */
  readonly alpn?: readonly ('h2' | 'http/1.1')[]
  /** Plain only: a connection whose first bytes are the HTTP/2 preface goes to `handlers.h2` (default false). */
  readonly h2c?: boolean
  /** Told once, with the reason, when sockets are read through their stream for their handle's shape. */
  readonly onStreamReading?: (reason: string) => void
  /** Told what a handler threw (the request got a 502, or its connection was cut). */
  readonly onHandlerError?: (err: unknown, kind: 'request' | 'upgrade') => void
  /** Told when a client's TLS renegotiation was refused and its connection closed. */
  readonly onTlsRefused?: (code: string, client: string | undefined) => void
}

export class H1Server implements ConnectionOwner {
  readonly handlers: H1Handlers
  readonly limits: FrontLimits
  readonly requestIds = new RequestIds()
  readonly h2c: boolean
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
    this.h2c = secure === undefined && options.h2c === true && handlers.h2 !== undefined
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
      const alpn = options.alpn ?? ['http/1.1']
      // A socket whose client chose h2 in ALPN never meets the HTTP/1.1 parser.
      const acceptTls = (socket: Socket): void => {
        if ((socket as tls.TLSSocket).alpnProtocol === 'h2') this.h2(socket, null)
        else accept(socket)
      }
      this.#server = tlsListener(secure, alpn, this.#handshaking, acceptTls)
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
    sendError(ex, 502, 'ZP_ERR_INTERNAL', 'internal error', undefined, true)
  }

  /** An upgrade handler threw (upgrade-hand-over.ts answered or cut its socket): whoever listens is told the cause. */
  upgradeFailed(err: unknown): void {
    this.#onHandlerError?.(err, 'upgrade')
  }

  /** A socket that speaks HTTP/2 goes to whoever serves it; with nobody (or a throw), it is closed. */
  h2(socket: Socket, head: Buffer | null): void {
    const serve = this.handlers.h2
    if (serve === undefined || this.draining) {
      socket.destroy()
      return
    }
    try {
      serve(socket, head)
    } catch (err) {
      this.#onHandlerError?.(err, 'request')
      socket.destroy()
    }
  }

  tlsRefused(code: string, client: string | undefined): void {
    this.#onTlsRefused?.(code, client)
  }

  forget(conn: Connection): void {
    this.#connections.delete(conn)
  }

  #sweep(): void {
    // Decided after this turn's reads, not in the timer: a timer that fires late (the loop held
    // by a long GC, a SIGSTOP) finds every connection past its deadline, while the bytes that say
    // otherwise (a kept-alive client's next request, a body's next piece) wait for the poll phase
    // that follows. setImmediate runs after that phase, so they are read first.
    setImmediate(this.#sweepNow)
  }

  readonly #sweepNow = (): void => {
    const now = performance.now()
    const bodyMs = this.limits.clientBodyTimeoutMs
    for (const c of this.#connections) {
      if (c.headStartedAt >= 0 && now - c.headStartedAt > HEADERS_TIMEOUT_MS) c.socket.destroy()
      else if (c.idle && now - c.idleSince > KEEP_ALIVE_TIMEOUT_MS) c.socket.destroy()
      else if (c.readingBody && now - c.bodyAt > bodyMs) c.bodyTimedOut(bodyMs)
    }
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return listen(this.#server, port, host)
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
