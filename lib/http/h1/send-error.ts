// The proxy's own error answer, for every place that refuses or fails a request: the listener
// (routing, shutdown), the service (a failed request), the upgrade tunnel and the front's guard.

import { Buffer } from 'node:buffer'
import type { Exchange } from './exchange.js'

/**
 * A short JSON error body that names the service and the request's ID (also in X-Request-Id);
 * the connection is kept unless asked otherwise.
 */
export function sendError(res: Exchange, status: number, code: string, message: string, service?: string, close = false): void {
  const requestId = res.requestId
  const body = JSON.stringify(service === undefined ? { error: code, message, requestId } : { error: code, service, message, requestId })
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId }, close)
  res.end(body)
}
