// How a request that failed is answered: the error's status and code (in gRPC's terms for a gRPC
// call), or a cut connection once part of the answer went out (for gRPC-Web, a trailer frame).

import { ProxyError, isClientGone } from '../errors.js'
import type { Logger } from '../log.js'
import type { ClientExchange } from './client-side.js'
import { sendProxyError } from './grpc/answer.js'
import { failureTrailer } from './grpc/call.js'
import type { GrpcCall } from './grpc/call.js'
import { encodeGrpcMessage, grpcStatusForProxyError } from './grpc/status.js'

/** Answers `res` for `err` on behalf of `service`; nothing when the client is gone. `grpc`: the call `res` answers. */
export function answerFailure(res: ClientExchange, err: unknown, service: string, log: Logger, grpc: GrpcCall | null = null): void {
  if (isClientGone(err)) return
  if (grpc !== null && res.finished) return
  if (grpc !== null && grpc.web && grpc.headSent && !res.destroyed) {
    // gRPC-Web carries its trailers in the body: a failure after the first message is still a status.
    const status = err instanceof ProxyError && err.statusCode !== undefined ? err.statusCode : 502
    res.write(failureTrailer(grpc, grpcStatusForProxyError(err instanceof ProxyError ? err.code : 'ZP_ERR_UPSTREAM_RESET', status), err instanceof ProxyError ? err.message : 'internal error'))
    res.end()
    return
  }
  if (grpc !== null && !grpc.web && grpc.headSent && !res.destroyed && res.sendTrailers !== undefined && !(err instanceof ProxyError && err.code === 'ZP_ERR_UPSTREAM_RESET')) {
    // Native gRPC on HTTP/2 after the first message (a deadline, most often): the status goes in
    // the stream's trailers, as an instance's would. An instance's reset stays a reset (below).
    const status = err instanceof ProxyError && err.statusCode !== undefined ? err.statusCode : 502
    const code = grpcStatusForProxyError(err instanceof ProxyError ? err.code : 'ZP_ERR_UPSTREAM_RESET', status)
    grpc.status = code
    res.sendTrailers(['grpc-status', String(code), 'grpc-message', encodeGrpcMessage(err instanceof ProxyError ? err.message : 'internal error')])
    res.end()
    return
  }
  if (res.headersSent || res.destroyed) {
    // Part of the answer already went out: all we can do is cut the connection, so the client
    // sees a truncated response rather than a wrong one.
    res.destroy()
    return
  }
  const code = err instanceof ProxyError ? err.code : 'ZP_ERR_UPSTREAM_RESET'
  const status = err instanceof ProxyError && err.statusCode !== undefined ? err.statusCode : 502
  if (!(err instanceof ProxyError)) log.error({ err }, 'unexpected error on the request path')
  // A message of our own errors only: an unexpected one's text may name files or internals.
  sendProxyError(res, status, code, err instanceof ProxyError ? err.message : 'internal error', service, false, grpc)
}
