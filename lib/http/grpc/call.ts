// One gRPC call through the proxy (issue 27): what a request that is a gRPC or gRPC-Web call
// carries through its attempts (its kind, deadline, CORS answer headers, the status it ended
// with), how each attempt's request is made from it (gRPC-Web translated to gRPC toward an
// HTTP/2 instance), and the sink that turns the instance's answer back into gRPC-Web.

import { Buffer } from 'node:buffer'
import { Readable } from 'node:stream'
import { ProxyError, UpstreamError } from '../../errors.js'
import type { ResponseHead } from '../h1/headers.js'
import type { AttemptControl, HeldBody } from '../h1/upstream.js'
import { responseHeadFromModel } from '../transport.js'
import type { TransportSink, UpstreamProtocol } from '../transport.js'
import { GrpcStatus, encodeGrpcMessage, formatGrpcTimeout, grpcContentTypeFor, grpcKind, grpcStatusFromHttp, parseGrpcStatus, parseGrpcTimeout } from './status.js'
import type { GrpcKind } from './status.js'
import { Base64Decoder, Base64Encoder, trailerFrame } from './web.js'

/** A service's `grpcWeb.cors` (config.ts). */
export interface GrpcCorsConfig {
  readonly origins: readonly string[]
  readonly maxAgeS: number
  readonly allowHeaders: readonly string[]
}

/** Request headers a gRPC-Web client sends that a browser must be allowed to (PROTOCOL-WEB.md). */
const WEB_REQUEST_HEADERS = ['content-type', 'x-grpc-web', 'x-user-agent', 'grpc-timeout']
/** Answer headers a browser script must be allowed to read, or it cannot see a trailers-only status. */
const EXPOSED = 'grpc-status, grpc-message, grpc-status-details-bin'

/** The CORS headers for `origin` when the service lets it in, else null. */
export function corsHeaders(cors: GrpcCorsConfig | undefined, origin: string | undefined): string[] | null {
  if (cors === undefined || origin === undefined) return null
  if (cors.origins.includes('*')) return ['access-control-allow-origin', '*', 'access-control-expose-headers', EXPOSED]
  if (!cors.origins.includes(origin)) return null
  return ['access-control-allow-origin', origin, 'vary', 'origin', 'access-control-expose-headers', EXPOSED]
}

/** A CORS preflight's answer headers (for a 204), or null when the origin is not let in. */
export function preflightHeaders(cors: GrpcCorsConfig | undefined, origin: string | undefined): Record<string, string> | null {
  const base = corsHeaders(cors, origin)
  if (base === null) return null
  const out: Record<string, string> = {}
  for (let i = 0; i < base.length; i += 2) if (base[i] !== 'access-control-expose-headers') out[base[i]!] = base[i + 1]!
  out['access-control-allow-methods'] = 'POST, OPTIONS'
  out['access-control-allow-headers'] = [...WEB_REQUEST_HEADERS, ...cors!.allowHeaders].join(', ')
  out['access-control-max-age'] = String(cors!.maxAgeS)
  out['content-length'] = '0'
  return out
}

export class GrpcCall {
  readonly kind: GrpcKind
  /** The content-type the client sent (for gRPC-Web, the one its answer is written with). */
  readonly contentType: string
  /** From `grpc-timeout`, ms; null when the call has none. */
  readonly timeoutMs: number | null
  /** Why the call is refused before any attempt (a `grpc-timeout` that is not one), or null. */
  readonly invalid: string | null
  /** CORS headers every answer to this call carries (empty: none). */
  readonly cors: readonly string[]
  /** The status of the attempt in flight, then of the answer the client got; null: none yet. */
  status: number | null = null
  /** The client's head went out (a message or the trailers-only head): a failure now goes in a trailer frame. */
  headSent = false
  #encoder: Base64Encoder | null = null
  #decoded: HeldBody | null = null

  constructor(kind: GrpcKind, contentType: string, timeoutMs: number | null, cors: readonly string[], invalid: string | null = null) {
    this.kind = kind
    this.contentType = contentType
    this.timeoutMs = timeoutMs
    this.cors = cors
    this.invalid = invalid
  }

  /**
   * The call `headers` describe, or null when they are not a gRPC call. A `grpc-timeout` that is
   * not one makes `invalid` say why: the call is then refused with INTERNAL, as grpc-js's server
   * refuses it (an instance would answer the same, so it is not worth an attempt).
   */
  static of(headers: Readonly<Record<string, string | string[] | undefined>>, cors: GrpcCorsConfig | undefined): GrpcCall | null {
    const type = headers['content-type']
    const contentType = typeof type === 'string' ? type : undefined
    const kind = grpcKind(contentType)
    if (kind === null) return null
    const origin = headers.origin
    const corsOut = (kind === 'grpc' ? null : corsHeaders(cors, typeof origin === 'string' ? origin : undefined)) ?? []
    const raw = headers['grpc-timeout']
    if (raw === undefined) return new GrpcCall(kind, contentType!, null, corsOut)
    const timeoutMs = parseGrpcTimeout(typeof raw === 'string' ? raw : undefined)
    if (timeoutMs === null) return new GrpcCall(kind, contentType!, null, corsOut, `invalid grpc-timeout value ${JSON.stringify(String(raw).slice(0, 32))}`)
    return new GrpcCall(kind, contentType!, timeoutMs, corsOut)
  }

  get web(): boolean {
    return this.kind !== 'grpc'
  }

  /** Whether an attempt at an instance speaking `protocol` is translated (gRPC-Web to gRPC over HTTP/2). */
  translates(protocol: UpstreamProtocol): boolean {
    return this.web && protocol !== 'http/1.1'
  }

  /**
   * One attempt's request headers: the forwarding policy's `headers`, with `grpc-timeout` set to
   * what is left of the call (`remainingMs`, when the call has a deadline), and, translated, the
   * gRPC content-type, `te: trailers`, and gRPC-Web's own markers dropped.
   */
  attemptHeaders(headers: readonly string[], translate: boolean, remainingMs: number): string[] {
    const out: string[] = []
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i]!.toLowerCase()
      if (name === 'grpc-timeout') continue
      if (translate && (name === 'content-type' || name === 'x-grpc-web' || name === 'accept' || name === 'te')) continue
      out.push(headers[i]!, headers[i + 1]!)
    }
    if (translate) out.push('content-type', grpcContentTypeFor(this.contentType), 'te', 'trailers')
    if (this.timeoutMs !== null) out.push('grpc-timeout', formatGrpcTimeout(remainingMs))
    return out
  }

  /**
   * One attempt's body: as held or streamed, or, for grpc-web-text translated, base64-decoded (a
   * held body once for all attempts; a streamed one as it is read, pulled only when the attempt
   * reads, so an attempt that never read leaves it replayable).
   */
  attemptBody(body: HeldBody | Readable | null, translate: boolean): HeldBody | Readable | null {
    if (!translate || this.kind !== 'grpc-web-text' || body === null) return body
    if (!(body instanceof Readable)) {
      if (this.#decoded === null) {
        const d = new Base64Decoder()
        const parts = body.map((c) => d.push(c))
        parts.push(d.end())
        this.#decoded = [Buffer.concat(parts)]
      }
      return this.#decoded
    }
    const src = body
    return Readable.from(
      (async function* () {
        const d = new Base64Decoder()
        for await (const chunk of src) yield d.push(chunk as Buffer)
        d.end()
      })(),
      { objectMode: false },
    )
  }

  /** The sink for an attempt: translating back when `translate`, watching the status always. */
  sink(inner: TransportSink, translate: boolean, deadlineAt: number | null): TransportSink {
    this.status = null
    this.#encoder = translate && this.kind === 'grpc-web-text' ? new Base64Encoder() : null
    return new GrpcSink(this, inner, translate, deadlineAt)
  }

  /** Body bytes as the client takes them (base64 for grpc-web-text once translated). */
  encode(chunk: Buffer): Buffer {
    return this.#encoder === null ? chunk : this.#encoder.push(chunk)
  }

  /** The end of the body: the trailer frame, and for text the last base64 group. */
  trailerBytes(trailers: readonly string[]): Buffer {
    const frame = trailerFrame(trailers)
    if (this.#encoder === null) return frame
    const text = this.#encoder.push(frame)
    const tail = this.#encoder.end()
    return tail.length === 0 ? text : Buffer.concat([text, tail])
  }

  /** The header pairs of a trailers-only answer with `status` and `message` (recorded as the call's status). */
  trailersOnlyPairs(status: number, message: string, extra: readonly string[] = []): string[] {
    const headers = [...extra, 'content-type', this.web ? this.contentType : 'application/grpc', 'grpc-status', String(status)]
    if (message !== '') headers.push('grpc-message', encodeGrpcMessage(message))
    headers.push(...this.cors)
    this.status = status
    return headers
  }

  /** The head of a trailers-only answer with `status` and `message`, for a gRPC-Web or gRPC client. */
  trailersOnlyHead(status: number, message: string, extra: readonly string[] = []): ResponseHead {
    return responseHeadFromModel({ status: 200, headers: this.trailersOnlyPairs(status, message, extra), contentLength: 0 })
  }
}

/** Reads `grpc-status` and `grpc-message` out of [name, value, ...]; the rest is returned apart. */
function splitStatus(pairs: readonly string[]): { status: number | null; message: string | undefined; rest: string[] } {
  let status: number | null = null
  let message: string | undefined
  const rest: string[] = []
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const name = pairs[i]!.toLowerCase()
    if (name === 'grpc-status') status = parseGrpcStatus(pairs[i + 1]) ?? GrpcStatus.UNKNOWN
    else if (name === 'grpc-message') message = pairs[i + 1]!
    else rest.push(name, pairs[i + 1]!)
  }
  return { status, message, rest }
}

/** Header pairs of an instance's head, but the ones the client's head is made of anew. */
function headPairs(head: ResponseHead): string[] {
  const model = responseHeadPairs(head)
  const out: string[] = []
  for (let i = 0; i + 1 < model.length; i += 2) {
    const name = model[i]!.toLowerCase()
    if (name === 'content-type' || name === 'content-length') continue
    out.push(name, model[i + 1]!)
  }
  return out
}

function responseHeadPairs(head: ResponseHead): string[] {
  const out: string[] = []
  for (const line of head.lines.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) out.push(line.slice(0, colon), line.slice(colon + 1).trim())
  }
  return out
}

/**
 * Between an attempt's transport and the response writer: holds the instance's head until the
 * first message (so a status that comes before any message can still be retried: gRPC's own rule
 * for a call not yet committed), folds trailers with no message before them into a trailers-only
 * head, maps an answer that is not gRPC by the HTTP-to-gRPC table, and for gRPC-Web writes the
 * trailers as the body's last frame. With a deadline, it ends the attempt when the call's time is up.
 */
class GrpcSink implements TransportSink {
  readonly #call: GrpcCall
  readonly #inner: TransportSink
  readonly #translate: boolean
  readonly #deadlineAt: number | null
  #control: AttemptControl | null = null
  #timer: NodeJS.Timeout | null = null
  /** The instance's head of a streaming answer, held until its first message. */
  #streamHead: ResponseHead | null = null
  /** A trailers-only head (the instance's, or made from an answer that is not gRPC), sent at the end. */
  #finalHead: ResponseHead | null = null
  #trailers: readonly string[] = []
  #refused = false

  constructor(call: GrpcCall, inner: TransportSink, translate: boolean, deadlineAt: number | null) {
    this.#call = call
    this.#inner = inner
    this.#translate = translate
    this.#deadlineAt = deadlineAt
  }

  onStart(control: AttemptControl): void {
    this.#control = control
    this.#inner.onStart(control)
    if (this.#deadlineAt !== null) {
      this.#timer = setTimeout(this.#expired, Math.max(0, this.#deadlineAt - Date.now()))
      this.#timer.unref()
    }
  }

  readonly #expired = (): void => {
    this.#timer = null
    this.#control?.abort(new ProxyError('ZP_ERR_GRPC_DEADLINE', 'the call passed its grpc-timeout'))
  }

  #stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#control = null
  }

  onHead(head: ResponseHead): boolean {
    const kind = grpcKind(head.header('content-type'))
    if (head.status !== 200 || kind === null || (this.#translate && kind !== 'grpc')) {
      // Not a gRPC answer (a plain HTTP error, a proxy in front of the instance): gRPC's table.
      this.#finalHead = this.#call.trailersOnlyHead(grpcStatusFromHttp(head.status), `upstream answered HTTP ${head.status}`)
    } else if (head.header('grpc-status') !== undefined) {
      // Trailers-only from the instance: its status is in the head, nothing follows.
      this.#finalHead = this.#trailersOnly(headPairs(head))
    } else this.#streamHead = head
    return true
  }

  /** A trailers-only head from the instance's fields; its grpc-message passed on as it was encoded. */
  #trailersOnly(pairs: readonly string[]): ResponseHead {
    const split = splitStatus(pairs)
    const extra = split.message === undefined || split.message === '' ? split.rest : split.rest.concat('grpc-message', split.message)
    return this.#call.trailersOnlyHead(split.status ?? GrpcStatus.UNKNOWN, split.status === null ? 'upstream sent no grpc-status' : '', extra)
  }

  /** Sends the held head of a streaming answer (its first message is here); false: the writer refused it. */
  #flushHead(): boolean {
    const head = this.#streamHead
    if (head === null) return true
    this.#streamHead = null
    const headers = headPairs(head)
    headers.push('content-type', this.#translate ? this.#call.contentType : (head.header('content-type') ?? 'application/grpc'))
    headers.push(...this.#call.cors)
    if (!this.#inner.onHead(responseHeadFromModel({ status: 200, headers, contentLength: this.#translate ? -1 : head.contentLength }))) {
      this.#refused = true
      return false
    }
    this.#call.headSent = true
    return true
  }

  onBody(chunk: Buffer): boolean {
    if (this.#finalHead !== null || this.#refused) return true
    if (!this.#flushHead()) {
      this.#control?.abort(new UpstreamError('status', 'answer refused', false))
      return true
    }
    return this.#inner.onBody(this.#translate ? this.#call.encode(chunk) : chunk)
  }

  get holdsChunks(): boolean {
    return this.#inner.holdsChunks
  }

  onTrailers(trailers: readonly string[]): void {
    this.#trailers = trailers
  }

  onEnd(): void {
    this.#stop()
    if (this.#refused) return
    // No message came: the trailers make a trailers-only head (a retry is still possible).
    if (this.#streamHead !== null) this.#finalHead = this.#trailersOnly(headPairs(this.#streamHead).concat(this.#trailers))
    this.#streamHead = null
    const head = this.#finalHead
    if (head !== null) {
      this.#finalHead = null
      if (!this.#inner.onHead(head)) {
        this.#inner.onError(new UpstreamError('status', `upstream answered grpc-status ${String(this.#call.status)}`, false))
        return
      }
      this.#call.headSent = true
      this.#inner.onEnd()
      return
    }
    const split = splitStatus(this.#trailers)
    this.#call.status = split.status ?? GrpcStatus.UNKNOWN
    if (this.#translate) {
      const pairs = ['grpc-status', String(this.#call.status)]
      if (split.message !== undefined) pairs.push('grpc-message', split.message)
      else if (split.status === null) pairs.push('grpc-message', encodeGrpcMessage('upstream sent no grpc-status'))
      this.#inner.onBody(this.#call.trailerBytes(pairs.concat(split.rest)))
    } else this.#inner.onTrailers?.(this.#trailers)
    this.#inner.onEnd()
  }

  onError(err: Error): void {
    this.#stop()
    this.#inner.onError(err)
  }
}

/** For answerFailure: a failure once the client's head went out, as the body's trailer frame. */
export function failureTrailer(call: GrpcCall, status: number, message: string): Buffer {
  call.status = status
  return call.trailerBytes(['grpc-status', String(status), 'grpc-message', encodeGrpcMessage(message)])
}

