// The fleet's znode codecs (lib/fleet/layout.ts): every node read from ZooKeeper is hostile, so
// each bound is tried at and past its edge, and canary membership by percent is stable and monotone.

import { expect } from 'chai'
import { Buffer } from 'node:buffer'
import { diffTables } from '../../lib/fleet-cli.js'
import { FleetDataError, MAX_CANARY_PROXIES, PROXY_ID, defaultProxyId, MAX_NODE_BYTES, MAX_PROBLEMS, encodeProxyStatus, inPercent, parseActive, parseProxyStatus, parseTable, tableFor } from '../../lib/fleet/layout.js'

const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v))

function problemsOf(f: () => unknown): readonly string[] {
  try {
    f()
  } catch (err) {
    expect(err).to.be.instanceOf(FleetDataError)
    return (err as FleetDataError).problems
  }
  expect.fail('expected a FleetDataError')
}

describe('fleet layout codecs', () => {
  it('reads an active node with either kind of canary', () => {
    expect(parseActive(buf({ table: 't-0000000001' }))).to.deep.equal({ table: 't-0000000001' })
    expect(parseActive(buf({ table: 't-0000000001', canary: { table: 't-0000000002', percent: 10 } })).canary).to.deep.equal({ table: 't-0000000002', percent: 10 })
    expect(parseActive(buf({ table: 't-0000000001', canary: { table: 't-0000000002', proxies: ['a:1'] } })).canary).to.deep.equal({ table: 't-0000000002', proxies: ['a:1'] })
  })

  it('refuses every malformed active node, naming the field', () => {
    const cases: [unknown, string][] = [
      ['not json', 'active: not JSON'],
      [[1], 'active: must be a JSON object'],
      [{ table: '../../etc' }, 'active.table'],
      [{ table: 't-1' }, 'active.table'],
      [{ table: 't-00000000001' }, 'active.table'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002' } }, 'active.canary: give proxies or percent'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002', percent: 5, proxies: [] } }, 'active.canary: give proxies or percent'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002', percent: 101 } }, 'active.canary.percent'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002', percent: -1 } }, 'active.canary.percent'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002', percent: '10' } }, 'active.canary.percent'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002', proxies: ['a/b'] } }, 'active.canary.proxies'],
      [{ table: 't-0000000001', canary: { table: 't-0000000002', proxies: Array(MAX_CANARY_PROXIES + 1).fill('p') } }, 'active.canary.proxies'],
      [{ table: 't-0000000001', canary: { table: 'x', percent: 1 } }, 'active.canary.table'],
    ]
    for (const [data, field] of cases) expect(problemsOf(() => parseActive(buf(data))).join('\n'), JSON.stringify(data).slice(0, 80)).to.include(field)
    // At the edge of the bounds it is taken.
    expect(parseActive(buf({ table: 't-0000000001', canary: { table: 't-0000000002', proxies: Array(MAX_CANARY_PROXIES).fill('p') } })).canary?.proxies).to.have.length(MAX_CANARY_PROXIES)
    expect(parseActive(buf({ table: 't-0000000001', canary: { table: 't-0000000002', percent: 100 } })).canary?.percent).to.equal(100)
  })

  it('refuses a node over 1 MiB before parsing it', () => {
    const big = Buffer.alloc(MAX_NODE_BYTES + 1, 0x20)
    expect(problemsOf(() => parseTable(big, 't-0000000001'))[0]).to.include('more than')
    expect(problemsOf(() => parseActive(big))[0]).to.include('more than')
  })

  it('reads a table and bounds its message, author and parent', () => {
    expect(parseTable(buf({ services: [], message: 'm', author: 'a', parent: null }), 't-0000000001')).to.deep.equal({ services: [], message: 'm', author: 'a', parent: null })
    expect(problemsOf(() => parseTable(buf({ services: {} }), 't-0000000001'))).to.deep.equal(['t-0000000001.services: must be a list'])
    expect(problemsOf(() => parseTable(buf({ services: [], message: 'x'.repeat(4097) }), 't-0000000001'))[0]).to.include('.message')
    expect(problemsOf(() => parseTable(buf({ services: [], author: 1 }), 't-0000000001'))[0]).to.include('.author')
    expect(problemsOf(() => parseTable(buf({ services: [], parent: 't-' }), 't-0000000001'))[0]).to.include('.parent')
  })

  it('bounds what a status node says, whatever was written there', () => {
    const s = parseProxyStatus(buf({ applied: 'evil', rejected: { table: 'x'.repeat(1000), problems: Array(500).fill('y'.repeat(600)) }, startedAt: 'soon' }))
    expect(s.applied).to.equal(null)
    expect(s.rejected!.table).to.have.length(64)
    expect(s.rejected!.problems).to.have.length(MAX_PROBLEMS)
    expect(s.startedAt).to.equal(0)
    const round = parseProxyStatus(encodeProxyStatus({ applied: 't-0000000007', rejected: null, startedAt: 5 }))
    expect(round).to.deep.equal({ applied: 't-0000000007', rejected: null, startedAt: 5 })
  })

  it('puts a stable share of proxies in a percent canary, and raising the percent only adds proxies', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => `host-${i}:8080`)
    let previous = new Set<string>()
    for (const percent of [0, 1, 10, 25, 50, 90, 100]) {
      const inside = new Set(ids.filter((id) => inPercent(id, percent)))
      for (const id of previous) expect(inside.has(id), `${id} left the canary at ${percent}%`).to.equal(true)
      // 2000 ids: the share is within a few points of the percent (binomial, sd <= 1.2 points).
      expect(Math.abs((inside.size / ids.length) * 100 - percent)).to.be.below(5)
      previous = inside
    }
    expect(ids.filter((id) => inPercent(id, 10))).to.deep.equal(ids.filter((id) => inPercent(id, 10)))
  })

  it('gives each proxy the canary table only when it is named or hashed in', () => {
    const active = { table: 't-0000000001', canary: { table: 't-0000000002', proxies: ['a'] } }
    expect(tableFor(active, 'a')).to.deep.equal({ table: 't-0000000002', role: 'canary' })
    expect(tableFor(active, 'b')).to.deep.equal({ table: 't-0000000001', role: 'active' })
    expect(tableFor({ table: 't-0000000001' }, 'a').role).to.equal('active')
    expect(tableFor({ table: 't-0000000001', canary: { table: 't-0000000002', percent: 100 } }, 'z').role).to.equal('canary')
    expect(tableFor({ table: 't-0000000001', canary: { table: 't-0000000002', percent: 0 } }, 'z').role).to.equal('active')
  })

  it('diffs two tables by service: added, removed, and each changed field', () => {
    const a = [{ name: 'web', path: '/a', retry: { attempts: 2 } }, { name: 'old', path: '/o' }]
    const b = [{ name: 'web', path: '/b', retry: { attempts: 2, backoffMs: 5 } }, { name: 'new', path: '/n' }]
    expect(diffTables(a, b)).to.deep.equal([
      '- service old ({"name":"old","path":"/o"})',
      '+ service new ({"name":"new","path":"/n"})',
      'service web.path: "/a" -> "/b"',
      'service web.retry.backoffMs: (absent) -> 5',
    ])
    expect(diffTables(a, a)).to.deep.equal([])
  })
})

describe('fleet: the default proxy id', () => {
  it('is host:port, and host:pidN when the port is 0 (so two such proxies on one host differ)', () => {
    expect(defaultProxyId('edge-1.example', 8080, 42)).to.equal('edge-1.example:8080')
    expect(defaultProxyId('edge-1', 0, 42)).to.equal('edge-1:pid42')
    expect(defaultProxyId('edge-1', 0, 42)).to.not.equal(defaultProxyId('edge-1', 0, 43))
  })

  it('always matches PROXY_ID, whatever the host name holds', () => {
    for (const host of ['', '-', '..', 'a b', 'ü.local', '_x', 'x'.repeat(300), '/etc', 'a\u0000b', '::1', 'host:name']) {
      for (const port of [0, 1, 65535]) expect(defaultProxyId(host, port, 99999), JSON.stringify(host)).to.match(PROXY_ID)
    }
  })
})
