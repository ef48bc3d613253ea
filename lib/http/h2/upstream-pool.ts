// HTTP/2 sessions to one upstream instance, behind the same dispatch/ResponseSink contract as the
// HTTP/1.1 pool (issue 26 §3). undici's client-h2.js is the model: a session multiplexes many
// streams, so a pool holds a few sessions, not one per request, and opens another only when each
// is at the SETTINGS_MAX_CONCURRENT_STREAMS the instance allows (or our own cap).
//
// What the instance sends is bounded before it is trusted: its header list by the setting we
// advertise (the HTTP/1.1 head limit) and again by translateResponse, what a session buffers by
// maxSessionMemory, its concurrency figure by our cap, a body by the stream's flow-control
// window (reading stops while the sink pushes back, so the window is not reopened).
//
// GOAWAY (RFC 9113 §6.8): the session takes no new stream and is closed once its streams are
// done; a stream above the last-stream-id, or reset with REFUSED_STREAM (§8.7), was not processed,
// and fails with an UnprocessedError, which the retry policy sends elsewhere whatever the method.

import http2 from 'node:http2'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { UpstreamError } from '../../errors.js'
import { MAX_HEADER_BYTES } from '../h1/headers.js'
import { joinHostPort } from '../../host-port.js'
import type { InstanceTls, UpstreamRequest } from '../h1/upstream.js'
import { UnprocessedError } from '../transport.js'
import type { Transport, TransportSink, TransportStats } from '../transport.js'
import { Attempt, MAX_STREAMS, Session } from './session.js'
import type { SessionOwner } from './session.js'
import { DEFAULT_HEADER_LIMITS } from './translate.js'
import type { HeaderLimits } from './translate.js'

export interface H2PoolOptions {
  readonly host: string
  readonly port: number
  /** `h2`: TLS with ALPN h2, verified by `tls` (null: the system's CAs), never unverified. `h2c`: prior knowledge, plain TCP. */
  readonly protocol: 'h2' | 'h2c'
  /** Most sessions to the instance at once (default 4); another opens only when each is full. */
  readonly sessions?: number
  /** Our own cap on streams per session, whatever the instance allows (default 100, limits.maxConcurrentStreams). */
  readonly maxStreamsPerSession?: number
  /** A session with no stream for this long is closed, ms (default 60_000). */
  readonly keepAliveTimeoutMs?: number
  /** From the connect to the instance's SETTINGS (TLS verified first), ms (default 10_000). */
  readonly connectTimeoutMs?: number
  readonly tls: InstanceTls
  /** The largest header list the instance may send, bytes (default MAX_HEADER_BYTES, the HTTP/1.1 head limit). */
  readonly maxHeaderListBytes?: number
  /** Most header fields in an answer (default limits.maxHeaders, 100). */
  readonly maxHeaders?: number
  /** What nghttp2 may buffer for one session, MB (default 10, Node's own). */
  readonly maxSessionMemoryMb?: number
}

/** Bounds on the options, where they enter (every number from config is hostile). */
const MAX_SESSIONS = 64

/** How often deadlines and idle sessions are checked, ms: a timeout fires up to this late (as the HTTP/1.1 clock). */
const TICK_MS = 50

function bounded(value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || !Number.isFinite(value)) return fallback
  return Math.min(max, Math.max(min, Math.floor(value)))
}

export class H2UpstreamPool implements Transport, SessionOwner {
  readonly protocol: 'h2' | 'h2c'
  readonly authority: string
  readonly #options: H2PoolOptions
  readonly #maxSessions: number
  readonly #maxStreams: number
  readonly #keepAliveMs: number
  readonly #connectTimeoutMs: number
  readonly #limits: HeaderLimits
  readonly #maxSessionMemoryMb: number
  readonly #sessions: Session[] = []
  readonly #queue: Attempt[] = []
  /** Attempts with a stream out: their deadlines are checked on every tick. */
  readonly #active = new Set<Attempt>()
  #timer: NodeJS.Timeout | null = null
  #closing = false
  #closed: (() => void) | null = null

  constructor(options: H2PoolOptions) {
    this.#options = options
    this.protocol = options.protocol
    this.authority = joinHostPort(options.host, options.port)
    this.#maxSessions = bounded(options.sessions, 4, 1, MAX_SESSIONS)
    this.#maxStreams = bounded(options.maxStreamsPerSession, 100, 1, MAX_STREAMS)
    this.#keepAliveMs = bounded(options.keepAliveTimeoutMs, 60_000, 0, 3_600_000)
    this.#connectTimeoutMs = bounded(options.connectTimeoutMs, 10_000, 1, 600_000)
    this.#limits = {
      maxHeaderListBytes: bounded(options.maxHeaderListBytes, MAX_HEADER_BYTES, 1024, 1024 * 1024),
      maxHeaders: bounded(options.maxHeaders, DEFAULT_HEADER_LIMITS.maxHeaders, 1, 1000),
    }
    this.#maxSessionMemoryMb = bounded(options.maxSessionMemoryMb, 10, 1, 1024)
  }

  get closed(): boolean {
    return this.#closing
  }

  get limits(): HeaderLimits {
    return this.#limits
  }

  stats(): TransportStats {
    return { connections: this.#sessions.length, active: this.#active.size, queued: this.#queue.length }
  }

  /** Sends `req` on a session with room, a new session, or once room frees up (within the head deadline). */
  dispatch(req: UpstreamRequest, sink: TransportSink): void {
    const attempt = new Attempt(this, req, sink, performance.now() + req.headersTimeoutMs)
    sink.onStart(attempt)
    if (attempt.done) return // aborted at once
    if (this.#closing) {
      attempt.fail(new UnprocessedError('the pool to the instance is closing'))
      return
    }
    this.#queue.push(attempt)
    this.#drain()
    this.#watch()
  }

  /** Hands queued attempts to sessions with room, opening a session when every one is full. */
  #drain(): void {
    while (this.#queue.length > 0) {
      const session = this.#sessions.find((s) => s.hasRoom(this.#maxStreams))
      if (session === undefined) {
        const opening = this.#sessions.some((s) => !s.ready && !s.gone)
        const usable = this.#sessions.filter((s) => !s.draining && !s.gone).length
        // Also while closing: what was queued before close() is still served (as the HTTP/1.1 pool does).
        if (!opening && usable < this.#maxSessions) this.#sessions.push(new Session(this, this.#connect()))
        return
      }
      const attempt = this.#queue.shift()!
      attempt.send(session)
    }
  }

  #connect(): http2.ClientHttp2Session {
    const o = this.#options
    const secure = o.protocol === 'h2' ? (o.tls ?? { context: null, servername: undefined }) : null
    let tlsSocket: tls.TLSSocket | undefined
    const createConnection = (): net.Socket => {
      if (secure === null) return net.connect({ host: o.host, port: o.port, noDelay: true })
      const servername = secure.servername ?? (net.isIP(o.host) === 0 ? o.host : undefined)
      const socket = tls.connect({
        host: o.host,
        port: o.port,
        ALPNProtocols: ['h2'],
        rejectUnauthorized: true,
        ...(secure.context === null ? {} : { secureContext: secure.context }),
        ...(servername === undefined ? {} : { servername }),
      })
      socket.setNoDelay(true)
      tlsSocket = socket
      return socket
    }
    const session = http2.connect(`${secure === null ? 'http' : 'https'}://${this.authority}`, {
      createConnection,
      maxSessionMemory: this.#maxSessionMemoryMb,
      maxHeaderListPairs: this.#limits.maxHeaders + 8,
      settings: { enablePush: false, maxHeaderListSize: this.#limits.maxHeaderListBytes },
    } as http2.ClientSessionOptions)
    // An instance that does not agree to h2 is not spoken HTTP/2 to (no silent fallback). Checked
    // only after node:http2's own 'secureConnect' listener (added by http2.connect) has taken the
    // socket's handle: destroying the socket before that aborts the process (a native assertion
    // in Http2Session::Consume). Destroyed in the same emit, so no frame of ours is written.
    const socket = tlsSocket
    socket?.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') socket.destroy(Object.assign(new Error(`instance did not negotiate h2 (ALPN ${String(socket.alpnProtocol)})`), { code: 'ZP_H2_ALPN' }))
    })
    return session
  }

  get connectTimeoutMs(): number {
    return this.#connectTimeoutMs
  }

  get scheme(): 'http' | 'https' {
    return this.protocol === 'h2' ? 'https' : 'http'
  }

  /** A session reached SETTINGS, lost a stream, got GOAWAY or went away: queued attempts may move. */
  changed(): void {
    this.#drain()
    this.#maybeClosed()
  }

  /**
   * A session failed before it became usable: the attempts waiting fail as a connect failure (to
   * be retried elsewhere), even when other sessions are up but full. Waiting for the next session
   * instead would reconnect in a loop to an instance that refuses connections, until the deadline.
   */
  connectFailed(err: Error): void {
    const code = (err as { code?: string }).code ?? err.name
    for (const a of this.#queue.splice(0)) a.fail(new UpstreamError('connect', `upstream connect error (${code})`, false, err))
  }

  sessionGone(session: Session): void {
    const at = this.#sessions.indexOf(session)
    if (at >= 0) this.#sessions.splice(at, 1)
    this.changed()
  }

  started(a: Attempt): void {
    this.#active.add(a)
    this.#watch()
  }

  ended(a: Attempt): void {
    this.#active.delete(a)
    const at = this.#queue.indexOf(a)
    if (at >= 0) this.#queue.splice(at, 1)
  }

  /** Sends an attempt the session could not take back to the queue's head. */
  requeue(a: Attempt): void {
    this.#queue.unshift(a)
    this.#drain()
  }

  #watch(): void {
    this.#timer ??= setInterval(this.#tick, TICK_MS).unref()
  }

  readonly #tick = (): void => {
    const now = performance.now()
    for (const a of [...this.#queue]) if (now >= a.headDeadline) a.fail(new UpstreamError('timeout', `no free HTTP/2 stream to the instance within ${a.req.headersTimeoutMs} ms`, false))
    for (const a of [...this.#active]) a.checkDeadlines(now)
    const idle = this.sweep(now)
    if (this.#queue.length === 0 && this.#active.size === 0 && !idle && this.#timer !== null) {
      clearInterval(this.#timer)
      this.#timer = null
    }
  }

  /** Closes sessions idle past the keep-alive timeout; true while any are left idle. */
  sweep(now: number): boolean {
    let idle = false
    for (const s of [...this.#sessions]) {
      if (!s.ready || s.active > 0) continue
      if (now - s.idleSince >= this.#keepAliveMs) s.drain()
      else idle = true
    }
    return idle
  }

  /** Lets streams in flight and queued finish, then closes every session. */
  close(): Promise<void> {
    this.#closing = true
    return new Promise((resolve) => {
      this.#closed = resolve
      this.#maybeClosed()
    })
  }

  #maybeClosed(): void {
    if (!this.#closing) return
    // A session still opening is left alone while anything queued waits for it.
    if (this.#queue.length > 0) return
    for (const s of [...this.#sessions]) if (s.active === 0) s.drain()
    if (this.#sessions.length > 0) return
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    const done = this.#closed
    this.#closed = null
    done?.()
  }
}
