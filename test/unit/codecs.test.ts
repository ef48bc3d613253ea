import { expect } from 'chai'
import { decodeInstance } from '../../lib/discovery/codecs.js'

const dec = (data: string | null, name = 'n1') => decodeInstance(`/s/${name}`, name, data === null ? null : Buffer.from(data))

describe('znode codecs', () => {
  it('reads our JSON with its defaults', () => {
    const r = dec('{"host":"10.0.0.5","port":8080}')
    expect(r).to.deep.include({ ok: true })
    if (!r.ok) return
    expect(r.endpoint).to.include({ key: '/s/n1', host: '10.0.0.5', port: 8080, weight: 1, state: 'up' })
  })

  it('reads weight and draining state from our JSON', () => {
    const r = dec('{"host":"h","port":1,"weight":2.5,"state":"draining"}')
    expect(r.ok && r.endpoint).to.include({ weight: 2.5, state: 'draining' })
  })

  it('reads a Curator ServiceInstance, weight from payload and enabled:false as draining', () => {
    const curator = {
      name: 'example',
      id: 'e2c4',
      address: '127.0.0.1',
      port: 9001,
      sslPort: null,
      payload: { '@class': 'x', metadata: { weight: '3', instance_status: 'UP' } },
      registrationTimeUTC: 1700000000000,
      serviceType: 'DYNAMIC',
      uriSpec: { parts: [] },
    }
    const r = dec(JSON.stringify(curator))
    expect(r.ok && r.endpoint).to.include({ host: '127.0.0.1', port: 9001, weight: 3, state: 'up' })
    const off = dec(JSON.stringify({ ...curator, enabled: false }))
    expect(off.ok && off.endpoint.state).to.equal('draining')
    const spring = dec(JSON.stringify({ ...curator, payload: { metadata: { instance_status: 'OUT_OF_SERVICE' } } }))
    expect(spring.ok && spring.endpoint.state).to.equal('draining')
    const direct = dec(JSON.stringify({ ...curator, payload: { weight: 7 } }))
    expect(direct.ok && direct.endpoint.weight).to.equal(7)
  })

  it('reads a ServerSet member and routes only ALIVE ones', () => {
    const m = { serviceEndpoint: { host: '127.0.0.2', port: 31337 }, additionalEndpoints: {}, status: 'ALIVE', shard: 0 }
    const r = dec(JSON.stringify(m))
    expect(r.ok && r.endpoint).to.include({ host: '127.0.0.2', port: 31337, state: 'up' })
    const dead = dec(JSON.stringify({ ...m, status: 'DEAD' }))
    expect(dead.ok && dead.endpoint.state).to.equal('draining')
  })

  it('reads plain host:port text, and an empty node named host:port', () => {
    expect(dec('127.0.0.1:9000')).to.deep.nested.include({ 'endpoint.port': 9000, 'endpoint.host': '127.0.0.1' })
    expect(dec('[::1]:9000')).to.deep.nested.include({ 'endpoint.host': '::1' })
    expect(dec('', '127.0.0.1:9100')).to.deep.nested.include({ 'endpoint.port': 9100 })
    expect(dec(null, 'localhost:9101')).to.deep.nested.include({ 'endpoint.host': 'localhost' })
  })

  it('rejects what matches no layout with a reason, never throwing', () => {
    for (const bad of ['{"host":"h"}', '{"host":"h","port":70000}', '{"port":1}', '{nope', '[1,2]', 'hello', 'h:0', '{"host":"h","port":1,"state":"weird"}', '{"host":"h","port":1,"weight":-1}']) {
      const r = dec(bad)
      expect(r.ok, bad).to.equal(false)
      if (!r.ok) expect(r.reason).to.be.a('string').and.not.equal('')
    }
    expect(dec('', 'not-an-address').ok).to.equal(false)
  })

  it('holds host:port text and names to the 253-character bound of the JSON layouts (found by the znode fuzz family)', () => {
    for (const n of [1, 253]) {
      expect(dec(`${'h'.repeat(n)}:80`).ok, `text, ${n}`).to.equal(true)
      expect(dec('', `${'h'.repeat(n)}:80`).ok, `name, ${n}`).to.equal(true)
    }
    for (const n of [254, 1000]) {
      expect(dec(`${'h'.repeat(n)}:80`).ok, `text, ${n}`).to.equal(false)
      expect(dec('', `${'h'.repeat(n)}:80`).ok, `name, ${n}`).to.equal(false)
    }
  })
})
