import { finiteWeights, plainWeights, rejectUnknownOptions } from './strategy.js'
import type { Candidate, Strategy, StrategyFactory } from './strategy.js'

/**
 * nginx's smooth weighted round-robin (ngx_http_upstream_get_peer): each pick adds every
 * candidate's weight to its current weight, takes the largest, and subtracts the total from it.
 * Weights 5,1,1 give exactly a a b a c a a: heavy instances are spread out, not bunched.
 * Current weights are kept by key, so a membership change does not reset the others' turns.
 */
export class SmoothWeighted implements Strategy {
  readonly #current = new Map<string, number>()

  pick(candidates: readonly Candidate[]): Candidate {
    // Weights out of any range (two of 1e308 sum to Infinity, and Infinity - Infinity is NaN) once
    // made pick throw for good; such weights are brought to finite shares first.
    const weights = plainWeights(candidates) ? null : finiteWeights(candidates)
    let total = 0
    let best: Candidate | undefined
    let bestWeight = -Infinity
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]!
      const w = weights?.[i] ?? c.weight
      const cw = (this.#current.get(c.key) ?? 0) + w
      this.#current.set(c.key, cw)
      total += w
      if (cw > bestWeight) {
        best = c
        bestWeight = cw
      }
    }
    this.#current.set(best!.key, bestWeight - total)
    // Forget instances that left, so the map does not grow with churn.
    if (this.#current.size > candidates.length * 2 + 8) {
      const live = new Set(candidates.map((c) => c.key))
      for (const k of this.#current.keys()) if (!live.has(k)) this.#current.delete(k)
    }
    return best!
  }
}

export const createWeighted: StrategyFactory = (options) => {
  rejectUnknownOptions(options, ['weights'])
  return new SmoothWeighted()
}
