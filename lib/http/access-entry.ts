// The access log's line for one request (config log.access).

import type { Host } from '../balancing/balancer.js'
import type { AccessEntry } from '../log.js'
import type { ClientExchange } from './client-side.js'
import { joinHostPort } from '../host-port.js'

/** What the access log records of `ex`, answered `status` (and `grpcStatus`, for a gRPC call) after `attempts` attempts, the last at `host`. */
export function accessEntry(service: string | null, ex: ClientExchange, status: number, host: Host | null, attempts: number, durationMs: number, grpcStatus?: number): AccessEntry {
  const entry: AccessEntry = {
    service,
    method: ex.method,
    path: ex.url,
    status,
    instance: host === null ? null : joinHostPort(host.host, host.port),
    attempts,
    durationMs,
    bytesOut: ex.bytesOut,
    requestId: ex.requestId,
    client: ex.remoteAddress,
    protocol: ex.protocol,
  }
  return grpcStatus === undefined ? entry : { ...entry, grpcStatus }
}
