// createProxy: builds every part from a config, wires them in the one direction they know each
// other, and closes them in order.

import { BlockList, isIP } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { SecureContextOptions } from 'node:tls'
import { AdminServer, upstreamsReport } from './ops/admin.js'
import { Balancer } from './balancing/balancer.js'
import { loadConfig, readConfigText } from './config.js'
import type { Cidr, Config, ServiceConfig } from './config.js'
import { ConfigError, ProxyError } from './errors.js'
import { Discovery, ZkSession } from './discovery/index.js'
import type { WarmedServices } from './discovery/index.js'
import { createAccessLog, createLogger } from './log.js'
import { Metrics } from './ops/metrics.js'
import type { MetricsSource } from './ops/metrics.js'
import type { Endpoint } from './discovery/endpoint.js'
import type { AccessLog, Logger } from './log.js'
import { Router, routesOf } from './http/routes.js'
import { ProxyServer } from './http/server.js'
import { Service } from './http/service.js'
import { buildStrategy } from '../strategies/index.js'
import { RoundRobin } from '../strategies/round-robin.js'
import { FleetFollower, readSavedTable, savedTableFile } from './fleet/follower.js'
import type { LiveCheck } from './fleet/follower.js'
import { tableConfig } from './fleet/table-config.js'
import { defaultProxyId } from './fleet/layout.js'
import os from 'node:os'
import process from 'node:process'
import path from 'node:path'
import { loadTlsFiles } from './tls-files.js'

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
  /** `path`: the znode path the list was read from (what applySnapshot checks against). */
  readonly onSnapshot?: (service: string, endpoints: readonly Endpoint[], path: string) => void
  /** What the admin listener's /metrics serves instead of this process's registry (cluster). */
  readonly metricsSource?: MetricsSource
  /** Where access log lines go when `log.access` is on (default: JSON lines on stdout). */
  readonly accessLog?: AccessLog
  /** The file the config came from: what SIGHUP and POST /reload read again. */
  readonly configFile?: string
  /** After a reload was applied (the cluster primary passes it on to the workers). */
  readonly onReload?: (config: Config, text?: string) => void
}

/** What a reload changed, by service name. */
export interface ReloadResult {
  readonly added: string[]
  readonly removed: string[]
  readonly changed: string[]
  readonly unchanged: string[]
}

/** A service's config less what only the router reads (match, routes). */
function withoutRoutes(sc: ServiceConfig): ServiceConfig {
  return { ...sc, match: undefined, routes: undefined }
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
  same('tls', [now.tls === undefined, now.tls?.alpn], [next.tls === undefined, next.tls?.alpn])
  same('h2c', now.h2c, next.h2c)
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
  /**
   * Worker role: a whole snapshot of one service from the primary. With `path`, it is applied only
   * while the service is configured with that path (else kept for a reload that moves it there).
   */
  applySnapshot(service: string, endpoints: readonly Endpoint[], path?: string): void
  /**
   * Hot reload, as a transaction (docs/reload.md): everything is checked and prepared first
   * (restart-only fields, certificate files, strategies, the instances of every added or re-pathed
   * service read from ZooKeeper within `warmingTimeoutMs`), then services, routes, strategies,
   * weights, retry / outlier / health-check options switch at once for new requests; requests in
   * flight finish under the config they started with; no client connection is closed; the
   * ZooKeeper session stays; an unchanged service keeps its live state and run-time overrides
   * survive. A refused reload throws (a ConfigError, or a ProxyError with a statusCode) and
   * changes nothing; it is counted `refused`, an applied one `ok`. Reloads run one at a time, in
   * the order they were asked for: one asked while another runs waits for it, and starts from
   * what it left. `check` (the fleet's live-state check) runs once the instances are read, before
   * the switch: problems it returns refuse the reload as a ConfigError.
   */
  reload(next: Config, check?: LiveCheck): Promise<ReloadResult>
  /**
   * Reads `deps.configFile` again, when its turn comes, and reloads it (SIGHUP, POST /reload).
   * With `text`, that is the file's content as another process read it (a worker following the
   * primary, so both apply the same bytes even if the file changes in between).
   */
  reloadFromFile(text?: string): Promise<ReloadResult>
  readonly services: readonly Service[]
  readonly metrics: Metrics
  /** The fleet follower (docs/fleet.md) when the config has `fleet`, else null. */
  readonly fleet: FleetFollower | null
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

/** The listener's certificate, key and CA as node:tls takes them, read and checked (a ConfigError naming the field). */
async function readTls(t: NonNullable<Config['tls']>): Promise<SecureContextOptions> {
  return { ...(await loadTlsFiles('tls', t)), minVersion: t.minVersion }
}

export async function createProxy(config: Config, deps: ProxyDeps = {}): Promise<ZooProxy> {
  const role = deps.role ?? 'single'
  const logger = deps.logger ?? createLogger(config.log.level)
  // A fleet member starts on the last table it applied, kept beside the snapshot file, so it
  // serves with ZooKeeper out of reach; the follower moves it to the fleet's table once it can read it.
  const fleetConfig = config.fleet
  const baseConfig = config
  const baseDir = deps.configFile === undefined ? process.cwd() : path.dirname(path.resolve(deps.configFile))
  const saveFile = fleetConfig === undefined || config.zookeeper.snapshotFile === undefined ? undefined : savedTableFile(config.zookeeper.snapshotFile)
  let savedTable: string | undefined
  if (fleetConfig !== undefined && saveFile !== undefined) {
    const saved = readSavedTable(saveFile, fleetConfig.path, logger)
    if (saved !== null) {
      try {
        config = await tableConfig(baseConfig, saved.services, baseDir)
        savedTable = saved.table
      } catch (err) {
        logger.warn({ file: saveFile, problems: (err as ConfigError).problems }, 'the saved fleet table no longer passes check; starting without it')
      }
    }
  }
  const random = deps.random ?? Math.random
  const services: Service[] = []
  const balancers: Balancer[] = []
  const metrics = new Metrics()
  const accessLog = config.log.access ? (deps.accessLog ?? createAccessLog()) : undefined
  const buildService = async (sc: ServiceConfig, record = metrics.forService(sc.name)): Promise<Service> => {
    const strategy = await buildStrategy(sc.strategy, { random })
    const balancer = new Balancer({
      service: sc.name,
      strategy,
      fallback: new RoundRobin(random),
      logger,
      weights: sc.weights,
      slowStartMs: sc.slowStartMs,
      outlier: sc.outlier,
    })
    return new Service({ config: sc, balancer, logger, metrics: record, underscoresInHeaders: config.underscoresInHeaders, accessLog })
  }
  for (const sc of config.services) {
    const s = await buildService(sc)
    services.push(s)
    balancers.push(s.balancer)
  }
  let byName = new Map(services.map((s) => [s.name, s]))
  const fed = new Set<string>()
  /**
   * Each service's latest list and the path it was read from, kept even for a name no service has
   * (yet), or one configured with another path: a reload feeds from it when the paths agree.
   */
  const latest = new Map<string, { readonly path: string | undefined; readonly endpoints: readonly Endpoint[] }>()
  const applySnapshot = (name: string, endpoints: readonly Endpoint[], path?: string): void => {
    latest.set(name, { path, endpoints })
    const service = byName.get(name)
    if (service === undefined || (path !== undefined && path !== service.config.path)) return
    service.balancer.update(endpoints)
    fed.add(name)
  }
  let current = config
  const discoveredServices = (c: Config) =>
    c.services.map((s) => ({ name: s.name, path: s.path, keepLastOnEmpty: s.keepLastOnEmpty ?? c.zookeeper.keepLastOnEmpty, massRemoval: c.zookeeper.massRemoval }))
  let session: ZkSession | undefined = deps.session
  const allow = config.upstreams.allow === undefined ? undefined : allowList(config.upstreams.allow)
  const discovery =
    role === 'worker'
      ? null
      : new Discovery({
          session: (session ??= new ZkSession({ connect: config.zookeeper.connect, sessionTimeoutMs: config.zookeeper.sessionTimeoutMs, auth: config.zookeeper.auth, logger })),
          services: discoveredServices(config),
          snapshotFile: config.zookeeper.snapshotFile,
          resyncJitterMs: config.zookeeper.resyncJitterMs,
          admit: allow,
          logger,
          random,
          onSnapshot: (name, endpoints, path) => {
            applySnapshot(name, endpoints, path)
            deps.onSnapshot?.(name, endpoints, path)
          },
        })
  metrics.observe({ discovery, balancers })
  const router = new Router(routesOf(config.services, (name) => byName.get(name)), random)
  const secure = config.tls === undefined ? undefined : await readTls(config.tls)
  const server = role === 'primary' ? null : new ProxyServer(router, logger, {
          limits: { clientBodyTimeoutMs: config.clientBodyTimeoutMs, ...config.limits },
          ...(accessLog === undefined ? {} : { accessLog }),
          ...(secure === undefined ? {} : { tls: secure, alpn: config.tls!.alpn }),
          h2c: config.h2c,
        })
  let closing: Promise<void> | null = null
  const shuttingDown = () => new ProxyError('ZP_ERR_SHUTTING_DOWN', 'the proxy is shutting down; reload refused')

  /**
   * One reload (see ZooProxy.reload), in two phases. Prepare may await and may fail; it touches
   * nothing in use (new services are built aside, new paths read by watchers of their own).
   * Commit is synchronous, so no request can see half of it.
   */
  const apply = async (next: Config, check?: LiveCheck): Promise<ReloadResult> => {
    if (closing !== null) throw shuttingDown()
    const fixed = restartOnly(current, next)
    if (fixed.length > 0) throw new ConfigError(fixed)
    const result: ReloadResult = { added: [], removed: [], changed: [], unchanged: [] }
    const built: { readonly service: Service; readonly old: Service | undefined; commitMetrics(): void }[] = []
    const nextServices: Service[] = []
    let warmed: WarmedServices | null = null
    let nextSecure: SecureContextOptions | undefined
    let nextRouter: Router<Service>
    try {
      if (next.tls !== undefined && server !== null) nextSecure = await readTls(next.tls)
      for (const sc of next.services) {
        const old = byName.get(sc.name)
        // Routes are the router's, not the service's: a canary's new weight keeps both services' pools and state.
        if (old !== undefined && sameJson(withoutRoutes(old.config), withoutRoutes(sc))) {
          nextServices.push(old)
          result.unchanged.push(sc.name)
          continue
        }
        const draft = metrics.draftService(sc.name)
        const s = await buildService(sc, draft.record)
        built.push({ service: s, old, commitMetrics: draft.commit })
        nextServices.push(s)
        if (old === undefined) result.added.push(sc.name)
        else result.changed.push(sc.name)
      }
      // Built before the switch, so a route that cannot be built refuses the reload instead of half-applying it.
      const nextByName = new Map(nextServices.map((s) => [s.name, s]))
      nextRouter = new Router(routesOf(next.services, (name) => nextByName.get(name)), random)
      // The instances of every added or re-pathed service, read before anything routes to it.
      warmed = discovery === null ? null : await discovery.warm(discoveredServices(next), next.warmingTimeoutMs)
      if (closing !== null) throw shuttingDown()
      if (check !== undefined) {
        const read = warmed?.peek()
        const problems = check((name) => {
          const w = read?.get(name)
          if (w !== undefined) return w
          const known = latest.get(name)
          return known !== undefined && known.path === next.services.find((s) => s.name === name)?.path ? known.endpoints : undefined
        })
        if (problems.length > 0) throw new ConfigError(problems)
      }
    } catch (err) {
      warmed?.cancel()
      for (const b of built) void b.service.close().catch(() => {})
      throw err
    }

    // Commit: from here to the end, nothing awaits and nothing is refused.
    for (const [name, endpoints] of warmed?.commit() ?? []) {
      const path = next.services.find((s) => s.name === name)?.path
      latest.set(name, { path, endpoints })
      deps.onSnapshot?.(name, endpoints, path!)
    }
    const replaced: Service[] = []
    for (const { service: s, old, commitMetrics } of built) {
      commitMetrics()
      // The overrides outlive the reload.
      if (old !== undefined) {
        s.balancer.adoptOverrides(old.balancer.overrides)
        replaced.push(old)
      }
      const known = latest.get(s.name)
      if (known !== undefined && (known.path === undefined ? old?.config.path === s.config.path : known.path === s.config.path)) {
        s.balancer.update(known.endpoints)
        fed.add(s.name)
      } else fed.delete(s.name)
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
    server?.setRouter(nextRouter)
    if (nextSecure !== undefined) server?.setSecureContext(nextSecure)
    current = next
    if (role !== 'primary') for (const b of built) b.service.start()
    // Requests in flight on a replaced service finish under its old config, then it closes.
    for (const s of replaced) void s.close().catch(() => {})
    return result
  }

  /** Reloads run one after the other, in the order asked (ZooProxy.reload). */
  let queue: Promise<unknown> = Promise.resolve()
  const serially = (load: () => Promise<{ config: Config; text?: string }>, check?: LiveCheck): Promise<ReloadResult> => {
    const run = queue.then(async () => {
      try {
        const { config: next, text } = await load()
        const result = await apply(next, check)
        metrics.reloaded('ok')
        logger.info({ ...result }, 'config reloaded')
        deps.onReload?.(next, text)
        return result
      } catch (err) {
        metrics.reloaded('refused')
        const why = err instanceof ConfigError ? { problems: err.problems } : { code: (err as ProxyError).code, err: String((err as Error)?.message ?? err) }
        logger.warn(why, 'config reload refused; the running config stays')
        throw err
      }
    })
    queue = run.catch(() => {})
    return run
  }
  const reload = (next: Config, check?: LiveCheck): Promise<ReloadResult> => serially(async () => ({ config: next }), check)
  const reloadFromFile = (text?: string): Promise<ReloadResult> =>
    serially(async () => {
      const file = deps.configFile
      if (file === undefined) throw new ConfigError(['(reload): this proxy was not started from a config file'])
      if (fleetConfig !== undefined) throw new ConfigError(['(reload): this proxy follows a fleet table; change it with zoo-proxy fleet push (docs/fleet.md)'])
      const read = text ?? (await readConfigText(file))
      return { config: await loadConfig(file, read), text: read }
    })

  const admin =
    config.admin === undefined || discovery === null
      ? null
      : new AdminServer({ discovery, services, metrics: deps.metricsSource ?? metrics, token: config.adminToken, reload: reloadFromFile, logger })

  const follower =
    fleetConfig === undefined || discovery === null || session === undefined
      ? null
      : new FleetFollower({
          session,
          root: fleetConfig.path,
          id: fleetConfig.id ?? defaultProxyId(os.hostname(), config.listen.port, process.pid),
          allowOpenAcl: fleetConfig.allowOpenAcl,
          logger,
          build: (services) => tableConfig(baseConfig, services, baseDir),
          apply: (next, check) => reload(next, check),
          ...(saveFile === undefined ? {} : { saveFile }),
          ...(savedTable === undefined ? {} : { applied: savedTable }),
        })
  if (follower !== null) metrics.observeFleet(follower)

  return {
    services,
    metrics,
    fleet: follower,
    applySnapshot,
    reload,
    reloadFromFile,
    get ready() {
      // A fleet member is ready once it serves a table.
      if (follower !== null && follower.serving() === null) return false
      return discovery !== null ? discovery.ready : fed.size === services.length
    },
    async start() {
      follower?.start()
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
        follower?.close()
        await follower?.settled()
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
