// The one definition of an instance's state, for everything that shows it: the status page and
// `GET /upstreams` (its `state` field) and the metrics (`zoo_proxy_instances{state}`). Before it,
// each computed its own and they disagreed: a weight-0 override read "unhealthy" on the page,
// `healthy: false` in /upstreams and `up` in the metrics.

/** What an operator asked for (draining, drained) first, then what the proxy found (ejected, unhealthy). */
export const INSTANCE_STATES = ['up', 'draining', 'drained', 'ejected', 'unhealthy'] as const
export type InstanceState = (typeof INSTANCE_STATES)[number]

/** The facts of an instance the state is made of (a balancer's Host has them). */
export interface InstanceFacts {
  /** up or draining: a run-time override's, else ZooKeeper's. */
  readonly state: 'up' | 'draining'
  /** Weight before slow start: an override's, else the config's, else the znode's. */
  readonly baseWeight: number
  /** Ejected by outlier detection until this time (0: not ejected). */
  readonly ejectedUntil: number
  /** False once the active health check failed its threshold. */
  readonly checkHealthy: boolean
}

/**
 * - `draining`: ZooKeeper or an override says draining; finishes what it has, gets nothing new.
 * - `drained`: up, but weighted 0 (an override, the config's `weights` or the znode): gets nothing
 *   new, by choice; not a fault.
 * - `ejected`: outlier detection took it out for a while (consecutive failures).
 * - `unhealthy`: the active health check failed.
 * - `up`: gets new requests.
 * They partition the instances; the first that applies wins, so an operator's choice is shown
 * over a fault it makes moot.
 */
export function instanceState(i: InstanceFacts): InstanceState {
  if (i.state === 'draining') return 'draining'
  if (i.baseWeight <= 0) return 'drained'
  if (i.ejectedUntil !== 0) return 'ejected'
  if (!i.checkHealthy) return 'unhealthy'
  return 'up'
}
