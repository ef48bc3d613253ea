// The one interface every strategy implements, built-in or a user's own module.
//
// A strategy only decides *which* of the candidates it is handed gets the request. The balancer has
// already removed what must not be picked (ejected, unhealthy, draining, weight 0, tried by this
// request), so `pick` never sees an empty list and never does I/O.

/** One instance as a strategy sees it: its identity and its live load figures. */
export interface Candidate {
  /** Stable for one instance across membership changes (its znode path). Key your state by it. */
  readonly key: string
  readonly host: string
  readonly port: number
  /**
   * Effective weight: znode data, config override and slow start applied. Always > 0 here, and at
   * most 256 (the range every source is held to), so a sum of weights cannot overflow.
   */
  readonly weight: number
  /** Requests this proxy has in flight to the instance right now. */
  readonly inFlight: number
  /** Exponentially weighted moving average of response-header latency, ms (0 until measured). */
  readonly latencyEwmaMs: number
}

/** What a strategy may know of the request, for affinity (consistent-hash). */
export interface PickContext {
  /** The affinity key the service's config asked for (header, cookie or client address), if any. */
  readonly hashKey: string | undefined
}

/** What a strategy may read of a request to derive an affinity key. */
export interface RequestInfo {
  /** Lower-case header names, as Node gives them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly remoteAddress: string | undefined
}

export interface Strategy {
  /**
   * Returns one element of `candidates` (non-empty, sorted by key, so an order is stable).
   * Must be synchronous and must not throw; if it does, the balancer falls back to round-robin
   * for that request and logs one warning.
   */
  pick(candidates: readonly Candidate[], ctx: PickContext): Candidate
  /** Optional: the affinity key of a request, handed back to `pick` as `ctx.hashKey`. */
  hashKey?(req: RequestInfo): string | undefined
}

export interface StrategyDeps {
  /** Uniform in [0, 1). Seeded in tests. */
  readonly random: () => number
}

/** Options are the strategy object of the config less its `name`/`module`. Throw to reject them. */
export type StrategyFactory = (options: Readonly<Record<string, unknown>>, deps: StrategyDeps) => Strategy

/**
 * Thrown by a factory for a bad option; `field` is relative to the strategy object. For an unknown
 * option, `known` lists the ones the strategy takes (so a config check can say "did you mean").
 */
export class StrategyOptionError extends Error {
  readonly field: string
  readonly known: readonly string[] | undefined
  constructor(field: string, message: string, known?: readonly string[]) {
    super(message)
    this.name = 'StrategyOptionError'
    this.field = field
    this.known = known
  }
}

/** True when every weight is as the balancer hands it (finite, > 0) and their sum is finite. */
export function plainWeights(candidates: readonly Candidate[]): boolean {
  let total = 0
  for (const c of candidates) {
    const w = c.weight
    if (!(w > 0 && w <= Number.MAX_VALUE)) return false
    total += w
  }
  return total <= Number.MAX_VALUE
}

/**
 * The candidates' weights made safe to add up, for when plainWeights says they are not: NaN and
 * anything <= 0 count 0, Infinity the largest finite number; divided by the largest when their sum
 * would overflow (two weights of 1e308 are then 1 and 1); all 1 when none is above 0. The balancer
 * never needs this; a strategy used by hand, or a Candidate from elsewhere, still gets a pick.
 */
export function finiteWeights(candidates: readonly Candidate[]): number[] {
  const weights = candidates.map((c) => (c.weight > 0 ? Math.min(c.weight, Number.MAX_VALUE) : 0))
  let total = 0
  let max = 0
  for (const w of weights) {
    total += w
    if (w > max) max = w
  }
  if (max === 0) return weights.fill(1)
  return total <= Number.MAX_VALUE ? weights : weights.map((w) => w / max)
}

/** Binary search: index of the first candidate whose key sorts after `key` (wraps to 0). */
export function indexAfter(candidates: readonly Candidate[], key: string): number {
  let lo = 0
  let hi = candidates.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (candidates[mid]!.key <= key) lo = mid + 1
    else hi = mid
  }
  return lo === candidates.length ? 0 : lo
}

export function rejectUnknownOptions(options: Readonly<Record<string, unknown>>, known: readonly string[]): void {
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) throw new StrategyOptionError(name, `unknown option "${name}"`, known)
  }
}
