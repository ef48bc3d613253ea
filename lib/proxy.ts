// createProxy: builds every part from a config, wires them in the one direction they know each
// other, and closes them in order.

import type { AddressInfo } from 'node:net'
import { AdminServer, upstreamsReport } from './admin.js'
import { Balancer } from './balancer.js'
import type { Config } from './config.js'
import { Discovery, ZkSession } from './discovery/index.js'
import { createLogger } from './log.js'
import { Metrics } from './metrics.js'
import type { Logger } from './log.js'
import { Router } from './routes.js'
import { ProxyServer } from './server.js'
import { Service } from './service.js'
import { buildStrategy } from '../strategies/index.js'

export interface ProxyDeps {
  readonly logger?: Logger
  /** Uniform in [0, 1); seeds every strategy. */
  readonly random?: () => number
  /** A ZooKeeper session to use instead of one built from `config.zookeeper`. */
  readonly session?: ZkSession
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
  readonly services: readonly Service[]
}

export async function createProxy(config: Config, deps: ProxyDeps = {}): Promise<ZooProxy> {
  const logger = deps.logger ?? createLogger(config.log.level)
  const random = deps.random ?? Math.random
  const services: Service[] = []
  const balancers: Balancer[] = []
  const metrics = new Metrics()
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
    services.push(new Service({ config: sc, balancer, logger, metrics: metrics.forService(sc.name) }))
  }
  const byName = new Map(services.map((s) => [s.name, s]))
  const session =
    deps.session ?? new ZkSession({ connect: config.zookeeper.connect, sessionTimeoutMs: config.zookeeper.sessionTimeoutMs, logger })
  const discovery = new Discovery({
    session,
    services: config.services.map((s) => ({ name: s.name, path: s.path, keepLastOnEmpty: s.keepLastOnEmpty ?? config.zookeeper.keepLastOnEmpty })),
    snapshotFile: config.zookeeper.snapshotFile,
    resyncJitterMs: config.zookeeper.resyncJitterMs,
    logger,
    random,
    onSnapshot: (name, endpoints) => byName.get(name)?.balancer.update(endpoints),
  })
  metrics.observe({ discovery, balancers })
  const router = new Router(services.map((s) => ({ match: s.config.match, target: s })))
  const server = new ProxyServer(router, logger)
  const admin = config.admin === undefined ? null : new AdminServer({ discovery, services, metrics })
  let closing: Promise<void> | null = null

  return {
    services,
    get ready() {
      return discovery.ready
    },
    async start() {
      discovery.start()
      for (const s of services) s.start()
      const at = await server.listen(config.listen)
      const adminAt = admin === null || config.admin === undefined ? null : await admin.listen(config.admin)
      logger.info(
        { listen: `${at.address}:${at.port}`, admin: adminAt && `${adminAt.address}:${adminAt.port}`, zookeeper: config.zookeeper.connect },
        'zoo-proxy listening',
      )
    },
    close() {
      closing ??= (async () => {
        await server.close(config.shutdownTimeoutMs)
        await Promise.all(services.map((s) => s.close()))
        await discovery.snapshotWritten()
        discovery.close()
        await admin?.close()
        logger.info({}, 'zoo-proxy stopped')
      })()
      return closing
    },
    address() {
      const a = server.address()
      if (a === null) throw new Error('proxy is not listening')
      return a
    },
    adminAddress() {
      return admin?.address() ?? null
    },
    upstreams() {
      return upstreamsReport({ discovery, services })
    },
  }
}
