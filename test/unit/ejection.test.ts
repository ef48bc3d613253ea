import { expect } from 'chai'
import { Balancer } from '../../lib/balancing/balancer.js'
import { RoundRobin } from '../../strategies/round-robin.js'
import { recordingLogger, waitFor } from '../support/helpers.js'

const ep = (n: number) => ({ key: `/s/${n}`, host: '127.0.0.1', port: 9000 + n, weight: 1, state: 'up' as const, meta: {} })
const ctx = { hashKey: undefined }
const outlier = { consecutiveFailures: 3, baseEjectionMs: 60, maxEjectionMs: 1000, maxEjectionPercent: 50 }

function balancer(n: number) {
  const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger: recordingLogger(), fallback: new RoundRobin(() => 0), outlier })
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

/** A balancer on a clock the test moves, and the ejection lengths it logged, in order. */
function clocked(n: number) {
  const clock = { now: 1_000_000 }
  const logger = recordingLogger()
  const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger, fallback: new RoundRobin(() => 0), outlier, clock: () => clock.now })
  b.update(Array.from({ length: n }, (_, i) => ep(i + 1)))
  const lengths = () => logger.lines.filter((l) => l.msg === 'instance healthy -> ejected').map((l) => (l.obj as { ejectionMs: number }).ejectionMs)
  return { b, clock, lengths }
}

/** Waits for the ejection timer to put `key` on probation, then lets one probe succeed. */
async function recover(b: Balancer, key: string): Promise<void> {
  const host = b.hosts.find((h) => h.key === key)!
  await waitFor(() => host.probing, 'probation')
  const probe = b.acquire(new Set(b.hosts.filter((h) => h.key !== key).map((h) => h.key)), ctx)!
  expect(probe.host).to.equal(host)
  probe.release({ ok: true, latencyMs: 1 })
  expect(host.probing).to.equal(false)
}

describe('passive ejection (outlier detection)', () => {
  it('ejects after consecutive failures, then lets one probe through before full traffic', async () => {
    const { b, clock } = clocked(3)
    fail(b, '/s/1', 3)
    const one = b.hosts[0]!
    expect(one.ejectedUntil).to.equal(clock.now + outlier.baseEjectionMs)
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

  it('ejects a failing probe again, for twice as long', async () => {
    const { b, clock, lengths } = clocked(3)
    const one = b.hosts[0]!
    fail(b, '/s/1', 3)
    expect(one.ejectedUntil - clock.now).to.equal(outlier.baseEjectionMs)
    await waitFor(() => one.probing, 'probation')
    // One failure on probation is enough: no count of consecutive failures this time.
    fail(b, '/s/1', 1)
    expect(one.ejections).to.equal(2)
    expect(one.ejectedUntil - clock.now).to.equal(2 * outlier.baseEjectionMs)
    expect(lengths()).to.deep.equal([outlier.baseEjectionMs, 2 * outlier.baseEjectionMs])
    b.close()
  })

  it('keeps the multiplier after a healthy spell shorter than the longest ejection', async () => {
    const { b, clock, lengths } = clocked(3)
    fail(b, '/s/1', 3)
    await recover(b, '/s/1')
    clock.now += outlier.maxEjectionMs - 1
    fail(b, '/s/1', 3)
    expect(b.hosts[0]!.ejections).to.equal(2)
    expect(lengths()).to.deep.equal([outlier.baseEjectionMs, 2 * outlier.baseEjectionMs])
    b.close()
  })

  it('starts the multiplier over after a healthy spell longer than the longest ejection', async () => {
    const { b, clock, lengths } = clocked(3)
    fail(b, '/s/1', 3)
    await recover(b, '/s/1')
    clock.now += outlier.maxEjectionMs + 1
    fail(b, '/s/1', 3)
    expect(b.hosts[0]!.ejections).to.equal(1)
    expect(lengths()).to.deep.equal([outlier.baseEjectionMs, outlier.baseEjectionMs])
    b.close()
  })

  it('never ejects for longer than maxEjectionMs', async () => {
    const capped = { ...outlier, baseEjectionMs: 40, maxEjectionMs: 100 }
    const logger = recordingLogger()
    const b = new Balancer({ service: 's', strategy: new RoundRobin(() => 0), logger, fallback: new RoundRobin(() => 0), outlier: capped, clock: () => 1_000_000 })
    b.update([ep(1), ep(2), ep(3)])
    const one = b.hosts[0]!
    fail(b, '/s/1', 3)
    for (let i = 0; i < 3; i++) {
      await waitFor(() => one.probing, 'probation')
      fail(b, '/s/1', 1)
    }
    expect(logger.lines.filter((l) => l.msg === 'instance healthy -> ejected').map((l) => (l.obj as { ejectionMs: number }).ejectionMs)).to.deep.equal([40, 80, 100, 100])
    expect(one.ejectedUntil).to.equal(1_000_000 + 100)
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
