// The proxy's own error answer, for every place that refuses or fails a request: the listener
// (routing, shutdown), the service (a failed request), the upgrade tunnel and the front's guard.

import { Buffer } from 'node:buffer'

/** What an error answer is written to: an HTTP/1.1 exchange, or an HTTP/2 stream's (structurally). */
export interface ErrorTarget {
  readonly requestId: string
  writeHead(status: number, headers: Readonly<Record<string, string | number>>, close?: boolean): void
  end(body?: string): void
}

/**
 * A short JSON error body that names the service and the request's ID (also in X-Request-Id);
 * the connection is kept unless asked otherwise.
 */
export function sendError(res: ErrorTarget, status: number, code: string, message: string, service?: string, close = false): void {
  const requestId = res.requestId
  const body = JSON.stringify(service === undefined ? { error: code, message, requestId } : { error: code, service, message, requestId })
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId }, close)
  res.end(body)
}
