// How a request that failed is answered: the error's status and code, or a cut connection once
// part of the answer went out.

import { ProxyError, isClientGone } from '../errors.js'
import type { Logger } from '../log.js'
import type { ClientExchange } from './client-side.js'
import { sendError } from './h1/send-error.js'

/** Answers `res` for `err` on behalf of `service`; nothing when the client is gone. */
export function answerFailure(res: ClientExchange, err: unknown, service: string, log: Logger): void {
  if (isClientGone(err)) return
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
  sendError(res, status, code, err instanceof ProxyError ? err.message : 'internal error', service)
}
