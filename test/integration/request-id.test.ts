// Request IDs and the access log (issue 13): an ID follows each request upstream, into the access
// log and into every error body; the access log has one line per request with what happened.

import { expect } from 'chai'
import type { AccessEntry } from '../../lib/log.js'
import { makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import { raw } from '../support/wire.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('request IDs and the access log (real ZooKeeper, real upstreams)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function setUp(access: boolean) {
    const up = await startUpstream('a', (req, res) => {
      if (req.url === '/fail') res.writeHead(502).end('bad')
      else res.end('hello')
    })
    closers.push(() => up.close())
    const path = uniquePath('rid')
    await putNode(ctx.admin, `${path}/a`, { host: '127.0.0.1', port: up.port })
    const entries: AccessEntry[] = []
    const config = await makeConfig(
      ctx.zk.connectString,
      [
        { name: 'example', path, match: { pathPrefix: '/' }, retry: { attempts: 1 } },
        { name: 'empty', path: uniquePath('none'), match: { pathPrefix: '/empty' } },
      ],
      { log: { level: 'silent', access } },
    )
    const p = await startProxy(config, { accessLog: (e) => entries.push(e) })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    return { up, p, entries }
  }

  it('keeps a sane X-Request-Id and sends it upstream', async () => {
    const { up, p } = await setUp(false)
    const id = `a-Z.0_9:~${'x'.repeat(100)}`
    expect((await send(p.port, '/', { headers: { 'x-request-id': id } })).status).to.equal(200)
    expect(up.seen.at(-1)!.headers['x-request-id']).to.equal(id)
  })

  for (const [why, bad] of Object.entries({ 'over 128 characters': 'x'.repeat(129), 'with a space': 'a b', 'with a non-ASCII character': 'caf\u00e9' }))
    it(`replaces an X-Request-Id ${why} with one of its own`, async () => {
      const { up, p } = await setUp(false)
      const { got } = await raw(p.port, Buffer.from(`GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: ${bad}\r\n\r\n`, 'latin1').toString('latin1'), (g) => g.endsWith('hello'))
      expect(got).to.match(/^HTTP\/1\.1 200 /)
      expect(up.seen.at(-1)!.headers['x-request-id']).to.match(UUID)
    })

  it('makes an ID for a request without one, and sends exactly one upstream', async () => {
    const { up, p } = await setUp(false)
    await send(p.port, '/')
    await send(p.port, '/')
    const [a, b] = up.seen.map((s) => s.headers['x-request-id'])
    expect(a).to.match(UUID)
    expect(b).to.match(UUID)
    expect(a).not.to.equal(b)
  })

  it('puts the ID into every error body the proxy writes, and its X-Request-Id header', async () => {
    const { p } = await setUp(false)
    const noInstance = await send(p.port, '/empty', { headers: { 'x-request-id': 'mine-1' } })
    expect(noInstance.status).to.equal(503)
    expect(JSON.parse(noInstance.body).requestId).to.equal('mine-1')
    expect(noInstance.headers['x-request-id']).to.equal('mine-1')
    const badHost = await raw(p.port, 'GET / HTTP/1.1\r\nHost: a b\r\nX-Request-Id: mine-2\r\n\r\n')
    expect(JSON.parse(badHost.got.slice(badHost.got.indexOf('\r\n\r\n') + 4)).requestId).to.equal('mine-2')
    const malformed = await raw(p.port, 'GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n')
    expect(JSON.parse(malformed.got.slice(malformed.got.indexOf('\r\n\r\n') + 4)).requestId).to.match(UUID)
  })

  it('writes one access log line per request, with what happened to it', async () => {
    const { up, p, entries } = await setUp(true)
    await send(p.port, '/x?y=1', { headers: { 'x-request-id': 'r-ok' } })
    await send(p.port, '/fail', { headers: { 'x-request-id': 'r-fail' } })
    await send(p.port, '/empty/z', { method: 'POST', body: 'abc', headers: { 'x-request-id': 'r-none' } })
    await waitFor(() => entries.length === 3, 'three access log lines')
    const instance = `127.0.0.1:${up.port}`
    const fixed = entries.map(({ durationMs, ...rest }) => {
      expect(durationMs).to.be.a('number').and.at.least(0)
      return rest
    })
    expect(fixed).to.deep.equal([
      { service: 'example', method: 'GET', path: '/x?y=1', status: 200, instance, attempts: 1, bytesOut: 5, requestId: 'r-ok', client: '127.0.0.1', protocol: 'http/1.1' },
      { service: 'example', method: 'GET', path: '/fail', status: 502, instance, attempts: 1, bytesOut: 3, requestId: 'r-fail', client: '127.0.0.1', protocol: 'http/1.1' },
      { service: 'empty', method: 'POST', path: '/empty/z', status: 503, instance: null, attempts: 0, bytesOut: fixed[2]!.bytesOut, requestId: 'r-none', client: '127.0.0.1', protocol: 'http/1.1' },
    ])
    expect(fixed[2]!.bytesOut).to.be.above(0)
  })

  it('writes no access log line when log.access is off (the default)', async () => {
    const { p, entries } = await setUp(false)
    await send(p.port, '/')
    expect(entries).to.deep.equal([])
  })
})
