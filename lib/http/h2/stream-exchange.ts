// One HTTP/2 stream from a client, as the request path's client side (../client-side.ts): the
// request translated and checked (translate.ts), its body as a stream held to the limits, and the
// answer written with node:http2's respond/write/end, trailers included. It talks to its front
// (front.ts) through StreamOwner, so that the two do not import each other.

import { Buffer } from 'node:buffer'
import { randomUUID } from 'node:crypto'
import http2 from 'node:http2'
import type { IncomingHttpHeaders } from 'node:http'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { ProxyError, clientGone } from '../../errors.js'
import type { ClientExchange, ClientProtocol } from '../client-side.js'
import { ignore, neverUnhandled } from '../h1/emitters.js'
import type { ResponseHead } from '../h1/headers.js'
import { modelFromResponseHead } from '../transport.js'
import { h2ResponseHeaders, lengthMismatch } from './translate.js'
import type { ForwardRequest } from './translate.js'

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants

const SANE_REQUEST_ID = /^[\x21-\x7e]{1,128}$/

/** What a stream needs of its front. */
export interface StreamOwner {
  /** Largest request body in bytes (0: none). */
  readonly maxBodyBytes: number
  /** The stream's body is being read (the front's sweep holds it to clientBodyTimeoutMs), or no longer. */
  reading(ex: H2Exchange, on: boolean): void
}

/** Where the stream came from: the session's socket. */
export interface StreamOrigin {
  readonly protocol: Exclude<ClientProtocol, 'http/1.1'>
  readonly remoteAddress: string
  readonly localPort: number
}

/** A request's body as a stream; reading it is what opens the client's flow-control window again. */
class StreamBody extends Readable {
  readonly #ex: H2Exchange
  constructor(ex: H2Exchange) {
    super()
    this.#ex = ex
    neverUnhandled(this)
  }
  override _read(): void {
    this.#ex.bodyWanted()
  }
}

export class H2Exchange implements ClientExchange {
  readonly protocol: 'h2' | 'h2c'
  readonly method: string
  url: string
  readonly rawHeaders: readonly string[]
  readonly host: string | undefined
  readonly connection = undefined
  readonly contentLength: number
  readonly remoteAddress: string
  readonly secure: boolean
  readonly localPort: number
  readonly body: StreamBody | null
  /** The client sent `te: trailers`. */
  readonly wantsTrailers: boolean
  onAbort: (() => void) | null = null
  onDrain: (() => void) | null = null
  statusCode = 0
  bytesOut = 0
  headersSent = false
  finished = false
  requestComplete = false
  /** When the last DATA of the body came (clientBodyTimeoutMs); the proxy holding it back restarts it. */
  bodyAt = 0
  /** The body's buffer is full: the proxy, not the client, is why nothing comes. */
  bodyHeld = false
  readonly #stream: http2.ServerHttp2Stream
  readonly #owner: StreamOwner
  #closed = false
  #noBody = false
  #bodyBytes = 0
  #trailers: readonly string[] | null = null
  #requestId: string | null = null
  #headers: IncomingHttpHeaders | null = null

  /** `req` null: the head was refused (the caller answers it); `raw` then only names method and path. */
  constructor(stream: http2.ServerHttp2Stream, req: ForwardRequest | null, raw: readonly string[], origin: StreamOrigin, owner: StreamOwner) {
    this.#stream = stream
    this.#owner = owner
    this.protocol = origin.protocol
    this.secure = origin.protocol === 'h2'
    this.remoteAddress = origin.remoteAddress
    this.localPort = origin.localPort
    this.method = req?.method ?? pseudo(raw, ':method') ?? 'GET'
    this.url = req?.path ?? pseudo(raw, ':path') ?? ''
    this.rawHeaders = req?.headers ?? []
    this.host = req?.authority
    this.contentLength = req?.contentLength ?? -1
    this.wantsTrailers = req?.trailers ?? false
    stream.on('close', this.#onClose)
    stream.on('drain', this.#onDrain)
    stream.on('wantTrailers', this.#onWantTrailers)
    // A refused head's body is never read: whatever comes of it is dropped (flow control goes on).
    if (req === null || stream.readableEnded || stream.endAfterHeaders) {
      this.body = null
      this.requestComplete = true
      stream.on('data', ignore)
      return
    }
    this.body = new StreamBody(this)
    this.bodyAt = performance.now()
    owner.reading(this, true)
    stream.on('data', this.#onData)
    stream.once('end', this.#onEnd)
  }

  get headers(): IncomingHttpHeaders {
    return (this.#headers ??= headerObject(this.rawHeaders))
  }

  get requestId(): string {
    if (this.#requestId !== null) return this.#requestId
    const id = this.headers['x-request-id']
    return (this.#requestId = typeof id === 'string' && SANE_REQUEST_ID.test(id) ? id : randomUUID())
  }

  get destroyed(): boolean {
    return this.#closed || this.#stream.destroyed
  }

  get writePending(): boolean {
    return this.#stream.writableLength > 0
  }

  readonly #onData = (chunk: Buffer): void => {
    const body = this.body!
    if (body.destroyed) return
    this.bodyAt = performance.now()
    this.#bodyBytes += chunk.length
    const max = this.#owner.maxBodyBytes
    if (max > 0 && this.#bodyBytes > max) {
      this.failBody(new ProxyError('ZP_ERR_BODY_TOO_LARGE', `request body over ${max} bytes`, { statusCode: 413 }))
      return
    }
    // DATA past the declared length is malformed (RFC 9113 §8.1.1): it never reaches an instance.
    if (lengthMismatch(this.contentLength, this.#bodyBytes, false) !== null) {
      this.failBody(new ProxyError('ZP_ERR_BAD_REQUEST', 'request body longer than its content-length', { statusCode: 400 }))
      return
    }
    if (!body.push(chunk)) {
      this.bodyHeld = true
      this.#stream.pause()
    }
  }

  readonly #onEnd = (): void => {
    const body = this.body!
    this.#owner.reading(this, false)
    if (body.destroyed) return
    if (lengthMismatch(this.contentLength, this.#bodyBytes, true) !== null) {
      this.failBody(new ProxyError('ZP_ERR_BAD_REQUEST', 'request body shorter than its content-length', { statusCode: 400 }))
      return
    }
    this.requestComplete = true
    body.push(null)
  }

  /** Body bytes after the answer went out: dropped, but the client is not silent. */
  readonly #onDropped = (): void => {
    this.bodyAt = performance.now()
  }

  /** The body's reader wants more: the stream flows again (and the window reopens). */
  bodyWanted(): void {
    if (!this.bodyHeld) return
    this.bodyHeld = false
    this.bodyAt = performance.now()
    this.#stream.resume()
  }

  readonly #onDrain = (): void => {
    this.onDrain?.()
  }

  readonly #onClose = (): void => {
    this.#closed = true
    this.#owner.reading(this, false)
    this.aborted()
  }

  readonly #onWantTrailers = (): void => {
    const t = this.#trailers
    this.#trailers = null
    // Without trailers to send, an empty block still ends the stream (node:http2 sends END_STREAM on an empty DATA frame).
    try {
      this.#stream.sendTrailers(t === null ? {} : headerMap(t))
    } catch {
      this.#stream.close(NGHTTP2_INTERNAL_ERROR)
    }
  }

  writeResponseHead(head: ResponseHead): void {
    if (this.headersSent || this.destroyed) return
    const t = h2ResponseHeaders(modelFromResponseHead(head))
    if (!t.ok) {
      // A field no HTTP/2 peer may get (the instance's fault): the client gets a 502 instead.
      this.#respondError(502, 'ZP_ERR_UPSTREAM_RESET', `the instance's answer cannot be sent over HTTP/2 (${t.reason})`)
      return
    }
    const out = headerMap(t.value)
    // A gRPC trailers-only answer (grpc-status in the head, no body) must end its stream with the
    // HEADERS frame: a gRPC client reads grpc-status only from a block that ends the stream.
    const trailersOnly = head.contentLength === 0 && out['grpc-status'] !== undefined
    // Trailers only to a client that said it takes them (te: trailers, as gRPC clients do): any
    // other answer ends with its last DATA frame, without the extra frame waiting would cost.
    this.#respond(head.status, out, this.wantsTrailers, trailersOnly)
  }

  writeHead(status: number, headers: Readonly<Record<string, string | number>>): void {
    if (this.headersSent || this.destroyed) return
    const out: http2.OutgoingHttpHeaders = { ':status': status }
    for (const name in headers) out[name.toLowerCase()] = headers[name]
    // The proxy's own empty answers (a gRPC trailers-only status among them) end with their head.
    this.#respond(status, out, false, String(out['content-length']) === '0')
  }

  #respond(status: number, headers: http2.OutgoingHttpHeaders, trailers: boolean, empty: boolean): void {
    this.headersSent = true
    this.statusCode = status
    this.#noBody = empty || this.method === 'HEAD' || status === 204 || status === 304
    try {
      // An answer without a body ends with its head.
      this.#stream.respond(headers, this.#noBody ? { endStream: true } : { waitForTrailers: trailers })
    } catch {
      this.#stream.close(NGHTTP2_INTERNAL_ERROR)
    }
  }

  #respondError(status: number, code: string, message: string): void {
    const body = JSON.stringify({ error: code, message, requestId: this.requestId })
    this.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': this.requestId })
    this.end(body)
  }

  write(chunk: Buffer): boolean {
    if (!this.headersSent) this.writeHead(200, {})
    if (this.#noBody || this.destroyed || this.finished) return true
    this.bytesOut += chunk.length
    return this.#stream.write(chunk)
  }

  sendTrailers(trailers: readonly string[]): void {
    if (trailers.length > 0) this.#trailers = trailers
  }

  end(body?: string): void {
    if (this.finished || this.destroyed) return
    const bytes = body === undefined || body.length === 0 ? null : Buffer.from(body)
    if (!this.headersSent) this.writeHead(200, { 'content-length': bytes === null ? 0 : bytes.length })
    if (bytes !== null) this.write(bytes)
    this.finished = true
    if (!this.#noBody) this.#stream.end()
    // Answered before the body was all in: what is left of it is read and dropped; the sweep
    // resets the stream if the client stalls (the front keeps it among those reading).
    if (!this.requestComplete && this.body !== null) {
      this.body.destroy()
      this.#stream.off('data', this.#onData)
      this.#stream.on('data', this.#onDropped)
      this.bodyHeld = false
      this.bodyAt = performance.now()
      this.#stream.resume()
    }
  }

  destroy(): void {
    if (!this.#stream.destroyed) this.#stream.close(NGHTTP2_INTERNAL_ERROR)
  }

  failBody(err: ProxyError): void {
    if (this.body !== null && !this.requestComplete && !this.body.destroyed) this.body.destroy(err)
    // Nothing more of it is read, and the window stays shut.
    this.#stream.pause()
  }

  /** The client's body stalled past clientBodyTimeoutMs: 408 if nothing was answered, else the stream is reset. */
  bodyTimedOut(ms: number): void {
    if (this.finished) {
      if (!this.#stream.destroyed) this.#stream.close(NGHTTP2_CANCEL)
      return
    }
    this.failBody(new ProxyError('ZP_ERR_CLIENT_TIMEOUT', `request body: nothing received for ${ms} ms`, { statusCode: 408 }))
  }

  /** The stream closed (a reset, the session gone) before the answer was complete. */
  aborted(): void {
    if (this.body !== null && !this.requestComplete) this.body.destroy(clientGone('client aborted the request body'))
    const cb = this.onAbort
    this.onAbort = null
    if (!this.finished) cb?.()
  }
}

function pseudo(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i] === name) return raw[i + 1]
  return undefined
}

/** [name, value, ...] as node:http2 takes headers: a repeated name as an array of its values. */
function headerMap(pairs: readonly string[]): http2.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const name = pairs[i]!
    const value = pairs[i + 1]!
    const had = out[name]
    if (had === undefined) out[name] = value
    else if (Array.isArray(had)) had.push(value)
    else out[name] = [had, value]
  }
  return out
}

/** All headers, names lower-cased (they are on HTTP/2), repeats joined with ", " (cookies with "; "). */
function headerObject(raw: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!
    const had = out[name]
    out[name] = had === undefined ? raw[i + 1]! : `${had}, ${raw[i + 1]!}`
  }
  return out
}
