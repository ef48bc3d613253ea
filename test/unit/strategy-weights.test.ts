// The weight helpers every weighted strategy shares (strategies/strategy.ts), and the defaults a
// built-in strategy's options are printed with (strategies/index.ts), asked directly: the mutation
// run found them reached only through strategies that give the same pick either way.

import { expect } from 'chai'
import { finiteWeights, plainWeights } from '../../strategies/strategy.js'
import type { Candidate } from '../../strategies/strategy.js'
import { withDefaultOptions } from '../../strategies/index.js'
import { DEFAULT_KEY, DEFAULT_LOAD_FACTOR } from '../../strategies/consistent-hash.js'
import { DEFAULT_CHOICES } from '../../strategies/least-loaded.js'

const of = (...weights: number[]): Candidate[] => weights.map((weight, i) => ({ key: `k${i}`, host: '127.0.0.1', port: 1000 + i, weight }) as Candidate)
const MAX = Number.MAX_VALUE

describe('strategy weights', () => {
  it('plainWeights: true exactly when every weight is finite and above 0 and their sum is finite', () => {
    for (const ws of [[1], [1, 2, 256], [Number.MIN_VALUE], [MAX], [MAX / 2, MAX / 2], []]) expect(plainWeights(of(...ws)), String(ws)).to.equal(true)
    for (const ws of [[0], [1, 0], [-1], [1, -0.5], [Number.NaN], [1, Number.NaN], [Infinity], [1, Infinity], [-Infinity], [MAX, MAX], [MAX, MAX / 2 ** 52]]) {
      expect(plainWeights(of(...ws)), String(ws)).to.equal(false)
    }
  })

  it('finiteWeights: NaN and <= 0 count 0, Infinity the largest finite number, and the sum never overflows', () => {
    expect(finiteWeights(of(1, 2, 3))).to.deep.equal([1, 2, 3])
    expect(finiteWeights(of(2, 0, -1, Number.NaN, 4))).to.deep.equal([2, 0, 0, 0, 4])
    // None above 0: all 1, so a pick is still made evenly.
    expect(finiteWeights(of(0, -1, Number.NaN))).to.deep.equal([1, 1, 1])
    // A sum that would overflow: divided by the largest, order kept.
    expect(finiteWeights(of(MAX, MAX))).to.deep.equal([1, 1])
    expect(finiteWeights(of(Infinity, MAX / 2, 0))).to.deep.equal([1, 0.5, 0])
    // The largest is found wherever it sits, not only first or last.
    expect(finiteWeights(of(MAX / 4, MAX, MAX / 2))).to.deep.equal([0.25, 1, 0.5])
    // A sum of exactly MAX does not overflow: left as it is.
    expect(finiteWeights(of(MAX / 2, MAX / 2))).to.deep.equal([MAX / 2, MAX / 2])
    for (const ws of [[1e308, 1e308, 1e308], [Infinity, Infinity], [5, Infinity, 7]]) {
      const out = finiteWeights(of(...ws))
      expect(out.reduce((a, b) => a + b, 0), String(ws)).to.be.at.most(MAX)
      expect(out.every((w) => Number.isFinite(w) && w >= 0), String(ws)).to.equal(true)
    }
  })
})

describe('a built-in strategy\'s options with its defaults written out', () => {
  it('least-loaded: choices unless given', () => {
    expect(withDefaultOptions('least-loaded', {})).to.deep.equal({ choices: DEFAULT_CHOICES })
    expect(withDefaultOptions('least-loaded', { choices: 3 })).to.deep.equal({ choices: 3 })
  })

  it('consistent-hash: key and loadFactor unless given; no key default beside the short forms header or cookie', () => {
    expect(withDefaultOptions('consistent-hash', {})).to.deep.equal({ key: DEFAULT_KEY, loadFactor: DEFAULT_LOAD_FACTOR })
    expect(withDefaultOptions('consistent-hash', { header: 'x-user' })).to.deep.equal({ loadFactor: DEFAULT_LOAD_FACTOR, header: 'x-user' })
    expect(withDefaultOptions('consistent-hash', { cookie: 'sid' })).to.deep.equal({ loadFactor: DEFAULT_LOAD_FACTOR, cookie: 'sid' })
    expect(withDefaultOptions('consistent-hash', { key: 'header:x', loadFactor: 2 })).to.deep.equal({ key: 'header:x', loadFactor: 2 })
  })

  it('any other: the options as given, in a copy', () => {
    for (const name of ['round-robin', 'weighted', 'random', './my-strategy.js', '']) {
      const given = { a: 1 }
      const out = withDefaultOptions(name, given)
      expect(out, name).to.deep.equal({ a: 1 })
      expect(out, name).to.not.equal(given)
    }
  })
})
