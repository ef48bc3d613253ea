// How a service's instances that speak TLS are verified (config upstreamTls): one context, made
// once, for pooled connections, upgrade tunnels and health checks alike.

import { readFileSync } from 'node:fs'
import { createSecureContext } from 'node:tls'
import type { SecureContext } from 'node:tls'
import type { ServiceConfig } from '../config.js'

/** A service's way to verify its TLS instances: the context (null: the system's CAs) and the name checked. */
export interface UpstreamTls {
  readonly context: SecureContext | null
  readonly servername: string | undefined
}

/** upstreamTls's files as one shared context (read once, at start); none configured: the system's CAs. */
export function upstreamTlsContext(t: ServiceConfig['upstreamTls']): UpstreamTls {
  if (t === undefined) return { context: null, servername: undefined }
  const context = createSecureContext({
    ca: readFileSync(t.ca),
    ...(t.cert === undefined ? {} : { cert: readFileSync(t.cert) }),
    ...(t.key === undefined ? {} : { key: readFileSync(t.key) }),
  })
  return { context, servername: t.servername }
}
