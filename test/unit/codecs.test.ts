import { expect } from 'chai'
import { decodeInstance } from '../../lib/discovery/codecs.js'
import { WEIGHT_MAX, endpointsEqual } from '../../lib/discovery/endpoint.js'
import { seededRandom } from '../support/random.js'

const dec = (data: string | null, name = 'n1') => decodeInstance(`/s/${name}`, name, data === null ? null : Buffer.from(data))

describe('znode codecs', () => {
  it('reads our JSON with its defaults', () => {
    const r = dec('{"host":"10.0.0.5","port":8080}')
    expect(r).to.deep.include({ ok: true })
    if (!r.ok) return
    expect(r.endpoint).to.include({ key: '/s/n1', host: '10.0.0.5', port: 8080, weight: 1, state: 'up' })
  })

  it("reads our JSON's protocol into meta (h2 implies TLS), and skips any other value or a scheme that contradicts it, with the reason (issue 26 item 1)", () => {
    const meta = (extra: object) => {
      const r = dec(JSON.stringify({ host: 'h', port: 1, ...extra }))
      return r.ok ? r.endpoint.meta : r.reason
    }
    expect(meta({})).to.not.have.property('protocol')
    expect(meta({ protocol: 'h2' })).to.include({ protocol: 'h2', tls: true })
    expect(meta({ protocol: 'h2', scheme: 'https' })).to.include({ protocol: 'h2', tls: true })
    expect(meta({ protocol: 'h2c' })).to.include({ protocol: 'h2c' }).and.not.have.property('tls')
    expect(meta({ protocol: 'h2c', scheme: 'http' })).to.include({ protocol: 'h2c' })
    expect(meta({ protocol: 'http/1.1', scheme: 'https' })).to.include({ protocol: 'http/1.1', tls: true })
    for (const protocol of ['h3', 'H2', 'HTTP/1.1', 'http/2', 'h2 ', '', 2, true, null, ['h2'], { h2: 1 }]) {
      expect(meta({ protocol }), JSON.stringify(protocol)).to.equal('protocol must be "h2", "h2c" or "http/1.1"')
    }
    expect(meta({ protocol: 'h2', scheme: 'http' })).to.match(/^protocol "h2" is TLS/)
    expect(meta({ protocol: 'h2c', scheme: 'https' })).to.match(/^protocol "h2c" is plain TCP/)
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

  it("keeps an instance whose own meta is too deep or too large, without that meta and with a warning (found by a hostile review: 5,000 levels ended the process)", () => {
    // Written as text: JSON.stringify itself overflows the stack on the deeper ones.
    const deep = (n: number) => `{"a":${'['.repeat(n)}1${']'.repeat(n)}}`
    for (const [what, meta, warning] of [
      ['5,000 levels', deep(5000), /meta nested deeper than 16 levels/],
      ['100,000 levels', deep(100_000), /meta nested deeper than 16 levels/],
      ['17 levels', deep(16), /meta nested deeper than 16 levels/],
      ['8 KB', JSON.stringify({ a: 'x'.repeat(8192) }), /meta larger than 4096 bytes/],
    ] as const) {
      const data = Buffer.from(`{"host":"10.0.0.1","port":80,"meta":${meta}}`)
      const r = decodeInstance('/s/a', 'a', data)
      expect(r.ok, what).to.equal(true)
      if (!r.ok) continue
      expect(r.endpoint.meta, what).to.not.have.property('meta')
      expect(r.warning, what).to.match(warning)
      const again = decodeInstance('/s/a', 'a', data)
      expect(again.ok && endpointsEqual(r.endpoint, again.endpoint), what).to.equal(true)
    }
    const small = decodeInstance('/s/a', 'a', Buffer.from(`{"host":"10.0.0.1","port":80,"meta":${deep(14)}}`))
    expect(small.ok && small.endpoint.meta.meta).to.deep.equal(JSON.parse(deep(14)))
    expect(small.ok && small.warning).to.equal(undefined)
  })

  it('never throws comparing endpoints whose meta cannot be written out', () => {
    let v: unknown = 1
    for (let i = 0; i < 100_000; i++) v = [v]
    const e = (meta: Record<string, unknown>) => ({ key: '/s/a', host: 'h', port: 1, weight: 1, state: 'up' as const, meta })
    expect(endpointsEqual(e({ v }), e({ v: [v] }))).to.equal(false)
  })

  it('rejects what matches no layout with a reason, never throwing', () => {
    for (const bad of ['{"host":"h"}', '{"host":"h","port":70000}', '{"port":1}', '{nope', '[1,2]', 'hello', 'h:0', '{"host":"h","port":1,"state":"weird"}', '{"host":"h","port":1,"weight":"heavy"}']) {
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

  describe('bounds every number it reads (issue 21)', () => {
    const random = seededRandom(21)
    /** Weights as JSON text: huge, tiny, subnormal, negative, at and just past the ends, random magnitudes. */
    const weights = ['1e308', '1e999', '-1e999', '-1', '-0', '0', '5e-324', '1e-300', '0.5', '1', '256', '256.0000001', '257', '20000', '1.7976931348623157e308']
    for (let i = 0; i < 60; i++) weights.push(String((random() < 0.5 ? -1 : 1) * random() * 10 ** Math.floor(random() * 620 - 310)))
    /** Where each format keeps a weight, as JSON text around it (Curator metadata holds strings). */
    const layouts: [string, (w: string) => string][] = [
      ['ours', (w) => `{"host":"h","port":1,"weight":${w}}`],
      ['Curator payload', (w) => `{"address":"h","port":1,"payload":{"weight":${w}}}`],
      ['Curator metadata', (w) => `{"address":"h","port":1,"payload":{"metadata":{"weight":"${w}"}}}`],
    ]

    it('keeps an instance whose weight is any number, clamped into 0-256 with a warning only when it was outside', () => {
      for (const [layout, data] of layouts) {
        for (const w of weights) {
          const given = Number(w)
          const r = dec(data(w))
          expect(r.ok, `${layout} ${w}`).to.equal(true)
          if (!r.ok) continue
          expect(r.endpoint.weight, `${layout} ${w}`).to.be.within(0, WEIGHT_MAX)
          if (given >= 0 && given <= WEIGHT_MAX) {
            expect(r.endpoint.weight, `${layout} ${w}`).to.equal(given)
            expect(r.warning, `${layout} ${w}`).to.equal(undefined)
          } else {
            expect(r.endpoint.weight, `${layout} ${w}`).to.equal(given > WEIGHT_MAX ? WEIGHT_MAX : 0)
            expect(r.warning, `${layout} ${w}`).to.match(/^weight .* is outside 0-256, clamped to (0|256)$/)
          }
        }
      }
    })

    it('skips an instance whose weight is not a number at all, with a reason naming the field', () => {
      for (const w of ['"heavy"', 'true', '[]', '{}', '"NaN"', '" "']) {
        const r = dec(`{"host":"h","port":1,"weight":${w}}`)
        expect(r, w).to.deep.equal({ ok: false, reason: 'weight must be a number 0-256' })
        const c = dec(`{"address":"h","port":1,"payload":{"weight":${w}}}`)
        expect(c, w).to.deep.equal({ ok: false, reason: 'Curator payload weight must be a number 0-256' })
      }
    })

    it('takes a port only as an integer 1-65535, in every format', () => {
      const ports = ['0', '1', '65535', '65536', '-1', '1.5', '1e308', '8080', '"8080"', 'null', String(Math.floor(random() * 1e6))]
      for (const port of ports) {
        const n = Number(port)
        const valid = Number.isInteger(n) && n >= 1 && n <= 65535 && !port.startsWith('"')
        for (const data of [
          `{"host":"h","port":${port}}`,
          `{"address":"h","port":${port}}`,
          `{"address":"h","port":1,"sslPort":${port}}`,
          `{"serviceEndpoint":{"host":"h","port":${port}}}`,
        ]) {
          const r = dec(data)
          if (port === 'null' && data.includes('sslPort')) expect(r.ok, data).to.equal(true)
          else expect(r.ok, data).to.equal(valid)
          if (r.ok) expect(r.endpoint.port).to.be.within(1, 65535)
        }
        if (/^\d+$/.test(port)) expect(dec(`h:${port}`).ok, `h:${port}`).to.equal(valid)
      }
    })

    it('keeps a ServerSet shard only when it is a whole number >= 0', () => {
      const shard = (v: string) => {
        const r = dec(`{"serviceEndpoint":{"host":"h","port":1},"shard":${v}}`)
        return r.ok ? r.endpoint.meta.shard : 'refused'
      }
      expect([shard('3'), shard('-1'), shard('1.5'), shard('1e308')]).to.deep.equal([3, undefined, undefined, undefined])
    })
  })
})

describe('the Dubbo provider codec (issue 27)', () => {
  // Names as Dubbo's ZookeeperRegistry writes them (URL.encode of the full URL, java.net.URLEncoder);
  // the data is what Curator writes by default, the registering host's address.
  const PARAMS = 'anyhost=true&application=demo-provider&deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&prefer.serialization=fastjson2,hessian2&release=3.2.0&service-name-mapping=true&side=provider&timestamp=1722955607339'
  const encode = (url: string) => encodeURIComponent(url).replace(/%20/g, '+')
  const provider = (scheme: string, hostPort: string, params = PARAMS) => encode(`${scheme}://${hostPort}/org.apache.dubbo.demo.DemoService?${params}`)
  const dubbo = (name: string, data: string | null = '10.0.0.1') => decodeInstance(`/dubbo/org.apache.dubbo.demo.DemoService/providers/${name}`, name, data === null ? null : Buffer.from(data))

  it('takes tri providers as h2c instances, rest and http as HTTP/1.1, with Dubbo weight 100 by default', () => {
    for (const [scheme, protocol] of [['tri', 'h2c'], ['rest', 'http/1.1'], ['http', 'http/1.1']] as const) {
      for (const data of ['10.0.0.1', '', null]) {
        const r = dubbo(provider(scheme, '10.0.0.1:50051'), data)
        expect(r.ok, `${scheme} ${String(data)}`).to.equal(true)
        if (!r.ok) continue
        expect(r.endpoint).to.include({ host: '10.0.0.1', port: 50051, weight: 100, state: 'up' })
        expect(r.endpoint.meta).to.include({ format: 'dubbo', protocol, dubboProtocol: scheme, interface: 'org.apache.dubbo.demo.DemoService', application: 'demo-provider' })
      }
    }
    const v6 = dubbo(provider('tri', '[2409:895a::22d4]:50051'))
    expect(v6.ok && v6.endpoint).to.include({ host: '2409:895a::22d4', port: 50051 })
  })

  it('reads weight, clamped into range, and skips disabled providers', () => {
    const weighted = (w: string) => dubbo(provider('tri', 'h:1', `${PARAMS}&weight=${w}`))
    expect(weighted('7')).to.deep.include({ ok: true })
    expect((weighted('7') as { endpoint: { weight: number } }).endpoint.weight).to.equal(7)
    const big = weighted('100000')
    expect(big.ok && big.endpoint.weight).to.equal(WEIGHT_MAX)
    expect(big.ok && big.warning).to.match(/clamped/)
    expect(weighted('heavy')).to.deep.include({ ok: false })
    for (const off of ['disabled=true', 'enabled=false']) {
      const r = dubbo(provider('tri', 'h:1', `${PARAMS}&${off}`))
      expect(r.ok ? 'kept' : r.reason, off).to.match(/disabled/)
    }
    for (const on of ['disabled=false', 'enabled=true']) expect(dubbo(provider('tri', 'h:1', `${PARAMS}&${on}`)).ok, on).to.equal(true)
  })

  it('skips binary dubbo:// providers and other protocols, with the reason', () => {
    const r = dubbo(provider('dubbo', '10.0.0.1:20880'))
    expect(r.ok ? 'kept' : r.reason).to.match(/dubbo:\/\/.*not HTTP/)
    for (const scheme of ['grpc', 'injvm', 'thrift']) {
      const other = dubbo(provider(scheme, '10.0.0.1:1'))
      expect(other.ok ? 'kept' : other.reason, scheme).to.match(/not HTTP/)
    }
    const consumer = dubbo(provider('tri', 'h:1', 'category=consumers&side=consumer'))
    expect(consumer.ok ? 'kept' : consumer.reason).to.match(/not a provider/)
  })

  it('refuses hostile names with a reason, never a throw, in bounded time', () => {
    const random = seededRandom(27)
    const bad = [
      'tri%3A%2F%2F%E0%A4%A', // a cut escape
      'tri%3A%2F%2F%ZZ',
      'tri%3A%2F%2Fh%3A0%2Fx', // port 0
      'tri%3A%2F%2Fh%3A65536%2Fx',
      'tri%3A%2F%2Fh%3A123456%2Fx',
      'tri%3A%2F%2F%3A80%2Fx', // no host
      'tri%3A%2F%2Fuser%40h%3A80%2Fx',
      'tri%3A%2F%2Fh%2Fx', // no port
      `tri%3A%2F%2F${'a'.repeat(9000)}%3A80`,
      provider('tri', 'h:1', Array.from({ length: 300 }, (_, i) => `p${i}=1`).join('&')),
    ]
    for (let i = 0; i < 300; i++) {
      const base = provider('tri', '10.0.0.1:50051')
      const at = Math.floor(random() * base.length)
      bad.push(base.slice(0, at) + String.fromCharCode(Math.floor(random() * 128)) + base.slice(at + 1))
    }
    for (const name of bad) {
      const r = dubbo(name)
      if (!r.ok) expect(r.reason, name.slice(0, 80)).to.be.a('string').and.not.equal('')
      else {
        expect(r.endpoint.port).to.be.within(1, 65535)
        expect(r.endpoint.host.length).to.be.within(1, 253)
      }
    }
    for (const name of bad.slice(0, 10)) expect(dubbo(name).ok, name.slice(0, 60)).to.equal(false)
  })

  it('leaves names that are not Dubbo URLs to the other layouts', () => {
    expect(dubbo('10.0.0.9:8080', '')).to.deep.include({ ok: true })
    expect(decodeInstance('/s/x', 'x', Buffer.from('{"host":"h","port":2}')).ok).to.equal(true)
  })
})
