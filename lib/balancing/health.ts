// Active health checks: GET a path on every instance every `intervalMs`; `unhealthyThreshold`
// failures in a row take it out of rotation, `healthyThreshold` passes in a row put it back.
// Checks go over their own undici Agent, so they neither queue behind traffic nor count as it.

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
  readonly #streaks = new WeakMap<Host, Streak>()
  #timer: NodeJS.Timeout | undefined
  #closed = false

  /** `secure`: how instances that speak TLS (meta.tls) are verified, as for requests. */
  constructor(balancer: Balancer, opts: HealthCheckOptions, logger: Logger, secure?: { readonly context: SecureContext | null; readonly servername: string | undefined }) {
    this.#balancer = balancer
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
      const scheme = host.endpoint.meta.tls === true ? 'https' : 'http'
      const res = await request(`${scheme}://${joinHostPort(host.host, host.port)}${this.#opts.path}`, {
        dispatcher: this.#agent,
        headersTimeout: this.#opts.timeoutMs,
        bodyTimeout: this.#opts.timeoutMs,
        headers: { 'user-agent': 'zoo-proxy-health-check' },
      })
      await res.body.dump()
      ok = res.statusCode >= 200 && res.statusCode < 300
      why = `status ${res.statusCode}`
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
