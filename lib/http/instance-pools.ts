// A service's connection pools, one per instance, and how each instance is reached (plain or TLS).

import type { Host } from '../balancing/balancer.js'
import type { ServiceConfig } from '../config.js'
import { UpstreamClock, UpstreamPool } from './h1/upstream.js'
import type { InstanceTls } from './h1/upstream.js'
import type { UpstreamTls } from './upstream-tls.js'

export class InstancePools {
  readonly #config: ServiceConfig
  /** How instances that speak TLS are verified (upstreamTls), made once for every connection. */
  readonly #tls: UpstreamTls
  /** One pool per instance; a Host is replaced when its address changes, so this follows it. */
  readonly #pools = new Map<Host, UpstreamPool>()
  readonly #clock = new UpstreamClock()

  constructor(config: ServiceConfig, tls: UpstreamTls) {
    this.#config = config
    this.#tls = tls
  }

  /** The pool of `host`, made on first use (and again once a closed one is asked for). */
  get(host: Host): UpstreamPool {
    let pool = this.#pools.get(host)
    if (pool === undefined || pool.closed) {
      const c = this.#config
      pool = new UpstreamPool({
        host: host.host,
        port: host.port,
        connections: c.maxConnectionsPerInstance,
        keepAliveTimeoutMs: c.keepAliveTimeoutMs,
        connectTimeoutMs: c.connectTimeoutMs,
        clock: this.#clock,
        tls: this.instanceTls(host),
      })
      this.#pools.set(host, pool)
    }
    return pool
  }

  /**
   * How `host` is reached: over TLS verified with upstreamTls when it says it speaks TLS (scheme
   * https, Curator sslPort), else plain. Pooled requests and upgrade tunnels both ask here.
   */
  instanceTls(host: Host): InstanceTls {
    return host.endpoint.meta.tls === true ? this.#tls : null
  }

  /** Instances that left: what is queued on their pools finishes, then the pools go. */
  remove(hosts: readonly Host[]): void {
    for (const h of hosts) {
      const pool = this.#pools.get(h)
      if (pool === undefined) continue
      this.#pools.delete(h)
      pool.close().catch(() => {})
    }
  }

  /** Closes every pool, letting requests already queued on them finish. */
  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close().catch(() => {})))
    this.#pools.clear()
    this.#clock.stop()
  }
}
