// Prometheus metrics (prom-client: the standard Node client, text format, default process
// metrics). One Registry per proxy, never the global one, so two proxies in a process (tests) do
// not share counters. The request path only bumps plain numbers in a per-service record; they
// become Prometheus counters and a histogram when scraped (prom-client's own observe() hashes its
// labels on every call, which showed in the profile).

import process from 'node:process'
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Balancer } from '../balancing/balancer.js'
import { instanceState } from '../balancing/instance-state.js'
import type { InstanceState } from '../balancing/instance-state.js'
import type { Discovery } from '../discovery/index.js'
import type { ClientProtocol } from '../http/client-side.js'
import type { AttemptOutcome, ServiceMetrics } from '../http/service-metrics.js'

/** Request duration buckets, seconds. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

class ServiceStats implements ServiceMetrics {
  readonly service: string
  readonly codes = new Map<number, number>()
  /** Per bucket, not cumulative; the last slot is +Inf. */
  readonly buckets = new Float64Array(BUCKETS.length + 1)
  sum = 0
  count = 0
  readonly attempts: Record<AttemptOutcome, number> = { ok: 0, connect: 0, reset: 0, timeout: 0, status: 0 }
  retries = 0
  budget = 0
  /** Requests by the protocol the client spoke (zoo_proxy_client_requests_total). */
  readonly protocols: Record<ClientProtocol, number> = { 'http/1.1': 0, h2: 0, h2c: 0 }
  /** gRPC calls by status code, 0-16 (the codes are bounded, so is the map). */
  readonly grpc = new Map<number, number>()

  constructor(service: string) {
    this.service = service
  }

  request(status: number, seconds: number, protocol: ClientProtocol): void {
    this.protocols[protocol]++
    this.codes.set(status, (this.codes.get(status) ?? 0) + 1)
    let i = 0
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++
    this.buckets[i]!++
    this.sum += seconds
    this.count++
  }

  attempt(outcome: AttemptOutcome): void {
    this.attempts[outcome]++
  }

  retry(): void {
    this.retries++
  }

  budgetExhausted(): void {
    this.budget++
  }

  grpcResponse(code: number): void {
    if (Number.isInteger(code) && code >= 0 && code <= 16) this.grpc.set(code, (this.grpc.get(code) ?? 0) + 1)
  }
}

/** What the admin listener's /metrics serves. */
export interface MetricsSource {
  text(): Promise<string>
  readonly contentType: string
}

type Value = { value: number; labels: Record<string, string | number>; metricName?: string }

export class Metrics implements MetricsSource {
  readonly registry = new Registry()
  readonly #stats: ServiceStats[] = []
  readonly #reloads = { ok: 0, refused: 0 }

  #custom(name: string, help: string, type: 'counter' | 'histogram', values: () => Value[]): void {
    this.registry.registerMetric({
      name,
      help,
      type,
      get: async () => ({ name, help, type, values: values(), aggregator: 'sum' }),
    } as never)
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'zoo_proxy_' })
    const each = <T>(f: (s: ServiceStats) => T[]): T[] => this.#stats.flatMap(f)
    this.#custom('zoo_proxy_requests_total', 'Client requests answered, by service and status code (499: the client went away).', 'counter', () =>
      each((s) => [...s.codes].map(([code, n]) => ({ value: n, labels: { service: s.service, code } }))),
    )
    // A series of its own rather than a label on zoo_proxy_requests_total: queries and alerts on
    // that one keep their label set.
    this.#custom('zoo_proxy_client_requests_total', 'Client requests answered, by service and the protocol the client spoke (http/1.1, h2, h2c).', 'counter', () =>
      each((s) => Object.entries(s.protocols).map(([protocol, n]) => ({ value: n, labels: { service: s.service, protocol } }))),
    )
    this.#custom('zoo_proxy_request_duration_seconds', 'Time from a request reaching the proxy to the end of its response, retries included.', 'histogram', () =>
      each((s) => {
        let acc = 0
        const out: Value[] = BUCKETS.map((le, i) => {
          acc += s.buckets[i]!
          return { metricName: 'zoo_proxy_request_duration_seconds_bucket', value: acc, labels: { service: s.service, le } }
        })
        out.push({ metricName: 'zoo_proxy_request_duration_seconds_bucket', value: s.count, labels: { service: s.service, le: '+Inf' } })
        out.push({ metricName: 'zoo_proxy_request_duration_seconds_sum', value: s.sum, labels: { service: s.service } })
        out.push({ metricName: 'zoo_proxy_request_duration_seconds_count', value: s.count, labels: { service: s.service } })
        return out
      }),
    )
    this.#custom('zoo_proxy_upstream_attempts_total', 'Attempts at an upstream instance, by outcome (ok, connect, reset, timeout, status).', 'counter', () =>
      each((s) => Object.entries(s.attempts).map(([outcome, n]) => ({ value: n, labels: { service: s.service, outcome } }))),
    )
    this.#custom('zoo_proxy_grpc_responses_total', 'gRPC calls answered, by service and gRPC status code (0 OK ... 16 UNAUTHENTICATED), the proxy\'s own answers included.', 'counter', () =>
      each((s) => [...s.grpc].map(([code, n]) => ({ value: n, labels: { service: s.service, code } }))),
    )
    this.#custom('zoo_proxy_retries_total', 'Requests sent again to another instance.', 'counter', () =>
      each((s) => [{ value: s.retries, labels: { service: s.service } }]),
    )
    this.#custom('zoo_proxy_config_reloads_total', 'Config reloads (SIGHUP, POST /reload), by result: ok or refused.', 'counter', () =>
      Object.entries(this.#reloads).map(([result, n]) => ({ value: n, labels: { result } })),
    )
    this.#custom('zoo_proxy_retry_budget_exhausted_total', 'Retries refused because the retry budget was spent.', 'counter', () =>
      each((s) => [{ value: s.budget, labels: { service: s.service } }]),
    )
  }

  /** Registers the gauges read at scrape time from discovery and the balancers. */
  observe(sources: { readonly discovery: Discovery | null; readonly balancers: readonly Balancer[] }): void {
    const { discovery, balancers } = sources
    new Gauge({
      name: 'zoo_proxy_instances',
      help: 'Instances known per service, by state (up, draining, drained: weight 0, ejected, unhealthy; override: those with a run-time override).',
      labelNames: ['service', 'state'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        for (const b of balancers) {
          // The states (lib/balancing/instance-state.ts) partition the instances; override counts
          // those with a run-time override besides (their state is the overridden one).
          const counts: Record<InstanceState | 'override', number> = { up: 0, draining: 0, drained: 0, ejected: 0, unhealthy: 0, override: 0 }
          for (const h of b.hosts) {
            if (h.override !== null) counts.override++
            counts[instanceState(h)]++
          }
          for (const [state, n] of Object.entries(counts)) this.set({ service: b.service, state }, n)
        }
      },
    })
    this.#custom('zoo_proxy_ejections_total', 'Instances ejected by outlier detection, per service.', 'counter', () =>
      balancers.map((b) => ({ value: b.ejectionsTotal, labels: { service: b.service } })),
    )
    new Gauge({
      name: 'zoo_proxy_in_flight',
      help: 'Requests in flight to upstream instances, per service.',
      labelNames: ['service'] as const,
      registers: [this.registry],
      collect() {
        for (const b of balancers) this.set({ service: b.service }, b.hosts.reduce((a, h) => a + h.inFlight, 0))
      },
    })
    if (discovery === null) return
    new Gauge({
      name: 'zoo_proxy_zookeeper_connected',
      help: '1 while the ZooKeeper session is connected.',
      registers: [this.registry],
      collect() {
        this.set(discovery.sessionState === 'connected' ? 1 : 0)
      },
    })
    new Gauge({
      name: 'zoo_proxy_zookeeper_sessions',
      help: 'ZooKeeper sessions established since start (more than 1: an expiry was survived).',
      registers: [this.registry],
      collect() {
        this.set(discovery.status().session.sessions)
      },
    })
    new Gauge({
      name: 'zoo_proxy_discovery_age_seconds',
      help: 'How old the instances a service is routed by may be: 0 while ZooKeeper is connected and the service synced, else the time since ZooKeeper last answered.',
      labelNames: ['service'] as const,
      registers: [this.registry],
      collect() {
        const st = discovery.status()
        const live = st.session.state === 'connected'
        // Never heard from ZooKeeper: as old as the process (the snapshot file it serves may be older).
        const since = st.session.lastContactAgoMs === null ? process.uptime() : st.session.lastContactAgoMs / 1000
        for (const [name, s] of Object.entries(st.services)) this.set({ service: name }, live && s.synced ? 0 : since)
      },
    })
    new Gauge({
      name: 'zoo_proxy_zookeeper_data_stale',
      help: '1 for a service served from stale data (session down, keptLast or snapshot file).',
      labelNames: ['service'] as const,
      registers: [this.registry],
      collect() {
        const st = discovery.status()
        for (const [name, s] of Object.entries(st.services)) {
          this.set({ service: name }, st.session.state !== 'connected' || s.keptLast || s.fromSnapshot ? 1 : 0)
        }
      },
    })
  }

  /** The record one service's request path writes to. */
  /** The same record for the same name (a service rebuilt by a reload keeps its counters). */
  forService(service: string): ServiceMetrics {
    let stats = this.#stats.find((s) => s.service === service)
    if (stats === undefined) this.#stats.push((stats = new ServiceStats(service)))
    return stats
  }

  /**
   * The record for a service a reload is building, listed on /metrics only once `commit()` runs,
   * so a refused reload leaves no series behind for a service it would have added.
   */
  draftService(service: string): { readonly record: ServiceMetrics; commit(): void } {
    const found = this.#stats.find((s) => s.service === service)
    if (found !== undefined) return { record: found, commit: () => {} }
    const stats = new ServiceStats(service)
    return {
      record: stats,
      commit: () => {
        if (!this.#stats.some((s) => s.service === service)) this.#stats.push(stats)
      },
    }
  }

  /**
   * The fleet table this proxy serves (docs/fleet.md): `zoo_proxy_fleet_table_info{table, role}`
   * is 1 for it (role `active` or `canary`), and `zoo_proxy_fleet_rejections_total` counts the
   * tables it refused.
   */
  observeFleet(source: { serving(): { readonly table: string; readonly role: string } | null; readonly rejections: number }): void {
    new Gauge({
      name: 'zoo_proxy_fleet_table_info',
      help: 'The fleet table this proxy serves (1), by table and role (active or canary).',
      labelNames: ['table', 'role'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        const s = source.serving()
        if (s !== null) this.set({ table: s.table, role: s.role }, 1)
      },
    })
    this.#custom('zoo_proxy_fleet_rejections_total', 'Fleet tables this proxy refused (it kept serving the one it had).', 'counter', () => [{ value: source.rejections, labels: {} }])
  }

  /** A config reload was applied (`ok`) or refused. */
  reloaded(result: 'ok' | 'refused'): void {
    this.#reloads[result]++
  }

  get contentType(): string {
    return this.registry.contentType
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
