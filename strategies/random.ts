import { finiteWeights, plainWeights, rejectUnknownOptions } from './strategy.js'
import type { Candidate, Strategy, StrategyFactory } from './strategy.js'

/** Weighted random: each candidate with probability weight / total weight. */
export class WeightedRandom implements Strategy {
  readonly #random: () => number

  constructor(random: () => number) {
    this.#random = random
  }

  pick(candidates: readonly Candidate[]): Candidate {
    // Two weights of 1e308 once summed to Infinity and sent everything to one instance.
    const weights = plainWeights(candidates) ? null : finiteWeights(candidates)
    let total = 0
    for (let i = 0; i < candidates.length; i++) total += weights?.[i] ?? candidates[i]!.weight
    let r = this.#random() * total
    for (let i = 0; i < candidates.length; i++) {
      r -= weights?.[i] ?? candidates[i]!.weight
      if (r < 0) return candidates[i]!
    }
    return candidates[candidates.length - 1]!
  }
}

export const createRandom: StrategyFactory = (options, deps) => {
  rejectUnknownOptions(options, ['weights'])
  return new WeightedRandom(deps.random)
}
