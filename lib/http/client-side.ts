// The client side of one request, as the request path (server.ts, service.ts, forward.ts) talks
// to it: the request's head and body, and the answer written back. The HTTP/1.1 front's Exchange
// is one implementation, an HTTP/2 stream (h2/stream-exchange.ts) the other, so both protocols
// take the same routing, balancing, retry loop and forwarding policy instead of copies of them.

import type { Buffer } from 'node:buffer'
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { Exchange } from './h1/exchange.js'
import type { ResponseHead } from './h1/headers.js'

/** How the client spoke: HTTP/1.x, HTTP/2 over TLS (ALPN h2), or HTTP/2 over plain TCP (h2c). */
export type ClientProtocol = 'http/1.1' | 'h2' | 'h2c'

export interface ClientExchange {
  /** The access log's `protocol` and the metrics' label. */
  readonly protocol: ClientProtocol
  readonly method: string
  /** The request target; a route's rewrite replaces it before it is forwarded. */
  url: string
  /** [name, value, ...]: Host first on HTTP/2 (from :authority); no pseudo-headers. */
  readonly rawHeaders: readonly string[]
  readonly host: string | undefined
  /** The Connection header (HTTP/1.1 only; HTTP/2 has none). */
  readonly connection: string | undefined
  /** The declared length of the body (-1: none, or unknown). */
  readonly contentLength: number
  readonly remoteAddress: string
  readonly secure: boolean
  readonly localPort: number
  readonly requestId: string
  /** Names lower-cased, repeats joined with ", "; built when first asked. */
  readonly headers: IncomingHttpHeaders
  readonly body: Readable | null
  /** Called once if the client goes away before the answer is complete. */
  onAbort: (() => void) | null
  /** Called when the client side drained after `write` returned false. */
  onDrain: (() => void) | null
  readonly statusCode: number
  readonly bytesOut: number
  readonly headersSent: boolean
  readonly finished: boolean
  readonly destroyed: boolean
  /** A Buffer passed to `write` may still be referenced. */
  readonly writePending: boolean
  /** The head of an instance's answer. */
  writeResponseHead(head: ResponseHead): void
  /** The head of an answer the proxy makes itself; `close` ends an HTTP/1.1 connection after it. */
  writeHead(status: number, headers: Readonly<Record<string, string | number>>, close?: boolean): void
  /** False: wait for `onDrain`. */
  write(chunk: Buffer): boolean
  end(body?: string): void
  /** Tells the client its answer is incomplete (a cut connection, or a reset stream). */
  destroy(): void
  /** The answer's trailers ([name, value, ...], checked), just before `end`; a side that cannot carry them has none. */
  sendTrailers?(trailers: readonly string[]): void
}

/** The HTTP/1.1 Exchange fits as it is (a compile-time check; h1/ does not import this file). */
export type ExchangeIsClientSide = Exchange extends ClientExchange ? true : never
const exchangeIsClientSide: ExchangeIsClientSide = true
void exchangeIsClientSide
