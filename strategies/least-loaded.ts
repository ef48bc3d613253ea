import { StrategyOptionError, rejectUnknownOptions } from './strategy.js'
import type { Candidate, Strategy, StrategyFactory } from './strategy.js'

/**
 * Fewest requests in flight from this proxy, weighted: the score is weight / (inFlight + 1), the
 * higher the better (equal weights: fewest in flight). Ties go to the lower latency EWMA, then
 * to chance.
 *
 * By default power-of-two-choices (Mitzenmacher, "The Power of Two Choices in Randomized Load
 * Balancing"; Finagle's and Envoy's default): compare two random candidates rather than scan all,
 * so a fleet of proxies with the same view does not pile onto the one least-loaded instance.
 * `choices: all` scans every candidate.
 */
export class LeastLoaded implements Strategy {
  readonly #random: () => number
  /** 0 means all. */
  readonly #choices: number

  constructor(random: () => number, choices: number) {
    this.#random = random
    this.#choices = choices
  }

  /** True when a is the better pick than b; equal on every count is decided by a coin. */
  #better(a: Candidate, b: Candidate): boolean {
    const sa = a.weight / (a.inFlight + 1)
    const sb = b.weight / (b.inFlight + 1)
    if (sa !== sb) return sa > sb
    if (a.latencyEwmaMs !== b.latencyEwmaMs) return a.latencyEwmaMs < b.latencyEwmaMs
    return this.#random() < 0.5
  }

  pick(candidates: readonly Candidate[]): Candidate {
    const n = candidates.length
    if (this.#choices === 0 || this.#choices >= n) {
      // Full scan; start at a random place so ties do not always favour the first key.
      const start = Math.floor(this.#random() * n)
      let best = candidates[start]!
      for (let i = 1; i < n; i++) {
        const c = candidates[(start + i) % n]!
        if (this.#better(c, best)) best = c
      }
      return best
    }
    // k distinct random candidates (partial Fisher-Yates over indexes, k is small).
    const picked: number[] = []
    while (picked.length < this.#choices) {
      const i = Math.floor(this.#random() * n)
      if (!picked.includes(i)) picked.push(i)
    }
    let best = candidates[picked[0]!]!
    for (let j = 1; j < picked.length; j++) {
      const c = candidates[picked[j]!]!
      if (this.#better(c, best)) best = c
    }
    return best
  }
}

/** Instances compared per pick (P2C) when `choices` is not given. */
export const DEFAULT_CHOICES = 2

export const createLeastLoaded: StrategyFactory = (options, deps) => {
  rejectUnknownOptions(options, ['choices', 'weights'])
  const choices = options.choices ?? DEFAULT_CHOICES
  if (choices === 'all') return new LeastLoaded(deps.random, 0)
  if (typeof choices !== 'number' || !Number.isInteger(choices) || choices < 2) {
    throw new StrategyOptionError('choices', 'must be an integer >= 2 or "all"')
  }
  return new LeastLoaded(deps.random, choices)
}
