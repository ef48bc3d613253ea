// The proxy's own answers to a gRPC call (issue 27): a trailers-only response (HTTP 200, the
// call's content-type, grpc-status and grpc-message in the head), never a JSON body, which no gRPC
// client could read. Every place that renders a proxy error asks here first.

import { rawHeader } from '../h1/headers.js'
import type { ClientExchange } from '../client-side.js'
import { sendError } from '../h1/send-error.js'
import { GrpcCall } from './call.js'
import type { GrpcCorsConfig } from './call.js'
import { grpcKind, grpcStatusForProxyError } from './status.js'

/**
 * The gRPC call `ex` is, or null; the header object (built on first use) is only asked for when
 * the content-type says gRPC, so other requests pay one scan of their raw headers.
 */
export function grpcCallOf(ex: ClientExchange, cors?: GrpcCorsConfig): GrpcCall | null {
  const type = rawHeader(ex.rawHeaders, 'content-type')
  if (type === undefined || grpcKind(type) === null) return null
  return GrpcCall.of(ex.headers, cors)
}

/**
 * A trailers-only answer for a failure of `call` with the proxy's error `code` (HTTP `status` it
 * would have had); `close`: the connection closes after it, as the JSON error's would.
 */
export function sendGrpcError(ex: ClientExchange, call: GrpcCall, status: number, code: string, message: string, close = false): void {
  const pairs = call.trailersOnlyPairs(grpcStatusForProxyError(code, status), message, ['x-request-id', ex.requestId])
  const headers: Record<string, string> = { 'content-length': '0' }
  for (let i = 0; i + 1 < pairs.length; i += 2) headers[pairs[i]!] = pairs[i + 1]!
  ex.writeHead(200, headers, close)
  ex.end()
}

/** sendError, but a trailers-only gRPC answer when `ex` is a gRPC call (the same arguments). */
export function sendProxyError(ex: ClientExchange, status: number, code: string, message: string, service?: string, close = false, call: GrpcCall | null = grpcCallOf(ex)): void {
  if (call !== null) sendGrpcError(ex, call, status, code, message, close)
  else sendError(ex, status, code, message, service, close)
}
