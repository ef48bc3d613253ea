import { expect } from 'chai'
import { RETRY_CONDITIONS, isRetryable } from '../../lib/balancing/retry.js'
import type { AttemptFailure } from '../../lib/balancing/retry.js'

const policy = { on: [...RETRY_CONDITIONS], nonIdempotent: false }
const f = (o: Partial<AttemptFailure>): AttemptFailure => ({
  method: 'GET',
  kind: 'connect',
  idempotencyKey: false,
  replayable: true,
  responseStarted: false,
  ...o,
})

describe('retry policy', () => {
  it('retries a refused connection whatever the method', () => {
    expect(isRetryable(policy, f({ method: 'POST', kind: 'connect' }))).to.equal(true)
  })

  it('retries resets, timeouts and gateway errors only for idempotent methods', () => {
    for (const kind of ['reset', 'timeout', 'status'] as const) {
      expect(isRetryable(policy, f({ method: 'GET', kind }))).to.equal(true)
      expect(isRetryable(policy, f({ method: 'PUT', kind }))).to.equal(true)
      expect(isRetryable(policy, f({ method: 'POST', kind }))).to.equal(false)
      expect(isRetryable(policy, f({ method: 'PATCH', kind }))).to.equal(false)
    }
  })

  it('retries a POST with an Idempotency-Key or when the service allows it', () => {
    expect(isRetryable(policy, f({ method: 'POST', kind: 'status', idempotencyKey: true }))).to.equal(true)
    expect(isRetryable({ ...policy, nonIdempotent: true }, f({ method: 'POST', kind: 'reset' }))).to.equal(true)
  })

  it('never retries once the response started or the body cannot be replayed', () => {
    expect(isRetryable(policy, f({ responseStarted: true }))).to.equal(false)
    expect(isRetryable(policy, f({ replayable: false }))).to.equal(false)
  })

  it('honours retry.on', () => {
    expect(isRetryable({ ...policy, on: ['connect-failure'] }, f({ kind: 'status' }))).to.equal(false)
    expect(isRetryable({ ...policy, on: ['reset'] }, f({ kind: 'connect' }))).to.equal(false)
  })
})
