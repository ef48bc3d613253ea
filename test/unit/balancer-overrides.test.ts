// The balancer's run-time overrides (PUT/DELETE /services/{name}/instances/{host:port} on the admin
// listener) on their own: what they change, what they win over, how long they last, and what a
// reload's new balancer takes over.

import { expect } from 'chai'
import { Balancer } from '../../lib/balancing/balancer.js'
import type { Override } from '../../lib/balancing/balancer.js'
import { WEIGHT_MAX } from '../../lib/discovery/endpoint.js'
import type { Endpoint } from '../../lib/discovery/endpoint.js'
import { RoundRobin } from '../../strategies/round-robin.js'
import { recordingLogger } from '../support/helpers.js'

const ep = (n: number, o: Partial<Endpoint> = {}): Endpoint => ({ key: `/s/${n}`, host: '127.0.0.1', port: 9000 + n, weight: 1, state: 'up', meta: {}, ...o })
const ctx = { hashKey: undefined }

function balancer(weights?: Record<string, number>) {
  const logger = recordingLogger()
  const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), fallback: new RoundRobin(() => 0), logger, ...(weights ? { weights } : {}) })
  return { b, logger }
}

/** The keys of `n` picks in a row, each lease released at once. */
const picks = (b: Balancer, n: number) =>
  Array.from({ length: n }, () => {
    const l = b.acquire(null, ctx)
    if (l === null) return null
    l.release({ ok: true, latencyMs: 1 })
    return l.host.key
  })

const figures = (b: Balancer) => b.hosts.map((h) => ({ key: h.key, weight: h.baseWeight, state: h.state, override: h.override, eligible: h.eligible }))

describe('run-time overrides, set and cleared', () => {
  it('refuses an address no instance of the service has, and changes nothing', () => {
    const { b, logger } = balancer()
    b.update([ep(1), ep(2)])
    const before = figures(b)
    for (const at of ['127.0.0.1:9003', '127.0.0.1', '9001', '127.0.0.2:9001', '[127.0.0.1]:9001', '', '/s/1'])
      expect(b.setOverride(at, { state: 'draining' }), at).to.equal(false)
    expect(b.setOverride('127.0.0.1:9003', null)).to.equal(false)
    expect(figures(b)).to.deep.equal(before)
    expect([...b.overrides]).to.deep.equal([])
    expect(logger.lines).to.deep.equal([])
  })

  it('refuses every address before the first snapshot', () => {
    const { b } = balancer()
    expect(b.setOverride('127.0.0.1:9001', { weight: 2 })).to.equal(false)
    expect([...b.overrides]).to.deep.equal([])
  })

  it('sets a weight that wins over the config and the znode, and clearing it gives theirs back', () => {
    const { b } = balancer({ '127.0.0.1:9001': 5 })
    b.update([ep(1, { weight: 3 }), ep(2, { weight: 7 })])
    expect(b.hosts.map((h) => h.baseWeight)).to.deep.equal([5, 7])
    for (const w of [0, 0.5, 1, 2, 100, WEIGHT_MAX]) {
      expect(b.setOverride('127.0.0.1:9001', { weight: w })).to.equal(true)
      expect(b.setOverride('127.0.0.1:9002', { weight: w })).to.equal(true)
      expect(b.hosts.map((h) => h.baseWeight), `weight ${w}`).to.deep.equal([w, w])
    }
    b.setOverride('127.0.0.1:9001', null)
    b.setOverride('127.0.0.1:9002', null)
    expect(b.hosts.map((h) => [h.baseWeight, h.override])).to.deep.equal([[5, null], [7, null]])
  })

  it('holds an override weight to the one weight range, as every other source', () => {
    const { b } = balancer()
    b.update([ep(1)])
    for (const [w, held] of [[-1, 0], [-Infinity, 0], [257, WEIGHT_MAX], [1e300, WEIGHT_MAX], [Infinity, WEIGHT_MAX]] as const) {
      b.setOverride('127.0.0.1:9001', { weight: w })
      expect(b.hosts[0]!.baseWeight, `weight ${w}`).to.equal(held)
    }
  })

  it('keeps the config and znode weight when the override sets only a state', () => {
    const { b } = balancer({ '127.0.0.1:9001': 5 })
    b.update([ep(1, { weight: 3 }), ep(2, { weight: 7 })])
    b.setOverride('127.0.0.1:9001', { state: 'draining' })
    b.setOverride('127.0.0.1:9002', { state: 'up' })
    expect(figures(b)).to.deep.equal([
      { key: '/s/1', weight: 5, state: 'draining', override: { state: 'draining' }, eligible: false },
      { key: '/s/2', weight: 7, state: 'up', override: { state: 'up' }, eligible: true },
    ])
  })

  it('takes effect for the next pick: draining takes an instance out, up puts a draining one back, weight 0 takes it out', () => {
    const { b } = balancer()
    b.update([ep(1), ep(2, { state: 'draining' }), ep(3)])
    expect(picks(b, 4)).to.deep.equal(['/s/1', '/s/3', '/s/1', '/s/3'])
    b.setOverride('127.0.0.1:9001', { state: 'draining' })
    expect(picks(b, 2)).to.deep.equal(['/s/3', '/s/3'])
    b.setOverride('127.0.0.1:9002', { state: 'up' })
    expect(picks(b, 2)).to.deep.equal(['/s/2', '/s/3'])
    b.setOverride('127.0.0.1:9003', { weight: 0 })
    expect(picks(b, 2)).to.deep.equal(['/s/2', '/s/2'])
    b.setOverride('127.0.0.1:9002', { state: 'draining' })
    expect(picks(b, 1)).to.deep.equal([null])
    expect(b.panic).to.equal(false)
    b.setOverride('127.0.0.1:9001', null)
    expect(picks(b, 2)).to.deep.equal(['/s/1', '/s/1'])
  })

  it('applies to every instance at the address, whatever their keys', () => {
    const { b } = balancer()
    b.update([ep(1), ep(2, { key: '/s/1-again', port: 9001 }), ep(3)])
    expect(b.setOverride('127.0.0.1:9001', { state: 'draining', weight: 9 })).to.equal(true)
    expect(b.hosts.map((h) => [h.key, h.state, h.baseWeight])).to.deep.equal([
      ['/s/1', 'draining', 9],
      ['/s/1-again', 'draining', 9],
      ['/s/3', 'up', 1],
    ])
    expect([...b.overrides.keys()]).to.deep.equal(['127.0.0.1:9001'])
  })

  it('names an IPv6 instance in brackets, and only so', () => {
    const { b } = balancer()
    b.update([ep(1, { host: '::1' })])
    expect(b.setOverride('::1:9001', { weight: 2 })).to.equal(false)
    expect(b.setOverride('[::1]:9001', { weight: 2 })).to.equal(true)
    expect(b.hosts[0]!.hostPort).to.equal('[::1]:9001')
    expect(b.hosts[0]!.baseWeight).to.equal(2)
  })

  it('lists the overrides in force, the last one set for an address replacing the one before', () => {
    const { b } = balancer()
    b.update([ep(1), ep(2)])
    b.setOverride('127.0.0.1:9001', { weight: 2 })
    b.setOverride('127.0.0.1:9002', { state: 'draining' })
    b.setOverride('127.0.0.1:9001', { state: 'draining' })
    expect([...b.overrides]).to.deep.equal([
      ['127.0.0.1:9001', { state: 'draining' }],
      ['127.0.0.1:9002', { state: 'draining' }],
    ])
    // The override replaced is gone whole: its weight does not linger.
    expect(b.hosts[0]!.baseWeight).to.equal(1)
    b.setOverride('127.0.0.1:9002', null)
    expect([...b.overrides]).to.deep.equal([['127.0.0.1:9001', { state: 'draining' }]])
  })

  it('logs each change with the service, the instance and the override', () => {
    const { b, logger } = balancer()
    b.update([ep(1)])
    b.setOverride('127.0.0.1:9001', { weight: 3, state: 'draining' })
    b.setOverride('127.0.0.1:9001', null)
    expect(logger.lines.map((l) => [l.level, l.msg, l.obj])).to.deep.equal([
      ['info', 'override set', { service: 's', instance: '127.0.0.1:9001', override: { weight: 3, state: 'draining' } }],
      ['info', 'override cleared', { service: 's', instance: '127.0.0.1:9001', override: null }],
    ])
  })
})

describe('run-time overrides across snapshots', () => {
  it('survives a snapshot that keeps the instance, even one that changes its znode weight and state', () => {
    const { b } = balancer()
    b.update([ep(1), ep(2)])
    b.setOverride('127.0.0.1:9001', { weight: 4, state: 'draining' })
    const host = b.hosts[0]!
    b.update([ep(1, { weight: 9, state: 'up' }), ep(2)])
    expect(b.hosts[0]).to.equal(host)
    expect([host.baseWeight, host.state, host.override]).to.deep.equal([4, 'draining', { weight: 4, state: 'draining' }])
    expect(picks(b, 2)).to.deep.equal(['/s/2', '/s/2'])
  })

  it('applies to an instance that comes back at the address under a new key while the override holds', () => {
    const { b } = balancer()
    b.update([ep(1), ep(2)])
    b.setOverride('127.0.0.1:9001', { weight: 6 })
    // The same address in the same snapshot under a new key: a new Host, the override carried over.
    b.update([ep(1, { key: '/s/1b' }), ep(2)])
    expect(b.hosts.map((h) => [h.key, h.baseWeight, h.override])).to.deep.equal([
      ['/s/1b', 6, { weight: 6 }],
      ['/s/2', 1, null],
    ])
  })

  it('ends when the instance leaves ZooKeeper, and does not come back with it', () => {
    const { b } = balancer()
    b.update([ep(1), ep(2)])
    b.setOverride('127.0.0.1:9001', { state: 'draining' })
    b.setOverride('127.0.0.1:9002', { weight: 3 })
    b.update([ep(2)])
    expect([...b.overrides.keys()]).to.deep.equal(['127.0.0.1:9002'])
    b.update([ep(1), ep(2)])
    expect(figures(b)).to.deep.equal([
      { key: '/s/1', weight: 1, state: 'up', override: null, eligible: true },
      { key: '/s/2', weight: 3, state: 'up', override: { weight: 3 }, eligible: true },
    ])
  })

  it('ends with an empty snapshot', () => {
    const { b } = balancer()
    b.update([ep(1)])
    b.setOverride('127.0.0.1:9001', { state: 'draining' })
    b.update([])
    expect([...b.overrides]).to.deep.equal([])
  })
})

describe('run-time overrides handed to a reload\'s new balancer', () => {
  it('applies what it adopted with its first snapshot, and drops what that snapshot does not list', () => {
    const old = balancer().b
    old.update([ep(1), ep(2), ep(3)])
    const set: [string, Override][] = [
      ['127.0.0.1:9001', { state: 'draining' }],
      ['127.0.0.1:9002', { weight: 5 }],
      ['127.0.0.1:9003', { weight: 2, state: 'draining' }],
    ]
    for (const [at, o] of set) old.setOverride(at, o)
    const next = balancer({ '127.0.0.1:9002': 8 }).b
    next.adoptOverrides(old.overrides)
    expect([...next.overrides]).to.deep.equal(set)
    // Not applied to anything yet: there is nothing to apply it to before a snapshot.
    expect(next.hosts).to.deep.equal([])
    next.update([ep(1), ep(2)])
    expect(figures(next)).to.deep.equal([
      { key: '/s/1', weight: 1, state: 'draining', override: { state: 'draining' }, eligible: false },
      { key: '/s/2', weight: 5, state: 'up', override: { weight: 5 }, eligible: true },
    ])
    expect([...next.overrides.keys()]).to.deep.equal(['127.0.0.1:9001', '127.0.0.1:9002'])
    expect(picks(next, 2)).to.deep.equal(['/s/2', '/s/2'])
  })

  it('keeps its own overrides and takes the other balancer\'s over them for the same address', () => {
    const old = balancer().b
    old.update([ep(1)])
    old.setOverride('127.0.0.1:9001', { weight: 7 })
    const next = balancer().b
    next.update([ep(1), ep(2)])
    next.setOverride('127.0.0.1:9001', { state: 'draining' })
    next.setOverride('127.0.0.1:9002', { weight: 3 })
    next.adoptOverrides(old.overrides)
    expect([...next.overrides]).to.deep.equal([
      ['127.0.0.1:9001', { weight: 7 }],
      ['127.0.0.1:9002', { weight: 3 }],
    ])
    // Adopted overrides wait for the next snapshot, as the method says.
    expect(next.hosts[0]!.state).to.equal('draining')
    next.update([ep(1), ep(2)])
    expect(next.hosts.map((h) => [h.state, h.baseWeight])).to.deep.equal([['up', 7], ['up', 3]])
  })

  it('adopts nothing from a balancer without overrides', () => {
    const next = balancer().b
    next.adoptOverrides(balancer().b.overrides)
    next.update([ep(1)])
    expect([...next.overrides]).to.deep.equal([])
    expect(next.hosts[0]!.override).to.equal(null)
  })
})
