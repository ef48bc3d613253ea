import { indexAfter, rejectUnknownOptions } from './strategy.js'
import type { Candidate, Strategy, StrategyFactory } from './strategy.js'

/**
 * Round-robin over the candidates in key order, weights ignored.
 *
 * The rotation remembers the *key* it picked last, not an index, so an instance joining or leaving
 * does not reset or skip the turn of the others (grpc-js and Envoy do the same). Each process
 * starts at a random offset so a fleet of proxies does not march in step onto one instance.
 */
export class RoundRobin implements Strategy {
  #lastKey: string | undefined
  readonly #random: () => number

  constructor(random: () => number) {
    this.#random = random
  }

  pick(candidates: readonly Candidate[]): Candidate {
    const index =
      this.#lastKey === undefined
        ? Math.floor(this.#random() * candidates.length)
        : indexAfter(candidates, this.#lastKey)
    const chosen = candidates[index]!
    this.#lastKey = chosen.key
    return chosen
  }
}

export const createRoundRobin: StrategyFactory = (options, deps) => {
  rejectUnknownOptions(options, [])
  return new RoundRobin(deps.random)
}
