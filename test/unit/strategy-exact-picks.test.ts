// The strategies' exact behaviour at their edges: the ones mutation testing (npm run mutation)
// showed no other test pinned down. Every draw of randomness is scripted, so each pick is exact.

import { expect } from 'chai'
import { ConsistentHash, createConsistentHash, hash32, parseHashSource } from '../../strategies/consistent-hash.js'
import { buildStrategy } from '../../strategies/index.js'
import { LeastLoaded, createLeastLoaded } from '../../strategies/least-loaded.js'
import { WeightedRandom, createRandom } from '../../strategies/random.js'
import { SmoothWeighted, createWeighted } from '../../strategies/weighted.js'
import { StrategyOptionError } from '../../strategies/strategy.js'
import type { Candidate, Strategy } from '../../strategies/strategy.js'

const c = (key: string, weight = 1, inFlight = 0, latencyEwmaMs = 0): Candidate => ({ key, host: key, port: 1, weight, inFlight, latencyEwmaMs })
const none = { hashKey: undefined }

/** A random source that hands out exactly these draws, in order, and fails the test on one more. */
function script(...draws: number[]): () => number {
  return () => {
    const d = draws.shift()
    if (d === undefined) throw new Error('the strategy drew more random numbers than scripted')
    return d
  }
}

/** The error a call throws, to check more of it than its message. */
function thrown(fn: () => unknown): StrategyOptionError {
  try {
    fn()
  } catch (err) {
    expect(err).to.be.instanceOf(StrategyOptionError)
    return err as StrategyOptionError
  }
  throw new Error('expected a StrategyOptionError')
}

const picks = (s: Strategy, list: readonly Candidate[], n: number) => Array.from({ length: n }, () => s.pick(list, none).key).join(' ')

describe('hash32', () => {
  it('is FNV-1a over UTF-16 code units finished with fmix32 (values from an independent implementation)', () => {
    expect(hash32('')).to.equal(0xab3e7c0b)
    expect(hash32('a')).to.equal(0x1a80b1b3)
    expect(hash32('user-42')).to.equal(0x7c2a1196)
    expect(hash32('/s/i0#0')).to.equal(0x9b8df098)
  })
})

describe('consistent-hash key sources', () => {
  it('parses every accepted spelling of the key', () => {
    expect(parseHashSource(undefined)).to.deep.equal({ clientAddress: true })
    expect(parseHashSource('client-address')).to.deep.equal({ clientAddress: true })
    expect(parseHashSource('header:X-User')).to.deep.equal({ header: 'x-user' })
    expect(parseHashSource('cookie:SID')).to.deep.equal({ cookie: 'SID' })
    expect(parseHashSource({ header: 'X-Tenant' })).to.deep.equal({ header: 'x-tenant' })
    expect(parseHashSource({ cookie: 'Sess' })).to.deep.equal({ cookie: 'Sess' })
  })

  it('rejects anything else as a StrategyOptionError on the field "key"', () => {
    const bad: unknown[] = [null, 5, ['header:x'], 'header:', 'x-header:a', 'header:a\nb', { header: '' }, { cookie: '' }, { cookie: 5 }, {}]
    for (const value of bad) {
      const err = thrown(() => parseHashSource(value))
      expect(err.field, JSON.stringify(value)).to.equal('key')
      expect(err.name).to.equal('StrategyOptionError')
      expect(err.message).to.equal('must be "header:<name>", "cookie:<name>" or "client-address"')
    }
  })

  it('reads a cookie by its exact name, trimmed, from one header or several', () => {
    const s = new ConsistentHash({ cookie: 'sid' }, 1.25, script())
    const key = (cookie: string | string[] | undefined) => s.hashKey({ headers: { cookie }, remoteAddress: '10.0.0.1' })
    expect(key('sidx; sid=abc')).to.equal('abc')
    expect(key('sid=abc ; theme=dark')).to.equal('abc')
    expect(key(['theme=dark', 'sid=abc'])).to.equal('abc')
    expect(key('sid')).to.equal('10.0.0.1')
    expect(key(undefined)).to.equal('10.0.0.1')
    const one = new ConsistentHash({ cookie: 'a' }, 1.25, script())
    expect(one.hashKey({ headers: { cookie: 'b=2; a=1' }, remoteAddress: '10.0.0.1' })).to.equal('1')
  })

  it('falls back to the client address when the header is empty, and takes the first of a repeated header', () => {
    const s = new ConsistentHash({ header: 'x-user' }, 1.25, script())
    expect(s.hashKey({ headers: { 'x-user': '' }, remoteAddress: '10.0.0.1' })).to.equal('10.0.0.1')
    expect(s.hashKey({ headers: { 'x-user': ['u1', 'u2'] }, remoteAddress: '10.0.0.1' })).to.equal('u1')
  })
})

describe('consistent-hash factory', () => {
  const deps = { random: script() }

  it('accepts the short forms header and cookie, loadFactor from 1, and weights', () => {
    const byCookie = createConsistentHash({ cookie: 'sid' }, deps)
    expect(byCookie.hashKey!({ headers: { cookie: 'sid=s1' }, remoteAddress: '10.0.0.1' })).to.equal('s1')
    expect(() => createConsistentHash({ loadFactor: 1 }, deps)).to.not.throw()
    expect(() => createConsistentHash({ header: 'x-user', loadFactor: 2, weights: { 'a:1': 2 } }, deps)).to.not.throw()
  })

  it('rejects a loadFactor below 1 or not a number', () => {
    for (const loadFactor of [0.99, 0, '2', Number.NaN]) {
      const err = thrown(() => createConsistentHash({ loadFactor }, deps))
      expect([err.field, err.message]).to.deep.equal(['loadFactor', 'must be a number >= 1'])
    }
  })
})

describe('consistent-hash ring', () => {
  /** The ring built apart from the strategy: 160 x weight points per instance named `key#i`. */
  function reference(list: readonly Candidate[]): { h: number; key: string }[] {
    const points = list.flatMap((x) => Array.from({ length: Math.max(1, Math.round(160 * x.weight)) }, (_, i) => ({ h: hash32(`${x.key}#${i}`), key: x.key })))
    return points.sort((a, b) => a.h - b.h)
  }
  /** The first point clockwise from the key's hash whose instance `fits`. */
  function owner(points: readonly { h: number; key: string }[], hashKey: string, fits: (key: string) => boolean = () => true): string {
    const h = hash32(hashKey)
    const start = points.findIndex((p) => p.h >= h)
    for (let i = 0; i < points.length; i++) {
      const p = points[((start === -1 ? 0 : start) + i) % points.length]!
      if (fits(p.key)) return p.key
    }
    throw new Error('no instance fits')
  }

  it('sends each key to the first point clockwise, with 160 points per unit of weight', () => {
    const list = [c('/s/a', 1), c('/s/b', 2), c('/s/c', 0.5)]
    const points = reference(list)
    const s = new ConsistentHash({ clientAddress: true }, 1.25, script())
    // Ordinary keys, and keys that hash exactly onto a point: those belong to that point's instance.
    const keys = [...Array.from({ length: 3000 }, (_, i) => `user-${i}`), ...list.flatMap((x) => [`${x.key}#0`, `${x.key}#7`, `${x.key}#79`])]
    const got = keys.map((k) => s.pick(list, { hashKey: k }).key)
    expect(got).to.deep.equal(keys.map((k) => owner(points, k)))
  })

  it('passes a key over, clockwise, to the next instance under the cap', () => {
    const list = [c('/s/a'), c('/s/b'), c('/s/c'), c('/s/d')]
    const points = reference(list)
    const s = new ConsistentHash({ clientAddress: true }, 1.25, script())
    for (let i = 0; i < 200; i++) {
      const k = `hot-${i}`
      const home = owner(points, k)
      // 10 in flight at home: cap = ceil(1.25 x 11 / 4) = 4, so home is full and the others are not.
      const loaded = list.map((x) => (x.key === home ? c(x.key, 1, 10) : x))
      expect(s.pick(loaded, { hashKey: k }).key).to.equal(owner(points, k, (key) => key !== home))
    }
  })

  it('counts this request against the cap: ceil(loadFactor x (in flight + 1) / instances)', () => {
    const list = [c('/s/a'), c('/s/b')]
    const points = reference(list)
    const s = new ConsistentHash({ clientAddress: true }, 1.25, script())
    const home = owner(points, 'k')
    const other = list.find((x) => x.key !== home)!.key
    const at = (homeInFlight: number, otherInFlight: number) =>
      s.pick([c(home, 1, homeInFlight), c(other, 1, otherInFlight)].sort((a, b) => (a.key < b.key ? -1 : 1)), { hashKey: 'k' }).key
    // 1 in flight: cap = ceil(1.25 x 2 / 2) = 2, and 1 + 1 fits.
    expect(at(1, 0)).to.equal(home)
    // 2 in flight: cap = ceil(1.25 x 3 / 2) = 2, and 2 + 1 does not.
    expect(at(2, 0)).to.equal(other)
    // 1 in flight at home and 1 elsewhere: cap = ceil(1.25 x 3 / 2) = 2, home fits.
    expect(at(1, 1)).to.equal(home)
  })

  it('keeps a key home at three instances with one in flight at home and one elsewhere (cap 2)', () => {
    const list = [c('/s/a'), c('/s/b'), c('/s/c')]
    const points = reference(list)
    const s = new ConsistentHash({ clientAddress: true }, 1.25, script())
    for (let i = 0; i < 50; i++) {
      const k = `warm-${i}`
      const home = owner(points, k)
      const busy = list.find((x) => x.key !== home)!.key
      const loaded = list.map((x) => (x.key === home || x.key === busy ? c(x.key, 1, 1) : x))
      expect(s.pick(loaded, { hashKey: k }).key).to.equal(home)
    }
  })

  it('picks at random, with one draw, when the request has no key', () => {
    const list = [c('/s/a'), c('/s/b'), c('/s/c'), c('/s/d')]
    expect(new ConsistentHash({ clientAddress: true }, 1.25, script(0.5)).pick(list, none).key).to.equal('/s/c')
    expect(new ConsistentHash({ clientAddress: true }, 1.25, script(0.99)).pick(list, none).key).to.equal('/s/d')
  })
})

describe('least-loaded, draw by draw', () => {
  it('scans from a drawn start and lets one coin per tie decide, below 0.5 for the challenger', () => {
    const tied = [c('a'), c('b')]
    expect(new LeastLoaded(script(0, 0.2), 0).pick(tied).key).to.equal('b')
    expect(new LeastLoaded(script(0, 0.5), 0).pick(tied).key).to.equal('a')
    expect(new LeastLoaded(script(0, 0.7), 0).pick(tied).key).to.equal('a')
    expect(new LeastLoaded(script(0.5, 0.2), 0).pick(tied).key).to.equal('a')
  })

  it('breaks a tie of scores by the lower latency without a coin', () => {
    expect(new LeastLoaded(script(0), 0).pick([c('a', 1, 1, 9), c('b', 1, 1, 3)]).key).to.equal('b')
    expect(new LeastLoaded(script(0), 0).pick([c('a', 1, 1, 3), c('b', 1, 1, 9)]).key).to.equal('a')
    expect(new LeastLoaded(script(0.5), 0).pick([c('a', 1, 1, 3), c('b', 1, 1, 9)]).key).to.equal('a')
  })

  it('scans every instance, from one draw, when asked for as many choices as there are instances or more', () => {
    const list = [c('a', 1, 0), c('b', 1, 5)]
    expect(new LeastLoaded(script(0.9), 2).pick(list).key).to.equal('a')
    expect(new LeastLoaded(script(0.9), 3).pick(list).key).to.equal('a')
  })

  it('with two choices compares two distinct drawn instances, drawing again on a repeat', () => {
    const list = [c('a', 1, 5), c('b', 1, 0), c('c', 1, 9)]
    // Draws 0 (a), 0.1 (a again: drawn anew), 0.9 (c): b, the least loaded, is not among them.
    expect(new LeastLoaded(script(0, 0.1, 0.9), 2).pick(list).key).to.equal('a')
  })
})

describe('least-loaded factory', () => {
  it('takes choices 2 by default, any integer from 2, or "all", and accepts weights', () => {
    const list = [c('a', 1, 5), c('b', 1, 0), c('c', 1, 9)]
    // Two draws each: a and b, then c and a.
    expect(createLeastLoaded({}, { random: script(0, 0.5) }).pick(list, none).key).to.equal('b')
    expect(createLeastLoaded({ choices: 2 }, { random: script(0.7, 0.1) }).pick(list, none).key).to.equal('a')
    // A full scan: one draw for the start.
    expect(createLeastLoaded({ choices: 'all' }, { random: script(0) }).pick(list, none).key).to.equal('b')
    expect(createLeastLoaded({ choices: 3, weights: { 'a:1': 2 } }, { random: script(0.9) }).pick(list, none).key).to.equal('b')
  })

  it('rejects any other choices on the field "choices"', () => {
    for (const choices of [1, 0, 2.5, '3', 'some']) {
      const err = thrown(() => createLeastLoaded({ choices }, { random: script() }))
      expect([err.field, err.message], JSON.stringify(choices)).to.deep.equal(['choices', 'must be an integer >= 2 or "all"'])
    }
  })
})

describe('random (weighted), draw by draw', () => {
  it('gives each instance its slice of [0, total): a draw on a boundary belongs to the next one', () => {
    const list = [c('a', 1), c('b', 3)]
    expect(new WeightedRandom(script(0.2)).pick(list).key).to.equal('a')
    expect(new WeightedRandom(script(0.25)).pick(list).key).to.equal('b')
  })

  it('gives a rounding leftover past the last slice to the last instance', () => {
    // 0.1 + 0.2 + 0.3 taken away one by one from (1 - 2^-53) x their sum leaves exactly 0, not below.
    expect(new WeightedRandom(script(1 - 2 ** -53)).pick([c('a', 0.1), c('b', 0.2), c('c', 0.3)]).key).to.equal('c')
  })

  it('is built by name with no option but weights', () => {
    expect(createRandom({ weights: { 'a:1': 2 } }, { random: script(0.9) }).pick([c('a'), c('b')], none).key).to.equal('b')
    expect([thrown(() => createRandom({ seed: 1 }, { random: script() })).field]).to.deep.equal(['seed'])
  })
})

describe('weighted (smooth), its memory of instances that left', () => {
  /**
   * x is left with current weight 9 by a pick of [a 10, x 9] and leaves; then `churn` newcomers go
   * by with a (weight 2), one per pick; then a and x (weight 1 each) are picked 3 times.
   */
  function afterChurn(churn: number): string {
    const s = new SmoothWeighted()
    expect(s.pick([c('a', 10), c('x', 9)]).key).to.equal('a')
    for (let j = 1; j <= churn; j++) s.pick([c('a', 2), c(`k${String(j).padStart(2, '0')}`)])
    return picks(s, [c('a'), c('x')], 3)
  }

  it('remembers an instance that left while it holds at most 2 x instances + 8 entries', () => {
    // 10 newcomers: 12 entries (a, x, k01..k10) for 2 instances, not above 12. x comes back with
    // 9 + 1 and takes three picks in a row.
    expect(afterChurn(10)).to.equal('x x x')
  })

  it('forgets the instances that left, and only those, once above 2 x instances + 8 entries', () => {
    // The 11th newcomer makes 13: only a and k11 are kept. x starts from 0, a goes on from its own
    // current weight (-2) and gets the second pick.
    expect(afterChurn(11)).to.equal('x a x')
  })

  it('is built by name with no option but weights', () => {
    expect(createWeighted({ weights: { 'a:1': 2 } }, { random: script() }).pick([c('a', 2), c('b', 1)], none).key).to.equal('a')
    expect(thrown(() => createWeighted({ smooth: false }, { random: script() })).field).to.equal('smooth')
  })
})

describe('buildStrategy', () => {
  it('names an unknown built-in strategy in its error', async () => {
    const err = await buildStrategy({ name: 'fastest', options: {} }, { random: script() }).catch((e: Error) => e)
    expect((err as Error).message).to.equal('unknown strategy "fastest"')
  })
})
