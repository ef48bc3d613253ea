import { expect } from 'chai'
import { RoundRobin } from '../../strategies/round-robin.js'
import type { Candidate } from '../../strategies/strategy.js'

const c = (key: string): Candidate => ({ key, host: key, port: 1, weight: 1, inFlight: 0, latencyEwmaMs: 0 })

describe('round-robin', () => {
  it('rotates exactly in key order from its random start', () => {
    const rr = new RoundRobin(() => 0.5) // starts at index 1 of 3
    const list = [c('a'), c('b'), c('c')]
    expect(Array.from({ length: 7 }, () => rr.pick(list).key).join('')).to.equal('bcabcab')
  })

  it('keeps its turn across a membership change', () => {
    const rr = new RoundRobin(() => 0)
    let list = [c('a'), c('b'), c('c')]
    expect([rr.pick(list), rr.pick(list)].map((x) => x.key)).to.deep.equal(['a', 'b'])
    list = [c('a'), c('c'), c('d')] // b left, d joined
    expect([rr.pick(list), rr.pick(list), rr.pick(list)].map((x) => x.key)).to.deep.equal(['c', 'd', 'a'])
    list = [c('a'), c('aa'), c('c'), c('d')] // aa joined right after the last pick
    expect(rr.pick(list).key).to.equal('aa')
  })

  it('skips what the balancer left out (tried instances)', () => {
    const rr = new RoundRobin(() => 0)
    expect(rr.pick([c("a"), c("b"), c("c")]).key).to.equal('a')
    expect(rr.pick([c("a"), c("c")]).key).to.equal('c')
  })
})
