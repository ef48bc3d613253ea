// The admin listener: liveness, readiness, and what the proxy knows of every service.

import { Buffer } from 'node:buffer'
import { timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Discovery } from '../discovery/index.js'
import type { HostPort } from '../config.js'
import type { MetricsSource } from './metrics.js'
import { listen } from '../http/server.js'
import type { Service } from '../http/service.js'

export interface AdminSources {
  readonly discovery: Discovery
  readonly services: readonly Service[]
  readonly metrics?: MetricsSource
  /** Asked as `Authorization: Bearer <token>` on every endpoint but /healthz and /readyz. */
  readonly token?: string
}

/** Liveness and readiness stay open to probes (a load balancer, Kubernetes) that hold no secret. */
const OPEN = new Set(['/healthz', '/readyz'])

/** The Authorization header carries the token; compared in constant time. */
function authorized(header: string | undefined, expected: Buffer): boolean {
  if (header === undefined || !/^Bearer /i.test(header)) return false
  const given = Buffer.from(header.slice(7).trim())
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/** The body of `GET /upstreams`. */
export function upstreamsReport(src: AdminSources): object {
  const status = src.discovery.status()
  const connected = status.session.state === 'connected'
  // How old the data may be: live while the session is up; else since ZooKeeper last answered.
  const sinceContact = status.session.lastContactAgoMs
  const services: Record<string, object> = {}
  for (const s of src.services) {
    const w = status.services[s.name]
    services[s.name] = {
      path: s.config.path,
      strategy: s.config.strategy.name ?? s.config.strategy.module,
      synced: w?.synced ?? false,
      pathExists: w?.pathExists ?? false,
      lastSyncAgoMs: w?.lastSyncAt == null ? null : Date.now() - w.lastSyncAt,
      skipped: w?.skipped ?? [],
      keptLast: w?.keptLast ?? false,
      fromSnapshot: w?.fromSnapshot ?? false,
      stale: !connected || (w?.keptLast ?? false) || (w?.fromSnapshot ?? false),
      dataAgeMs: connected && w?.synced ? 0 : sinceContact,
      instances: s.balancer.hosts.map((h) => ({
        key: h.key,
        host: h.host,
        port: h.port,
        weight: h.weight,
        state: h.endpoint.state,
        healthy: h.eligible,
        inFlight: h.inFlight,
        requests: h.requests,
        failures: h.failures,
        latencyEwmaMs: Math.round(h.latencyEwmaMs * 100) / 100,
        format: h.endpoint.meta.format,
        scheme: h.endpoint.meta.tls === true ? 'https' : 'http',
      })),
    }
  }
  return { ready: src.discovery.ready, session: status.session.state, zookeeper: status.session, services }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

export class AdminServer {
  readonly #server: http.Server

  constructor(src: AdminSources) {
    const token = src.token === undefined ? null : Buffer.from(src.token)
    this.#server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!
      if (token !== null && !OPEN.has(path) && !authorized(req.headers.authorization, token)) {
        res.setHeader('www-authenticate', 'Bearer realm="zoo-proxy admin"')
        return json(res, 401, { error: 'unauthorized', message: 'this endpoint needs Authorization: Bearer <admin token>' })
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' })
      switch (path) {
        case '/healthz':
          return json(res, 200, { status: 'ok' })
        case '/readyz': {
          const ready = src.discovery.ready
          const waiting = Object.entries(src.discovery.status().services)
            .filter(([, s]) => !s.synced)
            .map(([name]) => name)
          return json(res, ready ? 200 : 503, { ready, waiting })
        }
        case '/upstreams':
          return json(res, 200, upstreamsReport(src))
        case '/metrics': {
          if (src.metrics === undefined) return json(res, 404, { error: 'metrics are off' })
          src.metrics.text().then(
            (text) => {
              res.writeHead(200, { 'content-type': src.metrics!.contentType, 'content-length': Buffer.byteLength(text) })
              res.end(text)
            },
            (err: unknown) => json(res, 500, { error: String(err) }),
          )
          return
        }
        default:
          return json(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/upstreams', '/metrics'] })
      }
    })
  }

  listen(at: HostPort): Promise<AddressInfo> {
    return listen(this.#server, at)
  }

  address(): AddressInfo | null {
    return this.#server.address() as AddressInfo | null
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
    })
  }
}
