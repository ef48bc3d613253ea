import { expect } from 'chai'
import http from 'node:http'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { deadPort, makeConfig, metric, patterned, putNode, recordingLogger, scrape, send, spread, startProxy, startUpstream, uniquePath, useZooKeeper, waitFor, useClosers } from '../support/helpers.js'
import type { Upstream } from '../support/helpers.js'

describe('forwarding (real ZooKeeper, real upstreams)', function () {
  const ctx = useZooKeeper()
  const closers = useClosers()

  async function upstream(name: string, handler?: Parameters<typeof startUpstream>[1]): Promise<Upstream> {
    const u = await startUpstream(name, handler)
    closers.push(() => u.close())
    return u
  }

  async function proxyFor(path: string, service: object = {}, extra: object = {}) {
    const config = await makeConfig(ctx.zk.connectString, [{ name: 'example', path, ...service }], extra)
    const p = await startProxy(config)
    closers.push(() => p.close())
    return p
  }

  async function addInstance(path: string, u: { port: number }, name = `i${u.port}`, extra: object = {}): Promise<void> {
    await putNode(ctx.admin, `${path}/${name}`, { host: '127.0.0.1', port: u.port, ...extra })
  }

  it('round-robins over the instances in exact rotation', async () => {
    const path = uniquePath()
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => upstream(n)))
    for (const u of ups) await addInstance(path, u, `n-${u.name}`)
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 3, 'three instances')
    const order: string[] = []
    for (let i = 0; i < 9; i++) order.push((await send(p.port)).body)
    // Whatever the random start, the rotation is exact: every window of three has all three.
    for (let i = 0; i + 3 <= order.length; i++) expect(new Set(order.slice(i, i + 3)).size, order.join()).to.equal(3)
  })

  it('passes the Host header, adds X-Forwarded-*, and drops hop-by-hop headers', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await addInstance(path, u)
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const r = await send(p.port, '/x/y?z=1', { headers: { host: 'api.example.test', 'x-forwarded-for': '10.1.1.1', 'x-custom': 'kept', 'x-drop-me': '1', connection: 'x-drop-me' } })
    expect(r.status).to.equal(200)
    const seen = u.seen.at(-1)!
    expect(seen.url).to.equal('/x/y?z=1')
    expect(seen.headers.host).to.equal('api.example.test')
    expect(seen.headers['x-forwarded-for']).to.equal('10.1.1.1, 127.0.0.1')
    expect(seen.headers['x-forwarded-proto']).to.equal('http')
    expect(seen.headers['x-forwarded-host']).to.equal('api.example.test')
    expect(seen.headers['x-custom']).to.equal('kept')
    expect(seen.headers['x-drop-me']).to.equal(undefined)
    expect(r.headers['x-upstream']).to.equal('a')
  })

  it('streams a large request body up and a large response down', async () => {
    const path = uniquePath()
    const u = await upstream('echo', (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      req.pipe(res)
    })
    await addInstance(path, u)
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    // No two 4-byte words alike: a piece lost, doubled or out of order changes the digest.
    const body = patterned(3 * 256 * 1024)
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
    const r = await send(p.port, '/upload', { method: 'POST', body })
    expect(r.status).to.equal(200)
    expect(r.bytes.length).to.equal(body.length)
    expect(sha(r.bytes)).to.equal(sha(body))
  })

  it('answers 503 naming the service when it has no instance', async () => {
    const p = await proxyFor(uniquePath())
    const r = await send(p.port)
    expect(r.status).to.equal(503)
    expect(JSON.parse(r.body)).to.include({ error: 'ZP_ERR_NO_ENDPOINT', service: 'example' })
  })

  it('sends a request whose connection is refused to another instance, whatever its method', async () => {
    const path = uniquePath()
    const good = await upstream('good')
    await addInstance(path, good, 'a-good')
    await addInstance(path, { port: await deadPort(closers) }, 'b-dead')
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    for (let i = 0; i < 6; i++) {
      const r = await send(p.port, '/', { method: 'POST', body: 'x' })
      expect(r.status, r.body).to.equal(200)
      expect(r.body).to.equal('good')
    }
    expect(good.seen.length).to.equal(6)
  })

  it('answers 502 when the only instance refuses, and keeps serving', async () => {
    const path = uniquePath()
    await addInstance(path, { port: await deadPort(closers) })
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const r = await send(p.port)
    expect(r.status).to.equal(502)
    expect(JSON.parse(r.body)).to.include({ error: 'ZP_ERR_UPSTREAM_CONNECT', service: 'example' })
    const u = await upstream('late')
    await addInstance(path, u, 'z-late')
    await waitFor(async () => (await send(p.port)).status === 200, 'the new instance to answer')
  })

  it('answers 502 when an upstream resets before answering', async () => {
    const path = uniquePath()
    const u = await upstream('rude', (req) => req.socket.destroy())
    await addInstance(path, u)
    const p = await proxyFor(path, { retry: { attempts: 1 } })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const r = await send(p.port, '/', { method: 'POST', body: 'x' })
    expect(r.status).to.equal(502)
    expect(JSON.parse(r.body).error).to.equal('ZP_ERR_UPSTREAM_RESET')
  })

  it('answers 504 after the configured timeout when the upstream is too slow', async () => {
    const path = uniquePath()
    // Never answers; sees the proxy give the request up (its connection closes).
    let abandoned = false
    const u = await upstream('slow', (_req, res) => res.once('close', () => (abandoned = true)))
    await addInstance(path, u)
    const p = await proxyFor(path, { timeoutMs: 300 })
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const r = await send(p.port)
    expect(r.status).to.equal(504)
    expect(JSON.parse(r.body)).to.include({ error: 'ZP_ERR_UPSTREAM_TIMEOUT', service: 'example' })
    expect(u.hits).to.equal(1)
    await waitFor(() => abandoned, 'the proxy to give the upstream request up')
    expect(metric(await scrape(p.adminPort), 'zoo_proxy_upstream_attempts_total{service="example",outcome="timeout"}')).to.equal(1)
  })

  it('routes by host and path prefix, and answers 404 when nothing matches', async () => {
    const a = await upstream('api')
    const b = await upstream('web')
    const pa = uniquePath()
    const pb = uniquePath()
    await addInstance(pa, a)
    await addInstance(pb, b)
    const config = await makeConfig(ctx.zk.connectString, [
      { name: 'api', path: pa, match: { pathPrefix: '/api' } },
      { name: 'web', path: pb, match: { host: 'www.example.test' } },
    ])
    const p = await startProxy(config)
    closers.push(() => p.close())
    await waitFor(() => p.services.every((s) => s.balancer.hosts.length === 1), 'instances')
    expect((await send(p.port, '/api/users')).body).to.equal('api')
    expect((await send(p.port, '/', { headers: { host: 'WWW.example.test:8080' } })).body).to.equal('web')
    const miss = await send(p.port, '/nothing')
    expect(miss.status).to.equal(404)
    expect(JSON.parse(miss.body).error).to.equal('ZP_ERR_NO_ROUTE')
  })

  it('answers a malformed request with 400 and keeps serving', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await addInstance(path, u)
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(p.port, '127.0.0.1', () => s.write('GARBAGE\r\n\r\n'))
      let out = ''
      s.on('data', (d) => (out += d))
      s.on('close', () => resolve(out))
    })
    expect(raw).to.match(/^HTTP\/1\.1 400/)
    expect((await send(p.port)).status).to.equal(200)
  })

  it('serves /healthz, /readyz and /upstreams on the admin listener', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await addInstance(path, u, 'inst', { weight: 2 })
    const p = await proxyFor(path)
    const get = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) =>
        http.get({ host: '127.0.0.1', port: p.adminPort, path }, (res) => {
          let body = ''
          res.on('data', (d) => (body += d))
          res.on('end', () => resolve({ status: res.statusCode!, body }))
        }).on('error', reject),
      )
    expect((await get('/healthz')).status).to.equal(200)
    expect((await get('/readyz')).status).to.equal(200)
    const up = await waitFor(async () => {
      const body = JSON.parse((await get('/upstreams')).body)
      return body.services.example.instances.length === 1 && body
    }, 'instance in /upstreams')
    expect(up.zookeeper.state).to.equal('connected')
    expect(up.services.example.instances[0]).to.include({ host: '127.0.0.1', port: u.port, weight: 2, state: 'up', healthy: true, inFlight: 0 })
  })

  it('exports Prometheus metrics on /metrics', async () => {
    const path = uniquePath()
    const u = await upstream('a')
    await addInstance(path, u)
    await addInstance(path, { port: await deadPort(closers) }, 'dead')
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    for (let i = 0; i < 4; i++) expect((await send(p.port)).status).to.equal(200)
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text()
    expect(text).to.include('zoo_proxy_requests_total{service="example",code="200"} 4')
    expect(text).to.include('zoo_proxy_upstream_attempts_total{service="example",outcome="connect"} 2')
    expect(text).to.include('zoo_proxy_retries_total{service="example"} 2')
    expect(text).to.match(/zoo_proxy_request_duration_seconds_count\{service="example"\} 4/)
    expect(text).to.include('zoo_proxy_instances{service="example",state="up"} 2')
    expect(text).to.include('zoo_proxy_zookeeper_connected 1')
  })

  it('tunnels a WebSocket upgrade to an instance, holding it in flight while open', async () => {
    const path = uniquePath()
    // An upstream that completes the handshake and echoes what it gets.
    const echo = http.createServer()
    const tunnels = new Set<net.Socket>()
    echo.on('upgrade', (req, socket: net.Socket) => {
      tunnels.add(socket)
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-Host: ' + req.headers.host + '\r\n\r\n')
      socket.on('data', (d: Buffer) => socket.write(d))
    })
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r))
    closers.push(() => new Promise((r) => { tunnels.forEach((s) => s.destroy()); echo.close(() => r(undefined)); echo.closeAllConnections() }))
    await addInstance(path, { port: (echo.address() as net.AddressInfo).port })
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const { res, socket } = await new Promise<{ res: http.IncomingMessage; socket: net.Socket }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p.port, path: '/chat', headers: { connection: 'Upgrade', upgrade: 'websocket', host: 'chat.example.test' } })
      req.on('upgrade', (res, socket) => resolve({ res, socket }))
      req.on('error', reject)
      req.end()
    })
    expect(res.statusCode).to.equal(101)
    expect(res.headers['x-seen-host']).to.equal('chat.example.test')
    expect(p.services[0]!.balancer.hosts[0]!.inFlight).to.equal(1)
    const echoed = await new Promise<string>((resolve) => {
      socket.once('data', (d: Buffer) => resolve(d.toString()))
      socket.write('ping')
    })
    expect(echoed).to.equal('ping')
    socket.destroy()
    await waitFor(() => p.services[0]!.balancer.hosts[0]!.inFlight === 0, 'the lease to be released')
  })

  it('answers an upgrade with 503 when the service has no instance', async () => {
    const p = await proxyFor(uniquePath())
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(p.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'))
      let out = ''
      s.on('data', (d) => (out += d))
      s.on('close', () => resolve(out))
    })
    expect(raw).to.match(/^HTTP\/1\.1 503/)
  })

  it('spreads load over the instances', async () => {
    const path = uniquePath()
    const ups = await Promise.all(['a', 'b'].map((n) => upstream(n)))
    for (const u of ups) await addInstance(path, u)
    const p = await proxyFor(path)
    await waitFor(() => p.services[0]!.balancer.hosts.length === 2, 'two instances')
    expect(await spread(p.port, 10)).to.deep.equal({ a: 5, b: 5 })
  })

  it('cuts a request still in flight when shutdownTimeoutMs runs out on close', async () => {
    const path = uniquePath()
    const u = await upstream('never', () => {})
    await addInstance(path, u)
    const logger = recordingLogger()
    const p = await startProxy(await makeConfig(ctx.zk.connectString, [{ name: 'example', path }], { shutdownTimeoutMs: 200 }), { logger })
    closers.push(() => p.close())
    await waitFor(() => p.services[0]!.balancer.hosts.length === 1, 'one instance')
    const pending = send(p.port).then(
      (r) => `answered ${r.status}`,
      (err: NodeJS.ErrnoException) => err.code,
    )
    await waitFor(() => u.hits === 1, 'the request to reach the upstream')
    await p.close()
    expect(await pending).to.equal('ECONNRESET')
    expect(logger.lines.filter((l) => l.msg === 'shutdown timeout reached, cutting in-flight requests').map((l) => l.obj)).to.deep.equal([{ inFlight: 1, timeoutMs: 200 }])
  })
})
