import { expect } from 'chai'
import { Router, hostName, underPrefix } from '../../lib/http/routes.js'

describe('routing', () => {
  const router = new Router([
    { target: 'default' },
    { match: { pathPrefix: '/api' }, target: 'api' },
    { match: { pathPrefix: '/api/v2' }, target: 'api-v2' },
    { match: { host: 'API.example.test' }, target: 'host' },
    { match: { host: 'api.example.test', pathPrefix: '/api' }, target: 'host-api' },
  ])

  it('prefers host and the longest prefix', () => {
    expect(router.route('api.example.test:8080', '/api/x')).to.equal('host-api')
    expect(router.route('Api.Example.Test', '/other')).to.equal('host')
    expect(router.route('other', '/api/v2/users?q=1')).to.equal('api-v2')
    expect(router.route('other', '/api')).to.equal('api')
    expect(router.route(undefined, '/apix')).to.equal('default')
  })

  it('returns null with no default and no match', () => {
    expect(new Router([{ match: { pathPrefix: '/a' }, target: 1 }]).route('h', '/b')).to.equal(null)
  })

  it('matches prefixes on a segment boundary', () => {
    expect(underPrefix('/api/x', '/api')).to.equal(true)
    expect(underPrefix('/apix', '/api')).to.equal(false)
    expect(underPrefix('/api/', '/api/')).to.equal(true)
    expect(underPrefix('/anything', '/')).to.equal(true)
  })

  it('reads the Host header name without its port', () => {
    expect(hostName('[::1]:80')).to.equal('::1')
    expect(hostName('Example.COM.:443')).to.equal('example.com')
  })
})
