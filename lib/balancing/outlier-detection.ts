// Outlier detection: each instance's latency and failure figures, fed by the outcome of every
// request, and the passive-health decisions made from them: ejection, its length and multiplier,
// the cap on how many may be out, the probation timer and the probe that ends it.
//
// Its own unit, as in grpc-js (load-balancer-outlier-detection.ts, a policy wrapping its child) and
// Envoy (an outlier detector beside the load balancer): the balancer owns membership and the pick,
// records each outcome here, and is told through OutlierPool when an instance's eligibility changed.

import type { Endpoint } from '../discovery/endpoint.js'
import type { FailureKind } from '../errors.js'
import type { Logger } from '../log.js'
import { joinHostPort } from '../host-port.js'

/** Weight of the newest sample in the latency EWMA. */
const EWMA_ALPHA = 0.3

export type Outcome =
  | { readonly ok: true; readonly latencyMs: number }
  | { readonly ok: false; readonly kind: FailureKind; readonly latencyMs: number }
  /** The client went away: says nothing about the instance. */
  | { readonly ok: null }

/** Passive health (Envoy's outlier detection, consecutive-5xx flavour). */
export interface OutlierOptions {
  readonly consecutiveFailures: number
  readonly baseEjectionMs: number
  readonly maxEjectionMs: number
  readonly maxEjectionPercent: number
}

/** How a held instance that refused a connection is ejected when the service has no outlier options. */
const HELD_EJECTION: OutlierOptions = { consecutiveFailures: 1, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectionPercent: 100 }

/**
 * The figures outlier detection keeps for one instance. They live on the balancer's Host, where
 * strategies (latency), the admin listener and the metrics read them; only this unit writes them.
 */
export interface OutlierHost {
  readonly key: string
  readonly endpoint: Endpoint
  latencyEwmaMs: number
  failures: number
  consecutiveFailures: number
  /** Ejected until this clock time (0: not ejected). */
  ejectedUntil: number
  /** How many times it was ejected; multiplies the next ejection's length. */
  ejections: number
  /** When it last came back from probation (0: never ejected). */
  healthySince: number
  /** Back from an ejection: one request at a time until one succeeds. */
  probing: boolean
}

/** What outlier detection asks of the balancer around it. */
export interface OutlierPool {
  /** Every instance of the service now: the ejection cap is a share of them. */
  hosts(): readonly OutlierHost[]
  /** Whether ZooKeeper's list still has the instance (a request may end after it left). */
  isMember(host: OutlierHost): boolean
  /** An instance was ejected, went on probation or came back: who may be picked changed. */
  changed(): void
}

/** What the balancer asks of outlier detection. */
export interface OutlierDetector {
  /** Ejections since start, every instance together (zoo_proxy_ejections_total). */
  readonly ejectionsTotal: number
  /** A request to `host` ended with `outcome` (its lease was released). */
  record(host: OutlierHost, outcome: Outcome): void
  /** Cancels the probation timers; idempotent. */
  close(): void
}

export interface OutlierDetectionOptions {
  /** Absent, or consecutiveFailures 0: no ejection (but for held instances, see HELD_EJECTION). */
  readonly outlier?: OutlierOptions | undefined
  /** Time in ms for ejections and healthy spells. */
  readonly clock: () => number
  readonly logger: Logger
}

export class OutlierDetection implements OutlierDetector {
  ejectionsTotal = 0
  readonly #pool: OutlierPool
  readonly #outlier: OutlierOptions | null
  readonly #clock: () => number
  readonly #log: Logger
  readonly #timers = new Set<NodeJS.Timeout>()
  #closed = false

  constructor(pool: OutlierPool, opts: OutlierDetectionOptions) {
    this.#pool = pool
    this.#outlier = opts.outlier && opts.outlier.consecutiveFailures > 0 ? opts.outlier : null
    this.#clock = opts.clock
    this.#log = opts.logger
  }

  record(host: OutlierHost, outcome: Outcome): void {
    if (outcome.ok === null) return
    host.latencyEwmaMs =
      host.latencyEwmaMs === 0 ? outcome.latencyMs : host.latencyEwmaMs + EWMA_ALPHA * (outcome.latencyMs - host.latencyEwmaMs)
    if (outcome.ok) {
      host.consecutiveFailures = 0
      if (host.probing) {
        host.probing = false
        host.healthySince = this.#clock()
        this.#log.info({ instance: joinHostPort(host.endpoint.host, host.endpoint.port) }, 'instance probation -> healthy')
        this.#pool.changed()
      }
      return
    }
    host.failures++
    host.consecutiveFailures++
    const o = this.#outlier
    if (host.ejectedUntil !== 0 || !this.#pool.isMember(host)) return
    // An instance ZooKeeper no longer lists, served only by the mass-removal hold: one refused
    // connection says it is gone (a blue/green deploy, not a session storm), so it leaves the
    // rotation at once and outside the ejection cap (Envoy keeps a host EDS removed only while it
    // passes health checks).
    if (host.endpoint.meta.held === true && outcome.kind === 'connect') return this.#eject(host, o ?? HELD_EJECTION, true)
    if (o === null) return
    if (host.probing || host.consecutiveFailures >= o.consecutiveFailures) this.#eject(host, o)
  }

  #eject(host: OutlierHost, o: OutlierOptions, uncapped = false): void {
    const all = this.#pool.hosts()
    let ejected = 0
    for (const h of all) if (h.ejectedUntil !== 0) ejected++
    const limit = Math.max(1, Math.floor((all.length * o.maxEjectionPercent) / 100))
    if (ejected >= limit && !uncapped) return
    // The multiplier decays: healthy for longer than the longest ejection means starting over.
    if (host.healthySince !== 0 && this.#clock() - host.healthySince > o.maxEjectionMs) host.ejections = 0
    host.ejections++
    this.ejectionsTotal++
    const ms = Math.min(o.baseEjectionMs * host.ejections, o.maxEjectionMs)
    host.ejectedUntil = this.#clock() + ms
    host.probing = false
    const instance = joinHostPort(host.endpoint.host, host.endpoint.port)
    this.#log.warn(
      { instance, consecutiveFailures: host.consecutiveFailures, ejectionMs: ms, ejections: host.ejections },
      'instance healthy -> ejected',
    )
    this.#pool.changed()
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      if (this.#closed || host.ejectedUntil === 0) return
      host.ejectedUntil = 0
      host.consecutiveFailures = 0
      // Back on probation: one request at a time until one succeeds (a failure ejects it again).
      host.probing = true
      this.#log.info({ instance }, 'instance ejected -> probation')
      this.#pool.changed()
    }, ms)
    timer.unref()
    this.#timers.add(timer)
  }

  close(): void {
    this.#closed = true
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
  }
}
