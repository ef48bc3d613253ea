// One service's instances with their live figures, and the act of picking one.
//
// The balancer decides what *may* be picked (up, weight > 0, not tried by this request) and hands
// that to the strategy, which decides *which*. Load is counted around a request's whole life: a
// lease is taken before the first byte goes out and released exactly once, on success or failure.
// What an outcome says about an instance (latency, failures, ejection, probation) is outlier
// detection's to decide (outlier-detection.ts); the balancer records each outcome there.

import { performance } from 'node:perf_hooks'
import type { Candidate, PickContext, RequestInfo, Strategy } from '../../strategies/strategy.js'
import { clampWeight } from '../discovery/endpoint.js'
import type { Endpoint } from '../discovery/endpoint.js'
import type { Logger } from '../log.js'
import { joinHostPort } from '../host-port.js'
import { OutlierDetection } from './outlier-detection.js'
import type { OutlierDetector, OutlierHost, OutlierOptions, Outcome } from './outlier-detection.js'

/** Whether two endpoints of one instance are reached the same way (the pool keyed by its Host stays valid). */
function sameWay(a: Endpoint, b: Endpoint): boolean {
  return a.meta.tls === b.meta.tls && a.meta.protocol === b.meta.protocol
}

// The request path names a lease's outcome through the balancer, whose lease takes it.
export type { Outcome } from './outlier-detection.js'

/**
 * An instance and its live figures. Strategies see it through the Candidate interface; the
 * passive-health figures are written by outlier detection only.
 */
export class Host implements Candidate, OutlierHost {
  readonly key: string
  endpoint: Endpoint
  /** Weight before slow start: the config override for `host:port`, else the znode's. */
  baseWeight: number
  inFlight = 0
  latencyEwmaMs = 0
  requests = 0
  failures = 0
  consecutiveFailures = 0
  /** Passive health: ejected until this Date.now() time (0: not ejected). */
  ejectedUntil = 0
  /** How many times it was ejected; multiplies the next ejection's length. */
  ejections = 0
  /** When it last came back from probation (0: never ejected). */
  healthySince = 0
  /** Back from an ejection: one request at a time until one succeeds. */
  probing = false
  /** Active health: false once the health check failed `unhealthyThreshold` times in a row. */
  checkHealthy = true
  /** Slow start: the ramp ends at this `#now()` time (0: no ramp). */
  #rampUntil = 0
  #rampMs = 0
  readonly #now: () => number

  /** `now`: the slow-start ramp's clock, in ms; default performance.now. */
  constructor(endpoint: Endpoint, baseWeight: number, now: () => number = () => performance.now()) {
    this.key = endpoint.key
    this.endpoint = endpoint
    this.baseWeight = baseWeight
    this.#now = now
  }

  get host(): string {
    return this.endpoint.host
  }

  get port(): number {
    return this.endpoint.port
  }

  /** Effective weight: during slow start it ramps linearly from 10% to 100% of the base weight. */
  get weight(): number {
    if (this.#rampUntil === 0) return this.baseWeight
    const left = this.#rampUntil - this.#now()
    if (left <= 0) {
      this.#rampUntil = 0
      return this.baseWeight
    }
    return this.baseWeight * (0.1 + 0.9 * (1 - left / this.#rampMs))
  }

  startRamp(ms: number): void {
    this.#rampMs = ms
    this.#rampUntil = this.#now() + ms
  }

  /** Not ejected and passing its health check (when one is configured). */
  get healthy(): boolean {
    return this.ejectedUntil === 0 && this.checkHealthy
  }

  /** Set at run time on the admin listener (PUT /services/{name}/instances/{host:port}); wins over ZooKeeper and config. */
  override: Override | null = null

  /** `host:port` (`[v6]:port`), as the admin listener and `weights` name an instance. */
  get hostPort(): string {
    return joinHostPort(this.endpoint.host, this.endpoint.port)
  }

  /** up or draining: the override's, else ZooKeeper's. */
  get state(): 'up' | 'draining' {
    return this.override?.state ?? this.endpoint.state
  }

  /** Up and weighted above 0: may get new requests when healthy (or in panic mode). */
  get routable(): boolean {
    return this.state === 'up' && this.baseWeight > 0
  }

  /** May get new requests. */
  get eligible(): boolean {
    return this.routable && this.healthy
  }
}

/** A run-time override of an instance (weight, state, or both). */
export interface Override {
  readonly weight?: number
  readonly state?: 'up' | 'draining'
}

export class Lease {
  readonly host: Host
  readonly #balancer: Balancer
  #released = false

  constructor(balancer: Balancer, host: Host) {
    this.#balancer = balancer
    this.host = host
  }

  release(outcome: Outcome): void {
    if (this.#released) return
    this.#released = true
    this.#balancer.settle(this.host, outcome)
  }
}

export interface BalancerOptions {
  readonly service: string
  /** Per-instance weight overrides by `host:port`. */
  readonly weights?: Readonly<Record<string, number>>
  /** New instances ramp from 10% to 100% of their weight over this long (0: off). */
  readonly slowStartMs?: number
  readonly outlier?: OutlierOptions
  /** Time in ms for ejections and the slow-start ramp (tests); default Date.now and performance.now. */
  readonly clock?: () => number
  readonly strategy: Strategy
  /**
   * Picks instead when the strategy throws or returns something that is not a candidate; must not
   * throw itself. The proxy gives round-robin, which the warning names.
   */
  readonly fallback: Strategy
  readonly logger: Logger
}

export class Balancer {
  readonly service: string
  readonly #strategy: Strategy
  readonly #weights: Readonly<Record<string, number>>
  readonly #slowStartMs: number
  readonly #rampClock: (() => number) | undefined
  readonly #outliers: OutlierDetector
  /** Run-time overrides by host:port, kept until cleared or until the instance leaves ZooKeeper. */
  readonly #overrides = new Map<string, Override>()
  #updates = 0
  /** Hosts on probation; while any is, candidates are filtered per request. */
  #probing = 0
  readonly #fallback: Strategy
  readonly #log: Logger
  readonly #hosts = new Map<string, Host>()
  /** Every host, sorted by key. */
  #all: readonly Host[] = []
  /** The hosts that may get new requests, sorted by key; rebuilt on every membership or state change. */
  #eligible: readonly Host[] = []
  #warnedStrategy = false
  /** Called with the hosts that left, so their connection pools can be closed. */
  onRemoved: ((hosts: readonly Host[]) => void) | undefined

  constructor(opts: BalancerOptions) {
    this.service = opts.service
    this.#strategy = opts.strategy
    this.#weights = opts.weights ?? {}
    this.#slowStartMs = opts.slowStartMs ?? 0
    this.#rampClock = opts.clock
    this.#fallback = opts.fallback
    this.#log = opts.logger.child({ service: opts.service })
    const pool = { hosts: () => this.#all, isMember: (h: OutlierHost) => this.#hosts.has(h.key), changed: () => this.refresh() }
    this.#outliers = new OutlierDetection(pool, { outlier: opts.outlier, clock: opts.clock ?? Date.now, logger: this.#log })
  }

  /** Ejections since start, every instance together (zoo_proxy_ejections_total). */
  get ejectionsTotal(): number {
    return this.#outliers.ejectionsTotal
  }

  /** Replaces the membership with a whole snapshot; figures of instances that stay are kept. */
  update(endpoints: readonly Endpoint[]): void {
    const next = new Map<string, Host>()
    // The first snapshot is the fleet as it is, not newcomers: no slow start for it.
    const ramp = this.#updates++ > 0 ? this.#slowStartMs : 0
    const present = new Set<string>()
    for (const e of endpoints) {
      const existing = this.#hosts.get(e.key)
      const at = joinHostPort(e.host, e.port)
      present.add(at)
      const override = this.#overrides.get(at) ?? null
      const weight = this.#baseWeight(at, override, e)
      // Same key at a new address, or now spoken to another way (TLS, protocol), is a new
      // instance to the transport (a new pool); only weight and state changes keep the live figures.
      if (existing && existing.host === e.host && existing.port === e.port && sameWay(existing.endpoint, e)) {
        existing.endpoint = e
        existing.baseWeight = weight
        existing.override = override
        next.set(e.key, existing)
      } else {
        const h = new Host(e, weight, this.#rampClock)
        if (ramp > 0) h.startRamp(ramp)
        h.override = override
        next.set(e.key, h)
      }
    }
    // An override lasts as long as its instance is in ZooKeeper.
    for (const at of this.#overrides.keys()) if (!present.has(at)) this.#overrides.delete(at)
    const removed: Host[] = []
    for (const [key, h] of this.#hosts) if (next.get(key) !== h) removed.push(h)
    this.#hosts.clear()
    for (const [k, h] of next) this.#hosts.set(k, h)
    this.#all = [...next.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    this.refresh()
    if (removed.length > 0) this.onRemoved?.(removed)
  }

  /** The run-time overrides, by host:port (a reload hands them to the service's new balancer). */
  get overrides(): ReadonlyMap<string, Override> {
    return this.#overrides
  }

  /** Takes over another balancer's overrides; applied with the next update(). */
  adoptOverrides(from: ReadonlyMap<string, Override>): void {
    for (const [at, o] of from) this.#overrides.set(at, o)
  }

  /**
   * Sets (or, with null, clears) the run-time override of the instance at `hostPort`; false when
   * no instance of this service is there. Takes effect for the next pick.
   */
  setOverride(hostPort: string, override: Override | null): boolean {
    const hosts = this.#all.filter((h) => h.hostPort === hostPort)
    if (hosts.length === 0) return false
    if (override === null) this.#overrides.delete(hostPort)
    else this.#overrides.set(hostPort, override)
    for (const h of hosts) {
      h.override = override
      h.baseWeight = this.#baseWeight(hostPort, override, h.endpoint)
    }
    this.refresh()
    this.#log.info({ instance: hostPort, override }, override === null ? 'override cleared' : 'override set')
    return true
  }

  /**
   * The override's weight, else the config's for `host:port`, else the znode's. Each is bounded
   * where it enters (admin 400, config exit 2, codec clamp); clamped here once more so that a
   * caller of this class (an embedding, a test) cannot hand a strategy a weight outside the range.
   */
  #baseWeight(hostPort: string, override: Override | null, e: Endpoint): number {
    return clampWeight(override?.weight ?? this.#weights[hostPort] ?? e.weight)
  }

  /** Recomputes who may get new requests; call after any change of health. */
  refresh(): void {
    this.#eligible = this.#all.filter((h) => h.eligible)
    this.#probing = 0
    for (const h of this.#all) if (h.probing) this.#probing++
  }

  /** True when no instance is healthy but some could take traffic: route to all of them. */
  get panic(): boolean {
    return this.#eligible.length === 0 && this.#all.some((h) => h.routable)
  }

  get hosts(): readonly Host[] {
    return this.#all
  }

  /** The request's affinity key, when the strategy uses one (consistent-hash). */
  hashKey(req: RequestInfo): string | undefined {
    return this.#strategy.hashKey?.(req)
  }

  get usesHashKey(): boolean {
    return typeof this.#strategy.hashKey === 'function'
  }

  /** Picks an instance not in `tried`, or returns null when there is none. */
  acquire(tried: ReadonlySet<string> | null, ctx: PickContext): Lease | null {
    let candidates = this.#eligible
    // Panic mode (Envoy's panic threshold at 0%): when every routable instance is ejected or
    // failing its health check, spread over all of them rather than fail every request.
    if (candidates.length === 0) candidates = this.#all.filter((h) => h.routable)
    const retry = tried !== null && tried.size > 0
    if (retry || this.#probing > 0) {
      candidates = candidates.filter((h) => !(tried !== null && tried.has(h.key)) && !(h.probing && h.inFlight > 0))
      // A first attempt that finds nothing only because the one healthy instance is on probation
      // with its probe in flight (the others ejected) goes to any routable instance, as in panic
      // mode, rather than a 503 while instances exist. (A retry keeps to healthy instances.)
      if (candidates.length === 0 && !retry) candidates = this.#all.filter((h) => h.routable)
    }
    if (candidates.length === 0) return null
    const host = candidates.length === 1 ? candidates[0]! : this.#pick(candidates, ctx)
    host.inFlight++
    host.requests++
    return new Lease(this, host)
  }

  /** Whether another attempt could find an instance this request has not tried. */
  hasUntried(tried: ReadonlySet<string>): boolean {
    const pool = this.#eligible.length > 0 ? this.#eligible : this.#all
    for (const h of pool) if (h.routable && !tried.has(h.key) && !(h.probing && h.inFlight > 0)) return true
    return false
  }

  #pick(candidates: readonly Host[], ctx: PickContext): Host {
    let picked: Candidate | undefined
    try {
      picked = this.#strategy.pick(candidates, ctx)
    } catch (err) {
      this.#warnStrategy(`pick threw: ${(err as Error)?.message ?? String(err)}`)
      return this.#fallback.pick(candidates, ctx) as Host
    }
    if (candidates.includes(picked as Host)) return picked as Host
    this.#warnStrategy('pick returned something that is not one of the candidates')
    return this.#fallback.pick(candidates, ctx) as Host
  }

  #warnStrategy(problem: string): void {
    if (this.#warnedStrategy) return
    this.#warnedStrategy = true
    this.#log.warn({ problem }, 'strategy failed, falling back to round-robin for such requests (warned once)')
  }

  /** Called by Lease.release only. */
  settle(host: Host, outcome: Outcome): void {
    host.inFlight--
    this.#outliers.record(host, outcome)
  }

  close(): void {
    this.#outliers.close()
  }
}
