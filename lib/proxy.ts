// createProxy: builds every part from a config, wires them in the one direction they know each
// other, and closes them in order.

import { BlockList, isIP } from 'node:net'
import type { AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import type { SecureContextOptions } from 'node:tls'
import { AdminServer, upstreamsReport } from './ops/admin.js'
import { Balancer } from './balancing/balancer.js'
import { loadConfig } from './config.js'
import type { Cidr, Config, ServiceConfig } from './config.js'
import { ConfigError } from './errors.js'
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
  /** The file the config came from: what SIGHUP and POST /reload read again. */
  readonly configFile?: string
  /** After a reload was applied (the cluster primary passes it on to the workers). */
  readonly onReload?: (config: Config) => void
}

/** What a reload changed, by service name. */
export interface ReloadResult {
  readonly added: string[]
  readonly removed: string[]
  readonly changed: string[]
  readonly unchanged: string[]
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/**
 * What a reload cannot change in place, one line each (empty: it can). The listeners, the
 * workers and the ZooKeeper session stay as they are; so do the client-side limits and logging.
 * Certificate files are re-read, but HTTPS cannot be turned on or off.
 */
function restartOnly(now: Config, next: Config): string[] {
  const out: string[] = []
  const same = (field: string, a: unknown, b: unknown) => {
    if (!sameJson(a, b)) out.push(`${field}: cannot change on a reload (restart to change it)`)
  }
  same('listen', now.listen, next.listen)
  same('admin', [now.admin, now.adminToken], [next.admin, next.adminToken])
  same('workers', now.workers, next.workers)
  same('zookeeper', now.zookeeper, next.zookeeper)
  same('tls', now.tls === undefined, next.tls === undefined)
  same('upstreams', now.upstreams, next.upstreams)
  same('limits', [now.limits, now.clientBodyTimeoutMs, now.underscoresInHeaders], [next.limits, next.clientBodyTimeoutMs, next.underscoresInHeaders])
  same('log', now.log, next.log)
  return out
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
  /**
   * Hot reload: services, routes, strategies, weights, retry / outlier / health-check options
   * switch at once for new requests; requests in flight finish under the config they started
   * with; no client connection is closed; the ZooKeeper session stays; an unchanged service
   * keeps its live state and run-time overrides survive. Throws a ConfigError when `next`
   * changes what needs a restart.
   */
  reload(next: Config): Promise<ReloadResult>
  /** Reads `deps.configFile` again and reloads it (SIGHUP, POST /reload). */
  reloadFromFile(): Promise<ReloadResult>
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
  const buildService = async (sc: ServiceConfig): Promise<Service> => {
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
    return new Service({ config: sc, balancer, logger, metrics: metrics.forService(sc.name), underscoresInHeaders: config.underscoresInHeaders, accessLog })
  }
  for (const sc of config.services) {
    const s = await buildService(sc)
    services.push(s)
    balancers.push(s.balancer)
  }
  let byName = new Map(services.map((s) => [s.name, s]))
  const fed = new Set<string>()
  /** Each service's latest list, kept even for a name no service has (yet): a reload feeds from it. */
  const latest = new Map<string, readonly Endpoint[]>()
  const applySnapshot = (name: string, endpoints: readonly Endpoint[]): void => {
    latest.set(name, endpoints)
    const service = byName.get(name)
    if (service === undefined) return
    service.balancer.update(endpoints)
    fed.add(name)
  }
  let current = config
  const discoveredServices = (c: Config) => c.services.map((s) => ({ name: s.name, path: s.path, keepLastOnEmpty: s.keepLastOnEmpty ?? c.zookeeper.keepLastOnEmpty }))
  const allow = config.upstreams.allow === undefined ? undefined : allowList(config.upstreams.allow)
  const discovery =
    role === 'worker'
      ? null
      : new Discovery({
          session: deps.session ?? new ZkSession({ connect: config.zookeeper.connect, sessionTimeoutMs: config.zookeeper.sessionTimeoutMs, auth: config.zookeeper.auth, logger }),
          services: discoveredServices(config),
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
  let closing: Promise<void> | null = null

  /**
   * Switches to `next` for new requests (see ZooProxy.reload). Throws a ConfigError listing what
   * a reload cannot change in place; nothing changes then.
   */
  const reload = async (next: Config): Promise<ReloadResult> => {
    const fixed = restartOnly(current, next)
    if (fixed.length > 0) throw new ConfigError(fixed)
    const result: ReloadResult = { added: [], removed: [], changed: [], unchanged: [] }
    const nextServices: Service[] = []
    const replaced: Service[] = []
    for (const sc of next.services) {
      const old = byName.get(sc.name)
      if (old !== undefined && sameJson(old.config, sc)) {
        nextServices.push(old)
        result.unchanged.push(sc.name)
        continue
      }
      const s = await buildService(sc)
      if (old !== undefined) {
        // The overrides outlive the reload; the instances are known at once when the path stays.
        s.balancer.adoptOverrides(old.balancer.overrides)
        replaced.push(old)
        result.changed.push(sc.name)
      } else result.added.push(sc.name)
      const known = latest.get(sc.name)
      if (known !== undefined && (old === undefined || old.config.path === sc.path)) {
        s.balancer.update(known)
        fed.add(sc.name)
      } else fed.delete(sc.name)
      nextServices.push(s)
    }
    const names = new Set(next.services.map((s) => s.name))
    for (const s of services) if (!names.has(s.name)) {
      replaced.push(s)
      result.removed.push(s.name)
      fed.delete(s.name)
    }
    // The switch, all at once for new requests: the admin listener and the metrics read these arrays.
    services.splice(0, services.length, ...nextServices)
    balancers.splice(0, balancers.length, ...nextServices.map((s) => s.balancer))
    byName = new Map(services.map((s) => [s.name, s]))
    server?.setRouter(new Router(services.map((s) => ({ match: s.config.match, target: s }))))
    if (next.tls !== undefined) server?.setSecureContext(await readTls(next.tls))
    discovery?.setServices(discoveredServices(next))
    current = next
    if (role !== 'primary') for (const s of nextServices) if (!result.unchanged.includes(s.name)) s.start()
    // Requests in flight on a replaced service finish under its old config, then it closes.
    for (const s of replaced) void s.close().catch(() => {})
    metrics.reloaded('ok')
    logger.info({ ...result }, 'config reloaded')
    deps.onReload?.(next)
    return result
  }
  const reloadFromFile = async (): Promise<ReloadResult> => {
    if (deps.configFile === undefined) throw new ConfigError(['(reload): this proxy was not started from a config file'])
    try {
      return await reload(await loadConfig(deps.configFile))
    } catch (err) {
      metrics.reloaded('refused')
      if (err instanceof ConfigError) logger.warn({ problems: err.problems }, 'config reload refused; the running config stays')
      throw err
    }
  }

  const admin =
    config.admin === undefined || discovery === null
      ? null
      : new AdminServer({ discovery, services, metrics: deps.metricsSource ?? metrics, token: config.adminToken, reload: reloadFromFile, logger })

  return {
    services,
    metrics,
    applySnapshot,
    reload,
    reloadFromFile,
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
