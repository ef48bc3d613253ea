import { expect } from 'chai'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { makeConfig, putNode, send, startProxy, startUpstream, uniquePath, useClosers, useZooKeeper, waitFor } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'
import { seededRandom as seeded } from '../support/random.js'

describe('canary routing: headers, methods, rewrite, weighted splits (real ZooKeeper, real upstreams)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  /** One upstream registered under its own service path; the service config names that path. */
  async function service(name: string, extra: object = {}): Promise<{ up: Upstream; config: object }> {
    const up = await startUpstream(name)
    closers.push(() => up.close())
    const path = uniquePath(name)
    await putNode(ctx.admin, `${path}/i-${up.port}`, { host: '127.0.0.1', port: up.port })
    return { up, config: { name, path, ...extra } }
  }

  async function proxyWith(services: object[], random?: () => number) {
    const p = await startProxy(await makeConfig(ctx.zk.connectString, services), random === undefined ? {} : { random })
    closers.push(() => p.close())
    await waitFor(() => p.services.every((s) => s.balancer.hosts.length === 1), 'every service has its instance')
    return p
  }

  const upstreamOf = async (port: number, path: string, opts: Parameters<typeof send>[2] = {}) => {
    const r = await send(port, path, opts)
    expect(r.status, `${path} ${JSON.stringify(opts).slice(0, 200)}`).to.equal(200)
    return r.headers['x-upstream']
  }

  it('routes by header to the canary, by method to the writer, and rewrites the path', async () => {
    const stable = await service('stable', { match: { pathPrefix: '/api' }, routes: [{ match: { pathPrefix: '/old' }, rewrite: { prefix: '/api/v2' } }] })
    const canary = await service('canary', {
      routes: [
        { match: { pathPrefix: '/api', headers: { 'x-canary': 'always' } }, rewrite: { stripPrefix: true } },
        { match: { pathPrefix: '/api', headers: { 'x-build': { regex: '20[0-9]{2}-(beta|rc)[0-9]*' } } } },
      ],
    })
    const writer = await service('writer', { match: { pathPrefix: '/api', methods: ['POST', 'PUT', 'DELETE'] } })
    const p = await proxyWith([stable.config, canary.config, writer.config])

    expect(await upstreamOf(p.port, '/api/users')).to.equal('stable')
    expect(await upstreamOf(p.port, '/api/users?id=7', { headers: { 'x-canary': 'always' } })).to.equal('canary')
    expect(canary.up.seen.at(-1)!.url).to.equal('/users?id=7')
    // (A value's surrounding whitespace is not part of it: RFC 9110 §5.5.)
    for (const v of ['Always', 'always,always', 'sometimes', '']) expect(await upstreamOf(p.port, '/api/users', { headers: { 'x-canary': v } }), v).to.equal('stable')
    for (const v of ['2026-beta', '2031-rc2']) expect(await upstreamOf(p.port, '/api/x', { headers: { 'x-build': v } }), v).to.equal('canary')
    for (const v of ['2026-beta-x', 'v2026-rc', '2026-ga']) expect(await upstreamOf(p.port, '/api/x', { headers: { 'x-build': v } }), v).to.equal('stable')
    // A header route is more specific than a method route under the same prefix; both beat a bare prefix.
    expect(await upstreamOf(p.port, '/api/users', { method: 'POST', body: 'x' })).to.equal('writer')
    expect(await upstreamOf(p.port, '/api/users', { method: 'POST', body: 'x', headers: { 'x-canary': 'always' } })).to.equal('canary')
    expect(await upstreamOf(p.port, '/api/users', { method: 'PATCH', body: 'x' })).to.equal('stable')
    // The prefix rewrite keeps the query and the rest of the path as sent (encoded slash included).
    expect(await upstreamOf(p.port, '/old/a%2Fb?x=%2F&y')).to.equal('stable')
    expect(stable.up.seen.at(-1)!.url).to.equal('/api/v2/a%2Fb?x=%2F&y')
    expect(await upstreamOf(p.port, '/old')).to.equal('stable')
    expect(stable.up.seen.at(-1)!.url).to.equal('/api/v2')
    // `/old` does not cover `/oldx`, and nothing else does.
    expect((await send(p.port, '/oldx')).status).to.equal(404)
  })

  it('routes past patterns that backtrack exponentially elsewhere, with headers as long as the head allows', async () => {
    const stable = await service('stable')
    const canary = await service('canary', { routes: [{ match: { headers: { 'x-a': { regex: '(a+)+b' }, 'x-b': { regex: '(x|x)*y' }, 'x-c': { regex: '(.*a){20}' } } } }] })
    const p = await proxyWith([stable.config, canary.config])
    // A backtracking engine takes about 2^n steps on n characters here (three headers that fit in
    // the head limit): this would never be answered. RE2's single pass answers it as any other request.
    const long = (c: string) => c.repeat(4_000)
    expect(await upstreamOf(p.port, '/', { headers: { 'x-a': long('a'), 'x-b': long('x'), 'x-c': long('a') } })).to.equal('stable')
    expect(await upstreamOf(p.port, '/', { headers: { 'x-a': `${long('a')}b`, 'x-b': `${long('x')}y`, 'x-c': long('a') } })).to.equal('canary')
  })

  it('routes and rewrites an upgrade request on the same rules', async () => {
    const seen: string[] = []
    const server = http.createServer((_req, res) => res.end())
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      seen.push(`${req.headers['x-canary'] ?? '-'} ${req.url}`)
      socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise<void>((r) => server.close(() => r())))
    const path = uniquePath('ws')
    await putNode(ctx.admin, `${path}/i-1`, { host: '127.0.0.1', port: (server.address() as AddressInfo).port })
    const stable = await service('stable')
    const ws = { name: 'ws', path, routes: [{ match: { pathPrefix: '/ws', headers: { 'x-canary': 'always' } }, rewrite: { stripPrefix: true } }] }
    const p = await proxyWith([stable.config, ws])
    const head = await new Promise<string>((resolve, reject) => {
      const c = net.connect(p.port, '127.0.0.1', () =>
        c.write('GET /ws/chat?room=%2F1 HTTP/1.1\r\nHost: a.test\r\nX-Canary: always\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'),
      )
      let got = ''
      c.setEncoding('latin1')
      c.on('data', (d: string) => (got += d))
      c.on('end', () => resolve(got))
      c.on('error', reject)
    })
    expect(head).to.match(/^HTTP\/1\.1 101 /)
    expect(seen).to.deep.equal(['always /chat?room=%2F1'])
  })

  it('splits by weight, one user always on the same side, within binomial bounds', async () => {
    const stable = await service('stable', { match: { pathPrefix: '/shop' } })
    const canary = await service('canary', {
      routes: [
        {
          match: { pathPrefix: '/shop', headers: { 'x-user': { prefix: 'u-' } } },
          to: [
            { service: 'stable', weight: 90 },
            { service: 'canary', weight: 10 },
          ],
          hashKey: 'header:x-user',
        },
      ],
    })
    const p = await proxyWith([stable.config, canary.config])
    const n = 1000
    const side = new Map<string, string>()
    for (let i = 0; i < n; i++) side.set(`u-${i}`, String(await upstreamOf(p.port, '/shop/cart', { headers: { 'x-user': `u-${i}` } })))
    const onCanary = [...side.values()].filter((s) => s === 'canary').length
    // Binomial(1000, 0.1): mean 100, sd 9.5; the hash makes the count the same on every run, and
    // six standard deviations either side would still hold for any fair hash.
    expect(onCanary).to.be.within(100 - 57, 100 + 57)
    for (let i = 0; i < n; i += 20) expect(await upstreamOf(p.port, '/shop/other', { headers: { 'x-user': `u-${i}` } })).to.equal(side.get(`u-${i}`))
  })

  it('draws a split per request without a hash key, from the proxy\'s random source', async () => {
    const a = await service('a', { routes: [{ to: [{ service: 'a', weight: 3 }, { service: 'b', weight: 1 }] }] })
    const b = await service('b', { routes: [] })
    const p = await proxyWith([a.config, b.config], seeded(25))
    const n = 1200
    let onB = 0
    for (let i = 0; i < n; i++) if ((await upstreamOf(p.port, `/r${i}`)) === 'b') onB++
    // Binomial(1200, 0.25): mean 300, sd 15.
    expect(onB).to.be.within(300 - 90, 300 + 90)
  })

  it('takes a new split on reload all at once, keeping the services themselves', async () => {
    const stable = await service('stable', { match: { pathPrefix: '/app' } })
    const canary = await service('canary', { routes: [] })
    const p = await proxyWith([stable.config, canary.config])
    expect(await upstreamOf(p.port, '/app', { headers: { 'x-user': 'u-1' } })).to.equal('stable')
    const split = (weight: number) => ({
      ...(canary.config as Record<string, unknown>),
      routes: [{ match: { pathPrefix: '/app' }, to: [{ service: 'stable', weight: 100 - weight }, { service: 'canary', weight }], hashKey: 'header:x-user' }],
    })
    const before = p.services.slice()
    const next = await makeConfig(ctx.zk.connectString, [{ ...(stable.config as Record<string, unknown>), match: { pathPrefix: '/elsewhere' } }, split(100)])
    const result = await p.reload(next)
    expect(result.unchanged.sort()).to.deep.equal(['canary', 'stable'])
    expect(p.services).to.deep.equal(before)
    for (let i = 0; i < 20; i++) expect(await upstreamOf(p.port, '/app/x', { headers: { 'x-user': `u-${i}` } })).to.equal('canary')
    expect(await upstreamOf(p.port, '/elsewhere')).to.equal('stable')
  })

  it('fails no request while reloads change routes, splits and rewrites under load (attack, issue 25)', async () => {
    const stable = await service('stable', { match: { pathPrefix: '/app' } })
    const canary = await service('canary', { routes: [] })
    const p = await proxyWith([stable.config, canary.config])
    const shapes = [
      [stable.config, canary.config],
      [{ ...(stable.config as Record<string, unknown>), match: { pathPrefix: '/' } }, { ...(canary.config as Record<string, unknown>), routes: [{ match: { pathPrefix: '/app' }, rewrite: { prefix: '/v2' }, to: [{ service: 'stable', weight: 0 }, { service: 'canary', weight: 100 }] }] }],
      [stable.config, { ...(canary.config as Record<string, unknown>), routes: [{ match: { pathPrefix: '/app', headers: { 'x-user': { regex: 'u-[0-9]+' } } }, rewrite: { stripPrefix: true }, to: [{ service: 'stable', weight: 50 }, { service: 'canary', weight: 50 }], hashKey: 'header:x-user' }] }],
    ]
    const statuses: Record<number, number> = {}
    let stopped = false
    let n = 0
    const loops = Array.from({ length: 4 }, async () => {
      while (!stopped) {
        const r = await send(p.port, `/app/x/${n}`, { headers: { 'x-user': `u-${n++}` } }).catch(() => ({ status: 0 }))
        statuses[r.status] = (statuses[r.status] ?? 0) + 1
      }
    })
    for (let i = 0; i < 12; i++) {
      await p.reload(await makeConfig(ctx.zk.connectString, shapes[i % shapes.length]!))
      // Let some requests through on each shape before the next reload.
      const seen = n
      await waitFor(() => n >= seen + 8, 'requests on this shape')
    }
    stopped = true
    await Promise.all(loops)
    expect(Object.keys(statuses), JSON.stringify(statuses)).to.deep.equal(['200'])
  })

  it('sends a rewritten path with dot segments resolved below the replacement (attack, issue 25)', async () => {
    const web = await service('web', { match: { pathPrefix: '/app' }, routes: [{ match: { pathPrefix: '/old' }, rewrite: { prefix: '/v2' } }] })
    const p = await proxyWith([web.config])
    for (const [sent, want] of [
      ['/old/x/../admin', '/v2/admin'],
      ['/old/x/y/%2e%2e/%2E%2E/admin?q=/../x', '/v2/admin?q=/../x'],
      ['/old/a/./b/../c', '/v2/a/c'],
      ['/old/x/..', '/v2/'],
      ['/old;v=1/x/..;/y', null],
      ['/old/..%2F..%2Fadmin', null],
    ] as const) {
      expect((await send(p.port, sent)).status, sent).to.equal(want === null ? 404 : 200)
      if (want !== null) expect(web.up.seen.at(-1)!.url, sent).to.equal(want)
    }
    // Routes match the resolved path (ef664d4): climbing out of /old is not under it, and not under /app.
    for (const sent of ['/old/../admin', '/old/..', '/old/%2e%2e/x']) expect((await send(p.port, sent)).status, sent).to.equal(404)
  })
})
