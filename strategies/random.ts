import { rejectUnknownOptions } from './strategy.js'
import type { Candidate, Strategy, StrategyFactory } from './strategy.js'

/** Weighted random: each candidate with probability weight / total weight. */
export class WeightedRandom implements Strategy {
  readonly #random: () => number

  constructor(random: () => number) {
    this.#random = random
  }

  pick(candidates: readonly Candidate[]): Candidate {
    let total = 0
    for (const c of candidates) total += c.weight
    let r = this.#random() * total
    for (const c of candidates) {
      r -= c.weight
      if (r < 0) return c
    }
    return candidates[candidates.length - 1]!
  }
}

export const createRandom: StrategyFactory = (options, deps) => {
  rejectUnknownOptions(options, ['weights'])
  return new WeightedRandom(deps.random)
}
