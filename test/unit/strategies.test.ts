import { expect } from 'chai'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Balancer } from '../../lib/balancing/balancer.js'
import { validateConfig } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'
import { seededRandom } from '../support/random.js'
import { ConsistentHash, MAX_RING_POINTS, createConsistentHash } from '../../strategies/consistent-hash.js'
import { RoundRobin } from '../../strategies/round-robin.js'
import { LeastLoaded } from '../../strategies/least-loaded.js'
import { WeightedRandom } from '../../strategies/random.js'
import { SmoothWeighted } from '../../strategies/weighted.js'
import type { Candidate, Strategy } from '../../strategies/strategy.js'
import { recordingLogger } from '../support/helpers.js'

type C = { -readonly [K in keyof Candidate]: Candidate[K] }
const c = (key: string, weight = 1, inFlight = 0, latencyEwmaMs = 0): C => ({ key, host: key, port: 1, weight, inFlight, latencyEwmaMs })
const ctx = { hashKey: undefined }
const seq = (s: Strategy, list: readonly Candidate[], n: number) => Array.from({ length: n }, () => s.pick(list, ctx).key).join('')

function shares(s: Strategy, list: readonly Candidate[], n: number, hashKey?: (i: number) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const k = s.pick(list, { hashKey: hashKey?.(i) }).key
    out[k] = (out[k] ?? 0) + 1 / n
  }
  return out
}

describe('weighted (nginx smooth weighted round-robin)', () => {
  it('gives the exact sequence a a b a c a a for weights 5,1,1', () => {
    expect(seq(new SmoothWeighted(), [c('a', 5), c('b', 1), c('c', 1)], 14)).to.equal('aabacaaaabacaa')
  })

  it('keeps the others in turn across a membership change', () => {
    const s = new SmoothWeighted()
    expect(seq(s, [c('a', 1), c('b', 1)], 2)).to.equal('ab')
    // c joins: a and b keep their current weights, c starts at 0.
    expect(seq(s, [c('a', 1), c('b', 1), c('c', 1)], 6)).to.equal('abcabc')
    expect(seq(s, [c('a', 2), c('c', 1)], 6)).to.equal('acaaca')
  })
})

describe('random (weighted)', () => {
  it('picks in proportion to weight (seeded, within 2 points)', () => {
    const got = shares(new WeightedRandom(seededRandom(1)), [c('a', 3), c('b', 1)], 20_000)
    expect(got.a).to.be.closeTo(0.75, 0.02)
    expect(got.b).to.be.closeTo(0.25, 0.02)
  })
})

describe('least-loaded', () => {
  it('with a full scan picks the fewest in flight, then the lower latency', () => {
    const s = new LeastLoaded(seededRandom(2), 0)
    expect(s.pick([c('a', 1, 3), c('b', 1, 1), c('c', 1, 2)]).key).to.equal('b')
    expect(s.pick([c('a', 1, 1, 9), c('b', 1, 1, 3), c('c', 1, 1, 5)]).key).to.equal('b')
  })

  it('weighs in-flight by weight / (inFlight + 1)', () => {
    const s = new LeastLoaded(seededRandom(3), 0)
    // a: 4/(3+1) = 1, b: 1/(0+1) = 1, c: 2/(0+1) = 2
    expect(s.pick([c('a', 4, 3), c('b', 1, 0), c('c', 2, 0)]).key).to.equal('c')
  })

  it('breaks full ties at random, evenly', () => {
    const got = shares(new LeastLoaded(seededRandom(4), 0), [c('a'), c('b'), c('c')], 9000)
    for (const k of ['a', 'b', 'c']) expect(got[k]).to.be.closeTo(1 / 3, 0.03)
  })

  it('with two choices never picks the single most loaded of three', () => {
    const s = new LeastLoaded(seededRandom(5), 2)
    const list = [c('a', 1, 0), c('b', 1, 5), c('c', 1, 9)]
    const got = shares(s, list, 6000)
    expect(got.c ?? 0).to.equal(0)
    // a wins whenever it is one of the two (2/3 of draws), b the rest.
    expect(got.a).to.be.closeTo(2 / 3, 0.03)
  })
})

describe('consistent-hash', () => {
  const ring = (n: number) => Array.from({ length: n }, (_, i) => c(`/s/i${i}`))

  it('does no per-instance work on a pick from the list it last checked, and sees a weight change within 256 picks (found by the znode attack: 10,000 instances cost 14-55 ms a pick)', () => {
    let reads = 0
    let w = 1
    const list = Array.from({ length: 1000 }, (_, i) => {
      const x = { ...c(`/s/i${i}`) }
      Object.defineProperty(x, 'weight', { get: () => (reads++, i === 0 ? w : 1) })
      return x as Candidate
    })
    const s = new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(6))
    s.pick(list, { hashKey: 'first' })
    reads = 0
    for (let i = 0; i < 255; i++) s.pick(list, { hashKey: `k${i}` })
    expect(reads).to.equal(0)
    // A slow-start step on one instance is seen at the next check, and the ring is built again.
    w = 2
    const builds = s.ringBuilds
    for (let i = 0; i < 256; i++) s.pick(list, { hashKey: `k${i}` })
    expect(s.ringBuilds).to.equal(builds + 1)
  })

  it('sends the same key to the same instance', () => {
    const s = new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(6))
    const list = ring(5)
    for (let i = 0; i < 200; i++) {
      const k = `user-${i}`
      expect(s.pick(list, { hashKey: k }).key).to.equal(s.pick(list, { hashKey: k }).key)
    }
  })

  it('builds its ring again only when a ramping instance crosses a step of its points, whatever its weight (slow start)', () => {
    for (const weight of [1, 3.7, 20, 256]) {
      const s = new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(9))
      const fixed = ring(2)
      // A newcomer ramping from 10% to 100% over 1,000 requests: its weight differs on every one.
      for (let i = 0; i < 1000; i++) s.pick([...fixed, c('/s/new', weight * (0.1 + (0.9 * i) / 999))], { hashKey: `k${i}` })
      // 16 steps per doubling over a tenfold ramp: about 53 builds, not one per request or per point.
      expect(s.ringBuilds, String(weight)).to.be.within(40, 60)
      const builds = s.ringBuilds
      s.pick([...fixed, c('/s/new', weight)], { hashKey: 'same' })
      s.pick(fixed, { hashKey: 'a retry walks the same ring' })
      expect(s.ringBuilds, String(weight)).to.equal(builds)
    }
  })

  it('spreads keys evenly enough (each of 5 within 10 points of 20%)', () => {
    const got = shares(new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(7)), ring(5), 20_000, (i) => `k${i}`)
    for (const v of Object.values(got)) expect(v).to.be.closeTo(0.2, 0.1)
  })

  it('moves only about 1/N of the keys when an instance leaves or joins', () => {
    const s = new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(8))
    const before = ring(10)
    const keys = Array.from({ length: 10_000 }, (_, i) => `key-${i}`)
    const at = (list: Candidate[]) => keys.map((k) => s.pick(list, { hashKey: k }).key)
    const a = at(before)
    const b = at(before.filter((x) => x.key !== '/s/i3'))
    const moved = a.filter((k, i) => k !== b[i]).length / keys.length
    expect(moved).to.be.within(0.05, 0.15) // 1/10, give or take the ring's variance
    // Only the keys of the instance that left moved.
    expect(a.every((k, i) => k === '/s/i3' || k === b[i])).to.equal(true)
    const c11 = at([...before, c('/s/i10')])
    expect(a.filter((k, i) => k !== c11[i]).length / keys.length).to.be.within(0.04, 0.15)
  })

  it('bounds the load: a hot key spills over once its instance is above 1.25x the mean', () => {
    const s = new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(9))
    const list = ring(4)
    const home = s.pick(list, { hashKey: 'hot' })
    ;(list.find((x) => x.key === home.key) as C).inFlight = 10
    // mean with this request = 11/4, cap = ceil(1.25 * 11 / 4) = 4: home (10) is over it.
    const next = s.pick(list, { hashKey: 'hot' })
    expect(next.key).to.not.equal(home.key)
  })

  it('reads its key from a header, a cookie or the client address', () => {
    const h = createConsistentHash({ key: 'header:X-User' }, { random: Math.random })
    expect(h.hashKey!({ headers: { 'x-user': 'u1' }, remoteAddress: '1.2.3.4' })).to.equal('u1')
    expect(h.hashKey!({ headers: {}, remoteAddress: '1.2.3.4' })).to.equal('1.2.3.4')
    const k = createConsistentHash({ key: { cookie: 'sid' } }, { random: Math.random })
    expect(k.hashKey!({ headers: { cookie: 'a=1; sid=abc' }, remoteAddress: '1.2.3.4' })).to.equal('abc')
    const a = createConsistentHash({}, { random: Math.random })
    expect(a.hashKey!({ headers: {}, remoteAddress: '::1' })).to.equal('::1')
    expect(() => createConsistentHash({ key: 'nope' }, { random: Math.random })).to.throw(/header:<name>/)
    const short = createConsistentHash({ header: 'X-Tenant' }, { random: Math.random })
    expect(short.hashKey!({ headers: { 'x-tenant': 't9' }, remoteAddress: '1.2.3.4' })).to.equal('t9')
  })
})

describe('the balancer around a strategy', () => {
  const ep = (key: string, weight = 1, state: 'up' | 'draining' = 'up') => ({ key, host: '127.0.0.1', port: Number(key.slice(-1)) + 9000, weight, state, meta: {} })

  it('falls back to round-robin, warning once, when pick throws or returns a stranger', () => {
    for (const bad of [() => { throw new Error('boom') }, () => c('stranger')]) {
      const logger = recordingLogger()
      const b = new Balancer({ service: 's', strategy: { pick: bad }, logger, fallback: new RoundRobin(() => 0) })
      b.update([ep('/s/1'), ep('/s/2')])
      const got = Array.from({ length: 4 }, () => {
        const l = b.acquire(null, ctx)!
        l.release({ ok: true, latencyMs: 1 })
        return l.host.key
      })
      expect(got).to.deep.equal(['/s/1', '/s/2', '/s/1', '/s/2'])
      expect(logger.lines.filter((l) => l.level === 'warn')).to.have.length(1)
    }
  })

  it('hands the strategy only instances that are up, weighted above 0 and not yet tried', () => {
    const seen: string[][] = []
    const b = new Balancer({ service: 's', strategy: { pick: (list) => (seen.push(list.map((x) => x.key)), list[0]!) }, logger: recordingLogger(), fallback: new RoundRobin(() => 0) })
    b.update([ep('/s/1'), ep('/s/2', 0), ep('/s/3', 1, 'draining'), ep('/s/4'), ep('/s/5')])
    b.acquire(new Set(['/s/4']), ctx)
    expect(seen).to.deep.equal([['/s/1', '/s/5']])
  })

  it('hands a strategy only weights within 0-256, whoever built the endpoints, overrides and weights (issue 21)', () => {
    const seen: number[][] = []
    const strategy = { pick: (list: readonly Candidate[]) => (seen.push(list.map((x) => x.weight)), list[0]!) }
    const b = new Balancer({ service: 's', strategy, logger: recordingLogger(), fallback: new RoundRobin(() => 0), weights: { '127.0.0.1:9003': Infinity }, slowStartMs: 1_000, clock: () => 0 })
    b.update([ep('/s/1', 1e308), ep('/s/2', -5), ep('/s/3', 2)])
    expect(b.hosts.map((h) => h.weight)).to.deep.equal([256, 0, 256])
    b.setOverride('127.0.0.1:9003', { weight: 1e308 })
    b.update([ep('/s/1', 1e308), ep('/s/2', -5), ep('/s/3', 2), ep('/s/4', NaN), ep('/s/5', 1e300)])
    expect(b.hosts.map((h) => h.baseWeight)).to.deep.equal([256, 0, 256, 0, 256])
    b.acquire(null, ctx)
    // /s/5 is new and in slow start: 10% of the top of the range.
    expect(seen).to.deep.equal([[256, 256, 25.6]])
  })

  it('applies config weight overrides by host:port', () => {
    const b = new Balancer({ service: 's', strategy: new SmoothWeighted(), logger: recordingLogger(), fallback: new RoundRobin(() => 0), weights: { '127.0.0.1:9001': 3 } })
    b.update([ep('/s/1'), ep('/s/2')])
    expect(b.hosts.map((h) => h.weight)).to.deep.equal([3, 1])
  })

  it('ramps a newcomer linearly from 10% to 100% of its weight over slowStartMs, and not the first fleet', () => {
    let now = 5_000
    const b = new Balancer({ service: 's', strategy: new SmoothWeighted(), logger: recordingLogger(), fallback: new RoundRobin(() => 0), slowStartMs: 1000, clock: () => now })
    b.update([ep('/s/1', 10)])
    b.update([ep('/s/1', 10), ep('/s/2', 10)])
    const [old, fresh] = b.hosts
    const at = (ms: number) => {
      now = 5_000 + ms
      return [old!.weight, fresh!.weight]
    }
    expect([0, 250, 500, 750, 999].map((ms) => at(ms)[1])).to.deep.equal([1, 3.25, 5.5, 7.75, 9.991])
    expect(at(0)[0]).to.equal(10)
    expect(at(1000)).to.deep.equal([10, 10])
    expect(at(5000)).to.deep.equal([10, 10])
  })

  it('ramps the new weight when a ramping instance changes weight, and keeps its place in the ramp', () => {
    let now = 0
    const b = new Balancer({ service: 's', strategy: new SmoothWeighted(), logger: recordingLogger(), fallback: new RoundRobin(() => 0), slowStartMs: 1000, clock: () => now })
    b.update([ep('/s/1')])
    b.update([ep('/s/1'), ep('/s/2', 10)])
    now = 500
    b.update([ep('/s/1'), ep('/s/2', 20)])
    expect(b.hosts[1]!.weight).to.equal(11)
    now = 1000
    expect(b.hosts[1]!.weight).to.equal(20)
  })

  it('sends a ramping instance a share of the picks that grows with its weight', () => {
    let now = 0
    const b = new Balancer({ service: 's', strategy: new SmoothWeighted(), logger: recordingLogger(), fallback: new RoundRobin(() => 0), slowStartMs: 1000, clock: () => now })
    b.update([ep('/s/1', 10)])
    b.update([ep('/s/1', 10), ep('/s/2', 10)])
    const share = () => {
      let fresh = 0
      for (let i = 0; i < 1000; i++) {
        const l = b.acquire(null, ctx)!
        if (l.host.key === '/s/2') fresh++
        l.release({ ok: true, latencyMs: 1 })
      }
      return fresh / 1000
    }
    const shares = [0, 500, 1000].map((ms) => ((now = ms), share()))
    // Weights 10:1, 10:5.5 and 10:10.
    expect(shares[0]).to.be.closeTo(1 / 11, 0.01)
    expect(shares[1]).to.be.closeTo(5.5 / 15.5, 0.01)
    expect(shares[2]).to.equal(0.5)
  })

  it('keeps live figures across a weight change but not across an address change', () => {
    const b = new Balancer({ service: 's', strategy: new SmoothWeighted(), logger: recordingLogger(), fallback: new RoundRobin(() => 0) })
    b.update([ep('/s/1')])
    const lease = b.acquire(null, ctx)!
    b.update([{ ...ep('/s/1'), weight: 5 }])
    expect(b.hosts[0]).to.equal(lease.host)
    expect(b.hosts[0]!.inFlight).to.equal(1)
    b.update([{ ...ep('/s/1'), port: 1234 }])
    expect(b.hosts[0]).to.not.equal(lease.host)
    lease.release({ ok: true, latencyMs: 1 })
  })
})

describe('user strategy modules', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zoo-proxy-strategy-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const write = (name: string, text: string) => writeFileSync(path.join(dir, name), text)
  const load = (module: string) => validateConfig({ services: [{ name: 'a', path: '/a', strategy: { module, answer: 42 } }] }, dir)
  const problems = async (module: string) => {
    try {
      await load(module)
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError)
      return (err as ConfigError).problems.join('\n')
    }
    throw new Error('expected a config error')
  }

  it('loads a module relative to the config file and passes it its options', async () => {
    write('first.js', 'export function createStrategy(opts) { if (opts.answer !== 42) throw new Error("no options"); return { pick: (list) => list[0] } }')
    const config = await load('./first.js')
    expect(config.services[0]!.strategy).to.deep.equal({ module: path.join(dir, 'first.js'), options: { answer: 42 } })
  })

  it('rejects a missing module, one that throws, and one of the wrong shape', async () => {
    expect(await problems('./missing.js')).to.match(/^services\[0\]\.strategy: cannot load strategy module/)
    write('throws.js', 'throw new Error("kaboom")')
    expect(await problems('./throws.js')).to.match(/kaboom/)
    write('shape.js', 'export const createStrategy = 7')
    expect(await problems('./shape.js')).to.match(/must export a function "createStrategy"/)
    write('nopick.js', 'export default () => ({})')
    expect(await problems('./nopick.js')).to.match(/pick\(candidates, ctx\)/)
    write('factory-throws.js', 'export default () => { throw new Error("bad option") }')
    expect(await problems('./factory-throws.js')).to.match(/bad option/)
  })

  it('rejects bad options of built-in strategies, naming the option', async () => {
    const p = await validateConfig({ services: [{ name: 'a', path: '/a', strategy: { name: 'least-loaded', choices: 1 } }] }, dir).catch((e: ConfigError) => e.problems)
    expect(p).to.deep.equal(['services[0].strategy.choices: must be an integer >= 2 or "all"'])
    const q = await validateConfig({ services: [{ name: 'a', path: '/a', strategy: { name: 'weighted', colour: 1 } }] }, dir).catch((e: ConfigError) => e.problems)
    expect(q).to.deep.equal(['services[0].strategy.colour: unknown option "colour"'])
  })
})

describe('any weight, every strategy (issue 21)', () => {
  const random = seededRandom(2121)
  /** Weights a Candidate might carry: bounded ones, and what only a strategy used by hand could see. */
  const bounded = [256, 255.5, 100, 1, 0.5, 1e-3, 1e-300, 5e-324, 2.2e-308]
  const unbounded = [1e308, Number.MAX_VALUE, Infinity, 20_000, 0, -1, NaN]
  const pickOne = (from: readonly number[]) => from[Math.floor(random() * from.length)]!
  const listOf = (weights: readonly number[]) => weights.map((w, i) => c(`/s/i${String(i).padStart(3, '0')}`, w))
  const strategies = (): [string, Strategy][] => [
    ['weighted', new SmoothWeighted()],
    ['random', new WeightedRandom(seededRandom(1))],
    ['least-loaded', new LeastLoaded(seededRandom(2), 2)],
    ['consistent-hash', new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(3))],
    ['round-robin', new RoundRobin(seededRandom(4))],
  ]

  it('always picks one of the candidates, whatever their weights, and the ring stays within its cap', () => {
    for (let round = 0; round < 25; round++) {
      const n = 1 + Math.floor(random() * 12)
      const list = listOf(Array.from({ length: n }, () => pickOne(random() < 0.7 ? bounded : unbounded)))
      for (const [name, s] of strategies()) {
        for (let i = 0; i < 50; i++) {
          const got = s.pick(list, { hashKey: `k${i}` })
          expect(list, `${name} ${list.map((x) => x.weight).join(',')}`).to.include(got)
        }
        if (s instanceof ConsistentHash) expect(s.ringSize).to.be.within(1, MAX_RING_POINTS)
      }
    }
  })

  it('bounds the ring (and its build) for the heaviest weights, keeping a point for the lightest', () => {
    const s = new ConsistentHash({ clientAddress: true }, 1.25, seededRandom(5))
    // 300 instances at the top of the range would be 12M points at 160 per unit of weight.
    const heavy = listOf(Array.from({ length: 300 }, () => 256))
    s.pick(heavy, { hashKey: 'x' })
    expect(s.ringSize).to.be.within(MAX_RING_POINTS * 0.99, MAX_RING_POINTS)
    // Beyond the cap every instance still has a point: more instances than points, one each.
    s.pick(listOf([256, 5e-324, 1e-300]), { hashKey: 'y' })
    expect(s.ringSize).to.equal(40_960 + 1 + 1)
    const many = listOf(Array.from({ length: MAX_RING_POINTS + 10 }, () => 1e-3))
    s.pick(many, { hashKey: 'z' })
    expect(s.ringSize).to.equal(MAX_RING_POINTS + 10)
  })

  it('shares picks in proportion to any bounded weights (weighted exactly, random and consistent-hash within tolerance)', () => {
    for (let round = 0; round < 6; round++) {
      const weights = Array.from({ length: 2 + Math.floor(random() * 5) }, () => (random() < 0.3 ? pickOne(bounded) : 1 + random() * 255))
      const list = listOf(weights)
      const total = weights.reduce((a, b) => a + b, 0)
      const want = (k: string) => weights[Number(k.slice(-3))]! / total
      const n = 30_000
      const exact = shares(new SmoothWeighted(), list, n)
      for (const x of list) expect(exact[x.key] ?? 0, `weighted ${weights.join(',')}`).to.be.closeTo(want(x.key), 1e-3)
      const rnd = shares(new WeightedRandom(seededRandom(round)), list, n)
      for (const x of list) expect(rnd[x.key] ?? 0, `random ${weights.join(',')}`).to.be.closeTo(want(x.key), 0.02)
      const hashed = shares(new ConsistentHash({ clientAddress: true }, 1e9, seededRandom(round)), list, n, (i) => `user-${i}`)
      for (const x of list) expect(hashed[x.key] ?? 0, `consistent-hash ${weights.join(',')}`).to.be.closeTo(want(x.key), 0.06)
    }
  })

  it('keeps picks in proportion when weights overflow a sum, instead of throwing or sending everything to one', () => {
    // Infinity counts as the largest finite number; 1e308 is then 0.556 of it.
    const list = listOf([1e308, 1e308, Number.MAX_VALUE, Infinity])
    const share = 1e308 / Number.MAX_VALUE
    const want = [share, share, 1, 1].map((w) => w / (2 * share + 2))
    for (const s of [new SmoothWeighted(), new WeightedRandom(seededRandom(6))]) {
      const got = shares(s, list, 9000)
      list.forEach((x, i) => expect(got[x.key], x.key).to.be.closeTo(want[i]!, 0.02))
    }
  })
})
