// createProxy: builds every part from a config, wires them in the one direction they know each
// other, and closes them in order.

import { BlockList, isIP } from 'node:net'
import type { AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import type { SecureContextOptions } from 'node:tls'
import { AdminServer, upstreamsReport } from './ops/admin.js'
import { Balancer } from './balancing/balancer.js'
import type { Cidr, Config } from './config.js'
import { Discovery, ZkSession } from './discovery/index.js'
import { createAccessLog, createLogger } from './log.js'
import { Metrics } from './ops/metrics.js'
import type { MetricsSource } from './ops/metrics.js'
import type { Endpoint } from './discovery/endpoint.js'
import type { AccessLog, Logger } from './log.js'
import { Router } from './http/routes.js'
import { ProxyServer } from './http/server.js'
import { Service } from './http/service.js'
import { buildStrategy } from '../strategies/index.js'

export interface ProxyDeps {
  readonly logger?: Logger
  /** Uniform in [0, 1); seeds every strategy. */
  readonly random?: () => number
  /** A ZooKeeper session to use instead of one built from `config.zookeeper`. */
  readonly session?: ZkSession
  /**
   * `single` (default): everything in this process. With `workers: N` the primary process is
   * `primary` (the one ZooKeeper session, discovery and the admin listener; every snapshot also
   * goes to `onSnapshot`) and each worker is `worker` (the request path only, fed by applySnapshot).
   */
  readonly role?: 'single' | 'primary' | 'worker'
  readonly onSnapshot?: (service: string, endpoints: readonly Endpoint[]) => void
  /** What the admin listener's /metrics serves instead of this process's registry (cluster). */
  readonly metricsSource?: MetricsSource
  /** Where access log lines go when `log.access` is on (default: JSON lines on stdout). */
  readonly accessLog?: AccessLog
}

export interface ZooProxy {
  /** Binds the listeners and starts discovery. Resolves once listening (not once ready). */
  start(): Promise<void>
  /** Ordered, idempotent: stop accepting, drain, close upstream pools, close the session. */
  close(): Promise<void>
  readonly ready: boolean
  address(): AddressInfo
  adminAddress(): AddressInfo | null
  upstreams(): object
  /** Worker role: a whole snapshot of one service from the primary. */
  applySnapshot(service: string, endpoints: readonly Endpoint[]): void
  readonly services: readonly Service[]
  readonly metrics: Metrics
}

/**
 * upstreams.allow as a discovery filter (node:net's BlockList holds the CIDRs): an instance must
 * have an IP address inside one of them. A host name is refused too: what it resolves to cannot
 * be held to the list, and a poisoned znode must not point the proxy at internal addresses.
 */
function allowList(cidrs: readonly Cidr[]): (e: Endpoint) => string | null {
  const list = new BlockList()
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family)
  return (e) => {
    const version = isIP(e.host)
    if (version === 0) return `host ${e.host} is not an IP address, and upstreams.allow is set`
    return list.check(e.host, version === 6 ? 'ipv6' : 'ipv4') ? null : `address ${e.host} is outside upstreams.allow`
  }
}

/** The listener's certificate, key and CA as node:tls takes them (files read at start). */
async function readTls(t: NonNullable<Config['tls']>): Promise<SecureContextOptions> {
  const [cert, key, ca] = await Promise.all([readFile(t.cert), readFile(t.key), t.ca === undefined ? undefined : readFile(t.ca)])
  return { cert, key, ...(ca === undefined ? {} : { ca }), minVersion: t.minVersion }
}

export async function createProxy(config: Config, deps: ProxyDeps = {}): Promise<ZooProxy> {
  const role = deps.role ?? 'single'
  const logger = deps.logger ?? createLogger(config.log.level)
  const random = deps.random ?? Math.random
  const services: Service[] = []
  const balancers: Balancer[] = []
  const metrics = new Metrics()
  const accessLog = config.log.access ? (deps.accessLog ?? createAccessLog()) : undefined
  for (const sc of config.services) {
    const strategy = await buildStrategy(sc.strategy, { random })
    const balancer = new Balancer({
      service: sc.name,
      strategy,
      logger,
      random,
      weights: sc.weights,
      slowStartMs: sc.slowStartMs,
      outlier: sc.outlier,
    })
    balancers.push(balancer)
    services.push(new Service({ config: sc, balancer, logger, metrics: metrics.forService(sc.name), underscoresInHeaders: config.underscoresInHeaders, accessLog }))
  }
  const byName = new Map(services.map((s) => [s.name, s]))
  const fed = new Set<string>()
  const applySnapshot = (name: string, endpoints: readonly Endpoint[]): void => {
    const service = byName.get(name)
    if (service === undefined) return
    service.balancer.update(endpoints)
    fed.add(name)
  }
  const allow = config.upstreams.allow === undefined ? undefined : allowList(config.upstreams.allow)
  const discovery =
    role === 'worker'
      ? null
      : new Discovery({
          session: deps.session ?? new ZkSession({ connect: config.zookeeper.connect, sessionTimeoutMs: config.zookeeper.sessionTimeoutMs, auth: config.zookeeper.auth, logger }),
          services: config.services.map((s) => ({ name: s.name, path: s.path, keepLastOnEmpty: s.keepLastOnEmpty ?? config.zookeeper.keepLastOnEmpty })),
          snapshotFile: config.zookeeper.snapshotFile,
          resyncJitterMs: config.zookeeper.resyncJitterMs,
          admit: allow,
          logger,
          random,
          onSnapshot: (name, endpoints) => {
            applySnapshot(name, endpoints)
            deps.onSnapshot?.(name, endpoints)
          },
        })
  metrics.observe({ discovery, balancers })
  const router = new Router(services.map((s) => ({ match: s.config.match, target: s })))
  const secure = config.tls === undefined ? undefined : await readTls(config.tls)
  const server = role === 'primary' ? null : new ProxyServer(router, logger, {
          limits: { clientBodyTimeoutMs: config.clientBodyTimeoutMs, ...config.limits },
          ...(accessLog === undefined ? {} : { accessLog }),
          ...(secure === undefined ? {} : { tls: secure }),
          underscoresInHeaders: config.underscoresInHeaders,
        })
  const admin =
    config.admin === undefined || discovery === null ? null : new AdminServer({ discovery, services, metrics: deps.metricsSource ?? metrics, token: config.adminToken })
  let closing: Promise<void> | null = null

  return {
    services,
    metrics,
    applySnapshot,
    get ready() {
      return discovery !== null ? discovery.ready : fed.size === services.length
    },
    async start() {
      discovery?.start()
      if (role !== 'primary') for (const s of services) s.start()
      const at = server === null ? null : await server.listen(config.listen)
      const adminAt = admin === null || config.admin === undefined ? null : await admin.listen(config.admin)
      logger.info(
        { role, listen: at && `${at.address}:${at.port}`, admin: adminAt && `${adminAt.address}:${adminAt.port}`, zookeeper: config.zookeeper.connect },
        'zoo-proxy listening',
      )
    },
    close() {
      closing ??= (async () => {
        await server?.close(config.shutdownTimeoutMs)
        await Promise.all(services.map((s) => s.close()))
        await discovery?.snapshotWritten()
        discovery?.close()
        await admin?.close()
        logger.info({ role }, 'zoo-proxy stopped')
      })()
      return closing
    },
    address() {
      const a = server?.address() ?? null
      if (a === null) throw new Error('proxy is not listening')
      return a
    },
    adminAddress() {
      return admin?.address() ?? null
    },
    upstreams() {
      return discovery === null ? {} : upstreamsReport({ discovery, services })
    },
  }
}
