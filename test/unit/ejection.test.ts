import { expect } from 'chai'
import { Balancer } from '../../lib/balancing/balancer.js'
import { RoundRobin } from '../../strategies/round-robin.js'
import { recordingLogger, waitFor } from '../support/helpers.js'

const ep = (n: number) => ({ key: `/s/${n}`, host: '127.0.0.1', port: 9000 + n, weight: 1, state: 'up' as const, meta: {} })
const ctx = { hashKey: undefined }
const outlier = { consecutiveFailures: 3, baseEjectionMs: 60, maxEjectionMs: 1000, maxEjectionPercent: 50 }

function balancer(n: number) {
  const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger: recordingLogger(), random: () => 0, outlier })
  b.update(Array.from({ length: n }, (_, i) => ep(i + 1)))
  return b
}

function fail(b: Balancer, key: string, times: number): void {
  for (let i = 0; i < times; i++) {
    const lease = b.acquire(new Set(b.hosts.filter((h) => h.key !== key).map((h) => h.key)), ctx)!
    expect(lease.host.key).to.equal(key)
    lease.release({ ok: false, kind: 'connect', latencyMs: 1 })
  }
}

describe('passive ejection (outlier detection)', () => {
  it('ejects after consecutive failures, then lets one probe through before full traffic', async () => {
    const b = balancer(3)
    fail(b, '/s/1', 3)
    const one = b.hosts[0]!
    expect(one.ejectedUntil).to.be.above(0)
    for (let i = 0; i < 6; i++) {
      const l = b.acquire(null, ctx)!
      expect(l.host.key).to.not.equal('/s/1')
      l.release({ ok: true, latencyMs: 1 })
    }
    await waitFor(() => one.probing, 'probation after the ejection')
    // On probation: one request at a time.
    const probe = b.acquire(new Set(['/s/2', '/s/3']), ctx)!
    expect(probe.host).to.equal(one)
    expect(b.acquire(new Set(['/s/2', '/s/3']), ctx)).to.equal(null)
    probe.release({ ok: true, latencyMs: 1 })
    expect(one.probing).to.equal(false)
    expect(b.acquire(new Set(['/s/2', '/s/3']), ctx)!.host).to.equal(one)
    b.close()
  })

  it('ejects a failing probe again, for longer', async () => {
    const b = balancer(3)
    fail(b, '/s/1', 3)
    const one = b.hosts[0]!
    await waitFor(() => one.probing, 'probation')
    const firstUntil = one.ejectedUntil
    fail(b, '/s/1', 1)
    expect(one.ejections).to.equal(2)
    expect(one.ejectedUntil).to.be.above(firstUntil)
    b.close()
  })

  it('starts the multiplier over after a healthy spell longer than the longest ejection', async () => {
    let now = 1_000_000
    const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger: recordingLogger(), random: () => 0, outlier, clock: () => now })
    b.update([ep(1), ep(2), ep(3)])
    fail(b, '/s/1', 3)
    const one = b.hosts[0]!
    await waitFor(() => one.probing, 'probation')
    const probe = b.acquire(new Set(['/s/2', '/s/3']), ctx)!
    probe.release({ ok: true, latencyMs: 1 })
    now += outlier.maxEjectionMs + 1
    fail(b, '/s/1', 3)
    expect(one.ejections).to.equal(1)
    b.close()
  })

  it('never ejects more than maxEjectionPercent of the instances (at least one)', () => {
    const b = balancer(4)
    fail(b, '/s/1', 3)
    fail(b, '/s/2', 3)
    fail(b, '/s/3', 3)
    expect(b.hosts.map((h) => h.ejectedUntil > 0)).to.deep.equal([true, true, false, false])
    b.close()
  })

  it('resets the count on a success', () => {
    const b = balancer(2)
    fail(b, '/s/1', 2)
    const l = b.acquire(new Set(['/s/2']), ctx)!
    l.release({ ok: true, latencyMs: 1 })
    fail(b, '/s/1', 2)
    expect(b.hosts[0]!.ejectedUntil).to.equal(0)
    b.close()
  })
})
