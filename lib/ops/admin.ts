// The admin listener: liveness, readiness, and what the proxy knows of every service.

import { Buffer } from 'node:buffer'
import { timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Discovery } from '../discovery/index.js'
import type { HostPort } from '../config.js'
import type { MetricsSource } from './metrics.js'
import type { Override } from '../balancing/balancer.js'
import { instanceState } from '../balancing/instance-state.js'
import { WEIGHT_MAX, WEIGHT_MIN } from '../discovery/endpoint.js'
import { ConfigError, ProxyError, clientGone, isClientGone } from '../errors.js'
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { STATUS_PAGE } from './status-page.js'
import { listen } from '../listen.js'
import type { Service } from '../http/service.js'

export interface AdminSources {
  readonly discovery: Discovery
  readonly services: readonly Service[]
  readonly metrics?: MetricsSource
  /** Asked as `Authorization: Bearer <token>` on every endpoint but /healthz and /readyz. */
  readonly token?: string
  /** POST /reload: reads the config file again and switches to it (see ZooProxy.reload). */
  readonly reload?: () => Promise<object>
  /** Where the last-resort guard says what threw (default: nowhere). */
  readonly logger?: Logger
}

/** One endpoint of the admin router: a path (`{...}` stands for one segment) and the methods it serves. */
export interface AdminEndpoint {
  readonly path: string
  readonly methods: readonly string[]
  /** Served without the token (liveness and readiness, for probes that hold no secret). */
  readonly open?: true
}

/**
 * The admin router's table: a path not in it is a 404 before any handler runs, so an endpoint is
 * served only once it is listed here, and the token test, which probes every entry, covers it.
 */
export const ADMIN_ENDPOINTS: readonly AdminEndpoint[] = [
  { path: '/', methods: ['GET', 'HEAD'] },
  { path: '/healthz', methods: ['GET', 'HEAD'], open: true },
  { path: '/readyz', methods: ['GET', 'HEAD'], open: true },
  { path: '/upstreams', methods: ['GET', 'HEAD'] },
  { path: '/metrics', methods: ['GET', 'HEAD'] },
  { path: '/reload', methods: ['POST'] },
  { path: '/services/{name}/instances/{host:port}', methods: ['PUT', 'DELETE'] },
]

/** Liveness and readiness stay open to probes (a load balancer, Kubernetes) that hold no secret. */
const OPEN = new Set(ADMIN_ENDPOINTS.filter((e) => e.open === true).map((e) => e.path))

/** Whether `path` is one of ADMIN_ENDPOINTS (a `{...}` segment matches any one non-empty segment). */
function routed(path: string): boolean {
  const parts = path.split('/')
  return ADMIN_ENDPOINTS.some((e) => {
    const want = e.path.split('/')
    return want.length === parts.length && want.every((w, i) => (w.startsWith('{') ? parts[i] !== '' : w === parts[i]))
  })
}

const NOT_FOUND = { error: 'not found', endpoints: ADMIN_ENDPOINTS.map((e) => `${e.methods.join('|')} ${e.path}`) }

/**
 * The Authorization header carries the token, compared in constant time: `Bearer <token>` (curl,
 * Prometheus), or HTTP Basic with the token as the password and any user name, which is what a
 * browser sends after its own login prompt (how the status page is opened when a token is set).
 */
function authorized(header: string | undefined, expected: Buffer): boolean {
  if (header === undefined) return false
  let given: Buffer
  if (/^Bearer /i.test(header)) given = Buffer.from(header.slice(7).trim())
  else if (/^Basic /i.test(header)) {
    const pair = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8')
    const colon = pair.indexOf(':')
    if (colon < 0) return false
    // Trimmed as the token was at load, and as a Bearer value is.
    given = Buffer.from(pair.slice(colon + 1).trim())
  } else return false
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
      warnings: w?.warnings ?? [],
      keptLast: w?.keptLast ?? false,
      held: w?.held ?? 0,
      fromSnapshot: w?.fromSnapshot ?? false,
      stale: !connected || (w?.keptLast ?? false) || (w?.fromSnapshot ?? false),
      dataAgeMs: connected && w?.synced ? 0 : sinceContact,
      instances: s.balancer.hosts.map((h) => ({
        key: h.key,
        host: h.host,
        port: h.port,
        weight: h.weight,
        state: instanceState(h),
        override: h.override,
        // Passing its health (not ejected, not failing its check), whatever an operator chose.
        healthy: h.healthy,
        ejected: h.ejectedUntil !== 0,
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

/** `/services/{name}/instances/{host:port}`. */
const INSTANCE_PATH = /^\/services\/([^/]+)\/instances\/([^/]+)$/

/** A path's %-escapes decoded, or null when one is malformed (`%`, `%zz`, `%C0%AF`: not UTF-8). */
function decodePath(text: string): string | null {
  try {
    return decodeURIComponent(text)
  } catch {
    return null
  }
}

const BAD_ESCAPE = { error: 'bad path', message: 'malformed %-escape in the path: each % needs two hex digits, and the bytes must be UTF-8' }

/** What a PUT may say: a weight (a number WEIGHT_MIN..WEIGHT_MAX), a state, or both; else the field at fault and why. */
function parseOverride(text: string): Override | { field?: string; message: string } {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return { message: 'body must be JSON' }
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { message: 'body must be a JSON object' }
  const { weight, state, ...rest } = body as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) return { field: unknown[0]!, message: `unknown field ${JSON.stringify(unknown[0])} (weight and state are allowed)` }
  if (weight === undefined && state === undefined) return { message: 'give weight, state or both' }
  // The weight range bounds an override as it bounds the znode and the config: 1e308 is refused here.
  if (weight !== undefined && (typeof weight !== 'number' || !(weight >= WEIGHT_MIN && weight <= WEIGHT_MAX))) {
    return { field: 'weight', message: `weight must be a number ${WEIGHT_MIN}-${WEIGHT_MAX}` }
  }
  if (state !== undefined && state !== 'up' && state !== 'draining') return { field: 'state', message: 'state must be "up" or "draining"' }
  return { ...(weight === undefined ? {} : { weight }), ...(state === undefined ? {} : { state }) }
}

/**
 * PUT sets a run-time override of one instance (kept until DELETE, or until the instance leaves
 * ZooKeeper); DELETE clears it. 404 for an unknown service or instance, 400 for a bad body.
 */
async function overrideInstance(src: AdminSources, req: http.IncomingMessage, res: http.ServerResponse, name: string, hostPort: string): Promise<void> {
  if (req.method !== 'PUT' && req.method !== 'DELETE') return json(res, 405, { error: 'method not allowed', allowed: ['PUT', 'DELETE'] })
  const services = src.services.filter((s) => s.name === name)
  if (services.length === 0) return json(res, 404, { error: 'unknown service', service: name })
  if (!services[0]!.balancer.hosts.some((h) => h.hostPort === hostPort)) return json(res, 404, { error: 'unknown instance', service: name, instance: hostPort })
  if (req.method === 'DELETE') {
    for (const s of services) s.balancer.setOverride(hostPort, null)
    return json(res, 200, { service: name, instance: hostPort, override: null })
  }
  const body = await smallBody(req, 4096)
  if (body === null) return json(res, 413, { error: 'body too large' })
  const override = parseOverride(body)
  if ('message' in override) return json(res, 400, { error: 'bad override', ...override })
  for (const s of services) s.balancer.setOverride(hostPort, override)
  json(res, 200, { service: name, instance: hostPort, override })
}

/**
 * A request body as text, or null when it is over `limit` bytes (read to its end all the same, so
 * the answer is not a reset). A promise, so that whatever its reader throws reaches the guard.
 */
function smallBody(req: http.IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size <= limit) chunks.push(c)
    })
    req.once('end', () => resolve(size > limit ? null : Buffer.concat(chunks).toString('utf8')))
    req.once('error', () => reject(clientGone('admin client went away mid-body')))
    req.once('aborted', () => reject(clientGone('admin client went away mid-body')))
  })
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

type AdminHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>

/**
 * The admin listener's last-resort guard: whatever a handler throws, at once or later (a rejected
 * promise), is one 500 with a JSON error (or a cut connection once the answer started) and one log
 * line naming the cause; the process, and the data plane in it, keep serving.
 */
export function guarded(log: Logger, handler: AdminHandler): AdminHandler {
  const failed = (req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void => {
    if (isClientGone(err)) {
      res.destroy()
      return
    }
    log.error({ err, method: req.method, url: req.url }, 'admin handler failed; answered 500')
    if (res.headersSent || res.destroyed) {
      res.destroy()
      return
    }
    try {
      json(res, 500, { error: 'internal error', code: 'ZP_ERR_INTERNAL', message: 'the admin handler failed; the cause is in the log' })
    } catch {
      res.destroy()
    }
  }
  return (req, res) => {
    try {
      const pending = handler(req, res)
      if (pending !== undefined) pending.catch((err: unknown) => failed(req, res, err))
    } catch (err) {
      failed(req, res, err)
    }
  }
}

/**
 * The admin listener's own bounds (found by a hostile review: 23,000 silent connections to it used
 * up the process's file descriptors and took the data plane down for 90 s). It serves a handful of
 * operators and scrapers: a few hundred connections at most (more are closed as they come), and a
 * request must arrive whole, and an idle connection go, well within the front's own limits.
 */
export const ADMIN_MAX_CONNECTIONS = 256
const ADMIN_HEADERS_TIMEOUT_MS = 10_000
const ADMIN_REQUEST_TIMEOUT_MS = 30_000
const ADMIN_IDLE_TIMEOUT_MS = 5_000

export class AdminServer {
  readonly #server: http.Server

  constructor(src: AdminSources) {
    const token = src.token === undefined ? null : Buffer.from(src.token)
    this.#server = http.createServer({ headersTimeout: ADMIN_HEADERS_TIMEOUT_MS, requestTimeout: ADMIN_REQUEST_TIMEOUT_MS, keepAliveTimeout: ADMIN_IDLE_TIMEOUT_MS, connectionsCheckingInterval: 1_000 }, guarded(src.logger ?? silentLogger, (req, res) => {
      const path = (req.url ?? '/').split('?')[0]!
      if (token !== null && !OPEN.has(path) && !authorized(req.headers.authorization, token)) {
        // The status page challenges with Basic, so that a browser asks for the token (as the
        // password) and sends it with the page's own requests; the API endpoints with Bearer.
        res.setHeader('www-authenticate', path === '/' ? 'Basic realm="zoo-proxy admin", charset="UTF-8"' : 'Bearer realm="zoo-proxy admin"')
        return json(res, 401, { error: 'unauthorized', message: 'this endpoint needs Authorization: Bearer <admin token> (or Basic, the token as the password)' })
      }
      if (decodePath(path) === null) return json(res, 400, BAD_ESCAPE)
      if (!routed(path)) return json(res, 404, NOT_FOUND)
      if (path === '/reload') {
        if (req.method !== 'POST') return json(res, 405, { error: 'method not allowed', allowed: ['POST'] })
        if (src.reload === undefined) return json(res, 404, { error: 'reload is not available here' })
        return src.reload().then(
          (changed) => json(res, 200, { reloaded: true, ...changed }),
          // 400: the file is wrong; 503: the proxy could not make it ready in time (ZooKeeper did
          // not answer the warming reads), or is shutting down. Nothing changed in either case.
          (err: unknown) =>
            err instanceof ConfigError
              ? json(res, 400, { reloaded: false, error: 'config refused; the running config stays', problems: err.problems })
              : err instanceof ProxyError && err.statusCode !== undefined
                ? json(res, err.statusCode, { reloaded: false, error: 'reload refused; the running config stays', code: err.code, message: err.message })
                : json(res, 500, { reloaded: false, error: 'reload failed', message: String((err as Error)?.message ?? err) }),
        )
      }
      const instance = INSTANCE_PATH.exec(path)
      if (instance !== null) {
        const name = decodePath(instance[1]!)
        const hostPort = decodePath(instance[2]!)
        if (name === null || hostPort === null) return json(res, 400, BAD_ESCAPE)
        return overrideInstance(src, req, res, name, hostPort)
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' })
      switch (path) {
        case '/': {
          // The status page: static, served whole from here; its script reads /upstreams.
          res.writeHead(200, {
            'content-type': 'text/html; charset=utf-8',
            'content-length': Buffer.byteLength(STATUS_PAGE),
            'cache-control': 'no-store',
            'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
          })
          res.end(req.method === 'HEAD' ? undefined : STATUS_PAGE)
          return
        }
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
          return src.metrics.text().then(
            (text) => {
              res.writeHead(200, { 'content-type': src.metrics!.contentType, 'content-length': Buffer.byteLength(text) })
              res.end(text)
            },
            (err: unknown) => json(res, 500, { error: String(err) }),
          )
        }
        default:
          return json(res, 404, NOT_FOUND)
      }
    }))
    // (headersTimeout also ends a connection that never begins a request; no idle socket timeout
    // beyond it, since a POST /reload may wait up to warmingTimeoutMs for its answer.)
    this.#server.maxConnections = ADMIN_MAX_CONNECTIONS
    // node:http drops a CONNECT without a word when nobody listens for it: a 405 like any method
    // the admin API does not serve.
    this.#server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy())
      socket.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    })
  }

  listen(at: HostPort): Promise<AddressInfo> {
    return listen(this.#server, at.port, at.host)
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
