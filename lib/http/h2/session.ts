// One HTTP/2 session to an instance and the attempts on its streams: the parts of the HTTP/2 pool
// (upstream-pool.ts) that talk to node:http2 per connection and per stream. The pool decides
// where an attempt goes; these classes carry it out and report back.

import type { Buffer } from 'node:buffer'
import http2 from 'node:http2'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { UpstreamError, classifyTransportError } from '../../errors.js'
import type { FailureKind } from '../../errors.js'
import type { AttemptControl, UpstreamRequest } from '../h1/upstream.js'
import { UnprocessedError } from '../transport.js'
import type { TransportSink } from '../transport.js'
import { h2RequestHeaders, lengthMismatch, refusalError, translateResponse, translateTrailers } from './translate.js'
import type { HeaderLimits } from './translate.js'

/** The most streams per session we ever open, whatever the instance or the options say. */
export const MAX_STREAMS = 1000

const { NGHTTP2_CANCEL, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants

/**
 * What sessions and their streams ask of the pool that owns them (upstream-pool.ts implements it):
 * an interface here, so the pool imports its sessions and the sessions do not import the pool.
 */
export interface SessionOwner {
  readonly connectTimeoutMs: number
  readonly scheme: 'http' | 'https'
  readonly authority: string
  readonly limits: HeaderLimits
  /** A session became ready, drained or filled up: what is queued may go now. */
  changed(): void
  connectFailed(err: Error): void
  sessionGone(session: Session): void
  started(a: Attempt): void
  ended(a: Attempt): void
  /** Not sent on this session after all (it went away first): queue it again. */
  requeue(a: Attempt): void
}

// When the pool ends a session or a stream. Every node:http2 event handler (and every
// process.nextTick or promise it schedules: Node drains those when its callback returns) can run
// inside Http2Session::ConsumeHTTP2Data, while nghttp2 is still parsing what the instance sent.
// Destroying the session or closing a stream from there tears the JS side down under nghttp2's
// feet (nodejs/node#64850 aborts on `onread->IsFunction()`), and a stream still holding a header
// block nghttp2 allocated can outlive the session's memory accounting (nodejs/node#39951, the
// `current_nghttp2_memory_ == 0` assertion in ~Http2Session at a GC). So the pool decides at once
// (the attempt ends, exactly once, in the same call) but the node:http2 call that carries the
// decision out runs on the next turn of the event loop (setImmediate: after the read that caused
// it has returned), once per session or stream, and never on a session already gone.

/** One HTTP/2 session (one connection) to the instance. */
export class Session {
  readonly session: http2.ClientHttp2Session
  readonly #pool: SessionOwner
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
  /** A PING out to learn whether the session still moves (probe()): it takes no new stream meanwhile. */
  #probeTimer: NodeJS.Timeout | null = null
  /** destroy() was called: the session is torn down once, whoever asks again. */
  #ending = false
  /** drain() scheduled its close. */
  #closing = false

  constructor(pool: SessionOwner, session: http2.ClientHttp2Session) {
    this.#pool = pool
    this.session = session
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = null
      if (!this.ready) this.destroy(Object.assign(new Error(`no HTTP/2 SETTINGS from the instance within ${pool.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }))
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
      this.#clearProbe()
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

  #clearProbe(): void {
    if (this.#probeTimer !== null) clearTimeout(this.#probeTimer)
    this.#probeTimer = null
  }

  /**
   * A stream on this session timed out: is the session itself still alive? nghttp2 answers some
   * connection errors of the instance's (a frame past SETTINGS_MAX_FRAME_SIZE) with a GOAWAY of
   * its own and tells node:http2 nothing, so the session would go on taking streams that hang,
   * and its streams would never close (nor would the pool's close()). A PING not acknowledged
   * within the connect timeout destroys it; until the ack it takes no new stream.
   */
  probe(): void {
    if (this.#probeTimer !== null || this.gone || this.session.destroyed) return
    const session = this.session
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = null
      this.destroy(Object.assign(new Error(`no HTTP/2 PING acknowledgement from the instance within ${this.#pool.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }))
    }, this.#pool.connectTimeoutMs).unref()
    try {
      // false: too many PINGs out already; the timer decides then. The callback runs inside
      // nghttp2's handling of the ack: destroy() defers.
      session.ping((err) => {
        if (this.#probeTimer === null) return
        this.#clearProbe()
        if (err !== null) this.destroy()
        else this.#pool.changed()
      })
    } catch {
      // The session is closing or destroyed: its 'close' settles everything.
    }
  }

  hasRoom(cap: number): boolean {
    return this.#probeTimer === null && this.ready && !this.draining && !this.gone && !this.session.destroyed && this.active < Math.min(cap, this.#peerMaxStreams)
  }

  streamEnded(): void {
    this.active--
    if (this.active === 0) {
      this.idleSince = performance.now()
      if (this.draining) this.drain()
    }
    this.#pool.changed()
  }

  /**
   * No new streams: close once those out are done (a GOAWAY of our own). Called from stream and
   * session handlers, so the close itself waits for the next turn (see the top of this file).
   */
  drain(): void {
    this.draining = true
    if (this.#closing || this.#ending || this.gone) return
    this.#closing = true
    const session = this.session
    setImmediate(() => {
      if (!session.closed && !session.destroyed) session.close()
    })
  }

  /** Tears the session down (its streams with it), once, on the next turn. */
  destroy(err?: Error): void {
    if (this.#ending || this.gone) return
    this.#ending = true
    this.draining = true
    const session = this.session
    setImmediate(() => {
      if (!session.destroyed) session.destroy(err)
    })
  }
}

/** One request on one stream: the sink's AttemptControl. */
export class Attempt implements AttemptControl {
  readonly req: UpstreamRequest
  readonly headDeadline: number
  readonly #pool: SessionOwner
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
  #resetting = false

  constructor(pool: SessionOwner, req: UpstreamRequest, sink: TransportSink, headDeadline: number) {
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
    if (this.done) return
    this.#reset(code)
    this.fail(err)
  }

  /** Ends the attempt with an error (once); the stream, if any, is cancelled. */
  fail(err: Error): void {
    if (this.done) return
    this.#reset(NGHTTP2_CANCEL)
    this.#finish()
    this.#sink.onError(err)
  }

  /** RST_STREAM(code), once, on the next turn (see the top of this file); the first code wins. */
  #reset(code: number): void {
    const stream = this.#stream
    if (stream === null || this.#resetting || stream.closed || stream.destroyed) return
    this.#resetting = true
    setImmediate(() => {
      if (!stream.closed && !stream.destroyed) stream.close(code)
    })
  }

  #finish(): void {
    this.done = true
    this.#unpipe?.()
    this.#pool.ended(this)
  }

  checkDeadlines(now: number): void {
    if (this.done) return
    if (!this.#headSeen) {
      if (now >= this.headDeadline) {
        this.#session?.probe()
        this.fail(new UpstreamError('timeout', `no response head within ${this.req.headersTimeoutMs} ms`, false))
      }
    } else if (this.req.bodyTimeoutMs > 0 && now - this.#lastData >= this.req.bodyTimeoutMs) {
      this.#session?.probe()
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
