// The balancer's bookkeeping at its edges: the ones mutation testing (npm run mutation) showed no
// other test pinned down. Ejection timers are real but 1 ms long, and waited for by condition.

import { expect } from 'chai'
import { Balancer } from '../../lib/balancing/balancer.js'
import type { Host } from '../../lib/balancing/balancer.js'
import type { OutlierOptions } from '../../lib/balancing/outlier-detection.js'
import type { Endpoint } from '../../lib/discovery/endpoint.js'
import { ConsistentHash } from '../../strategies/consistent-hash.js'
import { RoundRobin } from '../../strategies/round-robin.js'
import type { Strategy } from '../../strategies/strategy.js'
import { recordingLogger, waitFor } from '../support/helpers.js'

const ep = (n: number, o: Partial<Endpoint> = {}): Endpoint => ({ key: `/s/${n}`, host: '127.0.0.1', port: 9000 + n, weight: 1, state: 'up', meta: {}, ...o })
const ctx = { hashKey: undefined }

function balancer(opts: { outlier?: OutlierOptions; strategy?: Strategy; clock?: () => number } = {}) {
  const logger = recordingLogger()
  const b = new Balancer({ service: 's', strategy: opts.strategy ?? new RoundRobin(() => 0), logger, fallback: new RoundRobin(() => 0), ...opts })
  return { b, logger }
}

/** One attempt on `key` (every other instance counted as tried), ended with `outcome`. */
function attempt(b: Balancer, key: string, ok: boolean, latencyMs = 1): Host {
  const lease = b.acquire(new Set(b.hosts.filter((h) => h.key !== key).map((h) => h.key)), ctx)!
  expect(lease.host.key).to.equal(key)
  lease.release(ok ? { ok: true, latencyMs } : { ok: false, kind: 'connect', latencyMs })
  return lease.host
}

const keysOf = (b: Balancer, n: number, tried: ReadonlySet<string> | null = null) =>
  Array.from({ length: n }, () => {
    const l = b.acquire(tried, ctx)!
    l.release({ ok: true, latencyMs: 1 })
    return l.host.key
  })

describe('the balancer, before and between snapshots', () => {
  it('has no hosts, is not in panic and gives no lease before its first snapshot', () => {
    const { b } = balancer()
    expect(b.hosts).to.deep.equal([])
    expect(b.panic).to.equal(false)
    expect(b.acquire(null, ctx)).to.equal(null)
  })

  it('sorts its hosts by key whatever the order of the snapshot', () => {
    const { b } = balancer()
    for (const order of [[3, 1, 2], [4, 3, 2, 1], [2, 4, 1, 3], [1, 2, 3, 4]]) {
      b.update(order.map((n) => ep(n)))
      expect(b.hosts.map((h) => h.key)).to.deep.equal([...order].sort().map((n) => `/s/${n}`))
    }
  })

  it('treats the same key at another host as a new instance, and reports exactly the hosts that left', () => {
    const { b } = balancer()
    const removed: string[][] = []
    b.onRemoved = (hosts) => removed.push(hosts.map((h) => `${h.key}@${h.host}`))
    b.update([ep(1), ep(2)])
    const first = b.hosts[0]!
    b.update([ep(1, { weight: 5 }), ep(2)])
    expect(b.hosts[0]).to.equal(first)
    b.update([ep(1, { host: '127.0.0.2' }), ep(2)])
    expect(b.hosts[0]).to.not.equal(first)
    b.update([ep(2)])
    expect(removed).to.deep.equal([['/s/1@127.0.0.1'], ['/s/1@127.0.0.2']])
  })

  it('names an IPv6 instance in brackets for a weight override', () => {
    const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger: recordingLogger(), fallback: new RoundRobin(() => 0), weights: { '[::1]:9001': 4, '127.0.0.1:9002': 3 } })
    b.update([ep(1, { host: '::1' }), ep(2)])
    expect(b.hosts.map((h) => h.weight)).to.deep.equal([4, 3])
  })

  it('runs slow start on performance.now when given no clock', () => {
    const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger: recordingLogger(), fallback: new RoundRobin(() => 0), slowStartMs: 3_600_000 })
    b.update([ep(1, { weight: 10 })])
    b.update([ep(1, { weight: 10 }), ep(2, { weight: 10 })])
    // An hour's ramp has just begun: 10% of 10, and a few ms more at most.
    expect(b.hosts[1]!.weight).to.be.within(1, 1.01)
  })
})

describe('the balancer, leases and figures', () => {
  it('counts a lease once however often it is released', () => {
    const { b } = balancer()
    b.update([ep(1)])
    const lease = b.acquire(null, ctx)!
    lease.release({ ok: false, kind: 'reset', latencyMs: 4 })
    lease.release({ ok: false, kind: 'reset', latencyMs: 4 })
    const h = b.hosts[0]!
    expect([h.inFlight, h.requests, h.failures, h.consecutiveFailures]).to.deep.equal([0, 1, 1, 1])
  })

  it('counts requests and failures, and leaves them alone when the client went away', () => {
    const { b } = balancer()
    b.update([ep(1)])
    attempt(b, '/s/1', false)
    attempt(b, '/s/1', true)
    attempt(b, '/s/1', false)
    const gone = b.acquire(null, ctx)!
    gone.release({ ok: null })
    const h = b.hosts[0]!
    expect([h.inFlight, h.requests, h.failures, h.consecutiveFailures, h.latencyEwmaMs]).to.deep.equal([0, 4, 2, 1, 1])
  })

  it('takes the first latency as it is, then moves 30% of the way to each new one', () => {
    const { b } = balancer()
    b.update([ep(1)])
    const seen = [10, 20, 3].map((ms) => attempt(b, '/s/1', true, ms).latencyEwmaMs)
    expect(seen).to.deep.equal([10, 13, 10])
  })

  it('does not consult the strategy when only one instance can take the request', () => {
    const asked: number[] = []
    const { b } = balancer({ strategy: { pick: (list) => (asked.push(list.length), list[0]!) } })
    b.update([ep(1), ep(2)])
    b.acquire(new Set(['/s/1']), ctx)!.release({ ok: true, latencyMs: 1 })
    b.acquire(null, ctx)!.release({ ok: true, latencyMs: 1 })
    expect(asked).to.deep.equal([2])
  })

  it('hands the request to the strategy for its affinity key only when the strategy has one', () => {
    const hashed = balancer({ strategy: new ConsistentHash({ header: 'x-user' }, 1.25, () => 0) }).b
    expect(hashed.usesHashKey).to.equal(true)
    expect(hashed.hashKey({ headers: { 'x-user': 'u7' }, remoteAddress: '10.0.0.1' })).to.equal('u7')
    const plain = balancer().b
    expect(plain.usesHashKey).to.equal(false)
    expect(plain.hashKey({ headers: { 'x-user': 'u7' }, remoteAddress: '10.0.0.1' })).to.equal(undefined)
  })
})

describe('the balancer, when the strategy fails', () => {
  const warnings = (pick: Strategy['pick']) => {
    const { b, logger } = balancer({ strategy: { pick } })
    b.update([ep(1), ep(2)])
    expect(keysOf(b, 3)).to.deep.equal(['/s/1', '/s/2', '/s/1'])
    return logger.lines.filter((l) => l.level === 'warn').map((l) => [l.msg, l.obj])
  }
  const msg = 'strategy failed, falling back to round-robin for such requests (warned once)'

  it('warns once with what the strategy threw, an Error or any other value', () => {
    expect(warnings(() => { throw new Error('boom') })).to.deep.equal([[msg, { service: 's', problem: 'pick threw: boom' }]])
    expect(warnings(() => { throw 'no pick today' })).to.deep.equal([[msg, { service: 's', problem: 'pick threw: no pick today' }]])
    expect(warnings(() => { throw null })).to.deep.equal([[msg, { service: 's', problem: 'pick threw: null' }]])
  })

  it('warns once when the strategy returns something that is not a candidate', () => {
    const stranger = { key: '/s/9', host: 'x', port: 1, weight: 1, inFlight: 0, latencyEwmaMs: 0 }
    expect(warnings(() => stranger)).to.deep.equal([[msg, { service: 's', problem: 'pick returned something that is not one of the candidates' }]])
  })
})

describe('the balancer, passive health at its edges', () => {
  const outlier = (o: Partial<OutlierOptions> = {}): OutlierOptions => ({ consecutiveFailures: 1, baseEjectionMs: 60_000, maxEjectionMs: 120_000, maxEjectionPercent: 100, ...o })

  it('never ejects without outlier options, nor with consecutiveFailures 0', () => {
    for (const o of [undefined, outlier({ consecutiveFailures: 0 })]) {
      const { b, logger } = balancer(o ? { outlier: o } : {})
      b.update([ep(1), ep(2)])
      for (let i = 0; i < 5; i++) attempt(b, '/s/1', false)
      expect(b.hosts.map((h) => h.ejectedUntil)).to.deep.equal([0, 0])
      expect(b.hosts[0]!.consecutiveFailures).to.equal(5)
      expect(logger.lines).to.deep.equal([])
      b.close()
    }
  })

  it('does not eject an instance again for a failure that ends while it is ejected', () => {
    let now = 1_000_000
    const { b, logger } = balancer({ outlier: outlier(), clock: () => now })
    b.update([ep(1), ep(2)])
    const tried = new Set(['/s/2'])
    const first = b.acquire(tried, ctx)!
    const second = b.acquire(tried, ctx)!
    first.release({ ok: false, kind: 'timeout', latencyMs: 1 })
    now += 10
    second.release({ ok: false, kind: 'timeout', latencyMs: 1 })
    const h = b.hosts[0]!
    expect([h.ejections, h.ejectedUntil, h.failures]).to.deep.equal([1, 1_000_000 + 60_000, 2])
    expect(logger.lines.filter((l) => l.msg === 'instance healthy -> ejected')).to.have.length(1)
    b.close()
  })

  it('logs each step of an ejection with the service and the instance', async () => {
    const { b, logger } = balancer({ outlier: outlier({ baseEjectionMs: 1 }), clock: () => 5_000 })
    b.update([ep(1), ep(2)])
    const h = attempt(b, '/s/1', false)
    await waitFor(() => h.probing, 'probation')
    attempt(b, '/s/1', true)
    // A success outside probation changes nothing and says nothing.
    attempt(b, '/s/1', true)
    expect(logger.lines.map((l) => [l.level, l.msg, l.obj])).to.deep.equal([
      ['warn', 'instance healthy -> ejected', { service: 's', instance: '127.0.0.1:9001', consecutiveFailures: 1, ejectionMs: 1, ejections: 1 }],
      ['info', 'instance ejected -> probation', { service: 's', instance: '127.0.0.1:9001' }],
      ['info', 'instance probation -> healthy', { service: 's', instance: '127.0.0.1:9001' }],
    ])
    expect(h.healthySince).to.equal(5_000)
    b.close()
  })

  it('marks no healthySince on a success of an instance never ejected', () => {
    const { b, logger } = balancer({ outlier: outlier(), clock: () => 5_000 })
    b.update([ep(1)])
    attempt(b, '/s/1', true)
    expect(b.hosts[0]!.healthySince).to.equal(0)
    expect(logger.lines).to.deep.equal([])
  })

  it('keeps the multiplier after a healthy spell of exactly maxEjectionMs', async () => {
    let now = 1_000_000
    const { b } = balancer({ outlier: outlier({ baseEjectionMs: 1, maxEjectionMs: 1000 }), clock: () => now })
    b.update([ep(1), ep(2)])
    const h = attempt(b, '/s/1', false)
    await waitFor(() => h.probing, 'probation')
    attempt(b, '/s/1', true)
    now += 1000
    attempt(b, '/s/1', false)
    expect([h.ejections, h.ejectedUntil - now]).to.deep.equal([2, 2])
    b.close()
  })

  it('keeps a second request off an instance on probation, even when the request tried nothing yet', async () => {
    const { b } = balancer({ outlier: outlier({ baseEjectionMs: 1 }) })
    b.update([ep(1), ep(2)])
    const h = attempt(b, '/s/1', false)
    await waitFor(() => h.probing, 'probation')
    const probe = b.acquire(new Set(['/s/2']), ctx)!
    expect(probe.host).to.equal(h)
    expect(keysOf(b, 4)).to.deep.equal(['/s/2', '/s/2', '/s/2', '/s/2'])
    expect(b.hasUntried(new Set(['/s/2']))).to.equal(false)
    probe.release({ ok: true, latencyMs: 1 })
    expect(keysOf(b, 2)).to.deep.equal(['/s/1', '/s/2'])
    b.close()
  })

  it('sends a first attempt to some instance when every one is on probation with its probe in flight, rather than answering 503', async () => {
    const { b } = balancer({ outlier: outlier({ baseEjectionMs: 1 }) })
    b.update([ep(1), ep(2)])
    const h1 = attempt(b, '/s/1', false)
    const h2 = attempt(b, '/s/2', false)
    await waitFor(() => h1.probing && h2.probing, 'both on probation')
    const probes = [b.acquire(new Set(['/s/2']), ctx)!, b.acquire(new Set(['/s/1']), ctx)!]
    expect(probes.map((p) => p.host.key)).to.deep.equal(['/s/1', '/s/2'])
    const first = b.acquire(new Set(), ctx)
    expect(first, 'a first attempt').to.not.equal(null)
    // A retry still keeps to instances that may take it: not past a probe in flight.
    expect(b.acquire(new Set([first!.host.key]), ctx)).to.equal(null)
    expect(b.hasUntried(new Set([first!.host.key]))).to.equal(false)
    first!.release({ ok: true, latencyMs: 1 })
    for (const p of probes) p.release({ ok: true, latencyMs: 1 })
    b.close()
  })

  it('counts an instance on probation with nothing in flight as one a retry could go to', async () => {
    const { b } = balancer({ outlier: outlier({ baseEjectionMs: 1 }) })
    b.update([ep(1), ep(2)])
    const h = attempt(b, '/s/1', false)
    await waitFor(() => h.probing, 'probation')
    expect(b.hasUntried(new Set(['/s/2']))).to.equal(true)
    expect(b.hasUntried(new Set())).to.equal(true)
    b.close()
  })

  it('spreads over every up instance when all are ejected (panic), never over a draining one', () => {
    const { b } = balancer({ outlier: outlier() })
    b.update([ep(1), ep(2), ep(3, { state: 'draining' })])
    expect(b.panic).to.equal(false)
    attempt(b, '/s/1', false)
    expect(b.panic).to.equal(false)
    attempt(b, '/s/2', false)
    expect(b.panic).to.equal(true)
    expect(keysOf(b, 4)).to.deep.equal(['/s/1', '/s/2', '/s/1', '/s/2'])
    expect(b.hasUntried(new Set(['/s/1']))).to.equal(true)
    expect(b.hasUntried(new Set(['/s/1', '/s/2']))).to.equal(false)
    b.close()
  })

  it('is not in panic when no instance could take traffic at all', () => {
    const { b } = balancer()
    b.update([ep(1, { state: 'draining' }), ep(2, { weight: 0 })])
    expect(b.panic).to.equal(false)
    expect(b.acquire(null, ctx)).to.equal(null)
  })

  it('tells whether a retry could find an instance not tried yet, healthy ones first', () => {
    const { b } = balancer({ outlier: outlier() })
    b.update([ep(1), ep(2), ep(3, { state: 'draining' })])
    expect(b.hasUntried(new Set())).to.equal(true)
    expect(b.hasUntried(new Set(['/s/1']))).to.equal(true)
    expect(b.hasUntried(new Set(['/s/1', '/s/2']))).to.equal(false)
    // A request in flight does not make an instance that is not on probation unavailable.
    const busy = b.acquire(new Set(['/s/1']), ctx)!
    expect(b.hasUntried(new Set(['/s/1']))).to.equal(true)
    busy.release({ ok: true, latencyMs: 1 })
    // /s/1 ejected: the pool is the healthy /s/2 alone, so having tried it leaves nothing.
    attempt(b, '/s/1', false)
    expect(b.hasUntried(new Set(['/s/2']))).to.equal(false)
    expect(b.hasUntried(new Set(['/s/1']))).to.equal(true)
    b.close()
  })

  it('cancels its ejection timers on close', async () => {
    const closed = balancer({ outlier: outlier({ baseEjectionMs: 1 }) }).b
    closed.update([ep(1), ep(2)])
    const gone = attempt(closed, '/s/1', false)
    closed.close()
    // A second balancer whose timer is due after the first one's: once it fired, so would have the other.
    const open = balancer({ outlier: outlier({ baseEjectionMs: 5 }) }).b
    open.update([ep(1), ep(2)])
    const witness = attempt(open, '/s/1', false)
    await waitFor(() => witness.probing, 'the later ejection timer')
    expect([gone.probing, gone.ejectedUntil > 0]).to.deep.equal([false, true])
    open.close()
  })
})
