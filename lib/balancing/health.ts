// Active health checks: GET a path on every instance every `intervalMs`; `unhealthyThreshold`
// failures in a row take it out of rotation, `healthyThreshold` passes in a row put it back.
// Checks go over their own undici Agent, so they neither queue behind traffic nor count as it.
// An instance that speaks HTTP/2 (h2, h2c) is checked over HTTP/2, one node:http2 session per
// check, verified with the same TLS context as its requests: a check must fail when requests would.

import http2 from 'node:http2'
import net from 'node:net'
import tls from 'node:tls'
import { Agent, request } from 'undici'
import type { Balancer, Host } from './balancer.js'
import type { SecureContext } from 'node:tls'
import type { Logger } from '../log.js'
import { joinHostPort } from '../host-port.js'

export interface HealthCheckOptions {
  readonly path: string
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly healthyThreshold: number
  readonly unhealthyThreshold: number
}

/** How an instance is spoken to, as the service's pools decide it (instance-pools.ts). */
export interface InstanceWay {
  readonly protocol: 'http/1.1' | 'h2' | 'h2c'
  readonly tls: boolean
}

type Secure = { readonly context: SecureContext | null; readonly servername: string | undefined }

interface Streak {
  passes: number
  failures: number
  running: boolean
}

export class HealthChecker {
  readonly #balancer: Balancer
  readonly #opts: HealthCheckOptions
  readonly #log: Logger
  readonly #agent: Agent
  readonly #secure: Secure | undefined
  readonly #wayOf: (host: Host) => InstanceWay
  readonly #streaks = new WeakMap<Host, Streak>()
  #timer: NodeJS.Timeout | undefined
  #closed = false

  /**
   * `secure`: how instances that speak TLS are verified, as for requests; `wayOf`: how each one is
   * spoken to (default: HTTP/1.1, TLS when its znode says so).
   */
  constructor(balancer: Balancer, opts: HealthCheckOptions, logger: Logger, secure?: Secure, wayOf?: (host: Host) => InstanceWay) {
    this.#balancer = balancer
    this.#secure = secure
    this.#wayOf = wayOf ?? ((h) => ({ protocol: 'http/1.1', tls: h.endpoint.meta.tls === true }))
    this.#opts = opts
    this.#log = logger.child({ service: balancer.service, component: 'health-check' })
    const tlsOptions = { ...(secure?.context ? { secureContext: secure.context } : {}), ...(secure?.servername === undefined ? {} : { servername: secure.servername }) }
    this.#agent = new Agent({ connections: 1, keepAliveTimeout: opts.intervalMs * 2, connect: { timeout: opts.timeoutMs, ...tlsOptions } })
  }

  start(): void {
    if (this.#timer !== undefined || this.#closed) return
    this.#timer = setInterval(() => this.checkAll(), this.#opts.intervalMs)
    this.#timer.unref()
    this.checkAll()
  }

  /** One round over every instance (instances whose last check still runs are skipped). */
  checkAll(): void {
    for (const host of this.#balancer.hosts) void this.#check(host)
  }

  async #check(host: Host): Promise<void> {
    let streak = this.#streaks.get(host)
    if (streak === undefined) this.#streaks.set(host, (streak = { passes: 0, failures: 0, running: false }))
    if (streak.running) return
    streak.running = true
    let ok = false
    let why = ''
    try {
      const way = this.#wayOf(host)
      const status = way.protocol === 'http/1.1' ? await this.#h1Check(host, way.tls) : await this.#h2Check(host, way.protocol === 'h2')
      ok = status >= 200 && status < 300
      why = `status ${status}`
    } catch (err) {
      why = (err as { code?: string }).code ?? String(err)
    } finally {
      streak.running = false
    }
    if (this.#closed) return
    if (ok) {
      streak.passes++
      streak.failures = 0
      if (!host.checkHealthy && streak.passes >= this.#opts.healthyThreshold) this.#set(host, true, why)
    } else {
      streak.failures++
      streak.passes = 0
      if (host.checkHealthy && streak.failures >= this.#opts.unhealthyThreshold) this.#set(host, false, why)
    }
  }

  async #h1Check(host: Host, secure: boolean): Promise<number> {
    const res = await request(`${secure ? 'https' : 'http'}://${joinHostPort(host.host, host.port)}${this.#opts.path}`, {
      dispatcher: this.#agent,
      headersTimeout: this.#opts.timeoutMs,
      bodyTimeout: this.#opts.timeoutMs,
      headers: { 'user-agent': 'zoo-proxy-health-check' },
    })
    await res.body.dump()
    return res.statusCode
  }

  /**
   * A GET over HTTP/2 on a session of its own, closed after: `secure` is TLS with ALPN h2, verified
   * as requests are (never unverified, no fallback to HTTP/1.1), else h2c with prior knowledge.
   * The whole check, connect to the answer's last byte, is bounded by timeoutMs.
   */
  #h2Check(host: Host, secure: boolean): Promise<number> {
    const s = this.#secure
    let tlsSocket: tls.TLSSocket | undefined
    const createConnection = (): net.Socket => {
      if (!secure) return net.connect({ host: host.host, port: host.port })
      const servername = s?.servername ?? (net.isIP(host.host) === 0 ? host.host : undefined)
      const socket = tls.connect({
        host: host.host,
        port: host.port,
        ALPNProtocols: ['h2'],
        rejectUnauthorized: true,
        ...(s?.context ? { secureContext: s.context } : {}),
        ...(servername === undefined ? {} : { servername }),
      })
      tlsSocket = socket
      return socket
    }
    return new Promise<number>((resolve, reject) => {
      const session = http2.connect(`${secure ? 'https' : 'http'}://${joinHostPort(host.host, host.port)}`, { createConnection })
      // Checked only after node:http2's own 'secureConnect' listener (added by http2.connect) has
      // taken the socket's handle: destroying the socket before that aborts the process (a native
      // assertion in Http2Session::Consume), as in the HTTP/2 pool (h2/upstream-pool.ts).
      const socket = tlsSocket
      socket?.once('secureConnect', () => {
        if (socket.alpnProtocol !== 'h2') socket.destroy(Object.assign(new Error('instance did not negotiate h2'), { code: 'ZP_H2_ALPN' }))
      })
      let status = 0
      let finished = false
      const finish = (err: Error | null): void => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        // Once, and on the next turn: 'end', 'error' and 'close' can run inside node:http2's
        // parsing of the instance's bytes, where destroying the session aborts the process (the
        // rule at the top of h2/session.ts).
        setImmediate(() => session.destroy())
        if (err === null) resolve(status)
        else reject(err)
      }
      const timer = setTimeout(() => finish(Object.assign(new Error('health check timed out'), { code: 'ETIMEDOUT' })), this.#opts.timeoutMs)
      timer.unref()
      session.on('error', finish)
      const stream = session.request({ ':method': 'GET', ':path': this.#opts.path, 'user-agent': 'zoo-proxy-health-check' })
      stream.on('error', finish)
      stream.on('response', (headers) => {
        status = Number(headers[':status'])
      })
      stream.on('end', () => finish(null))
      // Reset or closed short of its end (after 'end' this settles nothing: the promise is settled).
      stream.on('close', () => finish(Object.assign(new Error('stream closed before its end'), { code: 'ZP_H2_CLOSED' })))
      stream.resume()
    })
  }

  #set(host: Host, healthy: boolean, why: string): void {
    host.checkHealthy = healthy
    this.#log[healthy ? 'info' : 'warn']({ instance: joinHostPort(host.host, host.port), last: why }, `health check ${healthy ? 'unhealthy -> healthy' : 'healthy -> unhealthy'}`)
    this.#balancer.refresh()
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#timer)
    await this.#agent.close().catch(() => {})
  }
}
