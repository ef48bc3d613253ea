import { expect } from 'chai'
import { closestWord, editDistance } from '../../lib/did-you-mean.js'

describe('did you mean', () => {
  it('measures the edits between two words (insert, delete, substitute)', () => {
    const cases: [string, string, number][] = [
      ['', '', 0],
      ['', 'abc', 3],
      ['conect', 'connect', 1],
      ['stratgy', 'strategy', 1],
      ['kitten', 'sitting', 3],
      ['retrys', 'retry', 1],
    ]
    for (const [a, b, d] of cases) {
      expect(editDistance(a, b), `${a} -> ${b}`).to.equal(d)
      expect(editDistance(b, a), `${b} -> ${a}`).to.equal(d)
    }
  })

  it('offers the closest known word only when at most a third of the letters differ', () => {
    const known = ['connect', 'sessionTimeoutMs', 'keepLastOnEmpty', 'strategy', 'round-robin', 'least-loaded']
    expect(closestWord('conect', known)).to.equal('connect')
    expect(closestWord('sessiontimeoutms', known)).to.equal('sessionTimeoutMs')
    expect(closestWord('round-robbin', known)).to.equal('round-robin')
    expect(closestWord('least_loaded', known)).to.equal('least-loaded')
    for (const far of ['colour', 'nope', 'x', 'nothing-like-it', '']) expect(closestWord(far, known), far).to.equal(undefined)
  })

  it('makes no guess for a word longer than any config word, whatever its length', () => {
    expect(closestWord('c'.repeat(100_000), ['connect'])).to.equal(undefined)
    expect(closestWord('connect', ['c'.repeat(100_000)])).to.equal(undefined)
  })
})
