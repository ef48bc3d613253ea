// A service's connection pools, one per instance, and how each instance is reached: its protocol
// (HTTP/1.1, h2 or h2c) and whether over TLS, decided here once for requests, upgrades and health checks.

import type { Host } from '../balancing/balancer.js'
import type { ServiceConfig } from '../config.js'
import { UpstreamClock, UpstreamPool } from './h1/upstream.js'
import type { InstanceTls } from './h1/upstream.js'
import { H2UpstreamPool } from './h2/upstream-pool.js'
import type { Transport, UpstreamProtocol } from './transport.js'
import type { UpstreamTls } from './upstream-tls.js'

export class InstancePools {
  readonly #config: ServiceConfig
  /** How instances that speak TLS are verified (upstreamTls), made once for every connection. */
  readonly #tls: UpstreamTls
  /** One pool per instance; a Host is replaced when its address changes, so this follows it. */
  readonly #pools = new Map<Host, Transport>()
  readonly #clock = new UpstreamClock()

  constructor(config: ServiceConfig, tls: UpstreamTls) {
    this.#config = config
    this.#tls = tls
  }

  /**
   * The pool of `host` for its protocol, made on first use (and again once a closed one is asked
   * for). The HTTP/1.1 pool is a Transport itself: no wrapper on its hot path.
   */
  get(host: Host): Transport {
    let pool = this.#pools.get(host)
    if (pool === undefined || pool.closed) {
      const c = this.#config
      const protocol = this.protocol(host)
      pool =
        protocol === 'http/1.1'
          ? new UpstreamPool({
              host: host.host,
              port: host.port,
              connections: c.maxConnectionsPerInstance,
              keepAliveTimeoutMs: c.keepAliveTimeoutMs,
              connectTimeoutMs: c.connectTimeoutMs,
              clock: this.#clock,
              tls: this.instanceTls(host),
            })
          : new H2UpstreamPool({
              host: host.host,
              port: host.port,
              protocol,
              keepAliveTimeoutMs: c.keepAliveTimeoutMs,
              connectTimeoutMs: c.connectTimeoutMs,
              tls: this.#tls,
            })
      this.#pools.set(host, pool)
    }
    return pool
  }

  /**
   * What `host` speaks: its znode's `protocol` (our format), else the service's upstreamProtocol.
   * The data decides TLS where it says so: an instance reached over TLS (scheme https, a Curator
   * sslPort) under `upstreamProtocol: h2c` speaks h2, since h2c is plain TCP by definition.
   */
  protocol(host: Host): UpstreamProtocol {
    const own = host.endpoint.meta.protocol
    if (own === 'h2' || own === 'h2c' || own === 'http/1.1') return own
    const fallback = this.#config.upstreamProtocol
    return fallback === 'h2c' && host.endpoint.meta.tls === true ? 'h2' : fallback
  }

  /**
   * How `host` is reached: over TLS verified with upstreamTls when it says it speaks TLS (scheme
   * https, Curator sslPort) or speaks h2, else plain. Pooled requests, upgrade tunnels and health
   * checks all ask here.
   */
  instanceTls(host: Host): InstanceTls {
    if (host.endpoint.meta.tls === true) return this.#tls
    return this.protocol(host) === 'h2' ? this.#tls : null
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
