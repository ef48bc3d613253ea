import { pathToFileURL } from 'node:url'
import { DEFAULT_KEY, DEFAULT_LOAD_FACTOR, createConsistentHash } from './consistent-hash.js'
import { DEFAULT_CHOICES, createLeastLoaded } from './least-loaded.js'
import { createRandom } from './random.js'
import { createRoundRobin } from './round-robin.js'
import { createWeighted } from './weighted.js'
import type { Strategy, StrategyDeps, StrategyFactory } from './strategy.js'

export type { Candidate, PickContext, RequestInfo, Strategy, StrategyDeps, StrategyFactory } from './strategy.js'
export { StrategyOptionError } from './strategy.js'

/** The built-in strategies by the name a config uses. Frozen: user strategies come in by `module`. */
export const BUILTIN_STRATEGIES: Readonly<Record<string, StrategyFactory>> = Object.freeze({
  'round-robin': createRoundRobin,
  'least-loaded': createLeastLoaded,
  weighted: createWeighted,
  'consistent-hash': createConsistentHash,
  random: createRandom,
})

export function isBuiltinStrategy(name: string): boolean {
  return Object.hasOwn(BUILTIN_STRATEGIES, name)
}

/**
 * A built-in strategy's options with every default it applies written out (what `check` prints).
 * consistent-hash's `key` default is left out when its short form `header` or `cookie` is given,
 * since `key` wins over both.
 */
export function withDefaultOptions(name: string, options: Readonly<Record<string, unknown>>): Record<string, unknown> {
  switch (name) {
    case 'least-loaded':
      return { choices: DEFAULT_CHOICES, ...options }
    case 'consistent-hash': {
      const shortForm = options.header !== undefined || options.cookie !== undefined
      return { ...(shortForm ? {} : { key: DEFAULT_KEY }), loadFactor: DEFAULT_LOAD_FACTOR, ...options }
    }
    default:
      return { ...options }
  }
}

/** A strategy as the config names it: a built-in by name, or a user's module by absolute path. */
export type StrategySpec =
  | { readonly name: string; readonly module?: undefined; readonly options: Readonly<Record<string, unknown>> }
  | { readonly module: string; readonly name?: undefined; readonly options: Readonly<Record<string, unknown>> }

/**
 * Loads a user's strategy module. It must export `createStrategy` (or a default export) as a
 * StrategyFactory. Throws an Error whose message says what is wrong with the module.
 */
export async function loadStrategyModule(file: string): Promise<StrategyFactory> {
  let mod: Record<string, unknown>
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>
  } catch (err) {
    throw new Error(`cannot load strategy module ${file}: ${(err as Error).message}`, { cause: err })
  }
  const factory = mod.createStrategy ?? mod.default
  if (typeof factory !== 'function') {
    throw new Error(`strategy module ${file} must export a function "createStrategy" (or a default export)`)
  }
  return factory as StrategyFactory
}

/** Resolves a spec to a factory, then builds one strategy and checks it has a `pick` method. */
export async function buildStrategy(spec: StrategySpec, deps: StrategyDeps): Promise<Strategy> {
  const factory = spec.module !== undefined ? await loadStrategyModule(spec.module) : BUILTIN_STRATEGIES[spec.name]
  if (factory === undefined) throw new Error(`unknown strategy "${spec.name}"`)
  const strategy = factory(spec.options, deps)
  if (strategy === null || typeof strategy !== 'object' || typeof strategy.pick !== 'function') {
    throw new Error('strategy factory must return an object with a pick(candidates, ctx) method')
  }
  return strategy
}
