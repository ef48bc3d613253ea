// The seam under the request path (issue 26 §1): one interface every upstream pool implements,
// whatever protocol it speaks to the instance, and a response head that is status plus header
// pairs, rendered by the side that writes it (an HTTP/1.1 writer renders lines of text, an HTTP/2
// writer hands the pairs to nghttp2). undici's Dispatcher, with connectH1/connectH2 behind one
// Client, is the model. The HTTP/1.1 UpstreamPool implements it directly (no wrapper on the hot
// path); H2UpstreamPool is the other. InstancePools picks one per instance (docs/http2.md).

import { STATUS_CODES } from 'node:http'
import { UpstreamError } from '../errors.js'
import { ResponseHead } from './h1/headers.js'
import type { ResponseSink, UpstreamPool, UpstreamRequest } from './h1/upstream.js'

/** How the proxy speaks to an instance: `h2` is TLS with ALPN h2, `h2c` HTTP/2 with prior knowledge. */
export type UpstreamProtocol = 'http/1.1' | 'h2' | 'h2c'

/** A ResponseSink that may also take the answer's trailers (HTTP/2 carries them; so may chunked HTTP/1.1). */
export interface TransportSink extends ResponseSink {
  /**
   * The answer's trailers as [name, value, ...] (lower-case names, already checked), called once
   * just before onEnd. A sink without it drops them, which is what HTTP/1.1 did so far.
   */
  onTrailers?(trailers: readonly string[]): void
}

/** What a pool reports about itself (for /upstreams and metrics later). */
export interface TransportStats {
  /** Connections (HTTP/1.1) or sessions (HTTP/2) open or opening. */
  readonly connections: number
  /** Requests out on them. */
  readonly active: number
  /** Requests waiting for room. */
  readonly queued: number
}

/** Connections to one instance, whatever the protocol: the request path's only way upstream. */
export interface Transport {
  readonly protocol: UpstreamProtocol
  /** `host:port` as a Host header (or `:authority`) names this instance. */
  readonly authority: string
  /** True once close() was called: the service makes a new one for the next request. */
  readonly closed: boolean
  /** Sends `req`; exactly one of sink.onEnd / sink.onError ends it (ResponseSink's contract). */
  dispatch(req: UpstreamRequest, sink: TransportSink): void
  /** Closes what sat idle past its keep-alive timeout; true while anything is left idle. */
  sweep(now: number): boolean
  /** Lets requests in flight and queued finish, then closes every connection. */
  close(): Promise<void>
  stats?(): TransportStats
}

/**
 * An attempt that the instance provably never processed (RFC 9113 §6.8: a stream above the
 * last-stream-id of a GOAWAY; a REFUSED_STREAM reset, §8.7). Its kind is `connect`, the kind the
 * retry policy already sends elsewhere whatever the method, since no byte of it was acted on.
 */
export class UnprocessedError extends UpstreamError {
  readonly unprocessed = true

  constructor(message: string, cause?: unknown) {
    super('connect', message, false, cause)
    this.name = 'UnprocessedError'
  }
}

/** A response head as status plus header pairs; each writer renders it its own way. */
export interface HeadModel {
  readonly status: number
  /** [name, value, ...]: end-to-end headers only (no hop-by-hop, no Content-Length, no pseudo-headers). */
  readonly headers: readonly string[]
  /** The framing length (-1: none), written by the writer itself, never copied. */
  readonly contentLength: number
}

/** The reason phrase an HTTP/1.1 writer uses when the answer came without one (HTTP/2 has none). */
export function reasonPhrase(status: number): string {
  return STATUS_CODES[status] ?? ''
}

/** Today's ResponseHead as the model (its `lines` split into pairs). */
export function modelFromResponseHead(head: ResponseHead): HeadModel {
  const headers: string[] = []
  for (const line of head.lines.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) headers.push(line.slice(0, colon), line.slice(colon + 1).trim())
  }
  return { status: head.status, headers, contentLength: head.contentLength }
}

/** The model as today's ResponseHead (what the HTTP/1.1 front writes), so an h2 pool fits the seam as it is. */
export function responseHeadFromModel(model: HeadModel, text = reasonPhrase(model.status)): ResponseHead {
  return new ResponseHead(model.status, text, renderH1Lines(model.headers), model.contentLength, model.headers)
}

/** Header pairs as HTTP/1.1 header lines (`name: value\r\n` each), the way ResponseHead.lines holds them. */
export function renderH1Lines(headers: readonly string[]): string {
  let lines = ''
  for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]!}: ${headers[i + 1]!}\r\n`
  return lines
}

/** The HTTP/1.1 pool fits the seam as it is (a compile-time check; h1/ does not import this file). */
export type H1PoolIsTransport = UpstreamPool extends Transport ? true : never
const h1PoolIsTransport: H1PoolIsTransport = true
void h1PoolIsTransport
