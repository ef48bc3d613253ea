// Prometheus metrics (prom-client: the standard Node client, text format, default process
// metrics). One Registry per proxy, never the global one, so two proxies in a process (tests) do
// not share counters. On the request path only pre-bound label children are touched: a counter
// increment and a histogram observation, no label hashing per request.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Balancer } from './balancer.js'
import type { Discovery } from './discovery/index.js'

export type AttemptOutcome = 'ok' | 'connect' | 'reset' | 'timeout' | 'status'

/** What a service reports; all no-ops when metrics are off. */
export interface ServiceMetrics {
  request(status: number, seconds: number): void
  attempt(outcome: AttemptOutcome): void
  retry(): void
  budgetExhausted(): void
}

export const NO_METRICS: ServiceMetrics = {
  request() {},
  attempt() {},
  retry() {},
  budgetExhausted() {},
}

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export class Metrics {
  readonly registry = new Registry()
  readonly #requests = new Counter({
    name: 'zoo_proxy_requests_total',
    help: 'Client requests answered, by service and status code (499: the client went away).',
    labelNames: ['service', 'code'] as const,
    registers: [this.registry],
  })
  readonly #duration = new Histogram({
    name: 'zoo_proxy_request_duration_seconds',
    help: 'Time from a request reaching the proxy to the end of its response, retries included.',
    labelNames: ['service'] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  })
  readonly #attempts = new Counter({
    name: 'zoo_proxy_upstream_attempts_total',
    help: 'Attempts at an upstream instance, by outcome (ok, connect, reset, timeout, status).',
    labelNames: ['service', 'outcome'] as const,
    registers: [this.registry],
  })
  readonly #retries = new Counter({
    name: 'zoo_proxy_retries_total',
    help: 'Requests sent again to another instance.',
    labelNames: ['service'] as const,
    registers: [this.registry],
  })
  readonly #budget = new Counter({
    name: 'zoo_proxy_retry_budget_exhausted_total',
    help: 'Retries refused because the retry budget was spent.',
    labelNames: ['service'] as const,
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'zoo_proxy_' })
  }

  /** Registers the gauges read at scrape time from discovery and the balancers. */
  observe(sources: { readonly discovery: Discovery; readonly balancers: readonly Balancer[] }): void {
    const { discovery, balancers } = sources
    new Gauge({
      name: 'zoo_proxy_instances',
      help: 'Instances known per service, by state (up, draining, ejected, unhealthy).',
      labelNames: ['service', 'state'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        for (const b of balancers) {
          const counts = { up: 0, draining: 0, ejected: 0, unhealthy: 0 }
          for (const h of b.hosts) {
            if (h.endpoint.state === 'draining') counts.draining++
            else if (h.ejectedUntil !== 0) counts.ejected++
            else if (!h.checkHealthy) counts.unhealthy++
            else counts.up++
          }
          for (const [state, n] of Object.entries(counts)) this.set({ service: b.service, state }, n)
        }
      },
    })
    new Gauge({
      name: 'zoo_proxy_in_flight',
      help: 'Requests in flight to upstream instances, per service.',
      labelNames: ['service'] as const,
      registers: [this.registry],
      collect() {
        for (const b of balancers) this.set({ service: b.service }, b.hosts.reduce((a, h) => a + h.inFlight, 0))
      },
    })
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

  /** Label children bound once per service, for the request path. */
  forService(service: string): ServiceMetrics {
    const codes = new Map<number, Counter.Internal>()
    const duration = this.#duration.labels(service)
    const outcomes = new Map<AttemptOutcome, Counter.Internal>()
    const retries = this.#retries.labels(service)
    const budget = this.#budget.labels(service)
    return {
      request: (status, seconds) => {
        let c = codes.get(status)
        if (c === undefined) codes.set(status, (c = this.#requests.labels(service, String(status))))
        c.inc()
        duration.observe(seconds)
      },
      attempt: (outcome) => {
        let c = outcomes.get(outcome)
        if (c === undefined) outcomes.set(outcome, (c = this.#attempts.labels(service, outcome)))
        c.inc()
      },
      retry: () => retries.inc(),
      budgetExhausted: () => budget.inc(),
    }
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
