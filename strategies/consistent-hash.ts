import { StrategyOptionError, rejectUnknownOptions } from './strategy.js'
import type { Candidate, RequestInfo, Strategy, StrategyFactory } from './strategy.js'

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32 so close strings spread out. */
export function hash32(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Bounded loads' factor (Mirrokni et al.) when `loadFactor` is not given. */
export const DEFAULT_LOAD_FACTOR = 1.25
/** What is hashed when neither `key` nor its short forms `header`/`cookie` are given. */
export const DEFAULT_KEY = 'client-address'

/** Where the affinity key comes from. */
export type HashSource = { readonly header: string } | { readonly cookie: string } | { readonly clientAddress: true }

export function parseHashSource(value: unknown): HashSource {
  if (value === undefined || value === DEFAULT_KEY) return { clientAddress: true }
  if (typeof value === 'string') {
    const m = /^(header|cookie):(.+)$/.exec(value)
    if (m) return m[1] === 'header' ? { header: m[2]!.toLowerCase() } : { cookie: m[2]! }
  }
  if (value !== null && typeof value === 'object') {
    const v = value as Record<string, unknown>
    if (typeof v.header === 'string' && v.header !== '') return { header: v.header.toLowerCase() }
    if (typeof v.cookie === 'string' && v.cookie !== '') return { cookie: v.cookie }
  }
  throw new StrategyOptionError('key', 'must be "header:<name>", "cookie:<name>" or "client-address"')
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

interface Ring {
  /** Point hashes, ascending. */
  readonly hashes: Uint32Array
  /** The owner of each point, as an index into `names`. */
  readonly owners: Uint32Array
  readonly names: readonly string[]
  readonly members: ReadonlySet<string>
}

/** Picks on one candidate list before its weights are looked at again (slow start moves them). */
const RECHECK_PICKS = 256

/** Virtual nodes per unit of weight: enough for a ~10% spread at a handful of instances. */
const VNODES = 160

/**
 * The most points a ring has, every instance together (more only when there are more instances
 * than this: each has at least one, so the ring then has one per instance). Envoy's ring hash caps
 * its ring too (maximum_ring_size). Weights are bounded (0-256), but 256 instances at 256 would
 * still make 10M points; above the cap every instance's points are scaled down in proportion, so a
 * build costs at most this many hashes and one sort of as many numbers, whatever the weights.
 */
export const MAX_RING_POINTS = 65_536

/** Instances a ring can index: a point's owner shares a float64 with its 32-bit hash (53 bits). */
const MAX_RING_INSTANCES = 2 ** 21

/**
 * An instance's points before the cap: 160 x weight, at least 1, on a grid of 16 steps per
 * doubling (exact up to 16 points, then within ~3%). An instance in slow start changes its weight
 * on every request; the ring is rebuilt only when it crosses a step, about 53 times over a ramp from
 * 10% to 100% whatever the weight. A weight that is not a finite number > 0 (never handed over by
 * the balancer) counts as the smallest share, or the cap for Infinity.
 */
function basePoints(weight: number): number {
  const raw = weight > 0 ? Math.min(VNODES * weight, MAX_RING_POINTS) : 1
  if (raw <= 16) return Math.max(1, Math.round(raw))
  const step = 2 ** (Math.floor(Math.log2(raw)) - 4)
  return Math.round(raw / step) * step
}

/** An instance as the ring holds it: its key and its points before the cap. */
function member(c: Candidate): string {
  return `${c.key}\0${basePoints(c.weight)}`
}

/**
 * Consistent hashing on a ring (Karger et al. 1997; Ketama's layout): each instance owns
 * `160 x weight` points (scaled down to at most MAX_RING_POINTS in all), a key goes to the first
 * point clockwise from its hash, so when one of N instances joins or leaves only about 1/N of the
 * keys move.
 *
 * With bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads",
 * 2016; what Envoy calls hash_balance_factor): an instance already above `loadFactor` x the mean
 * in-flight is passed over for the next one on the ring, so one hot key cannot sink one instance.
 */
export class ConsistentHash implements Strategy {
  readonly #source: HashSource
  readonly #loadFactor: number
  readonly #random: () => number
  #ring: Ring | null = null
  #ringBuilds = 0
  /**
   * The candidate list the ring was last checked against, its instances by key, and picks since:
   * the balancer hands the same array to every first attempt until its membership changes, so the
   * per-instance check (and the map) is not redone on every pick. Weights in slow start change
   * without a new array: they are checked again every RECHECK_PICKS picks.
   */
  #checked: readonly Candidate[] | null = null
  #byKey = new Map<string, Candidate>()
  #picksSinceCheck = 0

  constructor(source: HashSource, loadFactor: number, random: () => number) {
    this.#source = source
    this.#loadFactor = loadFactor
    this.#random = random
  }

  /** How many times the ring was built (each costs at most MAX_RING_POINTS hashes and a sort). */
  get ringBuilds(): number {
    return this.#ringBuilds
  }

  /** Points on the current ring (0 before the first build). */
  get ringSize(): number {
    return this.#ring?.hashes.length ?? 0
  }

  hashKey(req: RequestInfo): string | undefined {
    const s = this.#source
    let v: string | string[] | undefined
    if ('header' in s) v = req.headers[s.header]
    else if ('cookie' in s) {
      const c = req.headers.cookie
      v = cookieValue(Array.isArray(c) ? c.join('; ') : c, s.cookie)
    }
    const key = Array.isArray(v) ? v[0] : v
    // Without the header or cookie, fall back to the client address (as nginx's hash would on "").
    return key !== undefined && key !== '' ? key : req.remoteAddress
  }

  #ringFor(candidates: readonly Candidate[]): Ring {
    const ring = this.#ring
    if (ring !== null && candidates === this.#checked && ++this.#picksSinceCheck < RECHECK_PICKS) return ring
    this.#checked = null
    // Reuse the ring while it covers every candidate with the same number of points; a retry's
    // smaller candidate list walks the same ring and skips what is not in it. Points, not raw
    // weights: an instance in slow start changes its weight a little on every request, and the
    // ring is rebuilt only when that moves it to another step of the points grid (basePoints).
    if (ring !== null && candidates.every((c) => ring.members.has(member(c)))) return this.#remember(candidates, ring)
    if (candidates.length > MAX_RING_INSTANCES) throw new Error(`consistent-hash takes at most ${MAX_RING_INSTANCES} instances`)
    const base = candidates.map((c) => basePoints(c.weight))
    let total = 0
    for (const b of base) total += b
    // Over the cap, each instance keeps one point and the rest of the cap is shared in proportion.
    const scale = total <= MAX_RING_POINTS ? 1 : Math.max(0, MAX_RING_POINTS - candidates.length) / total
    const counts = base.map((b) => Math.max(1, Math.floor(b * scale)))
    let size = 0
    for (const n of counts) size += n
    // Hash and owner packed into one number, so that a typed-array sort (numeric, no comparator
    // calls) orders the points; equal hashes fall to the lower owner, as a stable sort would.
    const packed = new Float64Array(size)
    let at = 0
    candidates.forEach((c, owner) => {
      for (let i = 0; i < counts[owner]!; i++) packed[at++] = hash32(`${c.key}#${i}`) * MAX_RING_INSTANCES + owner
    })
    packed.sort()
    const hashes = new Uint32Array(size)
    const owners = new Uint32Array(size)
    for (let i = 0; i < size; i++) {
      const owner = packed[i]! % MAX_RING_INSTANCES
      owners[i] = owner
      hashes[i] = (packed[i]! - owner) / MAX_RING_INSTANCES
    }
    const next: Ring = { hashes, owners, names: candidates.map((c) => c.key), members: new Set(candidates.map(member)) }
    this.#ring = next
    this.#ringBuilds++
    return this.#remember(candidates, next)
  }

  #remember(candidates: readonly Candidate[], ring: Ring): Ring {
    this.#checked = candidates
    this.#picksSinceCheck = 0
    this.#byKey = new Map(candidates.map((c) => [c.key, c]))
    return ring
  }

  pick(candidates: readonly Candidate[], ctx: { readonly hashKey: string | undefined }): Candidate {
    if (ctx.hashKey === undefined) return candidates[Math.floor(this.#random() * candidates.length)]!
    const ring = this.#ringFor(candidates)
    // A retry's smaller list has a map of its own; a first attempt's is the one remembered.
    const byKey = candidates === this.#checked ? this.#byKey : new Map(candidates.map((c) => [c.key, c]))
    let inFlight = 0
    for (const c of candidates) inFlight += c.inFlight
    // Bounded loads: capacity per instance is ceil(factor x (in flight + this one) / n).
    const cap = Math.ceil((this.#loadFactor * (inFlight + 1)) / candidates.length)
    const h = hash32(ctx.hashKey)
    let lo = 0
    let hi = ring.hashes.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (ring.hashes[mid]! < h) lo = mid + 1
      else hi = mid
    }
    let first: Candidate | undefined
    for (let i = 0; i < ring.hashes.length; i++) {
      const c = byKey.get(ring.names[ring.owners[(lo + i) % ring.hashes.length]!]!)
      if (c === undefined) continue
      first ??= c
      if (c.inFlight + 1 <= cap) return c
    }
    return first ?? candidates[0]!
  }
}

export const createConsistentHash: StrategyFactory = (options, deps) => {
  rejectUnknownOptions(options, ['key', 'header', 'cookie', 'loadFactor', 'weights'])
  const factor = options.loadFactor ?? DEFAULT_LOAD_FACTOR
  if (typeof factor !== 'number' || !(factor >= 1)) throw new StrategyOptionError('loadFactor', 'must be a number >= 1')
  // `header: x-user` and `cookie: sid` are accepted as short forms of `key`.
  const key = options.key ?? (options.header !== undefined ? { header: options.header } : options.cookie !== undefined ? { cookie: options.cookie } : undefined)
  return new ConsistentHash(parseHashSource(key), factor, deps.random)
}
