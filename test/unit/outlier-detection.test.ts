// Outlier detection on its own: plain hosts in a fake pool, a clock the test moves. Probation
// timers are real but as short as the ejection the test asks for, and waited for by condition.

import { expect } from 'chai'
import { OutlierDetection } from '../../lib/balancing/outlier-detection.js'
import type { OutlierHost, OutlierOptions, OutlierPool, Outcome } from '../../lib/balancing/outlier-detection.js'
import type { Endpoint } from '../../lib/discovery/endpoint.js'
import { recordingLogger, waitFor } from '../support/helpers.js'

const failure = (kind: 'connect' | 'reset' | 'timeout' | 'status' = 'connect', latencyMs = 1): Outcome => ({ ok: false, kind, latencyMs })
const success = (latencyMs = 1): Outcome => ({ ok: true, latencyMs })

function host(n: number, meta: Endpoint['meta'] = {}): OutlierHost {
  const endpoint: Endpoint = { key: `/s/${n}`, host: '127.0.0.1', port: 9000 + n, weight: 1, state: 'up', meta }
  return { key: endpoint.key, endpoint, latencyEwmaMs: 0, failures: 0, consecutiveFailures: 0, ejectedUntil: 0, ejections: 0, healthySince: 0, probing: false }
}

const options = (o: Partial<OutlierOptions> = {}): OutlierOptions => ({ consecutiveFailures: 3, baseEjectionMs: 60_000, maxEjectionMs: 300_000, maxEjectionPercent: 100, ...o })

/** A detector over `n` hosts (or the hosts given), on a clock the test moves, counting changed() calls. */
function detector(hosts: number | OutlierHost[], outlier?: OutlierOptions) {
  const list = typeof hosts === 'number' ? Array.from({ length: hosts }, (_, i) => host(i + 1)) : hosts
  const members = new Set(list)
  const clock = { now: 1_000_000 }
  const logger = recordingLogger()
  let changes = 0
  const pool: OutlierPool = { hosts: () => list, isMember: (h) => members.has(h), changed: () => void changes++ }
  const d = new OutlierDetection(pool, { outlier, clock: () => clock.now, logger })
  const ejections = () => logger.lines.filter((l) => l.msg === 'instance healthy -> ejected').map((l) => (l.obj as { ejectionMs: number }).ejectionMs)
  return { d, hosts: list, members, clock, logger, ejections, changes: () => changes }
}

function fail(d: OutlierDetection, h: OutlierHost, times: number, kind?: 'connect' | 'reset' | 'timeout' | 'status'): void {
  for (let i = 0; i < times; i++) d.record(h, failure(kind))
}

describe('outlier detection, latency', () => {
  it('takes the first latency as it is, then moves 30% of the way to each new one, failures included', () => {
    const { d, hosts } = detector(1)
    const h = hosts[0]!
    d.record(h, success(100))
    expect(h.latencyEwmaMs).to.equal(100)
    d.record(h, failure('timeout', 200))
    expect(h.latencyEwmaMs).to.be.closeTo(130, 1e-9)
    d.record(h, success(30))
    expect(h.latencyEwmaMs).to.be.closeTo(100, 1e-9)
    d.close()
  })

  it('learns nothing from a request whose client went away', () => {
    const { d, hosts, logger } = detector(1, options({ consecutiveFailures: 1 }))
    const h = hosts[0]!
    for (let i = 0; i < 5; i++) d.record(h, { ok: null })
    expect([h.latencyEwmaMs, h.failures, h.consecutiveFailures, h.ejectedUntil]).to.deep.equal([0, 0, 0, 0])
    expect(logger.lines).to.deep.equal([])
    d.close()
  })
})

describe('outlier detection, ejection', () => {
  it('ejects at exactly consecutiveFailures failures in a row, for each threshold, whatever the kind of failure', () => {
    for (const threshold of [1, 2, 3, 5, 8]) {
      for (const kind of ['connect', 'reset', 'timeout', 'status'] as const) {
        const { d, hosts, clock, changes } = detector(2, options({ consecutiveFailures: threshold }))
        const h = hosts[0]!
        fail(d, h, threshold - 1, kind)
        expect(h.ejectedUntil, `${threshold} ${kind}: before`).to.equal(0)
        expect(changes()).to.equal(0)
        fail(d, h, 1, kind)
        expect(h.ejectedUntil, `${threshold} ${kind}: at`).to.equal(clock.now + 60_000)
        expect([h.ejections, d.ejectionsTotal, changes()]).to.deep.equal([1, 1, 1])
        d.close()
      }
    }
  })

  it('starts the count over after a success', () => {
    const { d, hosts } = detector(2)
    const h = hosts[0]!
    fail(d, h, 2)
    d.record(h, success())
    expect(h.consecutiveFailures).to.equal(0)
    fail(d, h, 2)
    expect([h.ejectedUntil, h.failures, h.consecutiveFailures]).to.deep.equal([0, 4, 2])
    d.close()
  })

  it('counts failures but never ejects without options, or with consecutiveFailures 0', () => {
    for (const o of [undefined, options({ consecutiveFailures: 0 })]) {
      const { d, hosts, logger } = detector(2, o)
      fail(d, hosts[0]!, 10, 'timeout')
      expect([hosts[0]!.failures, hosts[0]!.consecutiveFailures, hosts[0]!.ejectedUntil, d.ejectionsTotal]).to.deep.equal([10, 10, 0, 0])
      expect(logger.lines).to.deep.equal([])
      d.close()
    }
  })

  it('does not eject an instance that has left the pool', () => {
    const { d, hosts, members } = detector(2, options({ consecutiveFailures: 1 }))
    members.delete(hosts[0]!)
    fail(d, hosts[0]!, 3)
    expect([hosts[0]!.failures, hosts[0]!.ejectedUntil]).to.deep.equal([3, 0])
    d.close()
  })

  it('does not eject again an instance already ejected', () => {
    const { d, hosts, clock, ejections } = detector(2, options({ consecutiveFailures: 1 }))
    const h = hosts[0]!
    fail(d, h, 1)
    const until = h.ejectedUntil
    clock.now += 10
    fail(d, h, 4)
    expect([h.ejectedUntil, h.ejections, d.ejectionsTotal]).to.deep.equal([until, 1, 1])
    expect(ejections()).to.deep.equal([60_000])
    d.close()
  })

  it('ejects at most maxEjectionPercent of the instances, and always at least one', () => {
    for (const n of [1, 2, 3, 4, 7, 10]) {
      for (const percent of [0, 10, 34, 50, 99, 100]) {
        const { d, hosts } = detector(n, options({ consecutiveFailures: 1, maxEjectionPercent: percent }))
        for (const h of hosts) fail(d, h, 1)
        const expected = Math.max(1, Math.floor((n * percent) / 100))
        expect(hosts.filter((h) => h.ejectedUntil !== 0).length, `${n} instances at ${percent}%`).to.equal(expected)
        expect(d.ejectionsTotal).to.equal(expected)
        d.close()
      }
    }
  })

  it('ejects a held instance at its first refused connection, outside the cap, even without options', () => {
    for (const o of [undefined, options({ maxEjectionPercent: 0 })]) {
      const held = host(3, { held: true })
      const { d, hosts, clock, logger } = detector([host(1), host(2), held], o)
      fail(d, hosts[0]!, o ? 3 : 1)
      fail(d, held, 1, 'connect')
      expect(held.ejectedUntil, 'held').to.equal(clock.now + (o ? o.baseEjectionMs : 30_000))
      expect(logger.lines.at(-1)!.obj).to.deep.equal({ instance: '127.0.0.1:9003', consecutiveFailures: 1, ejectionMs: o ? 60_000 : 30_000, ejections: 1 })
      d.close()
    }
  })

  it('treats a held instance like any other for failures that are not a refused connection', () => {
    const held = host(1, { held: true })
    const { d } = detector([held, host(2)])
    fail(d, held, 5, 'timeout')
    expect(held.ejectedUntil).to.equal(0)
    const opts = detector([host(3, { held: true }), host(4)], options())
    fail(opts.d, opts.hosts[0]!, 2, 'reset')
    expect(opts.hosts[0]!.ejectedUntil).to.equal(0)
    fail(opts.d, opts.hosts[0]!, 1, 'reset')
    expect(opts.hosts[0]!.ejectedUntil).to.not.equal(0)
    d.close()
    opts.d.close()
  })

  it('makes each ejection base x ejections long, up to maxEjectionMs', () => {
    const { d, hosts, clock, ejections } = detector(2, options({ consecutiveFailures: 1, baseEjectionMs: 40, maxEjectionMs: 100 }))
    const h = hosts[0]!
    for (let i = 0; i < 5; i++) {
      fail(d, h, 1)
      // What the timer would do, without waiting for it: back in, then failing again at once.
      h.ejectedUntil = 0
    }
    expect(ejections()).to.deep.equal([40, 80, 100, 100, 100])
    expect(h.ejections).to.equal(5)
    expect(clock.now).to.equal(1_000_000)
    d.close()
  })
})

describe('outlier detection, probation', () => {
  it('puts an ejected instance on probation when its ejection ends, and a success makes it healthy', async () => {
    const { d, hosts, clock, logger, changes } = detector(2, options({ consecutiveFailures: 2, baseEjectionMs: 1 }))
    const h = hosts[0]!
    fail(d, h, 2)
    await waitFor(() => h.probing, 'probation')
    expect([h.ejectedUntil, h.consecutiveFailures, changes()]).to.deep.equal([0, 0, 2])
    clock.now += 7
    d.record(h, success())
    expect([h.probing, h.healthySince, changes()]).to.deep.equal([false, 1_000_007, 3])
    // A success outside probation changes nothing and says nothing.
    d.record(h, success())
    expect(changes()).to.equal(3)
    expect(logger.lines.map((l) => [l.level, l.msg, l.obj])).to.deep.equal([
      ['warn', 'instance healthy -> ejected', { instance: '127.0.0.1:9001', consecutiveFailures: 2, ejectionMs: 1, ejections: 1 }],
      ['info', 'instance ejected -> probation', { instance: '127.0.0.1:9001' }],
      ['info', 'instance probation -> healthy', { instance: '127.0.0.1:9001' }],
    ])
    d.close()
  })

  it('ejects a failing probe at once, for twice as long', async () => {
    const { d, hosts, ejections } = detector(2, options({ consecutiveFailures: 3, baseEjectionMs: 1 }))
    const h = hosts[0]!
    fail(d, h, 3)
    await waitFor(() => h.probing, 'probation')
    fail(d, h, 1)
    expect([h.probing, h.ejections]).to.deep.equal([false, 2])
    expect(ejections()).to.deep.equal([1, 2])
    d.close()
  })

  it('starts the multiplier over only after a healthy spell longer than maxEjectionMs', async () => {
    for (const [spell, expected] of [[999, 2], [1000, 2], [1001, 1]] as const) {
      const { d, hosts, clock } = detector(2, options({ consecutiveFailures: 1, baseEjectionMs: 1, maxEjectionMs: 1000 }))
      const h = hosts[0]!
      fail(d, h, 1)
      await waitFor(() => h.probing, 'probation')
      d.record(h, success())
      clock.now += spell
      fail(d, h, 1)
      expect(h.ejections, `after ${spell} ms`).to.equal(expected)
      d.close()
    }
  })

  it('sets no healthySince for a success of an instance never ejected', () => {
    const { d, hosts, changes } = detector(1, options())
    d.record(hosts[0]!, success())
    expect([hosts[0]!.healthySince, changes()]).to.deep.equal([0, 0])
    d.close()
  })

  it('puts nothing on probation once closed, and closes twice without harm', async () => {
    const closed = detector(2, options({ consecutiveFailures: 1, baseEjectionMs: 1 }))
    fail(closed.d, closed.hosts[0]!, 1)
    closed.d.close()
    closed.d.close()
    // A witness whose timer is due after the closed one's: once it fired, so would have the other.
    const open = detector(2, options({ consecutiveFailures: 1, baseEjectionMs: 5 }))
    fail(open.d, open.hosts[0]!, 1)
    await waitFor(() => open.hosts[0]!.probing, 'the later ejection timer')
    expect([closed.hosts[0]!.probing, closed.hosts[0]!.ejectedUntil !== 0, closed.changes()]).to.deep.equal([false, true, 1])
    open.d.close()
  })
})
