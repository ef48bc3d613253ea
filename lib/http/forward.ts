// One attempt: the upstream request's headers, the body handed to it, and the answer written
// straight into the client's exchange as it arrives (no per-request stream.pipeline or
// AbortController: see docs/performance.md, "The small GET and the other scenarios").

import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { clientGone } from '../errors.js'
import { neverUnhandled } from './h1/emitters.js'
import type { Exchange } from './h1/exchange.js'
import type { ClientExchange } from './client-side.js'
import { HOP_BY_HOP } from './h1/headers.js'
import type { ResponseHead } from './h1/headers.js'
import { requestHead } from './h1/upstream.js'
import type { AttemptControl, UpstreamRequest } from './h1/upstream.js'
import type { Transport, TransportSink } from './transport.js'

/** Set by the proxy itself: what a client sent of them is replaced (X-Forwarded-For is appended to). */
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port'])

/**
 * Names a client's `Connection` may not take away: the Host the request is for, and the framing,
 * which the proxy writes itself anyway.
 */
const PROTECTED = new Set(['host', 'content-length', 'transfer-encoding'])

/** Extra names a `Connection` header lists are hop-by-hop too. */
function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined) return null
  // Nearly every client says just "keep-alive": no Set is made until a real name turns up.
  let set: Set<string> | null = null
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase()
    if (name !== '' && name !== 'close' && name !== 'keep-alive' && !PROTECTED.has(name)) (set ??= new Set()).add(name)
  }
  return set
}

/** Added to every request upstream (RFC 9110 §7.6.3). */
const VIA = '1.1 zoo-proxy'

/**
 * The upstream request's headers as a flat [name, value, ...] list: the client's own (its Host
 * kept), less hop-by-hop ones and the framing (Content-Length, Transfer-Encoding: the upstream
 * side writes its own from what llhttp framed), less names with `_` unless `keepUnderscores`
 * (nginx's underscores_in_headers: a backend that reads `Content_Length` as `Content-Length`
 * must never see one), with X-Forwarded-For appended to, -Proto/-Host/-Port set (the port the
 * client connected to), Via, and the request's X-Request-Id (the client's when sane, else a new
 * one). The one forwarding policy: requests and upgrades (websocket.ts) get their headers here.
 */
export function upstreamHeaders(ex: ClientExchange, keepUnderscores = false): string[] {
  const raw = ex.rawHeaders
  const extra = connectionTokens(ex.connection)
  const out: string[] = []
  let xff: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || FORWARDED.has(lower) || lower === 'content-length' || lower === 'x-request-id' || (extra !== null && extra.has(lower))) {
      if (lower === 'x-forwarded-for') xff = xff === undefined ? raw[i + 1]! : `${xff}, ${raw[i + 1]!}`
      continue
    }
    if (!keepUnderscores && lower.includes('_')) continue
    out.push(name, raw[i + 1]!)
  }
  const client = ex.remoteAddress
  out.push('x-forwarded-for', xff === undefined ? client : `${xff}, ${client}`)
  out.push('x-forwarded-proto', ex.secure ? 'https' : 'http')
  out.push('x-forwarded-port', String(ex.localPort))
  if (ex.host !== undefined) out.push('x-forwarded-host', ex.host)
  out.push('via', VIA)
  out.push('x-request-id', ex.requestId)
  return out
}

/**
 * The head of an Upgrade request to the instance at `authority`, the same policy's: `headers` from
 * upstreamHeaders (which dropped the client's Connection and Upgrade as hop-by-hop), then the
 * proxy's own `Connection: upgrade` and the protocol the client asked for.
 */
export function upgradeRequestHead(ex: Exchange, headers: readonly string[], authority: string): string {
  return `${requestHead(ex.method, ex.url, headers, authority)}connection: upgrade\r\nupgrade: ${ex.headers.upgrade ?? ''}\r\n\r\n`
}

/**
 * A request body that can be handed to one attempt and, as long as that attempt never read from
 * it, to another: it only starts pulling from the client when the upstream connection first reads
 * it, and destroying it never destroys the client's request.
 */
export class BodyTap extends Readable {
  readonly #src: Readable
  readonly #prefix: readonly Buffer[]
  #started = false
  /**
   * What this attempt was given, kept (a gRPC call's body, which streams at once) while it stays
   * within `recordBytes`, so a retry can replay it; null when not kept or past the bound.
   */
  #record: Buffer[] | null = null
  #recorded = 0
  readonly #recordBytes: number

  /** `prefix`: chunks already read from `src`, sent first. `recordBytes` > 0: keep up to that many bytes for a retry. */
  constructor(src: Readable, prefix: readonly Buffer[] = [], recordBytes = 0) {
    super()
    this.#src = src
    this.#prefix = prefix
    this.#recordBytes = recordBytes
    if (recordBytes > 0) {
      this.#record = [...prefix]
      for (const c of prefix) this.#recorded += c.length
      if (this.#recorded > recordBytes) this.#record = null
    }
    neverUnhandled(this)
  }

  /** True once a byte may have gone upstream: the body can no longer be replayed. */
  get started(): boolean {
    return this.#started
  }

  /** Everything this attempt took from the client, when it was all kept: the next attempt's prefix. */
  get replay(): readonly Buffer[] | null {
    return this.#record
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#record !== null) {
      this.#recorded += chunk.length
      if (this.#recorded > this.#recordBytes) this.#record = null
      else this.#record.push(chunk)
    }
    if (!this.push(chunk)) this.#src.pause()
  }
  readonly #onEnd = (): void => {
    this.push(null)
  }
  readonly #onError = (err: Error): void => {
    this.destroy(err)
  }

  override _read(): void {
    if (this.#src.destroyed && !this.#src.readableEnded) {
      // The client's body failed before this attempt read it (timed out, too large, gone).
      this.destroy(this.#src.errored ?? clientGone('client aborted the request body'))
      return
    }
    if (!this.#started) {
      this.#started = true
      for (const chunk of this.#prefix) this.push(chunk)
      if (this.#src.readableEnded) {
        this.push(null)
        return
      }
      this.#src.on('data', this.#onData)
      this.#src.once('end', this.#onEnd)
      this.#src.once('error', this.#onError)
    }
    this.#src.resume()
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.#src.off('data', this.#onData)
    this.#src.off('end', this.#onEnd)
    this.#src.off('error', this.#onError)
    // A kept body may be replayed: what comes next must wait for the next attempt's tap, not be
    // emitted to no listener.
    if (this.#recordBytes > 0 && this.#started) this.#src.pause()
    cb(err)
  }
}

/** What an attempt asks and tells the request it belongs to. */
export interface AttemptListener {
  /** Asked with the upstream's status before anything goes to the client: true drops this
   * answer, to retry elsewhere (the attempt then ends with an error of kind `status`). */
  retryOnStatus(head: ResponseHead): boolean
  /** Exactly once: `err` null when the whole answer went to the client; `latencyMs` to its head. */
  attemptEnded(err: Error | null, status: number, latencyMs: number): void
  /** `performance.now()` when the attempt was dispatched. */
  readonly attemptStartedAt: number
}

/** Writes the upstream's answer straight into the client's exchange as it arrives. */
class ResponseWriter implements TransportSink {
  readonly #res: ClientExchange
  readonly #listener: AttemptListener
  #control: AttemptControl | null = null
  #status = 0
  #latencyMs = 0

  constructor(res: ClientExchange, listener: AttemptListener) {
    this.#res = res
    this.#listener = listener
    res.onAbort = this.#onClientGone
    res.onDrain = this.#onDrain
  }

  readonly #onClientGone = (): void => {
    this.#control?.abort(clientGone('client went away'))
  }

  readonly #onDrain = (): void => {
    this.#control?.resume()
  }

  #finish(): void {
    this.#control = null
    this.#res.onAbort = null
    this.#res.onDrain = null
  }

  onStart(control: AttemptControl): void {
    this.#control = control
    if (this.#res.destroyed) control.abort(clientGone('client went away'))
  }

  onHead(head: ResponseHead, at = performance.now()): boolean {
    this.#status = head.status
    this.#latencyMs = at - this.#listener.attemptStartedAt
    if (this.#listener.retryOnStatus(head)) return false
    this.#res.writeResponseHead(head)
    return true
  }

  onBody(chunk: Buffer): boolean {
    // Backpressure: a slow client pauses the upstream socket (return false) instead of growing
    // our memory; the client socket's 'drain' resumes it.
    return this.#res.write(chunk)
  }

  get holdsChunks(): boolean {
    return this.#res.writePending
  }

  /** An HTTP/2 instance's trailers: passed on to a client side that carries them (HTTP/2), else dropped. */
  onTrailers(trailers: readonly string[]): void {
    this.#res.sendTrailers?.(trailers)
  }

  onEnd(): void {
    this.#finish()
    this.#res.end()
    this.#listener.attemptEnded(null, this.#status, this.#latencyMs)
  }

  onError(err: Error): void {
    this.#finish()
    this.#listener.attemptEnded(err, this.#status, this.#latencyMs)
  }
}

/** One attempt at one upstream; it ends in `listener.attemptEnded`. `wrap`: a sink in front of the writer (a gRPC call's). */
export function forwardAttempt(pool: Transport, res: ClientExchange, req: UpstreamRequest, listener: AttemptListener, wrap?: (sink: TransportSink) => TransportSink): void {
  const writer = new ResponseWriter(res, listener)
  pool.dispatch(req, wrap === undefined ? writer : wrap(writer))
}
