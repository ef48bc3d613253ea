// The retry policy and the retry budget at their edges: the ones mutation testing (npm run mutation)
// showed no other test pinned down.

import { expect } from 'chai'
import { RetryBudget } from '../../lib/balancing/retry-budget.js'
import { RETRY_CONDITIONS, isGatewayStatus, isRetryable, retryAfterMs } from '../../lib/balancing/retry.js'

describe('retry policy, method by method', () => {
  const policy = { on: [...RETRY_CONDITIONS], nonIdempotent: false }
  const reset = (method: string) => isRetryable(policy, { method, kind: 'reset', idempotencyKey: false, replayable: true, responseStarted: false })

  it('retries a reset for the idempotent methods of RFC 9110 and for no other', () => {
    const methods = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE', 'POST', 'PATCH', 'CONNECT', 'get']
    expect(methods.filter(reset)).to.deep.equal(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])
  })
})

describe('gateway statuses', () => {
  it('are 502, 503 and 504, and no status around them', () => {
    expect([500, 501, 502, 503, 504, 505].filter(isGatewayStatus)).to.deep.equal([502, 503, 504])
  })
})

describe('Retry-After', () => {
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')

  it('reads delta-seconds, trimmed, from the first of repeated headers', () => {
    expect(retryAfterMs('120', now)).to.equal(120_000)
    expect(retryAfterMs(' 7 ', now)).to.equal(7000)
    expect(retryAfterMs('0', now)).to.equal(0)
    expect(retryAfterMs(['3', '9'], now)).to.equal(3000)
  })

  it('reads an HTTP date as the time left until it, and a date past as 0', () => {
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:05 GMT', now)).to.equal(5000)
    expect(retryAfterMs('Wed, 21 Oct 2015 07:27:00 GMT', now)).to.equal(0)
  })

  it('is null when absent, blank, or neither a number of seconds nor a date', () => {
    for (const v of [undefined, '', '   ', '12abc', 'abc12', 'soon']) expect(retryAfterMs(v, now), JSON.stringify(v)).to.equal(null)
  })
})

describe('retry budget, second by second', () => {
  it('adds up the requests of every second of the window', () => {
    let now = 1_000_000
    const b = new RetryBudget({ percent: 50, minRetriesPerSecond: 0, windowMs: 10_000 }, () => now)
    for (let s = 0; s < 3; s++) {
      now = 1_000_000 + s * 1000
      for (let i = 0; i < 10; i++) b.onRequest()
    }
    let granted = 0
    while (b.tryRetry()) granted++
    expect(granted).to.equal(15)
  })

  it('still counts the oldest second of the window, and not the one before', () => {
    let now = 2_000_000
    const b = new RetryBudget({ percent: 100, minRetriesPerSecond: 0, windowMs: 10_000 }, () => now)
    for (let i = 0; i < 4; i++) b.onRequest()
    // 9.5 s later the window (10 one-second buckets) still holds the first second.
    now += 9500
    expect([b.tryRetry(), b.tryRetry(), b.tryRetry(), b.tryRetry(), b.tryRetry()]).to.deep.equal([true, true, true, true, false])
    now += 1000
    expect(b.tryRetry()).to.equal(false)
  })
})
