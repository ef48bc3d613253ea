import { expect } from 'chai'
import { RetryBudget } from '../../lib/balancing/retry-budget.js'

describe('retry budget', () => {
  it('allows 20% of the requests plus the reserve, then refuses', () => {
    let now = 1_000_000
    const b = new RetryBudget({ percent: 20, minRetriesPerSecond: 1, windowMs: 10_000 }, () => now)
    for (let i = 0; i < 100; i++) b.onRequest()
    let granted = 0
    while (b.tryRetry()) granted++
    expect(granted).to.equal(20 + 10)
    // The window slides: eleven seconds later the old requests and retries are forgotten.
    now += 11_000
    granted = 0
    while (b.tryRetry()) granted++
    expect(granted).to.equal(10)
  })
})
