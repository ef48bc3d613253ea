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

import type { Buffer } from 'node:buffer'
import http2 from 'node:http2'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import tls from 'node:tls'
import { UpstreamError, classifyTransportError } from '../../errors.js'
import type { FailureKind } from '../../errors.js'
import { MAX_HEADER_BYTES } from '../h1/headers.js'
import { instanceAuthority } from '../h1/upstream.js'
import type { AttemptControl, InstanceTls, UpstreamRequest } from '../h1/upstream.js'
import { UnprocessedError } from '../transport.js'
import type { Transport, TransportSink, TransportStats } from '../transport.js'
import { DEFAULT_HEADER_LIMITS, h2RequestHeaders, lengthMismatch, refusalError, translateResponse, translateTrailers } from './translate.js'
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
const MAX_STREAMS = 1000

/** How often deadlines and idle sessions are checked, ms: a timeout fires up to this late (as the HTTP/1.1 clock). */
const TICK_MS = 50

const { NGHTTP2_CANCEL, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants

function bounded(value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || !Number.isFinite(value)) return fallback
  return Math.min(max, Math.max(min, Math.floor(value)))
}

export class H2UpstreamPool implements Transport {
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
    this.authority = instanceAuthority(options.host, options.port)
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
      // An instance that does not agree to h2 is not spoken HTTP/2 to (no silent fallback).
      socket.once('secureConnect', () => {
        if (socket.alpnProtocol !== 'h2') socket.destroy(Object.assign(new Error(`instance did not negotiate h2 (ALPN ${String(socket.alpnProtocol)})`), { code: 'ZP_H2_ALPN' }))
      })
      return socket
    }
    return http2.connect(`${secure === null ? 'http' : 'https'}://${this.authority}`, {
      createConnection,
      maxSessionMemory: this.#maxSessionMemoryMb,
      maxHeaderListPairs: this.#limits.maxHeaders + 8,
      settings: { enablePush: false, maxHeaderListSize: this.#limits.maxHeaderListBytes },
    } as http2.ClientSessionOptions)
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

/** One HTTP/2 session (one connection) to the instance. */
class Session {
  readonly session: http2.ClientHttp2Session
  readonly #pool: H2UpstreamPool
  ready = false
  draining = false
  gone = false
  active = 0
  idleSince = performance.now()
  /** From the instance's SETTINGS, capped by ours. */
  #peerMaxStreams = 0
  /** From a GOAWAY: streams above it were not processed (-1: none came). */
  lastStreamId = -1
  #connectTimer: NodeJS.Timeout | null

  constructor(pool: H2UpstreamPool, session: http2.ClientHttp2Session) {
    this.#pool = pool
    this.session = session
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = null
      if (!this.ready) session.destroy(Object.assign(new Error(`no HTTP/2 SETTINGS from the instance within ${pool.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }))
    }, pool.connectTimeoutMs).unref()
    session.on('remoteSettings', (settings) => {
      // The instance's figure is untrusted: 0 would starve the pool, 2^32-1 is "no limit".
      const max = settings.maxConcurrentStreams
      this.#peerMaxStreams = typeof max === 'number' && max >= 1 ? Math.min(max, MAX_STREAMS) : max === 0 ? 0 : MAX_STREAMS
      if (!this.ready) {
        this.ready = true
        this.#clearConnectTimer()
        this.idleSince = performance.now()
      }
      pool.changed()
    })
    session.on('goaway', (_code: number, lastStreamId: number) => {
      this.lastStreamId = lastStreamId
      this.draining = true
      pool.changed()
    })
    session.on('error', (err: Error) => {
      if (!this.ready) pool.connectFailed(err)
    })
    session.on('close', () => {
      this.#clearConnectTimer()
      this.gone = true
      if (!this.ready) pool.connectFailed(new Error('upstream closed the connection before HTTP/2 SETTINGS'))
      pool.sessionGone(this)
    })
    // An idle session must not keep the process up (as the HTTP/1.1 pool's idle sockets).
    session.unref()
  }

  #clearConnectTimer(): void {
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer)
    this.#connectTimer = null
  }

  hasRoom(cap: number): boolean {
    return this.ready && !this.draining && !this.gone && !this.session.destroyed && this.active < Math.min(cap, this.#peerMaxStreams)
  }

  streamEnded(): void {
    this.active--
    if (this.active === 0) {
      this.idleSince = performance.now()
      if (this.draining) this.drain()
    }
    this.#pool.changed()
  }

  /** No new streams: close once those out are done (a GOAWAY of our own). */
  drain(): void {
    this.draining = true
    if (!this.session.closed) this.session.close()
  }
}

/** One request on one stream: the sink's AttemptControl. */
class Attempt implements AttemptControl {
  readonly req: UpstreamRequest
  readonly headDeadline: number
  readonly #pool: H2UpstreamPool
  readonly #sink: TransportSink
  #session: Session | null = null
  #stream: http2.ClientHttp2Stream | null = null
  done = false
  #headSeen = false
  #lastData = 0
  #declared = -1
  #received = 0
  #expectBody = true
  #unpipe: (() => void) | null = null

  constructor(pool: H2UpstreamPool, req: UpstreamRequest, sink: TransportSink, headDeadline: number) {
    this.#pool = pool
    this.req = req
    this.#sink = sink
    this.headDeadline = headDeadline
  }

  send(session: Session): void {
    const req = this.req
    const headers = h2RequestHeaders(req.method, req.path, req.headers, this.#pool.scheme, this.#pool.authority)
    if (!headers.ok) {
      this.fail(refusalError(headers, 'client'))
      return
    }
    const h = headers.value
    const body = req.body
    if (body !== null && !(body instanceof Readable)) h['content-length'] = String(heldLength(body))
    else if (body instanceof Readable && req.contentLength >= 0) h['content-length'] = String(req.contentLength)
    let stream: http2.ClientHttp2Stream
    try {
      stream = session.session.request(h, { endStream: body === null })
    } catch (err) {
      // The session began to close between the choice and the call: the stream never existed.
      session.draining = true
      if ((err as { code?: string }).code === 'ERR_HTTP2_INVALID_CONNECTION_HEADERS') this.fail(new UpstreamError('reset', 'request headers refused by node:http2', false, err))
      else this.#pool.requeue(this)
      return
    }
    this.#session = session
    this.#stream = stream
    session.active++
    this.#pool.started(this)
    this.#expectBody = req.method !== 'HEAD'
    stream.on('response', this.#onResponse)
    stream.on('data', this.#onData)
    stream.on('trailers', this.#onTrailers)
    stream.on('end', this.#onEnd)
    stream.on('error', this.#onError)
    stream.on('close', this.#onClose)
    if (body === null) return
    if (!(body instanceof Readable)) {
      for (const piece of body) stream.write(piece)
      stream.end()
      return
    }
    this.#pipe(body, stream)
  }

  /** A streamed body, at the pace the instance's flow-control window allows (nothing buffered past it). */
  #pipe(body: Readable, stream: http2.ClientHttp2Stream): void {
    const onData = (c: Buffer): void => {
      if (!stream.write(c)) body.pause()
    }
    const onDrain = (): void => {
      body.resume()
    }
    const onEnd = (): void => {
      cleanup()
      stream.end()
    }
    const onError = (err: Error): void => {
      cleanup()
      this.abort(err)
    }
    const cleanup = (): void => {
      this.#unpipe = null
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onError)
      stream.off('drain', onDrain)
    }
    this.#unpipe = cleanup
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onError)
    stream.on('drain', onDrain)
  }

  readonly #onResponse = (headers: http2.IncomingHttpHeaders, _flags: number, raw: string[] | undefined): void => {
    if (this.done) return
    const t = translateResponse(raw ?? flatten(headers), this.#pool.limits)
    if (!t.ok) {
      this.#failStream(refusalError(t, 'instance'), NGHTTP2_PROTOCOL_ERROR)
      return
    }
    const { head, model } = t.value
    if (model.status === 204 || model.status === 304) this.#expectBody = false
    this.#declared = this.#expectBody ? model.contentLength : -1
    if (!this.#sink.onHead(head)) {
      this.#failStream(new UpstreamError('status', `upstream answered ${model.status}`, false), NGHTTP2_CANCEL)
      return
    }
    this.#headSeen = true
    this.#lastData = performance.now()
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.done) return
    this.#received += chunk.length
    if (!this.#headSeen || lengthMismatch(this.#declared, this.#received, false) !== null) {
      this.#failStream(new UpstreamError('reset', `upstream sent more DATA than its content-length (${this.#declared})`, this.#headSeen), NGHTTP2_PROTOCOL_ERROR)
      return
    }
    if (this.req.bodyTimeoutMs > 0) this.#lastData = performance.now()
    // Pausing stops node:http2 from consuming DATA, so the window is not reopened: the instance
    // waits, and memory stays at one window per stream.
    if (!this.#sink.onBody(chunk)) this.#stream!.pause()
  }

  readonly #onTrailers = (headers: http2.IncomingHttpHeaders, _flags: number, raw: string[] | undefined): void => {
    if (this.done) return
    const t = translateTrailers(raw ?? flatten(headers), this.#pool.limits)
    if (!t.ok) {
      this.#failStream(refusalError(t, 'instance'), NGHTTP2_PROTOCOL_ERROR)
      return
    }
    this.#sink.onTrailers?.(t.value)
  }

  readonly #onEnd = (): void => {
    if (this.done) return
    if (!this.#headSeen) return // closed without an answer: #onClose says why
    if (lengthMismatch(this.#declared, this.#received, true) !== null) {
      this.#failStream(new UpstreamError('reset', `upstream ended the stream after ${this.#received} of ${this.#declared} bytes`, true), NGHTTP2_PROTOCOL_ERROR)
      return
    }
    this.#finish()
    this.#sink.onEnd()
  }

  readonly #onError = (err: Error): void => {
    if (!this.done) this.fail(this.#classify(err))
  }

  readonly #onClose = (): void => {
    // Classified before the session lets go of the stream: the GOAWAY's last-stream-id is its.
    const err = this.done ? null : this.#classify(null)
    const s = this.#session
    this.#session = null
    if (err !== null) this.fail(err)
    s?.streamEnded()
  }

  /** Why a stream ended early: not processed (GOAWAY above last-stream-id, REFUSED_STREAM), or a reset. */
  #classify(err: Error | null): UpstreamError {
    const stream = this.#stream!
    const session = this.#session
    const id = stream.id
    const unprocessed = !this.#headSeen && (stream.rstCode === NGHTTP2_REFUSED_STREAM || (session !== null && session.lastStreamId >= 0 && (id === undefined || id > session.lastStreamId)))
    if (unprocessed) return new UnprocessedError(`the instance did not process the stream (${stream.rstCode === NGHTTP2_REFUSED_STREAM ? 'REFUSED_STREAM' : `GOAWAY last-stream-id ${session!.lastStreamId}`})`, err ?? undefined)
    const code = (err as { code?: string } | null)?.code
    let kind: FailureKind = err === null ? 'reset' : classifyTransportError(err)
    if (kind === 'connect') kind = 'reset'
    const why = err === null ? `stream closed (RST_STREAM ${stream.rstCode ?? 'none'})` : `stream error (${code ?? err.name}, RST_STREAM ${stream.rstCode ?? 'none'})`
    return new UpstreamError(kind, `upstream HTTP/2 ${why}`, this.#headSeen, err ?? undefined)
  }

  /** Ends the attempt with `err`, resetting its stream with `code`. */
  #failStream(err: Error, code: number): void {
    const stream = this.#stream
    this.fail(err)
    if (stream !== null && !stream.closed) stream.close(code)
  }

  /** Ends the attempt with an error (once); the stream, if any, is cancelled. */
  fail(err: Error): void {
    if (this.done) return
    this.#finish()
    const stream = this.#stream
    if (stream !== null && !stream.closed) stream.close(NGHTTP2_CANCEL)
    this.#sink.onError(err)
  }

  #finish(): void {
    this.done = true
    this.#unpipe?.()
    this.#pool.ended(this)
  }

  checkDeadlines(now: number): void {
    if (this.done) return
    if (!this.#headSeen) {
      if (now >= this.headDeadline) this.fail(new UpstreamError('timeout', `no response head within ${this.req.headersTimeoutMs} ms`, false))
    } else if (this.req.bodyTimeoutMs > 0 && now - this.#lastData >= this.req.bodyTimeoutMs) {
      this.fail(new UpstreamError('timeout', `response body stalled for ${this.req.bodyTimeoutMs} ms`, true))
    }
  }

  resume(): void {
    if (!this.done) this.#stream?.resume()
  }

  /** The client went away: RST_STREAM(CANCEL), the session stays for the other streams. */
  abort(err: Error): void {
    this.fail(err)
  }
}

function heldLength(body: readonly Buffer[]): number {
  let n = 0
  for (const piece of body) n += piece.length
  return n
}

/**
 * A header object as [name, value, ...], for a Node line whose 'response' and 'trailers' events
 * give no rawHeaders; node:http2 puts pseudo-headers first in the object as it did on the wire.
 */
function flatten(headers: http2.IncomingHttpHeaders): string[] {
  const out: string[] = []
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) out.push(name, v)
    else out.push(name, String(value))
  }
  return out
}
